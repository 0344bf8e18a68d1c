"""
Benchmark targets: where the benchmark worker runs - this machine, a Raspberry Pi over SSH, an Android
phone over adb. A board profile (edgernn.devices.boards) says which transport; get_target() builds the target.

    from edgernn.devices.boards import load_board
    from edgernn.devices.targets import BenchJob, get_target

    tgt = get_target(load_board("rpi4"), host="pi@raspberrypi.local")
    tgt.fingerprint()        # uname, arch, cpu_model, cores, ram_mb, os, python, governor, temperature...
    results = tgt.run([BenchJob(artifact=Path("runs/gru/artifacts/sequence-int8.onnx"),
                                input=Path("windows.npy"), runs=200, warmup=20, threads=1,
                                stream_frames=200)])

Each result is the worker's RESULT.json (python -m edgernn.runtimes.bench_worker; see that module for the
keys) plus:
    "parity_output"      np.ndarray, when the job had parity_input (predict() on every window, on the device)
    "target"             fingerprint of the machine before the jobs ran
    "fingerprint_after"  fingerprint after the last job
    "transfer_s"         seconds spent copying this job's files (its share of the push, and the pull)
    "remote_overhead_s"  wall time of the job minus the time the worker itself measured (process start,
                         imports, connection; an estimate, see worker_time_s())
    "warnings"           worker warnings + architecture mismatch + throttling
A failure raises edgernn.errors.TargetError with one line saying what failed and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgernn.errors import ConfigError

__all__ = ["BenchJob", "Target", "get_target", "worker_args", "worker_time_s", "arch_warning",
           "throttle_warnings", "TRANSPORTS"]

# transport -> "module:class", imported on first use
TRANSPORTS = {
    "local": "edgernn.devices.targets.local:LocalTarget",
    "ssh": "edgernn.devices.targets.ssh:SSHTarget",
    "adb": "edgernn.devices.targets.adb:AdbTarget",
}


@dataclass
class BenchJob:
    """One worker run: an artifact (or, with torch_run, the PyTorch eager model of a run directory)."""

    artifact: Path | None
    input: Path
    runs: int = 200
    warmup: int = 20
    threads: int = 1
    stream_frames: int = 200
    parity_input: Path | None = None
    torch_run: Path | None = None

    @property
    def label(self) -> str:
        if self.artifact is not None:
            return Path(self.artifact).name
        return f"torch eager ({Path(self.torch_run).name})" if self.torch_run else "?"


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output (ssh warnings such as "Warning: Permanently added ..." are
    noise before the real error), for one-line errors."""
    lines = [ln.strip() for ln in (text or "").replace("\r", "").splitlines() if ln.strip()]
    real = [ln for ln in lines if not ln.startswith("Warning: Permanently added")]
    return (real or lines or [""])[-1]


def worker_args(job: BenchJob, artifact, inp, out, parity_in=None, parity_out=None, torch_run=None) -> list:
    """The worker's command-line arguments (after `python -m edgernn.runtimes.bench_worker`), paths as given."""
    args = ["--torch-run", str(torch_run)] if torch_run is not None else ["--artifact", str(artifact)]
    args += ["--input", str(inp), "--out", str(out), "--runs", str(int(job.runs)), "--warmup", str(int(job.warmup)),
             "--threads", str(int(job.threads)), "--stream-frames", str(int(job.stream_frames))]
    if parity_in is not None:
        args += ["--parity-input", str(parity_in), "--parity-out", str(parity_out)]
    return args


def worker_time_s(result: dict) -> float:
    """Seconds the worker spent in phases it measured itself: load + first inference + warm-up + timed
    runs + streaming (warm-up and streaming estimated from their mean latency). Timer overhead and
    parity predictions are not included, so wall - this = process start, imports, transport."""
    lat = result.get("latency_us") or {}
    mean_us = float(lat.get("mean") or 0.0)
    n = int(lat.get("n") or 0)
    total = float(result.get("load_s") or 0.0) + float(result.get("first_inference_s") or 0.0)
    total += (n + int(result.get("warmup") or 0)) * mean_us / 1e6
    stream = result.get("stream_us") or {}
    total += int(stream.get("n") or 0) * float(stream.get("mean") or 0.0) / 1e6
    return total


def arch_warning(board, fp: dict):
    """A warning string if the device's `uname -m` is not the profile's architecture, else None."""
    from edgernn.devices.boards import arch_matches

    machine = (fp or {}).get("arch") or (fp or {}).get("machine")
    if not machine or arch_matches(board.arch, machine):
        return None
    return (f"the device reports architecture {machine} but board profile {board.name!r} is {board.arch}: "
            f"these numbers are not {board.name} numbers (wrong --host or --target? a 32-bit OS on a 64-bit "
            "board reports armv7l)")


