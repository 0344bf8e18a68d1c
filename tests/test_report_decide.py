"""
Tests for edgernn.report.decide, the ship decision alone: `recommend` and `verdict` on small hand-made
run dictionaries (the shape edgernn.report.collect builds), no run directory, no files, and no
matplotlib: a subprocess proves that deciding never imports it.

    .venv/bin/pytest -q tests/test_report_decide.py -p no:cacheprovider
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from edgernn.report.decide import recommend, verdict


def _art(name, runtime, p50=None, passed=None, size=1024, **parity):
    """One collected artifact row: `passed` None = no parity row; `p50` None = not benchmarked."""
    a = {"artifact": name, "format": name.rsplit(".", 1)[1], "precision": "int8" if "int8" in name else "float",
         "mode": name.split("-")[0], "runtime": runtime, "size_bytes": size}
    if passed is not None:
        a["parity"] = {"passed": passed, "accuracy": 0.9, **parity}
    if p50 is not None:
        a["bench"] = {"latency_us": {"p50": p50}}
    a["verdict"] = verdict(a)
    return a


def _run(*artifacts, **over):
    run = {"run": "runs/x", "name": "x", "task": "classify", "has_parity": True, "bench_target": "desktop",
           "requested_target": None, "bench_emulated": None, "parity_reference": {"accuracy": 0.9},
           "artifacts": list(artifacts)}
    run.update(over)
    return run


def test_deciding_never_imports_matplotlib():
    """The ship decision (and the collect / Markdown stages) is usable where matplotlib is not installed."""
    code = textwrap.dedent("""
        import json, sys
        import edgernn.report.collect, edgernn.report.markdown  # noqa: F401 (module-level imports only)
        from edgernn.report.decide import recommend
        run = {"run": "runs/x", "task": "classify", "has_parity": True, "bench_target": "desktop",
               "parity_reference": {"accuracy": 0.9},
               "artifacts": [{"artifact": "step-float.tflite", "runtime": "litert", "mode": "step",
                              "size_bytes": 2048, "parity": {"passed": True, "accuracy": 0.9},
                              "bench": {"latency_us": {"p50": 12.5}}}]}
        recs, note = recommend(run)
        print(json.dumps({"recs": recs, "note": note, "matplotlib": sorted(m for m in sys.modules
                                                                          if m.split(".")[0] == "matplotlib")}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["matplotlib"] == []
    assert got["note"] is None
    assert [(r["runtime"], r["mode"], r["artifact"], r["p50_us"]) for r in got["recs"]] == [
        ("litert", "step", "step-float.tflite", 12.5)]


def test_verdict_is_pass_fail_or_no_parity():
    assert verdict({"parity": {"passed": True}}) == "PASS"
    assert verdict({"parity": {"passed": False}}) == "FAIL"
    assert verdict({"parity": {}}) == "no parity"
    assert verdict({}) == "no parity"


def test_ships_the_fastest_passing_artifact_and_names_the_faster_ones_it_skipped():
    recs, note = recommend(_run(
        _art("sequence-float.onnx", "onnxruntime", 50.0, True, size=10240),
        _art("sequence-int8.onnx", "onnxruntime", 20.0, False, gate="accuracy >= 0.89", accuracy=0.8),
        _art("sequence-dynamic.onnx", "onnxruntime", 30.0, None),
        _art("sequence-float.ort", "onnxruntime", 60.0, True),
    ))
    assert note is None
    (rec,) = recs
    assert (rec["artifact"], rec["p50_us"], rec["unit"], rec["benchmarked"], rec["passing"]) == (
        "sequence-float.onnx", 50.0, "window", 4, 2)
    assert rec["rejected_faster"] == [
        {"artifact": "sequence-int8.onnx", "p50_us": 20.0, "why": "failed its gate: accuracy 0.8000, gate "
                                                                   "`accuracy >= 0.89`"},
        {"artifact": "sequence-dynamic.onnx", "p50_us": 30.0, "why": "has no parity result"},
    ]
    assert rec["reason"] == (
        "fastest of 2 passing sequence artifacts on onnxruntime: p50 50.0 us/window, accuracy 0.9000 "
        "(float 0.9000), 10.0 KB; faster sequence-int8.onnx (20.0 us/window) failed its gate: accuracy 0.8000, "
        "gate `accuracy >= 0.89`; faster sequence-dynamic.onnx (30.0 us/window) has no parity result")


def test_runtimes_and_modes_are_decided_apart_in_a_fixed_order():
    recs, _ = recommend(_run(
        _art("step-float.onnx", "onnxruntime", 5.0, True),
        _art("sequence-float.tflite", "litert", 30.0, True),
        _art("step-float.tflite", "litert", 12.0, True),
        _art("sequence-float.onnx", "onnxruntime", 40.0, True),
    ))
    assert [(r["runtime"], r["mode"], r["artifact"], r["unit"]) for r in recs] == [
        ("litert", "sequence", "sequence-float.tflite", "window"),
        ("litert", "step", "step-float.tflite", "frame"),
        ("onnxruntime", "sequence", "sequence-float.onnx", "window"),
        ("onnxruntime", "step", "step-float.onnx", "frame"),
    ]


def test_equal_latency_ships_the_smaller_file():
    recs, _ = recommend(_run(_art("step-float.onnx", "onnxruntime", 5.0, True, size=4096),
                             _art("step-int8.onnx", "onnxruntime", 5.0, True, size=2048)))
    assert recs[0]["artifact"] == "step-int8.onnx"


def test_nothing_to_ship_when_nothing_passes_or_nothing_was_timed():
    recs, note = recommend(_run(
        _art("step-float.onnx", "onnxruntime", 5.0, False, gate="max|diff| <= 0.0001", max_abs_diff=0.0312),
        _art("sequence-float.tflite", "litert", None, True),
    ))
    assert note is None
    assert [(r["runtime"], r["mode"], r["artifact"], r["reason"]) for r in recs] == [
        ("litert", "sequence", None, "nothing to ship: no sequence artifact on litert was benchmarked on desktop"),
        ("onnxruntime", "step", None, "nothing to ship: the one benchmarked step artifact on onnxruntime does not "
                                      "pass: step-float.onnx (5.0 us/frame) failed its gate: max|diff| 0.0312, "
                                      "gate `max|diff| <= 0.0001`"),
    ]


def test_forecasting_is_judged_on_rmse():
    a = _art("sequence-float.onnx", "onnxruntime", 10.0, True, rmse=0.25)
    recs, _ = recommend(_run(a, task="forecast", parity_reference={"rmse": 0.2468}))
    assert recs[0]["reason"] == ("the only passing sequence artifact on onnxruntime: p50 10.0 us/window, "
                                 "rmse 0.2500 (float 0.2468), 1.0 KB")


def test_no_recommendation_without_parity_bench_or_a_real_board():
    a = _art("step-float.onnx", "onnxruntime", 5.0, True)
    assert recommend(_run(a, has_parity=False)) == ([], (
        "no recommendation: runs/x has no parity.json, and an artifact without a parity result never counts as "
        "passing; run `edgernn parity runs/x` first"))
    assert recommend(_run(a, bench_target=None, requested_target="rpi4")) == ([], (
        "no recommendation: runs/x has no bench-rpi4.json, so no artifact has a latency to rank; "
        "run `edgernn bench runs/x --target rpi4` first"))
    assert recommend(_run(a, bench_target="rpi4-emulated", bench_emulated={"qemu_cpu": "cortex-a72"})) == ([], (
        "no recommendation: `rpi4-emulated` is an emulated board (qemu -cpu cortex-a72 on this machine), and "
        "emulated timings are not the board's; its outputs are real ARM results (see on-device parity). "
        "Bench a real board to choose"))
    assert recommend(_run()) == ([], "no recommendation: runs/x has no artifacts in parity.json or its bench")


def test_a_model_below_its_baseline_gets_no_ship_decision():
    """The report said "do not ship this model" and then shipped its artifacts; now the decision is made once."""
    run = _run(_art("sequence-float.onnx", "onnxruntime", p50=10.0, passed=True))
    recs, _ = recommend(run)
    assert recs and recs[0]["artifact"] == "sequence-float.onnx"
    run["metrics"] = {"beats_baseline": False, "baseline_verdict": "test accuracy 0.250 vs 1-nearest-neighbour 0.575"}
    recs, note = recommend(run)
    assert recs == [] and "does not beat its baseline (test accuracy 0.250" in note


def test_a_microcontroller_ships_no_quantized_artifact_with_float_activations():
    """recommend_mcu: a passing int8 artifact that is not integer-only (parity row integer_only False: a dynamic-range
    file) is neither the C choice nor a TFLite Micro alternative; an integer-only one and a float one are; rows from
    before the field (no integer_only) keep counting."""
    from edgernn.report.decide import recommend_mcu

    def mcu_row(name, instructions):
        return {"artifact": name, "mode": "step", "fits": True, "instructions": instructions, "flash_bytes": 1000,
                "ram_bytes": 100, "per": "frame", "estimated_us": 1.0}

    board = {"name": "cortex-m4", "clock_mhz": 168}
    arts = [_art("step-int8.h", "c", passed=True, precision="int8", integer_only=False),
            _art("step-float.h", "c", passed=True, precision="float", integer_only=False),
            _art("step-int8.tflite", "tflm", passed=True, precision="int8", integer_only=False),
            _art("step-float.tflite", "tflm", passed=True, precision="float", integer_only=False)]
    mcu = [{"board": board, "parity": {}, "artifacts": [mcu_row("step-int8.h", 10), mcu_row("step-float.h", 20)],
            "tflm": [{"artifact": "step-int8.tflite", "runs": True}, {"artifact": "step-float.tflite", "runs": True}]}]
    [rec] = recommend_mcu(_run(*arts, mcu=mcu))
    assert rec["artifact"] == "step-float.h" and rec["tflm"] == ["step-float.tflite"], rec
    arts[0]["parity"]["integer_only"] = arts[2]["parity"]["integer_only"] = True
    [rec] = recommend_mcu(_run(*arts, mcu=mcu))
    assert rec["artifact"] == "step-int8.h" and rec["tflm"] == ["step-int8.tflite", "step-float.tflite"], rec
    for a in arts:
        del a["parity"]["integer_only"]
    [rec] = recommend_mcu(_run(*arts, mcu=mcu))
    assert rec["artifact"] == "step-int8.h" and len(rec["tflm"]) == 2
