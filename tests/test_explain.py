"""`edgernn parity RUN --explain ARTIFACT`: why a quantized artifact differs from float.

The artifact is broken for real: the step ONNX graph gets a Mul on its state output (the state fed
back is 10% too large), so its error must grow along the window and the diagnosis must say so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgernn.cli import main

pytestmark = pytest.mark.export


@pytest.fixture
def broken_step(run_copy):
    from edgernn.export.onnx.convert import export_onnx
    from edgernn.rundir import load_run
    from tests.onnx_edit import misscale_state

    run = run_copy(cell="gru", hidden=16)
    export_onnx(load_run(run), run / "artifacts", "float", "step")
    art = export_onnx(load_run(run), run / "artifacts", "int8", "step")
    misscale_state(art, 1.1)
    r = CliRunner().invoke(main, ["parity", str(run), "-q"])  # parity.json: the float step passes
    assert r.exit_code == 1 and "step-int8.onnx" in r.output
    return run


def test_explain_names_accumulating_error_and_writes_json_and_plot(broken_step):
    r = CliRunner().invoke(main, ["parity", str(broken_step), "--explain", "step-int8.onnx"])
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert first.startswith("explain step-int8.onnx (int8, step; recurrent weights-int8, head dynamic-int8): ")
    assert "error accumulates through the recurrence" in first
    rep = json.loads((broken_step / "explain" / "explain-step-int8.onnx.json").read_text())
    assert rep["disagreeing_windows"] >= 1 and rep["windows"]
    for w in rep["windows"]:
        assert w["float_top1"] != w["artifact_top1"]
        assert w["float_flip_rate"] < 0.1  # the clean synthetic sines are not fragile in float
        err = np.array(w["frame_error"])
        assert len(err) == 40 and err[-10:].max() > 3 * err[:10].max()
    assert rep["passing_alternatives"][0]["artifact"] == "step-float.onnx"
    png = (broken_step / "explain" / "explain-step-int8.onnx.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_refuses_a_float_artifact(broken_step):
    r = CliRunner().invoke(main, ["parity", str(broken_step), "--explain", "step-float.onnx"])
    assert r.exit_code == 1
    assert "step-float.onnx is a float artifact; --explain diagnoses quantized ones" in r.output


def test_fragile_float_model_is_not_blamed_on_int8():
    from edgernn.explain import _verdict

    kind, why = _verdict(0.42, [0.05] * 30 + [6.0] * 10)
    assert kind == "fragile float model" and "42%" in why
    assert _verdict(0.0, [0.05] * 30 + [6.0] * 10)[0] == "error accumulates through the recurrence"
    assert _verdict(0.0, [1.0] * 40)[0] == "error from the first frames"


def test_explain_names_the_worst_tensor_of_a_tflite_artifact(run_copy, quiet_calibration):
    """full-int8 calibrated on windows 50x quieter than the data (conftest's quiet_calibration): every
    real input saturates the int8 input range, so the per-tensor comparison with the float twin must
    show tensors many quantization steps off, name the worst and point at a recipe."""
    from edgernn.explain import tensor_errors
    from edgernn.export import export_run

    run = run_copy(cell="gru", hidden=16)
    # the step artifact: a GRU int8 sequence is a WHILE loop, whose body tensors the interpreter does not expose
    export_run(run, formats="tflite", precisions="float,int8", recipe="full-int8", streaming=True)
    r = CliRunner().invoke(main, ["parity", str(run), "-q"])
    assert r.exit_code == 1 and "step-int8.tflite" in r.output  # it really fails the gate
    r = CliRunner().invoke(main, ["parity", str(run), "--explain", "step-int8.tflite"])
    assert r.exit_code == 0, r.output
    rep = json.loads((run / "explain" / "explain-step-int8.tflite.json").read_text())
    worst = rep["tensors"][0]
    assert worst["dtype"] == "int8" and worst["steps"] > 3 and worst["relative"] > 0.05, worst
    assert f"worst tensor {worst['tensor']} ({worst['op']} #{worst['op_index']}, int8, recipe full-int8)" in r.output
    assert "far beyond rounding noise" in r.output and "--recipe dynamic" in r.output
    # the sequence artifact's loop hides its body: explain says so and names the step artifact
    r = CliRunner().invoke(main, ["parity", str(run), "--explain", "sequence-int8.tflite"])
    assert r.exit_code == 0, r.output
    assert "WHILE loop" in r.output and "--explain step-int8.tflite" in r.output, r.output
    # the same comparison of the float twin with itself: nothing to blame
    art = run / "artifacts" / "step-float.tflite"
    X = np.asarray(json.loads((run / "explain" / "explain-step-int8.tflite.json").read_text())["windows"][0]
                   ["window"])
    from edgernn.rundir import load_run

    loaded = load_run(run)
    same = tensor_errors(art, art, loaded.normalize(loaded.data()["X_test"][int(X)][None])[0])
    assert same and max(t["rmse"] for t in same) == 0.0