def throttle_warnings(before: dict, after: dict) -> list:
    """Warnings from `vcgencmd get_throttled` (before/after) and the temperature rise."""
    out = []
    for when, fp in (("before", before or {}), ("after", after or {})):
        raw = fp.get("throttled")
        if raw is None:
            continue
        try:
            value = int(raw, 16) if str(raw).lower().startswith("0x") else int(raw)
        except ValueError:
            continue
        if value:
            flags = ", ".join(fp.get("throttled_flags") or []) or f"flags {raw}"
            out.append(f"the device was throttled {when} the benchmark (vcgencmd get_throttled={raw}: {flags}); "
                       "latencies may be inflated: check the power supply (5V/3A on a Pi 4, 5V/5A on a Pi 5) "
                       "and cooling, then re-run")
    tb, ta = (before or {}).get("temperature_c"), (after or {}).get("temperature_c")
    if tb is not None and ta is not None and ta - tb >= 10:
        out.append(f"the SoC warmed from {tb:.1f} to {ta:.1f} C during the benchmark: add cooling or pauses "
                   "if later artifacts ran slower")
    return out


class Target:
    """Base class. Subclasses implement fingerprint() and run()."""

    name = "target"

    def __init__(self, board):
        self.board = board

    def fingerprint(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, jobs: list, progress=None) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return self.board.name

    # ---- shared helpers ------------------------------------------------------------------------------
    @staticmethod
    def _check_jobs(jobs: list, allow_torch: bool = True) -> dict:
        """Validate jobs before touching any device: input files exist; artifacts exist and their
        manifests verify (size, sha256). Returns {artifact path: manifest}."""
        from edgernn.runtimes.manifest import read_manifest

        if not isinstance(jobs, (list, tuple)) or not all(isinstance(j, BenchJob) for j in jobs):
            raise ConfigError("run() takes a list of BenchJob")
        manifests = {}
        for j in jobs:
            for what, p in (("input", j.input), ("parity input", j.parity_input)):
                if p is not None and not Path(p).is_file():
                    raise ConfigError(f"{what} file {p} does not exist")
            if j.artifact is None:
                if j.torch_run is None:
                    raise ConfigError("a BenchJob needs an artifact or a torch_run directory")
                if not allow_torch:
                    raise ConfigError("the PyTorch eager reference runs only on the desktop (local target); "
                                      "leave it out for a device (include_torch=False)")
                continue
            a = Path(j.artifact)
            if a not in manifests:
                manifests[a] = read_manifest(a)
        return manifests

    @staticmethod
    def _progress(progress, total: int):
        """-> (update(job) callable, close() callable). progress: None/False, True (a bar on stderr),
        or a callable(done, total, job)."""
        if callable(progress):
            state = {"done": 0}

            def update(job):
                state["done"] += 1
                progress(state["done"], total, job)

            return update, lambda: None
        if progress:
            from edgernn.progress import progressbar

            bar = progressbar(length=total, label="benchmarking", enabled=True)
            bar.__enter__()
            return (lambda job: bar.update(1)), (lambda: bar.__exit__(None, None, None))
        return (lambda job: None), (lambda: None)

    def _finish(self, result: dict, before: dict, after: dict, transfer_s: float, wall_s: float,
                extra_warnings=()) -> dict:
        result = dict(result)
        result["target"] = before
        result["fingerprint_after"] = after
        result["transfer_s"] = round(transfer_s, 4)
        result["wall_s"] = round(wall_s, 4)
        result["worker_time_s"] = round(worker_time_s(result), 4)
        result["remote_overhead_s"] = round(max(0.0, wall_s - result["worker_time_s"]), 4)
        warnings = list(result.get("warnings") or [])
        for w in [arch_warning(self.board, before), *throttle_warnings(before, after), *extra_warnings]:
            if w and w not in warnings:
                warnings.append(w)
        result["warnings"] = warnings
        return result


def get_target(board, host: str | None = None, tool: str | None = None, **opts) -> Target:
    """The target for a board profile (or its name): local, ssh (needs host) or adb (needs tool).
    opts go to the target class (e.g. ssh: port, identity, ssh_options, remote_python, remote_tmp,
    config, connect_timeout, job_timeout, multiplex; adb: serial, runner, adb)."""
    import importlib
    import inspect

    from edgernn.devices.boards import Board, load_board

    if not isinstance(board, Board):
        board = load_board(board)
    if board.transport not in TRANSPORTS:
        raise ConfigError(f"board {board.name}: unknown transport {board.transport!r}; "
                          f"choose one of: {', '.join(TRANSPORTS)}")
    module, cls = TRANSPORTS[board.transport].split(":")
    klass = getattr(importlib.import_module(module), cls)
    accepted = set(inspect.signature(klass.__init__).parameters) - {"self", "board", "host", "tool"}
    foreign = [k for k in opts if k not in accepted]
    if foreign:  # checked against the signature, so a TypeError inside a target is never read as this
        raise ConfigError(f"option(s) {', '.join('--' + k.replace('_', '-') for k in foreign)} do not apply to "
                          f"target {board.name} (transport {board.transport})")
    if board.transport == "local":
        if host:
            raise ConfigError(f"board {board.name} runs locally; --host {host} is for ssh boards "
                              "(e.g. --target rpi4 --host pi@raspberrypi.local)")
        return klass(board, **opts)
    if board.transport == "ssh":
        if not host:
            raise ConfigError(f"board {board.name} is reached over ssh: give --host, e.g. pi@raspberrypi.local "
                              "or an alias from ~/.ssh/config")
        return klass(board, host, **opts)
    if host and "serial" not in opts:
        opts["serial"] = host  # --host names the adb device serial for adb boards
    return klass(board, tool=tool, **opts)
