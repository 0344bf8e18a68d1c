"""
SIGTERM handled like Ctrl-C: what `timeout`, a cancelled CI job, `kill` and systemd send.

    install_sigterm()                         # the CLI does this once: SIGTERM raises Terminated
    subprocess.run(cmd, preexec_fn=die_with_parent)   # a child that cannot outlive us

`Terminated` is a KeyboardInterrupt, so every cleanup that already runs on Ctrl-C (the TFLite converter
worker killed by subprocess.run, temporary directories removed, a remote worker stopped, a half-trained
run directory removed) runs on SIGTERM too; the CLI exits 143 (128 + SIGTERM) instead of 130.
`die_with_parent` covers the one case no handler can: the parent killed with SIGKILL (Linux only).
"""

from __future__ import annotations

import signal
import sys


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


def _raise_terminated(signum, frame):
    raise Terminated()


def install_sigterm() -> None:
    """Make SIGTERM raise Terminated in the main thread (no-op elsewhere, e.g. in a worker thread)."""
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        pass


def die_with_parent() -> None:
    """preexec_fn for child processes: the kernel sends the child SIGKILL when its parent dies (Linux
    prctl PR_SET_PDEATHSIG); elsewhere a no-op. Runs in the child between fork and exec."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
