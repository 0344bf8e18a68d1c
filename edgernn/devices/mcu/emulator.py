"""
Running a firmware (edgernn.devices.mcu.firmware) under qemu-system-arm, and its host twin: a job in,
outputs and counts out. No root, no rootfs, no network: one process per job, killed with its process
group when it exceeds the time limit.

    out, stats = run_mcu(fw, job, n_outputs, timeout=600)   # stats: instructions, stack, ...
    host = run_host(fw, job, n_outputs)

A fault on the MCU (the firmware's fault handler, or qemu's own "Lockup") and a hang become one-line
TargetErrors naming the artifact, the fault and the board.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgernn.devices.mcu.cores import check_tools
from edgernn.devices.mcu.firmware import CHUNK, FAULT_EXIT, MAGIC, OP_STREAM, OP_WINDOWS, Firmware
from edgernn.errors import TargetError


def windows_job(windows: list) -> bytes:
    """op 1: each window [T, C] float32 through P_run."""
    parts = [np.array([MAGIC, OP_WINDOWS, len(windows)], "<i4").tobytes()]
    for w in windows:
        w = np.ascontiguousarray(w, "<f4")
        parts += [np.array([len(w)], "<i4").tobytes(), w.tobytes()]
    return b"".join(parts)


def stream_job(frames: np.ndarray, starts) -> bytes:
    """op 2: frames [N, C] through P_step as one stream; the state is zeroed before each index in starts."""
    frames = np.ascontiguousarray(frames, "<f4")
    n, c = frames.shape
    rec = np.zeros((n, 1 + c), "<f4")
    rec[:, 1:] = frames
    reset = np.zeros(n, "<i4")
    reset[np.asarray(list(starts), int)] = 1
    rec = rec.view("<i4")
    rec[:, 0] = reset
    return np.array([MAGIC, OP_STREAM, n], "<i4").tobytes() + rec.tobytes()


def _execute(cmd: list, cwd: Path, timeout: float) -> tuple[int | None, str, str]:
    """(exit code or None on time-out, stdout, stderr); the process group is killed on time-out or interrupt."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        return None, "", ""
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def _outputs(path: Path, n_outputs: int) -> np.ndarray:
    data = np.fromfile(path, "<f4") if path.is_file() else np.zeros(0, "<f4")
    if data.size % n_outputs:
        raise TargetError(f"the firmware wrote {data.size} values, not a multiple of {n_outputs}")
    return data.reshape(-1, n_outputs).astype(np.float32)


def _fields(line: str) -> dict:
    return {k: int(v) for k, v in (t.split("=", 1) for t in line.split()[1:])}


def run_mcu(fw: Firmware, job: bytes, n_outputs: int, label: str, board: str, timeout: float = 600.0) -> tuple:
    """Run one job on the emulated core: (outputs [n, n_outputs], stats). stats: calls, instructions (of the
    model calls only), instructions_per_call (mean, min, max), stack_bytes, state_bytes, wall_s."""
    import time

    tools = check_tools()
    cmd = [tools["qemu"], "-M", fw.core.machine, "-nographic", "-monitor", "none",
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(fw.elf)]
    with tempfile.TemporaryDirectory(prefix="edgernn-mcu-") as tmp:
        tmp = Path(tmp)
        (tmp / "job.bin").write_bytes(job)
        t0 = time.perf_counter()
        rc, out, err = _execute(cmd, tmp, timeout)
        wall = time.perf_counter() - t0
        where = f"{label} on {board} (emulated {fw.core.name}, qemu -M {fw.core.machine})"
        if rc is None:
            raise TargetError(f"{where}: no answer within {timeout:.0f} s (a hang); qemu was stopped")
        lines = out.splitlines()
        fault = next((ln for ln in lines if ln.startswith("EDGERNN-FAULT")), None)
        if fault or rc == FAULT_EXIT:
            raise TargetError(f"{where}: {fault.split(' ', 1)[1] if fault else 'fault'} - the artifact crashed the MCU")
        lockup = next((ln for ln in err.splitlines() if "Lockup" in ln or "fatal" in ln), None)
        if lockup:
            raise TargetError(f"{where}: {lockup.strip()}")
        error = next((ln for ln in lines if ln.startswith("EDGERNN-ERROR")), None)
        result = next((ln for ln in lines if ln.startswith("EDGERNN ")), None)
        if rc != 0 or result is None:
            why = error.split(" ", 1)[1] if error else (err.strip().splitlines() or [f"exit code {rc}"])[-1]
            raise TargetError(f"{where}: {why}")
        cal = next(ln for ln in lines if ln.startswith("EDGERNN-CAL")).split()[1:]
        cal_instr, cal_ticks, pair = (int(v) for v in cal)
        per_tick = cal_instr / max(1, cal_ticks)
        f = _fields(result)
        calls = f["calls"]
        ticks = (f["ticks_hi"] << 32) + f["ticks_lo"]
        measurements = -(-calls // CHUNK) if job[4:8] == np.array([OP_STREAM], "<i4").tobytes() else calls
        instructions = max(0.0, (ticks - pair * measurements) * per_tick)
        stats = {"calls": calls, "instructions": int(round(instructions)),
                 "instructions_per_call": round(instructions / max(1, calls), 1),
                 "instructions_per_call_min": round(f["min_ticks"] * per_tick, 1),
                 "instructions_per_call_max": round(f["max_ticks"] * per_tick, 1),
                 "instructions_per_tick": round(per_tick, 4), "stack_bytes": f["stack_bytes"],
                 "state_bytes": f["state_bytes"], "wall_s": round(wall, 3)}
        return _outputs(tmp / "out.bin", n_outputs), stats


def run_host(fw: Firmware, job: bytes, n_outputs: int, label: str, timeout: float = 600.0) -> np.ndarray:
    """The same harness built for this machine, on the same job."""
    with tempfile.TemporaryDirectory(prefix="edgernn-mcuhost-") as tmp:
        tmp = Path(tmp)
        (tmp / "job.bin").write_bytes(job)
        rc, out, err = _execute([str(fw.host)], tmp, timeout)
        if rc != 0:
            why = "time-out" if rc is None else (out.strip().splitlines() or err.strip().splitlines() or ["?"])[-1]
            raise TargetError(f"{label}: the host build of the MCU harness failed ({why})")
        return _outputs(tmp / "out.bin", n_outputs)
