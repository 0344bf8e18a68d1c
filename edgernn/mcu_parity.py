"""
Parity on an EMULATED MICROCONTROLLER: every C artifact cross-compiled bare metal for the board's Cortex-M
core and run under qemu-system-arm (edgernn.devices.mcu) on the held-out test windows and, for step
artifacts, the 20,000-frame soak; gated against the float model like any runtime, and compared with the
same harness built for this machine: an int8 artifact must be bit-exact with it, a float one within the
float gate. An artifact that does not fit the board's flash or RAM is refused with the numbers.

    report = mcu_parity_run("runs/gru", "nucleo-l476rg")      # -> RUN/parity-nucleo-l476rg-emulated.json
    edgernn parity runs/gru --target cortex-m4 --emulate       # the same, from the CLI

The .tflite artifacts TFLite Micro runs go through the same gate on its interpreter (runtime tflm, built
for this machine: a firmware links the same kernels); the ones it refuses are listed with its reason. ONNX
and ORT have no microcontroller runtime.
"""

from __future__ import annotations

import platform
from pathlib import Path

from edgernn.devices.mcu.cores import check_tools, qemu_version
from edgernn.devices.mcu.cores import core as get_core
from edgernn.errors import ConfigError
from edgernn.gates import Gates
from edgernn.parity import check_parity, find_artifacts
from edgernn.rundir import load_run
from edgernn.runtimes.files import atomic_write_json, cache_dir

IO_NOTE = "RAM = the model's static data + its state struct + the deepest stack its call reached (measured)"


def mcu_board(target):
    """The board profile of an MCU target (a profile with transport "mcu"), else a one-line ConfigError."""
    from edgernn.devices.boards import list_boards, load_board

    board = load_board(target)
    if board.transport != "mcu":
        mcus = ", ".join(b.name for b in list_boards() if b.transport == "mcu")
        raise ConfigError(f"{board.name} is not a microcontroller profile; MCU targets: {mcus}")
    return board


def c_artifacts(run, artifacts=None) -> tuple[list, list]:
    """(C artifacts, [{"artifact", "why"}] for the others: they do not run bare metal here)."""
    paths = [Path(p) for p in artifacts] if artifacts else find_artifacts(run)
    c = [p for p in paths if p.suffix == ".h"]
    other = [{"artifact": p.name, "why": "TFLite Micro runs it (runtime tflm)" if p.suffix == ".tflite"
              else "no microcontroller runtime for this format"} for p in paths if p.suffix != ".h"]
    if not c:
        raise ConfigError(f"no C artifacts in {run.artifacts_dir}: a microcontroller runs C; export them with "
                          f"`edgernn export {run.path} --format c --precision float,int8 --streaming`")
    return c, other


def footprint(sizes: dict, stack: int | None, state: int | None) -> dict:
    """Flash and RAM the model needs on the board, from the model's own object (apart from newlib)."""
    m = sizes["model"]
    flash = m["code"] + m["const"] + m["data"]
    ram = m["data"] + m["bss"] + int(state or 0) + int(stack or 0)
    return {"flash_bytes": flash, "ram_bytes": ram, **{f"model_{k}": v for k, v in m.items()},
            "state_bytes": state, "stack_bytes": stack, "firmware": sizes["firmware"]}


def fit_problem(board, fp: dict) -> str | None:
    """Why the artifact does not fit the board, or None."""
    flash, ram = board.flash_kb * 1024, board.ram_kb * 1024
    if fp["flash_bytes"] > flash:
        return f"needs {fp['flash_bytes']:,} B of flash, {board.name} has {flash:,} B"
    if fp["stack_bytes"] is not None and fp["ram_bytes"] > ram:
        return f"needs {fp['ram_bytes']:,} B of RAM ({IO_NOTE}), {board.name} has {ram:,} B"
    return None


def tflm_status(path, manifest: dict) -> dict:
    """{"runs", "reason", "arena_bytes"} of a .tflite on TFLite Micro: from its manifest when export checked it
    (edgernn.export.tflite.convert.tflm_fields), else checked now (an artifact exported before that)."""
    known = manifest.get("tflm") or {}
    if known.get("checked"):
        return {k: known.get(k) for k in ("runs", "reason", "arena_bytes")}
    from edgernn.runtimes.tflm_backend import tflm_check

    return tflm_check(path)


def _tflm_runnable(run, artifacts, other: list) -> tuple[list, list]:
    """(.tflite artifacts TFLite Micro runs, `other` with the refused ones' reasons in place)."""
    from edgernn.runtimes.manifest import read_manifest

    paths = [Path(p) for p in artifacts] if artifacts else find_artifacts(run)
    runs, out = [], []
    for o in other:
        p = next(q for q in paths if q.name == o["artifact"])
        if p.suffix != ".tflite":
            out.append(o)
            continue
        known = tflm_status(p, read_manifest(p))
        if known.get("runs"):
            runs.append(p)
        else:
            out.append({"artifact": p.name, "why": f"TFLite Micro refuses it ({known.get('reason')})"})
    return runs, out


