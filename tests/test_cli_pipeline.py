"""The main job end to end (ONNX only here to keep it quick; `make demo` runs every format)."""

import json

import pytest
from click.testing import CliRunner

from edgernn.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.export]


def test_pipeline_train_export_parity_bench_report(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["pipeline", "--dataset", "synthetic", "--hidden", "8", "--epochs", "15",
                                  "--format", "onnx", "--precision", "float,int8", "--runs", "20", "-q",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    for cell in ("gru", "lstm"):
        assert f"== {cell}: train on synthetic" in r.output
        for name in ("metrics.json", "parity.json", "bench-desktop.json"):
            assert (out / cell / name).is_file()
        assert (out / cell / "artifacts" / "step-int8.onnx").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"gru", "lstm"}
    # the summary's verdict is exactly what each run's parity.json says, artifact by artifact
    failed = []
    for cell in ("gru", "lstm"):
        parity = json.loads((out / cell / "parity.json").read_text())
        rows = {a["artifact"]: a for a in parity["artifacts"]}
        assert set(rows) == {f"{mode}-{prec}.onnx" for mode in ("sequence", "step") for prec in ("float", "int8")}
        for name, a in rows.items():
            if a["precision"] == "float":  # float artifacts must match torch: never an accepted failure
                assert a["passed"] and a["max_abs_diff"] <= 1e-4, (cell, name, a)
        assert parity["failed"] == [n for n, a in rows.items() if not a["passed"]]
        assert parity["passed"] == (not parity["failed"])
        assert summary["models"][cell]["parity_passed"] == parity["passed"]
        failed += [f"{cell}/{n}" for n in parity["failed"]]
    assert summary["parity_failed"] == failed
    if failed:
        assert f"WARNING: parity gate failed for: {', '.join(failed)} (see the parity tables" in r.output
    else:
        assert "WARNING: parity gate failed" not in r.output
    assert (out / "report.md").is_file() and (out / "plots" / "tradeoff.png").is_file()
    assert "| sequence-float.onnx | onnxruntime |" in (out / "report.md").read_text()


def test_pipeline_bad_options(tmp_path):
    r = CliRunner().invoke(main, ["pipeline", "--cells", "gru,transformer", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown cell(s) ['transformer']" in r.output
    r = CliRunner().invoke(main, ["pipeline", "--stages", "train,deploy", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "choose stages from" in r.output
