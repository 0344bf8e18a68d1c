"""
Results a user can trust (edgernn.rundir): an artifact is refused by parity, bench and report when it was
exported from another model than the run's, and report refuses results measured on another artifact;
`train` refuses a non-empty run directory unless --force (and then removes the old model's artifacts and
results); run files get the user's umask.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from edgernn.cli import main

pytestmark = pytest.mark.export


def _export(run, recipe="int8-head"):
    r = CliRunner().invoke(main, ["export", str(run), "--format", "onnx", "--precision", "float,int8",
                                  "--recipe", recipe, "-q"])
    assert r.exit_code == 0, r.output
    return run


def _one_line(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_artifacts_of_another_model_are_refused(run_copy, tmp_path):
    """The issue's case: the int8 artifacts of an h24 model copied into an h16 run passed every gate."""
    big = _export(run_copy(cell="gru", hidden=24, steps=400))
    small = run_copy(cell="gru", hidden=16)
    (small / "artifacts").mkdir()
    for p in (big / "artifacts").glob("*int8*"):
        shutil.copy(p, small / "artifacts" / p.name)
    for cmd in (["parity", str(small), "-q"], ["bench", str(small), "-q", "--runs", "3", "--warmup", "0"],
                ["parity", str(small), "--explain", "sequence-int8.onnx"]):
        r = CliRunner().invoke(main, cmd)
        assert r.exit_code == 1, (cmd, r.output)
        line = _one_line(r.output)
        assert "was built for GRU h24, run " in line and "is GRU h16: re-export" in line, line
    assert not (small / "parity.json").exists() and not list(small.glob("bench-*.json"))


def test_artifacts_of_other_weights_are_refused_and_report_checks_results(run_copy):
    """Same config, other weights (retrained, or copied from a run with another seed)."""
    run = _export(run_copy(cell="gru", hidden=16))
    assert CliRunner().invoke(main, ["parity", str(run), "-q"]).exit_code == 0
    other = run_copy(cell="gru", hidden=16, seed=1)
    shutil.copy(other / "model.pt", run / "model.pt")
    r = CliRunner().invoke(main, ["parity", str(run), "-q"])
    assert r.exit_code == 1
    assert "was built from other weights of GRU h16" in _one_line(r.output)
    # report refuses the parity.json measured on the old weights
    r = CliRunner().invoke(main, ["report", str(run)])
    assert r.exit_code == 1 and "parity.json was built from other weights of GRU h16" in _one_line(r.output)
    assert "re-run `edgernn parity" in r.output


def test_report_refuses_results_of_an_artifact_reexported_since(run_copy):
    run = _export(run_copy(cell="gru", hidden=16))
    assert CliRunner().invoke(main, ["parity", str(run), "-q"]).exit_code == 0
    assert CliRunner().invoke(main, ["report", str(run)]).exit_code == 0
    _export(run, recipe="dynamic")  # another int8 recipe: sequence-int8.onnx has other bytes now
    r = CliRunner().invoke(main, ["report", str(run)])
    assert r.exit_code == 1 and "re-exported since" in _one_line(r.output), r.output


def test_report_with_nothing_to_report_and_artifact_without_manifest(run_copy):
    run = run_copy(cell="gru", hidden=16)
    r = CliRunner().invoke(main, ["report", str(run)])
    assert r.exit_code == 1 and "nothing to report" in _one_line(r.output)
    assert not (run / "report.md").exists()
    _export(run)
    shutil.copy(run / "artifacts" / "sequence-float.onnx", run / "artifacts" / "extra.onnx")
    r = CliRunner().invoke(main, ["parity", str(run), "-q"])
    assert r.exit_code == 1 and "extra.onnx has no manifest" in _one_line(r.output)


def test_train_refuses_a_non_empty_run_dir_and_force_removes_stale_results(tmp_path):
    out = tmp_path / "run"
    args = ["train", "-d", "synthetic", "--hidden", "4", "--epochs", "2", "-q", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    _export(out)
    (out / "parity.json").write_text("{}")
    (out / "bench-desktop.json").write_text("{}")
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "is not empty" in _one_line(r.output) and "--force" in r.output
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # untouched
    r = CliRunner().invoke(main, args + ["--force", "--hidden", "8"])
    assert r.exit_code == 0, r.output
    assert "removed what the previous model left" in r.output and "artifacts" in r.output
    assert not (out / "artifacts").exists() and not (out / "parity.json").exists()
    assert not (out / "bench-desktop.json").exists()
    assert json.loads((out / "config.json").read_text())["model"]["hidden"] == 8


def test_run_files_get_the_users_umask(tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o027)
    try:
        assert CliRunner().invoke(main, ["train", "-d", "synthetic", "--hidden", "4", "--epochs", "1", "-q",
                                         "--out", str(out)]).exit_code == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert set(modes.values()) == {0o640}, modes
