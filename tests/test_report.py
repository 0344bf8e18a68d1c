"""
Tests for edgernn.report end to end: the decision as the report shows it (which artifact to ship per
runtime and mode, and why), the Markdown tables, report.json and the plots, on hand-made parity.json /
bench-desktop.json with known numbers written into a copy of a cached run directory. The decision rule
alone, on hand-made dictionaries and without matplotlib, is tested in tests/test_report_decide.py.

    .venv/bin/pytest -q tests/test_report.py -p no:cacheprovider
"""

from __future__ import annotations

import json
import shutil

import pytest
from matplotlib.text import Text

from edgernn.report import build_report
from edgernn.report.collect import collect
from edgernn.report.plots import latency_figure, tradeoff_figure
from edgernn.rundir import load_run

GATE = "accuracy >= 0.8910 (0.99 x float 0.9000)"
# artifact: (runtime, precision, compute_label, parity row overrides or None = no parity row, p50, size_bytes)
ARTIFACTS = {
    "sequence-float.onnx": ("onnxruntime", "float", "float", {"gate": "max|diff| <= 0.0001"}, 50.0, 10240),
    "sequence-int8.onnx": ("onnxruntime", "int8", "recurrent float, head dynamic-int8", {}, 40.0, 8192),
    "sequence-float.ort": ("onnxruntime", "float", "float", {"gate": "max|diff| <= 0.0001"}, 42.0, 10650),
    "sequence-int8.tflite": ("litert", "int8", "full-int8", {"accuracy": 0.8, "agreement": 0.8, "passed": False,
                                                              "integer_only": True, "recipe": "full-int8"},
                             20.0, 5120),
    "sequence-float.tflite": ("litert", "float", "float", {"gate": "max|diff| <= 0.0001"}, 30.0, 10240),
    "step-int8.tflite": ("litert", "int8", "full-int8", {"accuracy": 0.8, "agreement": 0.8, "passed": False},
                         8.1, 5120),
    "step-dynamic.tflite": ("litert", "dynamic", "dynamic-int8", None, 9.0, 6144),
    "step-float.tflite": ("litert", "float", "float", {"gate": "max|diff| <= 0.0001"}, 12.3, 10035),
    "step-float.onnx": ("onnxruntime", "float", "float",
                        {"gate": "max|diff| <= 0.0001", "max_abs_diff": 0.0312, "passed": False}, 5.0, 10240),
}


def _parity_row(name, runtime, precision, label, over, size):
    fmt = name.rsplit(".", 1)[1]
    row = {"artifact": name, "format": fmt, "precision": precision, "mode": name.split("-")[0],
           "runtime": runtime, "size_bytes": size, "compute": {}, "compute_label": label, "int8_ops": [],
           "float_ops": [], "seconds": 0.01, "max_abs_diff": 1e-6, "mean_abs_diff": 1e-7, "accuracy": 0.9,
           "agreement": 1.0, "gate": GATE, "passed": True}
    row.update(over)
    row["accuracy_change"] = round(row["accuracy"] - 0.9, 6)
    return row


def _bench_result(name, runtime, precision, label, p50, size):
    mode = name.split("-")[0]
    lat = {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "mean": p50, "std": p50 * 0.05, "min": p50 * 0.9,
           "max": p50 * 1.3, "n": 50}
    return {"artifact": name, "format": name.rsplit(".", 1)[1], "precision": precision, "mode": mode,
            "runtime": runtime, "latency_us": lat, "latency_unit": "frame" if mode == "step" else "window",
            "stream_us": {"n": 200, "p50": p50 * 0.9, "p99": p50 * 1.2, "mean": p50} if mode == "step" else None,
            "samples_us": [round(p50 * (0.9 + 0.01 * k), 2) for k in range(41)],
            "rss_mb": {"baseline": 20.0, "load_peak": 28.0, "inference_peak": 30.0}, "size_bytes": size,
            "compute_label": label, "spread_pct": 0.5, "warnings": []}


def _write_parity(d):
    rows = [_parity_row(n, rt, pr, lb, over, size) for n, (rt, pr, lb, over, _, size) in ARTIFACTS.items()
            if over is not None]
    (d / "parity.json").write_text(json.dumps({
        "run": str(d), "model": load_run(d).identity, "task": "classify", "n_test": 80,
        "reference": {"runtime": "torch float", "accuracy": 0.9},
        "gates": {"float_tol": 1e-4, "min_accuracy_ratio": 0.99}, "artifacts": rows,
        "passed": all(r["passed"] for r in rows), "failed": [r["artifact"] for r in rows if not r["passed"]]}))


