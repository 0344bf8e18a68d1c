"""
A C artifact on an emulated Cortex-M, seen as a session: predict() and stream_outputs() each run the
firmware once (qemu-system-arm) and the same harness built for this machine on the same job, so every
call is also a comparison with the host. Parity's gate and soak use it like any runtime.

    s = McuSession(Path("artifacts/step-int8.h"), manifest, CORES["cortex-m4"], board="nucleo-l476rg")
    s.predict(X)                         # raw windows -> outputs, computed on the MCU
    s.stream_outputs(frames, starts)     # one continuous stream (resets at starts), on the MCU
    s.jobs                               # per call: op, instructions, stack, vs host (bit-exact? max|diff|)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.devices.mcu.cores import Core
from edgernn.devices.mcu.emulator import run_host, run_mcu, stream_job, windows_job
from edgernn.devices.mcu.firmware import build


class McuSession:
    runtime = "c"

    def __init__(self, path: Path, manifest: dict, core: Core, board: str, work: Path, timeout: float = 600.0):
        from edgernn.runtimes import load as load_c

        self.path, self.manifest, self.core, self.board, self.timeout = Path(path), manifest, core, board, timeout
        self.mode = manifest["mode"]
        self.task = manifest["task"]
        self.K = int(manifest["model"]["num_outputs"])
        self._host = load_c(self.path)  # its real_frames() rule (masked padding), numpy only
        self.firmware = build(self.path, manifest, core, work)
        self.jobs: list[dict] = []

    def real_frames(self, window) -> np.ndarray:
        return self._host.real_frames(window)

    def _job(self, op: str, job: bytes) -> np.ndarray:
        label = self.path.name
        out, stats = run_mcu(self.firmware, job, self.K, label, self.board, timeout=self.timeout)
        host = run_host(self.firmware, job, self.K, label, timeout=self.timeout)
        same = out.shape == host.shape and np.array_equal(out.view(np.uint32), host.view(np.uint32))
        with np.errstate(invalid="ignore"):
            diff = float(np.abs(out - host).max()) if out.shape == host.shape and out.size else float("inf")
        self.jobs.append({"op": op, **stats, "bit_exact_vs_host": bool(same), "max_abs_diff_vs_host": diff})
        return out

    def predict(self, X) -> np.ndarray:
        """Raw windows [B, T, C] (or one [T, C]) -> outputs [B, K] (tagger [B, T, K]), through P_run."""
        X = np.asarray(X, np.float32)
        one = X.ndim == 2
        X3 = X[None] if one else X
        windows = [self.real_frames(w) for w in X3]
        flat = self._job("windows", windows_job(windows))
        if self.task == "tag":
            ends = np.cumsum([len(w) for w in windows])
            out = np.stack([flat[e - len(w):e] for w, e in zip(windows, ends)])
        else:
            out = flat
        return out[0] if one else out

    def stream_outputs(self, frames: np.ndarray, starts) -> tuple[np.ndarray, dict]:
        """frames [N, C] as one stream through P_step, the state zeroed before each index in starts."""
        out = self._job("stream", stream_job(np.asarray(frames, np.float32), starts))
        return out, {"frames": int(len(frames)), "input": None, "state": None}

    def summary(self) -> dict:
        """Over every call so far: instructions per window / per frame, stack, and the host comparison."""
        by_op = {}
        for j in self.jobs:
            s = by_op.setdefault(j["op"], {"calls": 0, "instructions": 0})
            s["calls"] += j["calls"]
            s["instructions"] += j["instructions"]
        for s in by_op.values():
            s["instructions_per_call"] = round(s["instructions"] / max(1, s["calls"]), 1)
        return {"core": self.core.name, "qemu_machine": self.core.machine, "by_op": by_op,
                "stack_bytes": max((j["stack_bytes"] for j in self.jobs), default=None),
                "state_bytes": self.jobs[0]["state_bytes"] if self.jobs else None,
                "bit_exact_vs_host": all(j["bit_exact_vs_host"] for j in self.jobs),
                "max_abs_diff_vs_host": max((j["max_abs_diff_vs_host"] for j in self.jobs), default=0.0),
                "emulation_s": round(sum(j["wall_s"] for j in self.jobs), 2), "sizes": self.firmware.sizes,
                "flags": self.firmware.flags}
