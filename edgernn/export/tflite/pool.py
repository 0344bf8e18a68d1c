"""
One TFLite worker process for a whole export: every conversion of an `edgernn export` (each precision, mode and
int8 recipe candidate) is sent to the same `worker --serve` process, which imports TensorFlow once. Measured on
ACSF1 (T=1460): importing TensorFlow and tf-keras is 3.7 s of every conversion, and a long-sequence int8 choice
converts two or three candidates.

    with worker_pool():                      # edgernn.export.export_run wraps its loop in this
        export_tflite(...)                   # convert._run_worker sends the spec to the live process

Outside a worker_pool() block each conversion runs in a fresh process, as before. Either way a converter crash
ends only the worker: the conversion fails with its signal, and the next one starts a new process. A conversion
past its time budget kills the process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgernn.interrupts import die_with_parent

_POOL: "Pool | None" = None


@contextlib.contextmanager
def worker_pool():
    """Share one worker process between the conversions inside this block (nested blocks share the outer one)."""
    global _POOL
    if _POOL is not None:
        yield _POOL
        return
    _POOL = Pool()
    try:
        yield _POOL
    finally:
        _POOL.close()
        _POOL = None


def active() -> "Pool | None":
    return _POOL


class Pool:
    def __init__(self):
        self.proc = None
        self.tmp = self.err_path = None

    def _start(self, env: dict) -> None:
        # the worker's own temp dir (TensorFlow writes autograph files there): removed with the worker, however
        # it ends (a SIGTERM to the export kills it mid-conversion, before TensorFlow's own clean-up)
        self.tmp = tempfile.mkdtemp(prefix="edgernn-tflite-worker-")
        self.err_path = os.path.join(self.tmp, "stderr")
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "edgernn.export.tflite.worker", "--serve"],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, text=True,
                                         env={**env, "TMPDIR": self.tmp}, preexec_fn=die_with_parent)

    def run(self, spec_path: Path, env: dict, timeout: float) -> tuple[int | None, str]:
        """Convert one spec: (None, stderr) when the worker answered (its report says how it went), or
        (exit code, stderr) when the process ended first (negative: killed by that signal). Raises
        TimeoutError after `timeout` seconds (the process is killed)."""
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start(env)
        start = os.path.getsize(self.err_path)
        done = Path(str(spec_path) + ".done")
        done.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        try:
            self.proc.stdin.write(f"{spec_path}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died between requests: poll() below says how
        while not done.exists():
            code = self.proc.poll()
            if code is not None:
                err = self._stderr(start)
                self.close()
                return code, err
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError
            time.sleep(0.02)
        done.unlink(missing_ok=True)
        return None, self._stderr(start)

    def _stderr(self, start: int) -> str:
        with open(self.err_path, errors="replace") as f:
            f.seek(start)
            return f.read()

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.proc.stdin.close()  # EOF: the worker ends by itself ...
                    self.proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    self.proc.kill()  # ... or is stopped
                    self.proc.wait()
            self.proc = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = self.err_path = None
