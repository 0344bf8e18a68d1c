"""
Parity ON A DEVICE (a Pi over SSH, an emulated Pi): every artifact's outputs computed there, compared
with the float PyTorch model (the usual gate) AND with the same artifact's outputs on this machine, so
a difference that comes from the device's architecture (ARM kernels: NEON, XNNPACK, ruy, KleidiAI) is
told apart from one the export made.

    report = device_parity_run("runs/gru", target="rpi4", emulate=True)     # runs the artifacts there
    edgernn parity runs/gru --target rpi4 --emulate                          # the same, from the CLI
    edgernn parity runs/gru --target rpi4 --host pi@raspberrypi.local        # a real Pi

Per artifact: the gate against float (edgernn.parity: accuracy/RMSE, agreement, max|diff|), plus
"vs_host": max and mean |device - this machine| and top-1 agreement between the two. On an emulated
board, an artifact that fails its gate is run again on a second core (SECOND_CORE: another ARM
generation) before anyone blames the model: failing on both points at the artifact, passing on the
second at the emulator (check on a real board). Writes RUN_DIR/parity-<target>.json; `bench` on an ssh
target records the same report as "device_parity" in its bench JSON.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np

from edgernn.devices.emulated_pi import host_cpu
from edgernn.devices.open import check_emulate, open_target
from edgernn.errors import ConfigError
from edgernn.gates import Gates, run_artifact
from edgernn.parity import check_parity, find_artifacts
from edgernn.rundir import Run, load_run
from edgernn.runtimes.files import atomic_write_json


def host_outputs(run: Run, paths: list, X: np.ndarray, threads: int = 1) -> dict:
    """name -> outputs of each artifact on THIS machine (the same raw windows, the same way as parity)."""
    from edgernn.runtimes import load
    from edgernn.runtimes.manifest import read_manifest

    out = {}
    for p in paths:
        session = load(p, threads=threads)
        out[Path(p).name], _ = run_artifact(session, X, read_manifest(p)["mode"], run.task)
    return out


def vs_host(device: np.ndarray, host: np.ndarray, task: str) -> dict:
    diff = np.abs(np.asarray(device, np.float32) - np.asarray(host, np.float32))
    row = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "agreement": None}
    if task != "forecast":
        row["agreement"] = float((device.argmax(-1) == host.argmax(-1)).mean())
    return row


def device_parity(run_dir, paths: list, device_outputs: dict, gates: Gates | None = None, threads: int = 1,
                  device: dict | None = None) -> dict:
    """The parity report of outputs computed on a device (check_parity with outputs=...), each row with
    its comparison to this machine ("vs_host"). `device` describes where they ran (fingerprint, emulation)."""
    run = load_run(run_dir)
    paths = [Path(p) for p in paths if Path(p).name in device_outputs]
    report = check_parity(run.path, artifacts=paths, gates=gates, threads=threads, write=False,
                          outputs=device_outputs)
    host = host_outputs(run, paths, run.data()["X_test"], threads=threads)
    for row in report["artifacts"]:
        row["vs_host"] = vs_host(device_outputs[row["artifact"]], host[row["artifact"]], run.task)
    report["host"] = {"machine": platform.machine(), "processor": host_cpu()}
    report["device"] = device or {}
    return report


def collect_outputs(tgt, paths: list, X: np.ndarray, threads: int = 1, progress: bool = True) -> dict:
    """Run each artifact once on the target with the test windows as parity input (no timing to speak
    of: 1 run, no warm-up, no stream). Returns name -> outputs."""
    from edgernn.devices.targets import BenchJob

    with tempfile.TemporaryDirectory(prefix="edgernn-dparity-") as tmp:
        inp = Path(tmp) / "windows.npy"
        np.save(inp, X[:1].astype(np.float32))
        pin = Path(tmp) / "parity_windows.npy"
        np.save(pin, X.astype(np.float32))
        jobs = [BenchJob(artifact=Path(p), input=inp, runs=1, warmup=0, threads=threads, stream_frames=0,
                         parity_input=pin) for p in paths]
        results = tgt.run(jobs, progress=progress)
    return {Path(p).name: r["parity_output"] for p, r in zip(paths, results)}


def device_parity_run(run_dir, target: str, host: str | None = None, emulate: bool = False,
                      gates: Gates | None = None, artifacts=None, threads: int = 1, progress: bool = True,
                      target_opts: dict | None = None, write: bool = True) -> dict:
    """Run every artifact on the target, gate its outputs, compare them with this machine's; on an
    emulated board re-check each failure on a second core. Writes RUN_DIR/parity-<target>.json."""
    from edgernn.devices.boards import SECOND_CORE, load_board
    from edgernn.runtimes.manifest import read_manifest

    run = load_run(run_dir)
    board = load_board(target)
    if emulate:
        check_emulate(board, host, target_opts)
    if board.transport == "local":
        raise ConfigError(f"{board.name} is this machine: run `edgernn parity {run.path}` without --target")
    paths = [Path(p) for p in artifacts] if artifacts else find_artifacts(run)
    for p in paths:
        run.check_artifact(p, read_manifest(p))
    X = run.data()["X_test"]
    with open_target(board, host=host, emulate=emulate, progress=progress, target_opts=target_opts) as (tgt, emu):
        outputs = collect_outputs(tgt, paths, X, threads=threads, progress=progress)
        fp = tgt.fingerprint()
        device = {"target": board.name, "cpu_model": fp.get("cpu_model"), "arch": fp.get("arch"),
                  "runtimes": fp.get("versions") or fp.get("packages")}
        if emu is not None:
            device.update(emu.describe())
        report = device_parity(run.path, paths, outputs, gates=gates, threads=threads, device=device)
        failed = [p for p in paths if p.name in report["failed"]]
        if emu is not None and failed:
            second = SECOND_CORE[emu.cpu]
            tgt.remote_env = emu.use_core(second)
            try:
                again = collect_outputs(tgt, failed, X, threads=threads, progress=progress)
            finally:
                tgt.remote_env = {}
                emu.use_core(emu.cpu)
            recheck = device_parity(run.path, failed, again, gates=gates, threads=threads)
            by_name = {r["artifact"]: r for r in recheck["artifacts"]}
            for row in report["artifacts"]:
                r2 = by_name.get(row["artifact"])
                if r2 is None:
                    continue
                row["recheck"] = {"qemu_cpu": second, "passed": r2["passed"], "max_abs_diff": r2["max_abs_diff"],
                                  "agreement": r2["agreement"],
                                  "verdict": (f"fails on {emu.cpu} and {second}: the artifact, not the emulator"
                                              if not r2["passed"] else
                                              f"passes on {second}, fails on {emu.cpu}: suspect qemu's {emu.cpu} "
                                              "emulation; check on a real board before blaming the model")}
    name = board.name + ("-emulated" if emu is not None else "")
    report["target"] = name
    if write:
        atomic_write_json(run.path / f"parity-{name}.json", report)
    return report


def format_table(report: dict) -> str:
    """The gate vs float and the difference from this machine, per artifact."""
    task = report["task"]
    metric = "rmse" if task == "forecast" else "accuracy"
    dev = report.get("device") or {}
    where = f"{dev.get('target', '?')} ({dev.get('cpu_model') or '?'}, {dev.get('arch') or '?'}"
    if dev.get("emulated"):
        where += f", emulated: qemu {dev.get('qemu_version')} -cpu {dev.get('qemu_cpu')}"
    where += ")"
    host = report.get("host") or {}
    lines = [f"parity on {where} vs the float model and vs this machine ({host.get('processor', '?')}, "
             f"{host.get('machine', '?')}); {report['n_test']} held-out windows, float {metric} "
             f"{report['reference'][metric]:.4f}",
             f"{'artifact':<26} {'runtime':<11} {metric:>8} {'agree':>6} {'max|diff|':>10} "
             f"{'vs host max':>11} {'host agree':>10}  {'gate':<4}"]
    notes = []
    for r in report["artifacts"]:
        h = r.get("vs_host") or {}
        agree = "-" if r.get("agreement") is None else f"{r['agreement']:.3f}"
        hagree = "-" if h.get("agreement") is None else f"{h['agreement']:.3f}"
        lines.append(f"{r['artifact']:<26} {r['runtime']:<11} {r[metric]:>8.4f} {agree:>6} "
                     f"{r['max_abs_diff']:>10.2e} {h.get('max_abs_diff', float('nan')):>11.2e} {hagree:>10}  "
                     f"{'PASS' if r['passed'] else 'FAIL'}")
        if r.get("recheck"):
            notes.append(f"  {r['artifact']}: {r['recheck']['verdict']}")
    if notes:
        lines += ["re-checked on a second core:"] + notes
    return "\n".join(lines)
