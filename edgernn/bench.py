"""
Benchmark orchestration: every artifact of a run, each in a fresh process, on a target
(desktop, a Raspberry Pi over SSH, an Android phone over adb).

    report = bench_run("runs/gru", target="desktop", runs=300, repeat=3)
    edgernn bench runs/gru --target rpi4 --host pi@raspberrypi.local

The per-artifact measurement is done by edgernn.runtimes.bench_worker (the worker: load time, first
inference, warm latency percentiles, streaming per-frame latency, peak RSS per phase). This module
builds the jobs, hands them to a target, aggregates repeats (spread across repeats, warning above
5%), adds MACs -> achieved MAC/s and the machine fingerprint, optionally checks on-device parity, and
writes RUN_DIR/bench-<target>.json.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError
from edgernn.models import ModelConfig
from edgernn.rundir import load_run
from edgernn.runtimes.files import atomic_write_json
from edgernn.runtimes.manifest import compute_label

SPREAD_WARN_PCT = 5.0


def _macs(manifest: dict, seq_len: int) -> int:
    cfg = ModelConfig.from_dict(manifest["model"])
    if manifest["mode"] == "step":
        return cfg.step_macs()
    return cfg.macs(manifest.get("sequence_length") or seq_len)


def _spread_pct(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    med = statistics.median(values)
    return 100.0 * (max(values) - min(values)) / med if med else 0.0


def real_length_windows(run, X: np.ndarray, n: int = 32) -> dict | None:
    """A --mask-padding run with windows of different real lengths runs each window at its own length: then
    {"median": (L, windows [<=n, L, C]), "max": (L, windows)} of real frames only (cut from the test windows at
    least that long), to time the window API at the median and at the longest real length. None otherwise
    (every window runs at the full length)."""
    from edgernn.data.padding import infer_lengths

    if not run.mask_padding:
        return None
    L = infer_lengths(X, run.pad_value)
    if L.min() == L.max():
        return None
    out = {}
    for name, length in (("median", int(np.median(L))), ("max", int(L.max()))):
        out[name] = (length, np.ascontiguousarray(X[L >= length][:n, X.shape[1] - length:], dtype=np.float32))
    return out


def aggregate(results: list[dict], macs: int | None) -> dict:
    """Join the repeats of one artifact: the median repeat's numbers, plus spread across repeats."""
    # some tools (Android benchmark_model) print only a mean: fall back to it for ordering and spread.
    # Keep each value paired with its repeat, so dropping a repeat without numbers never shifts the index.
    timed = []
    for r in results:
        lat = r["latency_us"]
        v = lat.get("p50") if lat.get("p50") is not None else lat.get("mean")
        if v is not None:
            timed.append((v, r))
    timed.sort(key=lambda t: t[0])
    mid = timed[len(timed) // 2][1] if timed else results[0]
    p50s = [v for v, _ in timed]
    out = dict(mid)
    out["repeats"] = len(results)
    out["repeat_p50_us"] = p50s
    out["spread_pct"] = round(_spread_pct(p50s), 2)
    out["warnings"] = list(mid.get("warnings", []))
    if out["spread_pct"] > SPREAD_WARN_PCT:
        out["warnings"].append(
            f"p50 varies {out['spread_pct']:.1f}% across {len(results)} repeats (> {SPREAD_WARN_PCT:g}%): "
            "the machine is noisy (other load, frequency scaling); close other work or raise --runs")
    if macs:
        out["macs"] = macs
        p50 = mid["latency_us"].get("p50")
        out["mac_per_s"] = macs / (p50 * 1e-6) if p50 else None
        c = out.get("c_loop_us")
        if c and c.get("peak_mac_per_s"):  # the C loop against this CPU's multiply-add bound
            c["mac_bound_us"] = macs / c["peak_mac_per_s"] * 1e6
            c["x_mac_bound"] = c["p50"] / c["mac_bound_us"] if c["mac_bound_us"] else None
    return out


def bench_run(run_dir, target: str = "desktop", host: str | None = None, runtimes=None, artifacts=None,
              threads: int | None = None, runs: int = 200, warmup: int = 20, repeat: int = 1,
              stream_frames: int = 200, include_torch: bool = True, on_device_parity: bool | None = None,
              tool: str | None = None, target_opts: dict | None = None, progress: bool = True,
              write: bool = True, emulate: bool = False) -> dict:
    """emulate=True: an aarch64 ssh board (rpi4, rpi5, ...) runs emulated here (edgernn.devices.emulated_pi): real ARM
    outputs, timings that are NOT the board's; written to bench-<board>-emulated.json, marked "emulated"."""
    from edgernn.device_parity import device_parity
    from edgernn.devices.boards import load_board
    from edgernn.devices.open import check_emulate, open_target
    from edgernn.devices.targets import BenchJob
    from edgernn.parity import find_artifacts
    from edgernn.runtimes.manifest import read_manifest

    if runs < 1 or warmup < 0 or repeat < 1:
        raise ConfigError(f"need runs >= 1, warmup >= 0, repeat >= 1 (got {runs}, {warmup}, {repeat})")
    run = load_run(run_dir)
    board = load_board(target)
    if emulate:
        check_emulate(board, host, target_opts)
    threads = threads or board.default_threads
    paths = [Path(p) for p in artifacts] if artifacts else find_artifacts(run)
    manifests = {p: read_manifest(p) for p in paths}
    for p, m in manifests.items():
        run.check_artifact(p, m)
    if runtimes:
        wanted = set(runtimes)
        paths = [p for p in paths if manifests[p]["runtime"] in wanted]
        if not paths:
            raise ConfigError(f"no artifacts for runtime(s) {', '.join(sorted(wanted))} in {run.artifacts_dir}")
    remote = board.transport != "local"
    if on_device_parity is None:
        on_device_parity = board.transport == "ssh"

    d = run.data()
    with open_target(board, host=host, tool=tool, emulate=emulate, progress=progress,
                     target_opts=target_opts) as (tgt, emu), \
            tempfile.TemporaryDirectory(prefix="edgernn-bench-") as tmp:
        inp = Path(tmp) / "windows.npy"
        np.save(inp, d["X_test"][:32].astype(np.float32))
        by_length = real_length_windows(run, d["X_test"])
        inp_median = None
        if by_length:  # masked padding: sequence artifacts are timed at the longest and at the median real length
            inp = Path(tmp) / "windows-max.npy"
            np.save(inp, by_length["max"][1])
            inp_median = Path(tmp) / "windows-median.npy"
            np.save(inp_median, by_length["median"][1])
        parity_inp = None
        if on_device_parity:
            parity_inp = Path(tmp) / "parity_windows.npy"
            np.save(parity_inp, d["X_test"].astype(np.float32))
        jobs, keys = [], []
        for p in paths:
            for k in range(repeat):
                jobs.append(BenchJob(artifact=p, input=inp, runs=runs, warmup=warmup, threads=threads,
                                     stream_frames=stream_frames,
                                     parity_input=parity_inp if k == 0 else None))
                keys.append(p)
                if inp_median is not None and manifests[p]["mode"] == "sequence":
                    jobs.append(BenchJob(artifact=p, input=inp_median, runs=runs, warmup=warmup, threads=threads,
                                         stream_frames=0))
                    keys.append((p, "median"))
        if include_torch and not remote:
            for _ in range(repeat):
                jobs.append(BenchJob(artifact=None, input=inp, runs=runs, warmup=warmup, threads=threads,
                                     stream_frames=0, torch_run=run.path))
                keys.append(None)
        t0 = time.perf_counter()
        raw = tgt.run(jobs, progress=progress)
        wall = time.perf_counter() - t0
        machine = (raw[0] if raw else {}).get("target") or tgt.fingerprint()

    by_key: dict = {}
    for key, res in zip(keys, raw):
        by_key.setdefault(key, []).append(res)
    results, device_outputs = [], {}
    for p in paths:
        agg = aggregate(by_key[p], _macs(manifests[p], run.seq_len))
        agg["size_bytes"] = manifests[p]["size_bytes"]
        agg["sha256"] = manifests[p]["sha256"]
        agg["compute_label"] = compute_label(manifests[p]["quantization"])
        if (p, "median") in by_key:
            med = aggregate(by_key[(p, "median")], None)["latency_us"]
            agg["latency_by_length"] = {
                "median": {"length": by_length["median"][0], "p50_us": med.get("p50"), "p99_us": med.get("p99")},
                "max": {"length": by_length["max"][0], "p50_us": agg["latency_us"].get("p50"),
                        "p99_us": agg["latency_us"].get("p99")}}
        out = next((r.get("parity_output") for r in by_key[p] if r.get("parity_output") is not None), None)
        agg.pop("parity_output", None)
        if out is not None:
            device_outputs[p.name] = out
        results.append(agg)
    torch_eager = None
    if None in by_key:
        torch_eager = aggregate(by_key[None], run.config.macs(run.seq_len))
    warnings = []
    for r in raw:
        for w in r.get("warnings", []):
            if w not in warnings:
                warnings.append(w)
    first = raw[0] if raw else {}
    name = board.name + ("-emulated" if emu is not None else "")
    report = {
        "run": str(run.path),
        "model": run.identity,
        "target": name,
        "board": board.to_dict() if hasattr(board, "to_dict") else {"name": board.name},
        "host": host if emu is None else "127.0.0.1 (emulated)",
        "machine": machine,
        "machine_after": first.get("fingerprint_after"),
        "settings": {"runs": runs, "warmup": warmup, "threads": threads, "repeat": repeat,
                     "stream_frames": stream_frames, "batch": 1,
                     "window_length": by_length["max"][0] if by_length else run.seq_len,
                     **({"real_lengths": {k: v[0] for k, v in by_length.items()}} if by_length else {})},
        "results": results,
        "torch_eager": torch_eager,
        "warnings": warnings + [w for r in results for w in r.get("warnings", []) if w not in warnings],
        "wall_s": round(wall, 2),
    }
    fe = run.config.front_end()
    if fe is not None:  # audio: latency against the audio it covers (a hop per frame, T hops per window)
        for r in results:
            p50 = (r.get("latency_us") or {}).get("p50")
            audio_us = fe.hop_ms * 1000.0 * (1 if r.get("mode") == "step" else run.seq_len)
            r["real_time_factor"] = None if p50 is None else p50 / audio_us
        report["audio"] = {"hop_ms": fe.hop_ms, "frontend": fe.describe(),
                           "note": "real-time factor = p50 latency / the audio it covers (one hop per step call, "
                                   f"{run.seq_len} hops per window); latencies include the front end, the MAC "
                                   "counts do not (recurrent layers and head only)"}
    if emu is not None:
        report["emulated"] = emu.describe()
        report["warnings"].insert(0, f"emulated {board.name} (qemu -cpu {emu.cpu} on {emu.describe()['host_cpu']}): "
                                     "outputs are real aarch64 results; timings are NOT Raspberry Pi timings")
    if device_outputs:
        report["device_parity"] = device_parity(
            run.path, paths, device_outputs, threads=threads,
            device={"target": name, "cpu_model": machine.get("cpu_model"), "arch": machine.get("arch"),
                    **(report.get("emulated") or {})})
    if write:
        atomic_write_json(run.path / f"bench-{name}.json", _jsonable(report))
    return report


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def format_table(report: dict) -> str:
    m = report.get("machine") or {}
    s = report["settings"]
    e = report.get("emulated")
    lines = ([f"EMULATED: qemu {e.get('qemu_version')} -cpu {e.get('qemu_cpu')} on {e.get('host_cpu')} - the outputs "
              "are real aarch64 results, the timings below are NOT the board's"] if e else [])
    lines += [f"target {report['target']}: {m.get('cpu_model', '?')} ({m.get('cores', '?')} cores, "
              f"{m.get('arch', m.get('machine', '?'))}), threads {s['threads']}, batch 1, T={s['window_length']}, "
              f"{s['runs']} runs x {s['repeat']} repeat(s)",
              "latency in microseconds per call: per window (sequence artifacts) or per frame (step artifacts), "
              "see 'per'; 'stream p50' = per frame over one continuous stream (step artifacts); all timed from "
              "Python; 'C loop' = C artifacts timed inside a compiled loop (no Python call overhead)",
              f"{'artifact':<26} {'runtime':<11} {'per':<6} {'p50 us':>9} {'p90':>9} {'p99':>9} {'std':>8} "
              f"{'stream p50':>10} {'C loop':>8} {'load ms':>8} {'RSS MB':>7} {'KB':>7} {'MMAC/s':>8} {'spread':>6}"]
    rows = list(report["results"])
    if report.get("torch_eager"):
        t = dict(report["torch_eager"])
        t["artifact"] = "(torch eager reference)"
        t.setdefault("size_bytes", 0)
        rows.append(t)
    def f(v, width, spec=".1f"):
        return f"{'-':>{width}}" if v is None else f"{v:>{width}{spec}}"

    for r in rows:
        lat = r["latency_us"]
        stream = r.get("stream_us") or {}
        rss = (r.get("rss_mb") or {}).get("inference_peak")
        load = r.get("load_s")
        mps = r.get("mac_per_s")
        per = r.get("latency_unit") or ("frame" if r.get("mode") == "step" else "window")
        spread = f"{r.get('spread_pct', 0):>5.1f}%" if r.get("repeats", 1) > 1 else f"{'-':>6}"  # one repeat: none
        lines.append(
            f"{r['artifact']:<26} {r.get('runtime', 'torch'):<11} {per:<6} {f(lat.get('p50'), 9)} "
            f"{f(lat.get('p90'), 9)} {f(lat.get('p99'), 9)} {f(lat.get('std'), 8)} {f(stream.get('p50'), 10)} "
            f"{f((r.get('c_loop_us') or {}).get('p50'), 8, '.2f')} "
            f"{f(load * 1e3 if load is not None else None, 8)} {f(rss, 7)} "
            f"{r.get('size_bytes', 0) / 1024:>7.1f} {f(mps / 1e6 if mps else None, 8)} {spread}")
    bound = [r for r in rows if (r.get("c_loop_us") or {}).get("x_mac_bound")]
    for r in bound:
        c = r["c_loop_us"]
        lines.append(f"{r['artifact']}: C loop {c['p50']:.3f} us per {c['unit']} = {c['x_mac_bound']:.1f}x "
                     f"the MAC bound "
                     f"({r['macs']} MACs at this CPU's peak {c['peak_mac_per_s'] / 1e9:.1f} GMAC/s = "
                     f"{c['mac_bound_us']:.3f} us)")
    by_length = [r for r in rows if r.get("latency_by_length")]
    if by_length:
        rl = s.get("real_lengths", {})
        lines.append(f"variable length (--mask-padding: each window runs at its real length): sequence artifacts per "
                     f"window at the median real length {rl.get('median')} and at the longest {rl.get('max')} "
                     "(the table's p50); step artifacts cost the same per frame at any length")
        for r in by_length:
            m, x = r["latency_by_length"]["median"], r["latency_by_length"]["max"]
            lines.append(f"  {r['artifact']:<26} median T={m['length']}: p50 {f(m['p50_us'], 9).strip()} us   "
                         f"longest T={x['length']}: p50 {f(x['p50_us'], 9).strip()} us")
    au = report.get("audio")
    if au:
        lines.append(f"audio ({au['frontend']}): {au['note']}")
        lines.append("  real-time factor: " + ", ".join(
            f"{r['artifact']} {r['real_time_factor']:.4f}" for r in report["results"]
            if r.get("real_time_factor") is not None))
    for w in report.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
