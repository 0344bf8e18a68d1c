"""
Cost on an EMULATED MICROCONTROLLER: per C artifact, the instructions one window (sequence) or one frame
(step) executes on the board's Cortex-M core - exact and repeatable, counted by qemu with -icount - an
ESTIMATED time at the board's clock, the stack it reached (painted and measured), and the flash and RAM
it needs; per .tflite artifact, whether TFLite Micro runs it and the arena it needs.

    report = mcu_bench_run("runs/gru", "nucleo-l476rg")     # -> RUN/bench-nucleo-l476rg-emulated.json
    edgernn bench runs/gru --target cortex-m4 --emulate

QEMU is not cycle-accurate: a count is instructions, not cycles. The estimate assumes one instruction
per cycle (CPI 1.0, stated in every table): real Cortex-M4 loads, taken branches and divides take 2-12
cycles, so real times are longer; a dual-issue Cortex-M7 can be shorter. Never compare an estimate with
a measured time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.devices.mcu.cores import check_tools, qemu_version
from edgernn.devices.mcu.cores import core as get_core
from edgernn.mcu_parity import c_artifacts, fit_problem, footprint, mcu_board, tflm_status
from edgernn.rundir import load_run
from edgernn.runtimes.files import atomic_write_json, cache_dir

CPI = 1.0
ESTIMATE_NOTE = ("ESTIMATE: instructions counted by qemu (-icount) / board clock, assuming 1 instruction per "
                 "cycle; not a measurement (loads, branches and divides take several cycles on a Cortex-M4)")


HOST_NOTE = "x86 host timing of TFLite Micro's interpreter (the MCU's kernels on this CPU): not MCU time"


def tflm_rows(paths: list, X: np.ndarray, reps: int = 50) -> list:
    """Per .tflite artifact: does TFLite Micro run it (with its reason if not) and the arena it needs - from
    its manifest when export checked it, else checked now - and, when it runs, the interpreter's median time
    per window / frame on THIS machine (HOST_NOTE: never an MCU figure)."""
    import time

    from edgernn.errors import MissingDependencyError
    from edgernn.runtimes import load
    from edgernn.runtimes.manifest import read_manifest
    rows = []
    for p in [p for p in paths if Path(p).suffix == ".tflite"]:
        manifest = read_manifest(p)
        try:
            res = tflm_status(p, manifest)
        except MissingDependencyError as exc:  # says so in the row, it does not stop the bench
            res = {"runs": None, "reason": str(exc).splitlines()[0], "arena_bytes": None}
        row = {"artifact": Path(p).name, **res}
        if res.get("runs"):
            s = load(p, runtime="tflm")
            call, arg = (s.predict, (X[0],)) if manifest["mode"] == "sequence" else (s.stream().step, (X[0, 0],))
            call(*arg)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                call(*arg)
                times.append(time.perf_counter() - t0)
            row["host_us_p50"] = round(float(np.median(times)) * 1e6, 1)
            row["host_us_per"] = "window" if manifest["mode"] == "sequence" else "frame"
        rows.append(row)
    return rows


def mcu_bench_run(run_dir, target, artifacts=None, stream_frames: int = 1000, windows: int = 20,
                  progress: bool = True, write: bool = True, timeout: float = 600.0) -> dict:
    """Instructions, estimated time, stack, flash and RAM of every C artifact on the emulated board."""
    from edgernn.devices.mcu.session import McuSession
    from edgernn.parity import find_artifacts
    from edgernn.progress import progressbar
    from edgernn.runtimes.manifest import read_manifest

    board = mcu_board(target)
    tools = check_tools()
    core = get_core(board.core)
    run = load_run(run_dir)
    paths, _ = c_artifacts(run, artifacts)
    X = run.data()["X_test"]
    T = X.shape[1]
    frames = np.concatenate([X[i % len(X)] for i in range(-(-stream_frames // T))])[:stream_frames]
    rows = []
    with progressbar(paths, label=f"bench {run.path.name} on {board.name} (emulated)", enabled=progress,
                     show=lambda p: p.name if p else "") as bar:
        for p in bar:
            manifest = read_manifest(p)
            run.check_artifact(p, manifest)
            s = McuSession(p, manifest, core, board.name, cache_dir("mcu"), timeout=timeout)
            if manifest["mode"] == "sequence":
                s.predict(X[:windows])
                unit = "window"
            else:
                s.stream_outputs(frames, [0])
                unit = "frame"
            job = s.jobs[-1]
            summ = s.summary()
            fp = footprint(summ["sizes"], summ["stack_bytes"], summ["state_bytes"])
            per = job["instructions_per_call"]
            why = fit_problem(board, fp)
            rows.append({"artifact": p.name, "format": "c", "precision": manifest["precision"],
                         "mode": manifest["mode"], "sha256": manifest["sha256"], "per": unit,
                         "calls": job["calls"], "instructions": per,
                         "instructions_min": job["instructions_per_call_min"],
                         "instructions_max": job["instructions_per_call_max"],
                         "estimated_us": round(per * CPI / board.clock_mhz, 2),
                         "bit_exact_vs_host": job["bit_exact_vs_host"], "emulation_s": job["wall_s"],
                         "fits": why is None, "fit_problem": why, **fp})
    ratios = {}
    for mode in ("sequence", "step"):
        by = {r["precision"]: r["instructions"] for r in rows if r["mode"] == mode}
        if "float" in by and "int8" in by:
            ratios[mode] = round(by["int8"] / by["float"], 3)
    report = {"kind": "mcu", "target": f"{board.name}-emulated", "model": run.identity,
              "board": {k: v for k, v in board.to_dict().items() if k in ("name", "description", "cpu", "core",
                                                                          "flash_kb", "ram_kb", "clock_mhz")},
              "emulator": {"qemu_version": qemu_version(tools["qemu"]), "machine": core.machine,
                           "icount": "shift=0 (1 instruction = 1 ns of virtual time)"},
              "cpi_assumption": CPI, "estimate_note": ESTIMATE_NOTE, "stream_frames": int(len(frames)),
              "windows": int(min(windows, len(X))), "artifacts": rows, "int8_vs_float_instructions": ratios,
              "tflm": tflm_rows(find_artifacts(run) if not artifacts else artifacts, X), "tflm_host_note": HOST_NOTE}
    if write:
        atomic_write_json(run.path / f"bench-{report['target']}.json", report)
    return report


def format_table(report: dict, tflm: bool = True) -> str:
    b = report["board"]
    lines = [f"{b['name']} ({b['cpu']}; {b['flash_kb']} KB flash, {b['ram_kb']} KB RAM), emulated: qemu "
             f"{report['emulator']['qemu_version']} -M {report['emulator']['machine']}",
             f"{'artifact':<20} {'per':<6} {'instructions':>12} {'est. us*':>9} {'stack B':>7} {'flash B':>8} "
             f"{'RAM B':>7}  fits"]
    for r in report["artifacts"]:
        lines.append(f"{r['artifact']:<20} {r['per']:<6} {r['instructions']:>12,.0f} {r['estimated_us']:>9,.1f} "
                     f"{r['stack_bytes'] or 0:>7,} {r['flash_bytes']:>8,} {r['ram_bytes']:>7,}  "
                     f"{'yes' if r['fits'] else 'NO: ' + r['fit_problem']}")
    for mode, ratio in report["int8_vs_float_instructions"].items():
        lines.append(f"int8 / float instructions ({mode}): {ratio:.2f}")
    lines.append(f"* {report['estimate_note']}")
    if tflm and report.get("tflm"):
        lines.append(f"TFLite Micro ({report.get('tflm_host_note', 'x86 host timing')}):")
        for t in report["tflm"]:
            ok = "runs" if t["runs"] else f"does not run: {t['reason']}"
            arena = f", arena {t['arena_bytes']:,} B" if t.get("arena_bytes") else ""
            host = f", {t['host_us_p50']:,.1f} us per {t['host_us_per']} (x86 host)" if t.get("host_us_p50") else ""
            lines.append(f"  {t['artifact']:<26} {ok}{arena}{host}")
    return "\n".join(lines)
