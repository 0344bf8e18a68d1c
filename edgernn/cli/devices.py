"""
`edgernn boards` and `edgernn emulate`: the devices - board profiles, and the emulated Raspberry Pi.

    edgernn boards --json                    # packaged profiles and yours from $EDGERNN_BOARDS_DIR
    edgernn emulate status                   # the cached arm64 rootfs behind --emulate
    edgernn emulate build -t rpi4            # build it now (else the first --emulate does)

Each command parses its options, calls edgernn.devices and prints.
"""

from __future__ import annotations

from pathlib import Path

import click

from edgernn.cli.options import echo_json, handle_errors

# ----------------------------------------------------------------------------- boards


@click.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
@handle_errors
def boards_cmd(as_json):
    """List board profiles (packaged ones and yours from $EDGERNN_BOARDS_DIR)."""
    from dataclasses import asdict

    from edgernn.devices.boards import list_boards

    boards = list_boards()
    if as_json:
        echo_json([asdict(b) for b in boards])
        return
    click.echo(f"{'name':<14} {'arch':<8} {'cores':>5} {'RAM MB':>7} {'transport':<9} {'threads':>7}  cpu / runtimes")
    for b in boards:
        if b.transport == "mcu":
            continue
        click.echo(f"{b.name:<14} {b.arch:<8} {b.cores:>5} {b.ram_mb:>7} {b.transport:<9} {b.default_threads:>7}  "
                   f"{b.cpu} / {', '.join(b.runtimes)}")
    mcus = [b for b in boards if b.transport == "mcu"]
    if mcus:  # microcontrollers: C artifacts, emulated with --emulate (docs/mcu.md)
        click.echo(f"\n{'microcontroller':<16} {'core':<11} {'flash KB':>8} {'RAM KB':>7} {'MHz':>5}  board")
        for b in mcus:
            click.echo(f"{b.name:<16} {b.core:<11} {b.flash_kb:>8} {b.ram_kb:>7} {b.clock_mhz:>5g}  {b.description}")


# ----------------------------------------------------------------------------- emulate


@click.group("emulate")
def emulate_group():
    """The emulated Raspberry Pi behind `bench --emulate` and `parity --target ... --emulate`.

    \b
    An arm64 Debian (bookworm, as Raspberry Pi OS 12) with its own python3, numpy, onnxruntime and
    ai-edge-litert, run under qemu user emulation with the board's core (qemu_cpu in its profile),
    cached under ~/.cache/edgernn/emulate ($EDGERNN_CACHE_DIR/emulate). Needs root.
      edgernn emulate status          what the cache holds, its size, leftovers of a killed run
      edgernn emulate build -t rpi4   build the rootfs now (else the first --emulate does, ~6 min)
      edgernn emulate clean           remove the cache (unmounting anything a killed run left)
    """


@emulate_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def emulate_status_cmd(as_json):
    """Show the cached rootfs: path, size, python and runtime versions, leftovers."""
    from edgernn.devices.emulated_pi import status

    st = status()
    if as_json:
        echo_json(st)
        return
    click.echo(f"cache {st['cache']}: {st['bytes'] / 2 ** 20:.0f} MB; qemu {st['qemu'] or 'not installed'}")
    if not st["rootfs"]:
        click.echo("no rootfs yet: the first `edgernn bench RUN --target rpi4 --emulate` (or `edgernn emulate "
                   "build`) builds one")
    for e in st["rootfs"]:
        info = e["info"] or {}
        pk = ", ".join(f"{k} {v}" for k, v in (info.get("packages") or {}).items())
        state = "complete" if e["complete"] else "UNFINISHED build (removed by the next run or `emulate clean`)"
        click.echo(f"  {Path(e['path']).name}: {e['bytes'] / 2 ** 20:.0f} MB, {state}"
                   + (f", python {info.get('python')}, {pk}, built {info.get('built')} in {info.get('build_s')} s"
                      if info else ""))
        if e["mounted"] or e["processes"]:
            click.echo(f"    left by a killed run: {len(e['mounted'])} mount(s), {e['processes']} process(es); "
                       "the next --emulate run or `edgernn emulate clean` removes them")


@emulate_group.command("build")
@click.option("--target", "-t", default="rpi4", show_default=True, help="Board whose runtimes to install.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def emulate_build_cmd(target, quiet):
    """Build (or check) the rootfs now and start/stop its sshd once, so later runs start warm."""
    import subprocess
    import time

    from edgernn.devices.boards import load_board
    from edgernn.devices.emulated_pi import Emulator
    from edgernn.runtimes.registry import INSTALL

    board = load_board(target)
    modules = ", ".join(["numpy"] + [INSTALL[rt][2][0] for rt in board.runtimes if INSTALL[rt][2]])
    t0 = time.time()
    with Emulator(board, progress=not quiet) as emu:
        o = emu.target_opts()
        proc = subprocess.run(["ssh", "-F", o["config"], emu.host, f"uname -m && {o['remote_python']} -c "
                               f"'import {modules}'"], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            from edgernn.devices.emulated_pi import EmulationError

            raise EmulationError(f"the emulated {board.name} does not run its runtimes: "
                                 f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        info = emu.info
    click.echo(f"{'built' if emu.timings['built'] else 'reused'} {emu.rootfs} ({proc.stdout.strip()}, python "
               f"{info.get('python')}, {', '.join(f'{k} {v}' for k, v in (info.get('packages') or {}).items())}) "
               f"in {time.time() - t0:.0f} s")


@emulate_group.command("clean")
@handle_errors
def emulate_clean_cmd():
    """Remove the emulator cache (after unmounting and stopping anything a killed run left)."""
    from edgernn.devices.emulated_pi import cache_root, clean

    removed = clean()
    click.echo(f"removed {', '.join(removed)}" if removed else f"nothing to remove in {cache_root()}")
