"""
Results a user can trust: an artifact is refused by parity, bench and report when it was exported from
another model than the run's; `train` refuses a non-empty run directory unless --force (and then removes
the old model's artifacts); SIGTERM and Ctrl-C leave nothing behind (no run directory, no converter
process, no temp dir); the runtime counts saturated int8 inputs/states.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgernn.cli import main

pytestmark = pytest.mark.export

CLI = [sys.executable, "-c", "from edgernn.cli import main; main()"]


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


def _wait_for(pred, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.2)
    return False


def _children(pid: int) -> list[int]:
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(v) for v in r.stdout.split()]


@pytest.mark.slow
def test_sigterm_during_export_stops_the_converter_and_leaves_nothing(run_copy, tmp_path):
    run = run_copy(cell="lstm", hidden=16)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(CLI + ["export", str(run), "--format", "tflite", "--precision", "int8", "--streaming",
                                   "-q"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: _children(proc.pid)), "no converter worker started"
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)  # to edgernn only, as systemd or a CI runner's kill would
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated"
    assert _wait_for(lambda: not any(Path(f"/proc/{w}").exists() for w in workers), 10), "converter orphaned"
    assert list(tmp.iterdir()) == []  # no edgernn-tflite-* temp dir
    arts = run / "artifacts"
    leftovers = [p.name for p in arts.iterdir()] if arts.exists() else []
    assert not [n for n in leftovers if n.startswith(".")]  # no scratch dirs or temp files
    assert all((arts / (n + ".json")).exists() for n in leftovers if not n.endswith(".json"))


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_signal_during_train_leaves_no_run_directory(tmp_path, sig, code, word):
    out = tmp_path / "run"
    # a test suite started in the background (`make test &`) inherits SIGINT ignored, and Python then
    # installs no Ctrl-C handler: give the child the default disposition a terminal user's process has
    proc = subprocess.Popen(CLI + ["train", "-d", "synthetic", "--epochs", "100000", "--patience", "100000",
                                   "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert _wait_for(out.exists, 60), "training never started"
        time.sleep(1.0)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].endswith(word)
    assert not out.exists()


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


def test_stream_counts_saturated_int8_inputs_and_warns_once(run_copy):
    """Full-int8 TFLite step artifacts: int8 input. Frames far outside the calibrated range clip; the
    stream counts them and warns once. GRU: its int8 state is h, whose [-1, 1] range is tanh's own (not
    counted: None). LSTM: the int16 cell state lives in the interpreter's variable tensors (counted)."""
    from edgernn.export.tflite.convert import export_tflite
    from edgernn.rundir import load_run
    from edgernn.runtimes import SaturationWarning, load

    for cell, state in (("gru", None), ("lstm", 0)):
        run = load_run(run_copy(cell=cell, hidden=16))
        art = export_tflite(run, run.path / "artifacts", "int8", "step")
        X = run.data()["X_test"]
        with load(art) as s, pytest.warns(SaturationWarning, match="hit the end of its int range") as rec:
            st = s.stream()
            assert st.saturation == {"frames": 0, "input": 0, "state": state}
            for f in X[0]:
                st.step(f)
            calm = st.saturation
            for f in X[1]:
                st.step(run.mean + (f - run.mean) * 50)  # 50x the calibrated amplitude
            loud = st.saturation
            st.reset()
            assert st.saturation == loud  # counts run over the stream's life
            with warnings.catch_warnings(record=True) as silent:  # warn=False: counted, never warned
                warnings.simplefilter("always")
                quiet = s.stream(warn=False)
                for f in X[1]:
                    quiet.step(run.mean + (f - run.mean) * 50)
            assert not [w for w in silent if w.category is SaturationWarning]
            assert quiet.saturation["input"] >= 30
        assert len([w for w in rec if w.category is SaturationWarning]) == 1  # warned once
        assert calm["frames"] == 40 and loud["frames"] == 80
        assert calm["input"] <= 2 and loud["input"] - calm["input"] >= 30, (calm, loud)  # most loud frames clip
        assert loud["state"] == state


def test_range_end_check_is_exact_for_int8_and_int16():
    """The fast bytes search in the saturation check never decides a hit alone: misaligned int16 byte
    patterns (0x0000, 0x0080 contains the bytes of -32768) are confirmed with min/max."""
    from edgernn.runtimes.session import _at_end
    from edgernn.runtimes.tensor import Tensor

    for dtype in (np.int8, np.int16):
        t = Tensor({"name": "s"}, dtype, 0.01, 0)
        info = np.iinfo(dtype)
        assert not _at_end(np.array([[0, 5, -7]], dtype), t)
        assert _at_end(np.array([[0, info.max, 3]], dtype), t) and _at_end(np.array([[info.min]], dtype), t)
    t16 = Tensor({"name": "c"}, np.int16, 0.01, 0)
    assert not _at_end(np.array([0, 128], np.int16), t16)      # bytes 00 00 80 00 hold 00 80
    assert not _at_end(np.array([-1, 127], np.int16), t16)     # bytes ff ff 7f 00 hold ff 7f
