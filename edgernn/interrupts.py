"""
SIGTERM handled like Ctrl-C: what `timeout`, a cancelled CI job, `kill` and systemd send.

    install_sigterm()                         # the CLI does this once: SIGTERM raises Terminated
    subprocess.run(cmd, preexec_fn=die_with_parent)   # a child that cannot outlive us

`Terminated` is a KeyboardInterrupt, so every cleanup that already runs on Ctrl-C (the TFLite converter
worker killed by subprocess.run, temporary directories removed, a remote worker stopped, a half-trained
run directory removed) runs on SIGTERM too; the CLI exits 143 (128 + SIGTERM) instead of 130.
`die_with_parent` covers the one case no handler can: the parent killed with SIGKILL (Linux only).

    with InterruptGate() as gate:             # Ctrl-C/SIGTERM raise only inside gate.open() sections;
        with gate.open(): work()              # elsewhere (bookkeeping that must not be cut in half)
        if gate.pending: ...                  # they are remembered, to be raised at a safe point
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager


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


class InterruptGate:
    """Ctrl-C and SIGTERM raise (KeyboardInterrupt / Terminated) only inside `with gate.open():`; outside,
    e.g. while a database records a result, they are kept in `gate.pending` for the caller to act on at a
    safe point. Only signals that already raise (a Python handler is installed) are gated: an ignored
    SIGINT stays ignored and a default SIGTERM still kills. Main thread only (elsewhere a no-op)."""

    def __init__(self):
        self.pending: KeyboardInterrupt | None = None
        self._open = False
        self._old = {}

    def __enter__(self):
        for sig, exc in ((signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)):
            try:
                old = signal.getsignal(sig)
                if callable(old):
                    signal.signal(sig, self._handler(exc))
                    self._old[sig] = old
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc_info):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        return False

    def _handler(self, exc):
        def handle(signum, frame):
            if self.pending is None:
                self.pending = exc()
            if self._open:
                raise self.pending
        return handle

    @contextmanager
    def open(self):
        """A section that may be cut: a signal that arrived before it raises at its start."""
        if self.pending is not None:
            raise self.pending
        self._open = True
        try:
            yield
        finally:
            self._open = False
