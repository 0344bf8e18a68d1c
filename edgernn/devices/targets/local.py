"""
Local target: run the benchmark worker on this machine, one fresh Python process per job.

    from edgernn.devices.boards import load_board
    from edgernn.devices.targets import get_target
    results = get_target(load_board("desktop")).run(jobs)

Each job is `<this python> -m edgernn.runtimes.bench_worker ...` in its own temporary directory, with
PYTHONPATH pointing at this edgernn package, so the worker measures in a clean process (peak RSS per
phase, load time) exactly as it does on a device. A worker failure raises TargetError with the worker's
own one-line error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgernn.devices.targets import BenchJob, Target, worker_args
from edgernn.errors import ConfigError, TargetError
from edgernn.interrupts import die_with_parent

PACKAGE_PARENT = Path(__file__).resolve().parents[3]  # the directory that holds edgernn/


class LocalTarget(Target):
    name = "local"

    def __init__(self, board, python: str | None = None, job_timeout: float | None = 1800.0, env: dict | None = None):
        super().__init__(board)
        self.python = python or sys.executable
        if job_timeout is not None and job_timeout <= 0:
            raise ConfigError(f"job_timeout must be > 0 seconds or None, got {job_timeout}")
        self.job_timeout = job_timeout
        self.extra_env = dict(env or {})

    def describe(self) -> str:
        return f"{self.board.name} (this machine, {self.python})"

    def fingerprint(self) -> dict:
        from edgernn.runtimes.fingerprint import fingerprint

        fp = fingerprint()
        fp["python_executable"] = self.python
        return fp

    def _env(self) -> dict:
        env = dict(os.environ)
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT)] + rest)
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        env.update(self.extra_env)
        return env

    def run(self, jobs: list, progress=None) -> list:
        self._check_jobs(jobs, allow_torch=True)
        before = self.fingerprint()
        update, close = self._progress(progress, len(jobs))
        raw = []
        try:
            with tempfile.TemporaryDirectory(prefix="edgernn-local-") as tmp:
                for k, job in enumerate(jobs):
                    raw.append(self._run_one(job, Path(tmp), k))
                    update(job)
        finally:
            close()
        after = self.fingerprint()
        return [self._finish(r, before, after, 0.0, wall) for r, wall in raw]

    def _run_one(self, job: BenchJob, tmp: Path, k: int):
        out = tmp / f"result-{k}.json"
        pout = tmp / f"parity-{k}.npy"
        args = worker_args(job, Path(job.artifact).resolve() if job.artifact is not None else None,
                           Path(job.input).resolve(), out,
                           Path(job.parity_input).resolve() if job.parity_input is not None else None, pout,
                           torch_run=Path(job.torch_run).resolve() if job.artifact is None else None)
        worker = "edgernn.reference" if job.artifact is None else "edgernn.runtimes.bench_worker"  # torch row
        cmd = [self.python, "-m", worker, *args]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=self._env(), capture_output=True, text=True,
                                  timeout=self.job_timeout, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired:
            raise TargetError(f"benchmark of {job.label} did not finish within {self.job_timeout:g} s; lower --runs "
                              "or raise the job timeout") from None
        except OSError as exc:
            raise TargetError(f"cannot start {self.python}: {exc.strerror or exc}") from exc
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
            msg = lines[-1] if lines else f"exit code {proc.returncode}"
            if msg.startswith("error: "):
                msg = msg[len("error: "):]
            raise TargetError(f"benchmark of {job.label} failed on this machine: {msg}")
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError) as exc:
            raise TargetError(f"benchmark of {job.label}: the worker exited 0 but left no readable result "
                              f"({exc})") from exc
        if job.parity_input is not None:
            try:
                result["parity_output"] = np.load(pout, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise TargetError(f"benchmark of {job.label}: parity outputs missing ({exc})") from exc
            result.pop("parity_out", None)
        return result, wall
