"""
Opening a device: the board's target (local, ssh, adb), or with emulate=True an emulated board started for
the occasion and torn down after. `bench` and `parity --target` open their device here.

    with open_target(load_board("rpi4"), emulate=True) as (target, emulator):
        results = target.run(jobs)
"""

from __future__ import annotations

import contextlib

from edgernn.errors import ConfigError


def check_emulate(board, host=None, target_opts=None) -> None:
    """Usage errors of --emulate, before any work: a board that cannot be emulated, options it sets itself."""
    from edgernn.devices.emulated_pi import board_core, require_root

    board_core(board)
    require_root()
    if host:
        raise ConfigError(f"--emulate starts its own emulated {board.name} on 127.0.0.1: drop --host {host}")
    clash = sorted(set(target_opts or {}) & {"remote_python", "port", "identity", "config"})
    if clash:
        raise ConfigError(f"--emulate sets {', '.join('--' + k.replace('_', '-') for k in clash)} itself; "
                          "drop the option")


@contextlib.contextmanager
def open_target(board, host=None, tool=None, emulate: bool = False, progress: bool = True, target_opts=None):
    """(target, emulator or None): the board's target, or with emulate=True an emulated one (an arm64
    rootfs under qemu with its own sshd, torn down when the block ends)."""
    from edgernn.devices.targets import get_target

    opts = dict(target_opts or {})
    if not emulate:
        yield get_target(board, host=host, tool=tool, **opts), None
        return
    check_emulate(board, host, opts)
    from edgernn.devices.emulated_pi import Emulator

    with Emulator(board, progress=progress) as emu:
        yield get_target(board, host=emu.host, **{**emu.target_opts(), **opts}), emu
