"""
Tests for the benchmark worker (python -m edgernn.runtimes.bench_worker): summarize() against known arrays,
the CLI end to end in a fresh process on real ONNX artifacts and on --torch-run, parity outputs, the
per-phase RSS bookkeeping, and the one-line error path.

    .venv/bin/pytest tests/test_bench_worker.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgernn.runtimes.bench_worker import PeakRSS, measure, summarize, timing_overhead_ns

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"artifact", "format", "precision", "mode", "runtime", "runtime_version", "threads", "load_s",
        "first_inference_s", "latency_us", "throughput_per_s", "stream_us", "rss_mb", "size_bytes", "python",
        "numpy", "pid", "timer", "timing_overhead_us"}


# ---- summarize ------------------------------------------------------------------------------------------
def test_summarize_known_values():
    s = summarize([1000, 2000, 3000, 4000])  # ns
    assert s["n"] == 4
    assert s["p50"] == pytest.approx(2.5)  # microseconds
    assert s["p90"] == pytest.approx(3.7)  # linear interpolation: 1 + 0.9 * 3 = 3.7 -> 3.7 us
    assert s["p99"] == pytest.approx(3.97)
    assert s["mean"] == pytest.approx(2.5)
    assert s["std"] == pytest.approx(np.sqrt(1.25))  # population std
    assert (s["min"], s["max"]) == (1.0, 4.0)


def test_summarize_matches_numpy_and_is_order_free():
    rng = np.random.default_rng(0)
    ns = rng.integers(10_000, 90_000, size=1001)
    s = summarize(ns)
    us = ns / 1e3
    assert s["n"] == 1001
    for q in (50, 90, 99):
        assert s[f"p{q}"] == pytest.approx(float(np.percentile(us, q)))
    assert s == summarize(ns[::-1])
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]


def test_summarize_single_and_empty():
    s = summarize([5_500])
    assert s["n"] == 1 and s["p50"] == s["p99"] == s["min"] == s["max"] == 5.5 and s["std"] == 0.0
    with pytest.raises(ValueError, match="at least one sample"):
        summarize([])


def test_timing_overhead_is_small_and_positive():
    ns = timing_overhead_ns(500)
    assert 0 < ns < 50_000


# ---- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(make_run):
    import torch

    torch.set_num_threads(1)
    from edgernn.rundir import load_run

    return load_run(make_run(cell="lstm", hidden=16))


@pytest.fixture(scope="module")
def artifacts(onnx_artifacts):
    """Float ONNX sequence + step artifacts of the same tiny LSTM (conftest.onnx_artifacts)."""
    a = onnx_artifacts(cell="lstm", hidden=16)
    return {mode: a[mode] for mode in ("sequence", "step")}


@pytest.fixture(scope="module")
def windows(onnx_artifacts):
    """Its first 8 raw test windows [8, 40, 6] as .npy."""
    return onnx_artifacts(cell="lstm", hidden=16)["windows"]


def _worker(*args, timeout=120, module="edgernn.runtimes.bench_worker"):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


# ---- CLI end to end ------------------------------------------------------------------------------------
@pytest.mark.export
def test_worker_sequence_artifact(artifacts, windows, tmp_path):
    out = tmp_path / "result.json"
    r = _worker("--artifact", artifacts["sequence"], "--input", windows, "--out", out, "--runs", 60,
                "--warmup", 5, "--threads", 1)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert KEYS <= set(res)
    assert res["artifact"] == "sequence-float.onnx" and res["format"] == "onnx" and res["mode"] == "sequence"
    assert res["runtime"] == "onnxruntime" and res["threads"] == 1 and res["timer"] == "perf_counter_ns"
    lat = res["latency_us"]
    assert lat["n"] == 60 and 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert res["throughput_per_s"] == pytest.approx(1e6 / lat["mean"])
    assert res["stream_us"] is None
    assert res["load_s"] > 0 and res["first_inference_s"] > 0
    assert res["size_bytes"] == artifacts["sequence"].stat().st_size
    assert res["pid"] != 0 and res["window_shape"] == [40, 6]
    rss = res["rss_mb"]
    if res.get("rss_note"):
        pytest.skip(res["rss_note"])
    assert all(v > 0 for v in rss.values())
    assert rss["load_peak"] >= rss["baseline"]  # onnxruntime import + session cost memory
    assert 0 < res["timing_overhead_us"] < lat["p50"]
    assert not list(tmp_path.glob(".result.json.*"))  # atomic write left no temp file


@pytest.mark.export
def test_worker_step_artifact_streams(artifacts, windows, tmp_path):
    out = tmp_path / "step.json"
    r = _worker("--artifact", artifacts["step"], "--input", windows, "--out", out, "--runs", 50, "--warmup", 3,
                "--stream-frames", 70)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["mode"] == "step" and res["latency_unit"] == "frame"
    assert res["latency_us"]["n"] == 50
    s = res["stream_us"]
    assert set(s) == {"n", "p50", "p99", "mean"} and s["n"] == 70 and 0 < s["p50"] <= s["p99"]


@pytest.mark.export
def test_worker_parity_outputs_equal_predict(artifacts, windows, tmp_path):
    from edgernn.runtimes import load

    out, y = tmp_path / "r.json", tmp_path / "y.npy"
    r = _worker("--artifact", artifacts["sequence"], "--input", windows, "--out", out, "--runs", 5, "--warmup", 0,
                "--parity-input", windows, "--parity-out", y)
    assert r.returncode == 0, r.stderr
    got = np.load(y)
    want = load(artifacts["sequence"]).predict(np.load(windows))
    assert got.shape == (8, 4) and np.abs(got - want).max() <= 1e-6


def test_worker_torch_run(run, windows, tmp_path):
    """The torch eager row: the same worker, started through edgernn.reference (the runtimes never import
    torch, so the worker alone refuses --torch-run in one line)."""
    out = tmp_path / "torch.json"
    args = ("--torch-run", run.path, "--input", windows, "--out", out, "--runs", 20, "--warmup", 2,
            "--stream-frames", 0)
    r = _worker(*args)
    assert r.returncode == 1 and "python -m edgernn.reference" in r.stderr and "Traceback" not in r.stderr
    r = _worker(*args, module="edgernn.reference")
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert KEYS <= set(res)
    assert res["runtime"] == "torch" and res["format"] == "torch" and res["precision"] == "float"
    import torch

    assert res["runtime_version"] == torch.__version__
    assert res["latency_us"]["n"] == 20 and res["stream_us"] is None
    assert res["size_bytes"] == (run.path / "model.pt").stat().st_size


@pytest.mark.export
def test_measure_disables_gc_in_timed_loops_and_thins_samples(artifacts, run, monkeypatch):
    """Every timed call runs with the garbage collector off (warm-up and first call with it on, as
    before), GC is back on afterwards, and samples_us keeps every ceil(runs/500)-th sample: 334 of 1001."""
    import gc

    import edgernn.runtimes as rt

    real_load = rt.load
    gc_on_during_call = []

    class Spy:  # the real session; records whether GC was enabled at each predict()
        def __init__(self, session):
            self._s = session

        def __getattr__(self, name):
            return getattr(self._s, name)

        def predict(self, x):
            gc_on_during_call.append(gc.isenabled())
            return self._s.predict(x)

    monkeypatch.setattr(rt, "load", lambda *a, **k: Spy(real_load(*a, **k)))
    assert gc.isenabled()
    X = run.data()["X_test"][:4].astype(np.float32)
    res, _ = measure(artifacts["sequence"], X, runs=1001, warmup=5, threads=1)
    assert gc.isenabled()  # restored
    assert len(gc_on_during_call) == 1 + 5 + 1001
    assert all(gc_on_during_call[:6]) and not any(gc_on_during_call[6:])
    assert res["gc"] == "disabled inside timed loops"
    lat = res["latency_us"]
    assert lat["n"] == 1001 and len(res["samples_us"]) == len(range(0, 1001, 3)) == 334 <= 500
    assert lat["min"] - 0.05 <= min(res["samples_us"]) and max(res["samples_us"]) <= lat["max"] + 0.05
    monkeypatch.setattr(rt, "load", real_load)
    for runs, n in ((500, 500), (501, 251)):
        res, _ = measure(artifacts["sequence"], X, runs=runs, warmup=0, threads=1)
        assert res["latency_us"]["n"] == runs and len(res["samples_us"]) == n


# ---- errors ----------------------------------------------------------------------------------------------
def test_worker_bad_artifact_fails_with_one_line(windows, tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    out = tmp_path / "r.json"
    r = _worker("--artifact", bad, "--input", windows, "--out", out)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "manifest" in lines[0]
    assert "Traceback" not in r.stderr
    assert json.loads(out.read_text())["error"] in lines[0]


@pytest.mark.export
def test_worker_bad_input_fails_with_one_line(artifacts, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((4, 40), np.float32))
    r = _worker("--artifact", artifacts["sequence"], "--input", x, "--out", tmp_path / "r.json")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "must be numeric windows [N, T, C]" in r.stderr
    np.save(x, np.zeros((4, 40, 5), np.float32))  # wrong channel count: the runtime's own error
    r = _worker("--artifact", artifacts["sequence"], "--input", x, "--out", tmp_path / "r.json")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "this model expects 6" in r.stderr


def test_worker_usage_errors(windows, tmp_path):
    r = _worker("--input", windows, "--out", tmp_path / "r.json")  # neither --artifact nor --torch-run
    assert r.returncode == 2 and "--artifact" in r.stderr
    r = _worker("--artifact", "x.onnx", "--input", windows, "--out", tmp_path / "r.json", "--runs", 0)
    assert r.returncode == 1 and "--runs >= 1" in r.stderr
    r = _worker("--artifact", "x.onnx", "--input", windows, "--out", tmp_path / "r.json", "--parity-input", windows)
    assert r.returncode == 1 and "--parity-input and --parity-out go together" in r.stderr


# ---- memory bookkeeping ----------------------------------------------------------------------------------
@pytest.mark.export
def test_rss_is_null_with_reason_when_clear_refs_is_unavailable(artifacts, run, monkeypatch):
    import edgernn.runtimes.bench_worker as bench

    monkeypatch.setattr(bench, "CLEAR_REFS", "/nonexistent/clear_refs")
    rss = PeakRSS()
    assert not rss.ok and "not writable" in rss.note
    res, _ = measure(artifacts["sequence"], run.data()["X_test"][:2].astype(np.float32), runs=5, warmup=1, rss=rss)
    assert res["rss_mb"] == {"baseline": None, "load_peak": None, "inference_peak": None}
    assert res["rss_note"] == rss.note and rss.note in res["warnings"]


def test_peak_rss_resets_per_phase():
    rss = PeakRSS()
    if not rss.ok:
        pytest.skip(rss.note)
    import mmap

    rss.start()
    base = rss.peak()
    # 40 MB of fresh anonymous pages, each written: a numpy array could reuse pages the allocator kept resident
    # from earlier tests in this process (seen once in a full run: the high-water mark did not move)
    blob = mmap.mmap(-1, 40 << 20)
    for off in range(0, 40 << 20, mmap.PAGESIZE):
        blob[off] = 1
    high = rss.peak()
    blob.close()
    rss.start()  # new phase: the high-water mark drops back to the current RSS
    after = rss.peak()
    assert high - base > 30 and after < high - 30