def mcu_parity_run(run_dir, target, gates: Gates | None = None, artifacts=None, progress: bool = True,
                   write: bool = True, timeout: float = 600.0) -> dict:
    """Gate every C artifact on the emulated board; writes RUN_DIR/parity-<board>-emulated.json."""
    from edgernn.devices.mcu.firmware import build
    from edgernn.devices.mcu.session import McuSession
    from edgernn.runtimes.manifest import read_manifest

    board = mcu_board(target)
    tools = check_tools()
    core = get_core(board.core)
    run = load_run(run_dir)
    paths, other = c_artifacts(run, artifacts)
    work = cache_dir("mcu")
    refused, fit_paths = [], []
    for p in paths:  # flash first: an artifact that cannot be flashed is not run
        manifest = read_manifest(p)
        run.check_artifact(p, manifest)
        fp = footprint(build(p, manifest, core, work).sizes, None, None)
        why = fit_problem(board, fp)
        if why:
            refused.append({"artifact": p.name, "why": why, **fp})
        else:
            fit_paths.append(p)

    # .tflite artifacts: on TFLite Micro's interpreter (built for this machine), the ones it runs
    tflm_paths, other = _tflm_runnable(run, artifacts, other)

    def session_for(path, manifest):
        if path.suffix == ".tflite":
            from edgernn.runtimes import load

            return load(path, runtime="tflm")
        return McuSession(path, manifest, core, board.name, work, timeout=timeout)

    todo = fit_paths + tflm_paths
    report = check_parity(run.path, artifacts=todo, gates=gates, write=False, progress=progress,
                          session_for=session_for) if todo else {"artifacts": [], "passed": True, "failed": []}
    for row in report["artifacts"]:
        if row["artifact"].endswith(".tflite"):
            row["runtime"] = "tflm"
            row["note"] = "TFLite Micro's interpreter built for this machine (x86), as a firmware would link it"
            continue
        dev = row.pop("device")
        fp = footprint(dev["sizes"], dev["stack_bytes"], dev["state_bytes"])
        row["mcu"] = {k: v for k, v in dev.items() if k != "sizes"} | {"footprint": fp}
        row["vs_host"] = {"bit_exact": dev["bit_exact_vs_host"], "max_abs_diff": dev["max_abs_diff_vs_host"]}
        rules = row.setdefault("failed_rules", [])
        if row["precision"] != "float" and not dev["bit_exact_vs_host"]:
            rules.append(f"int8 outputs on {core.name} differ from this machine's (max|diff| "
                         f"{dev['max_abs_diff_vs_host']:.3g}): integer arithmetic must be bit-exact")
        why = fit_problem(board, fp)
        if why:
            rules.append(f"does not fit {board.name}: {why}")
        row["passed"] = row["passed"] and not rules
    for r in refused:
        report["artifacts"].append({"artifact": r["artifact"], "passed": False, "refused": r["why"],
                                    "failed_rules": [f"does not fit {board.name}: {r['why']}"],
                                    "mcu": {"footprint": {k: v for k, v in r.items() if k not in ("artifact", "why")}}})
    report["passed"] = all(r["passed"] for r in report["artifacts"])
    report["failed"] = [r["artifact"] for r in report["artifacts"] if not r["passed"]]
    report["not_on_mcu"] = other
    report["target"] = f"{board.name}-emulated"
    report["device"] = {"target": board.name, "description": board.description, "core": core.name,
                        "qemu_machine": core.machine, "qemu_version": qemu_version(tools["qemu"]),
                        "flash_kb": board.flash_kb, "ram_kb": board.ram_kb, "clock_mhz": board.clock_mhz,
                        "emulated": True}
    report["host"] = {"machine": platform.machine()}
    if write:
        atomic_write_json(run.path / f"parity-{report['target']}.json", report)
    return report


def format_table(report: dict) -> str:
    dev = report["device"]
    task = report.get("task", "classify")
    metric = "rmse" if task == "forecast" else "accuracy"
    lines = [f"parity on an emulated {dev['target']} ({dev['core']}, qemu {dev['qemu_version']} "
             f"-M {dev['qemu_machine']}; {dev['flash_kb']} KB flash, {dev['ram_kb']} KB RAM)"
             " vs the float model and vs this machine's build",
             f"{'artifact':<22} {metric:>8} {'agree':>6} {'max|diff|':>10} {'vs host':>10} {'soak':>5} "
             f"{'flash B':>8} {'RAM B':>7} {'stack B':>7}  gate   (vs host: the C build for this machine; tflm = "
             "TFLite Micro's interpreter)"]
    for r in report["artifacts"]:
        fp = (r.get("mcu") or {}).get("footprint") or {}
        if r.get("refused"):
            lines.append(f"{r['artifact']:<22} REFUSED: {r['refused']}")
            continue
        vh = r.get("vs_host")
        host = "tflm" if vh is None else "bit-exact" if vh["bit_exact"] else f"{vh['max_abs_diff']:.2e}"
        agree = "-" if r.get("agreement") is None else f"{r['agreement']:.3f}"
        soak = "-" if "long_stream" not in r else ("ok" if r["long_stream"]["passed"] else "FAIL")
        sizes = (f"{fp['flash_bytes']:>8,} {fp['ram_bytes']:>7,} {fp.get('stack_bytes') or 0:>7,}" if fp
                 else f"{'-':>8} {'-':>7} {'-':>7}")
        lines.append(f"{r['artifact']:<22} {r[metric]:>8.4f} {agree:>6} {r['max_abs_diff']:>10.2e} {host:>10} "
                     f"{soak:>5} {sizes}  {'PASS' if r['passed'] else 'FAIL'}")
        for rule in r.get("failed_rules") or []:
            lines.append(f"    {rule}")
    by_why = {}
    for o in report.get("not_on_mcu") or []:
        by_why.setdefault(o["why"], []).append(o["artifact"])
    for why, names in by_why.items():
        lines.append(f"not run - {why}: {', '.join(names)}")
    return "\n".join(lines)
