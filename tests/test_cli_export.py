"""`edgernn export` options that are about the command rather than a format: the converter's time budget."""

import pytest
from click.testing import CliRunner

from edgernn.cli import main

pytestmark = pytest.mark.export


def test_timeout_is_an_option_and_its_error_names_it(run_copy):
    run = run_copy(cell="gru", hidden=16)
    r = CliRunner().invoke(main, ["export", str(run), "--format", "tflite", "--precision", "float",
                                  "--timeout", "0.001", "-q"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "ran out of its time budget" in r.output and "--timeout" in r.output
    assert not list((run / "artifacts").glob("*.tflite")) if (run / "artifacts").exists() else True
    bad = CliRunner().invoke(main, ["export", str(run), "--timeout", "0", "-q"])
    assert bad.exit_code == 2 and "--timeout" in bad.output
    ok = CliRunner().invoke(main, ["export", str(run), "--format", "tflite", "--precision", "float",
                                   "--timeout", "300", "-q"])
    assert ok.exit_code == 0, ok.output


def test_one_failing_format_does_not_stop_the_others(run_copy):
    """TFLite runs out of its (tiny) time budget; ONNX, the ORT file converted from it, and C are still
    written, each announced by its own line, then the failures, exit 1 (JSON too)."""
    import json

    run = run_copy(cell="gru", hidden=16)
    r = CliRunner().invoke(main, ["export", str(run), "--format", "onnx,tflite,ort,c", "--precision", "float",
                                  "--streaming", "--timeout", "0.001", "-q"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    lines = r.output.splitlines()
    wrote = [ln.split()[1:4] for ln in lines if ln.startswith("wrote")]
    assert sorted(wrote) == sorted([[f, "float", m] for f in ("onnx", "ort", "c") for m in ("sequence", "step")])
    failed = [ln for ln in lines if ln.startswith("FAILED")]
    assert len(failed) == 2 and all("tflite" in ln and "time budget" in ln for ln in failed), r.output
    assert "2 of 8 artifact(s) failed (6 written)" in lines[-1]
    # written artifacts really are there, the failed ones are not
    names = {p.name for p in (run / "artifacts").iterdir()}
    assert {"sequence-float.onnx", "step-float.ort", "sequence-float.h"} <= names
    assert not any(n.endswith(".tflite") for n in names)
    j = CliRunner().invoke(main, ["export", str(run), "--format", "onnx,tflite", "--precision", "float",
                                  "--timeout", "0.001", "--json", "-q"])
    assert j.exit_code == 1
    rows = json.loads(j.output[:j.output.rindex("]") + 1])
    assert {(x["format"], bool(x["path"]), bool(x["error"])) for x in rows} == {("onnx", True, False),
                                                                                  ("tflite", False, True)}
