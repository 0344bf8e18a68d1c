"""
SIGTERM and Ctrl-C (edgernn.interrupts, and the CLI's exit codes 143 / 130) leave nothing behind: no run
directory, no converter process, no temp dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.export

CLI = [sys.executable, "-c", "from edgernn.cli import main; main()"]


def _wait_for(pred, timeout=120.0):
    """Poll pred() until it is true (True) or `timeout` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
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
    # stderr goes to a file so the test can read the progress bar's label while training runs: on a pipe
    # (no TTY) click writes the label once, as the epoch loop starts, and nothing else until the end
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen(CLI + ["train", "-d", "synthetic", "--epochs", "100000", "--patience", "100000",
                                       "--out", str(out)], stdout=subprocess.PIPE, stderr=err_file, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # the signal must land in the epoch loop (not while the dataset loads): wait for the bar to open
        assert _wait_for(lambda: "train gru h32 on synthetic" in err_path.read_text(), 120), \
            f"training never started: {err_path.read_text()}"
        assert out.exists()
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    err = err_path.read_text()
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].endswith(word)
    assert not out.exists()
