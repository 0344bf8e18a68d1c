"""
The Makefile's set-up when two makes start at once (`make demo` and `make test` on a new machine): the
second waits for the first with one line saying so, then finds the venv current and does not build it again.

The real Makefile runs here; only PYTHON is a stand-in (a shell script whose `-m venv DIR` writes a `pip`
that records when each install starts and ends and sleeps a little): installing torch twice for real would
take minutes, and pip is not what this test is about - the lock around it is.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/bin/sh
# stand-in for python3: only `-m venv DIR` is used by the Makefile's set-up
[ "$1" = "-m" ] && [ "$2" = "venv" ] || exit 3
mkdir -p "$3/bin"
cat > "$3/bin/pip" <<'EOF'
#!/bin/sh
echo "start $$ $(date +%s.%N)" >> "$(dirname "$0")/../pip.log"
sleep 0.3
echo "end $$ $(date +%s.%N)" >> "$(dirname "$0")/../pip.log"
EOF
chmod +x "$3/bin/pip"
"""


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("flock") is None, reason="needs make and flock")
def test_two_makes_at_once_set_the_venv_up_once(tmp_path):
    for f in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / f, tmp_path / f)
    py = tmp_path / "fakepython"
    py.write_text(FAKE_PYTHON)
    py.chmod(0o755)
    venv = tmp_path / "venv"
    cmd = ["make", "-s", "install", f"VENV={venv}", f"PYTHON={py}"]
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.3)  # the first holds the lock: it is inside its four pip calls of 0.3 s each
    second = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out1, _ = first.communicate(timeout=60)
    out2, _ = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, (out1, out2)
    assert "waiting (up to 30 min) for another make that is setting up" in out2, out2
    assert "was set up meanwhile by the other make" in out2, out2
    log = (venv / "pip.log").read_text().split("\n")
    starts = [ln for ln in log if ln.startswith("start")]
    assert len(starts) == 4, log  # one set-up: pip upgrade, torch, the package, tf-keras
    assert (venv / ".edgernn-installed").is_file()
    # a third make afterwards finds the stamp current and runs nothing
    third = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0 and len((venv / "pip.log").read_text().split("start")) == 5