def _write_bench(d):
    results = [_bench_result(n, rt, pr, lb, p50, size) for n, (rt, pr, lb, _, p50, size) in ARTIFACTS.items()]
    eager = _bench_result("sequence-reference.torch", "torch", "float", "float", 400.0, 20000)
    del eager["artifact"]
    (d / "bench-desktop.json").write_text(json.dumps({
        "run": str(d), "model": load_run(d).identity, "target": "desktop",
        "machine": {"cpu_model": "Test CPU", "cores": 2, "os": "Linux"},
        "settings": {"runs": 50, "warmup": 5, "threads": 1, "repeat": 1}, "results": results,
        "torch_eager": eager, "warnings": []}))


@pytest.fixture
def run_dir(make_run, tmp_path):
    d = tmp_path / "gru"
    shutil.copytree(make_run(cell="gru", hidden=16), d)
    _write_bench(d)
    return d


def _lines(res):
    return res["markdown"].splitlines()


def test_recommends_fastest_passing_artifact_per_runtime_and_mode(run_dir, tmp_path):
    _write_parity(run_dir)
    out = tmp_path / "out"
    res = build_report([run_dir], out_dir=out)
    lines = _lines(res)
    assert "### Decision: what to ship from gru on `desktop`" in lines
    i = lines.index("| runtime | mode | ship | p50 | why |")
    assert lines[i + 2:i + 6] == [
        "| litert | sequence | `sequence-float.tflite` | 30.0 us/window | the only passing sequence artifact on "
        "litert: p50 30.0 us/window, accuracy 0.9000 (float 0.9000), 10.0 KB; faster sequence-int8.tflite "
        f"(20.0 us/window) failed its gate: accuracy 0.8000, gate `{GATE}` |",
        "| litert | step | `step-float.tflite` | 12.3 us/frame | the only passing step artifact on litert: "
        "p50 12.3 us/frame, accuracy 0.9000 (float 0.9000), 9.8 KB; faster step-int8.tflite (8.1 us/frame) failed "
        f"its gate: accuracy 0.8000, gate `{GATE}`; faster step-dynamic.tflite (9.0 us/frame) has no parity result |",
        "| onnxruntime | sequence | `sequence-int8.onnx` | 40.0 us/window | fastest of 3 passing sequence artifacts "
        "on onnxruntime: p50 40.0 us/window, accuracy 0.9000 (float 0.9000), 8.0 KB |",
        "| onnxruntime | step | nothing | - | nothing to ship: the one benchmarked step artifact on onnxruntime "
        "does not pass: step-float.onnx (5.0 us/frame) failed its gate: max|diff| 0.0312, gate "
        "`max|diff| <= 0.0001` |",
    ]
    assert lines[i + 6] == ""  # the decision table ends; then, plainly, int8 vs float speed
    assert lines[i + 7:i + 13] == [
        "int8 vs float on this target:", "",
        "- `sequence-int8.onnx` is faster than float here: p50 40.0 vs 50.0 us/window (1.2x faster than "
        "`sequence-float.onnx`)",
        "- `sequence-int8.tflite` is faster than float here: p50 20.0 vs 30.0 us/window (1.5x faster than "
        "`sequence-float.tflite`)",
        "- `step-dynamic.tflite` is faster than float here: p50 9.0 vs 12.3 us/frame (1.4x faster than "
        "`step-float.tflite`)",
        "- `step-int8.tflite` is faster than float here: p50 8.1 vs 12.3 us/frame (1.5x faster than "
        "`step-float.tflite`)",
    ]
    # per-artifact verdicts, latency labelled per window / per frame
    assert ("| artifact | runtime | int8 | parity | accuracy | change vs float | agreement | size KB "
            "| p50 us/window | p99 us/window | peak RSS MB |") in lines
    assert ("| artifact | runtime | int8 | parity | accuracy | change vs float | agreement | size KB "
            "| p50 us/frame | p99 us/frame | stream p50 us/frame | peak RSS MB |") in lines
    assert "| sequence-int8.tflite | litert | full-int8 (recipe full-int8, integer-only) | FAIL | 0.8000 | -0.1000 " \
           "| 0.800 | 5.0 | 20.0 | 24.0 | 30.0 |" in lines
    assert "| sequence-int8.onnx | onnxruntime | recurrent float, head dynamic-int8 | PASS | 0.9000 | +0.0000 " \
           "| 1.000 | 8.0 | 40.0 | 48.0 | 30.0 |" in lines
    assert "| step-dynamic.tflite | litert | dynamic-int8 | no parity | - | - | - | 6.0 | 9.0 | 10.8 | 8.1 " \
           "| 30.0 |" in lines
    assert ("- parity: 5 of 8 artifacts pass their gate; failed: sequence-int8.tflite, step-int8.tflite, "
            "step-float.onnx") in lines
    # per format, the quantized artifacts that compute in integers end to end (no parity row: not counted)
    assert ("- integer-only (no float op on the inference path: what TFLite Micro and NPUs run): onnx 0 of 1 "
            "quantized, tflite 1 of 2 quantized") in lines
    assert any(x.startswith("| sequence-int8.tflite | litert | full-int8 (recipe full-int8, integer-only) |")
               for x in lines)
    assert ("- PyTorch eager reference: p50 400.0 us/window, p99 480.0 us/window; the fastest passing "
            "full-sequence artifact, `sequence-float.tflite`, is 13.3x faster than PyTorch eager") in lines

    data = json.loads((out / "report.json").read_text())
    recs = data["runs"][0]["recommendations"]
    assert [(r["runtime"], r["mode"], r["artifact"], r["p50_us"], r["unit"]) for r in recs] == [
        ("litert", "sequence", "sequence-float.tflite", 30.0, "window"),
        ("litert", "step", "step-float.tflite", 12.3, "frame"),
        ("onnxruntime", "sequence", "sequence-int8.onnx", 40.0, "window"),
        ("onnxruntime", "step", None, None, "frame"),
    ]
    assert recs[1]["rejected_faster"] == [
        {"artifact": "step-int8.tflite", "p50_us": 8.1, "why": f"failed its gate: accuracy 0.8000, gate `{GATE}`"},
        {"artifact": "step-dynamic.tflite", "p50_us": 9.0, "why": "has no parity result"},
    ]
    assert all(r["target"] == "desktop" for r in recs)
    assert data["runs"][0]["recommendation_note"] is None
    for name in ("latency.png", "tradeoff.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![Latency distribution per artifact](plots/latency.png)" in lines
    assert set(res["paths"]) == {"markdown", "json", "Latency distribution per artifact",
                                 "Accuracy vs latency vs size"}


def test_a_newer_microcontroller_bench_does_not_replace_the_desktop_decision(run_dir):
    """`make demo` benches the emulated Cortex-M cores after the desktop: their files (kind "mcu": instruction
    counts, no latency) must not become the bench the ship decision is made from."""
    import os
    import time

    from edgernn.report.collect import collect

    _write_parity(run_dir)
    mcu = run_dir / "bench-cortex-m55-emulated.json"
    mcu.write_text(json.dumps({"kind": "mcu", "target": "cortex-m55-emulated", "model": load_run(run_dir).identity,
                               "results": []}))
    later = time.time() + 60
    os.utime(mcu, (later, later))
    r = collect(run_dir)
    assert r["bench_target"] == "desktop" and any(rec["artifact"] for rec in r["recommendations"])


def test_report_says_plainly_where_int8_is_slower(run_dir, tmp_path):
    _write_parity(run_dir)
    bench = json.loads((run_dir / "bench-desktop.json").read_text())
    for b in bench["results"]:
        if b["artifact"] == "sequence-int8.tflite":
            b["latency_us"]["p50"] = 90.0
    (run_dir / "bench-desktop.json").write_text(json.dumps(bench))
    lines = _lines(build_report([run_dir], out_dir=tmp_path / "out"))
    assert ("- `sequence-int8.tflite` is SLOWER than float here: p50 90.0 vs 30.0 us/window (3.0x the time of "
            "`sequence-float.tflite`)") in lines


def test_without_parity_nothing_is_recommended_and_the_report_says_why(run_dir, tmp_path):
    out = tmp_path / "out"
    res = build_report([run_dir], out_dir=out)
    lines = _lines(res)
    note = (f"no recommendation: {run_dir} has no parity.json, and an artifact without a parity result never "
            f"counts as passing; run `edgernn parity {run_dir}` first")
    i = lines.index("### Decision: what to ship from gru on `desktop`")
    assert lines[i + 1:i + 4] == ["", note, ""]
    assert "| runtime | mode | ship | p50 | why |" not in lines
    assert "- parity: no parity.json, so no artifact counts as passing" in lines
    assert "| sequence-int8.onnx | onnxruntime | recurrent float, head dynamic-int8 | no parity | - | - | - | 8.0 " \
           "| 40.0 | 48.0 | 30.0 |" in lines
    run = json.loads((out / "report.json").read_text())["runs"][0]
    assert run["recommendations"] == []
    assert run["recommendation_note"] == note
    assert (out / "plots" / "latency.png").is_file()
    assert not (out / "plots" / "tradeoff.png").exists()  # no accuracy to plot


def test_without_bench_nothing_is_recommended(run_dir, tmp_path):
    _write_parity(run_dir)
    (run_dir / "bench-desktop.json").unlink()
    run = collect(run_dir)
    assert run["recommendations"] == []
    assert run["recommendation_note"] == (
        f"no recommendation: {run_dir} has no bench-<target>.json, so no artifact has a latency to rank; "
        f"run `edgernn bench {run_dir} --target desktop` first")


def test_latency_legend_is_made_of_the_box_colours(run_dir):
    _write_parity(run_dir)
    fig = latency_figure([collect(run_dir)])
    boxes = {}
    for ax in fig.axes:
        for patch in ax.patches:  # the boxes (patch_artist=True)
            boxes.setdefault(tuple(patch.get_facecolor()), 0)
            boxes[tuple(patch.get_facecolor())] += 1
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    faces = [tuple(h.get_facecolor()) for h in legend.legend_handles]
    assert labels == ["litert", "onnxruntime", "torch"]  # only the runtimes present, in order of use
    assert set(faces) == set(boxes)  # same RGBA, alpha included
    assert sum(boxes.values()) == len(ARTIFACTS) + 1  # every artifact + torch eager
    assert [len(ax.get_yticklabels()) for ax in fig.axes] == [6, 4]  # sequence panel, step panel
    assert fig.axes[0].get_xlabel() == "latency per window, us (log scale)"
    assert fig.axes[1].get_xlabel() == "latency per frame, us (log scale)"


def test_tradeoff_labels_do_not_overlap(run_dir):
    _write_parity(run_dir)
    fig = tradeoff_figure([collect(run_dir)])
    fig.canvas.draw()  # positions every annotation
    renderer = fig.canvas.get_renderer()
    assert [ax.get_xlabel() for ax in fig.axes] == ["p50 latency per window, us (log scale)",
                                                   "p50 latency per frame, us (log scale)"]
    n_labels = 0
    for ax in fig.axes:
        boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the text, not its leader line
        n_labels += len(boxes) - 1  # minus the "torch float" reference label
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not a.overlaps(b), [t.get_text() for t in ax.texts]
    assert n_labels == 8  # every artifact with a parity row and a p50


def test_report_shows_the_baselines_and_warns_when_the_model_does_not_beat_them(run_dir, tmp_path):
    _write_parity(run_dir)
    # the fixture's run is hand-built (no train()): its metrics.json has no baselines, and the report says so
    lines = _lines(build_report([run_dir], out_dir=tmp_path / "a"))
    assert "- baselines: not in metrics.json (trained by an older edgernn); retrain to compare" in lines
    m = json.loads((run_dir / "metrics.json").read_text())
    m.update(baselines={"majority": {"accuracy": 0.25, "n": 40, "class": "a"},
                        "nearest_neighbour": {"accuracy": 0.575, "n": 40}},
             beats_baseline=True,
             baseline_verdict="test accuracy 0.900 vs 1-nearest-neighbour 0.575: beats the baseline")
    (run_dir / "metrics.json").write_text(json.dumps(m))
    lines = _lines(build_report([run_dir], out_dir=tmp_path / "b"))
    assert ("- baselines on the test windows: majority class accuracy 0.2500, 1-nearest-neighbour accuracy 0.5750 "
            "(test accuracy 0.900 vs 1-nearest-neighbour 0.575: beats the baseline)") in lines
    assert not any("WARNING" in x for x in lines)
    m.update(beats_baseline=False,
             baseline_verdict="test accuracy 0.250 vs 1-nearest-neighbour 0.575: does NOT beat the baseline "
                              "(at chance: the majority class alone scores 0.250)")
    (run_dir / "metrics.json").write_text(json.dumps(m))
    lines = _lines(build_report([run_dir], out_dir=tmp_path / "c"))
    assert ("- **WARNING: test accuracy 0.250 vs 1-nearest-neighbour 0.575: does NOT beat the baseline (at chance: the "
            "majority class alone scores 0.250)**: do not ship this model; retrain it or collect more data") in lines

