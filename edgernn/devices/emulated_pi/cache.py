"""
The emulator cache (CACHE = $EDGERNN_CACHE_DIR/emulate, else ~/.cache/edgernn/emulate): where the arm64
rootfs lives, the exclusive lock every build and session holds, recovery from a run killed with SIGKILL,
and `edgernn emulate status | clean`.

    with cache_lock() as root:        # one build or emulated session at a time
        recover(root)                 # what a killed run left: processes, mounts, half builds
    status()                          # each rootfs: size, build info (read_info), mounts, processes
    clean()                           # remove the whole cache (root only)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from pathlib import Path

from edgernn.devices.emulated_pi.host import QEMU, EmulationError, qemu_version
from edgernn.devices.emulated_pi.mounts import (
    dir_bytes,
    kill_processes_in,
    mounts_under,
    processes_in,
    safe_rmtree,
    unmount_all,
)

LOCK_WAIT_ENV = "EDGERNN_LOCK_WAIT"
LOCK_WAIT_S = 1800.0  # a cold rootfs build holds the lock ~6-12 minutes; an emulated session a few
SESSION_DIR = "run/edgernn-ssh"  # inside the rootfs: sshd config and throwaway keys of one session
INFO_FILE = "etc/edgernn-rootfs.json"  # inside the rootfs: what was built, written last


def cache_root() -> Path:
    """$EDGERNN_CACHE_DIR/emulate, else $XDG_CACHE_HOME/edgernn/emulate, else ~/.cache/edgernn/emulate."""
    from edgernn.runtimes.files import cache_dir

    return cache_dir("emulate")


def lock_wait() -> float:
    """Seconds a run waits for a busy emulator cache: $EDGERNN_LOCK_WAIT, else LOCK_WAIT_S."""
    raw = os.environ.get(LOCK_WAIT_ENV)
    try:
        return LOCK_WAIT_S if raw is None else max(0.0, float(raw))
    except ValueError:
        raise EmulationError(f"{LOCK_WAIT_ENV}={raw!r} is not a number of seconds") from None


@contextlib.contextmanager
def cache_lock(root: Path | None = None, wait: float | None = None):
    """Exclusive lock on the cache: one build or emulated session at a time. A second run waits for it
    (one line on stderr says for what) up to `wait` seconds (default $EDGERNN_LOCK_WAIT, else LOCK_WAIT_S),
    then fails with the holder's pid."""
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    wait = lock_wait() if wait is None else wait
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, said = time.monotonic() + wait, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                if time.monotonic() >= deadline:
                    raise EmulationError(f"another edgernn process (pid {holder}) is using the emulator cache {root}; "
                                         f"waited {wait:g} s for it (set {LOCK_WAIT_ENV} to wait longer)") from None
                if not said:
                    print(f"waiting for the emulator cache {root}: another edgernn process (pid {holder}) is using "
                          f"it (up to {wait:g} s)", file=sys.stderr, flush=True)
                    said = True
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield root
    finally:
        os.close(fd)


def recover(root: Path) -> list[str]:
    """Under the lock: what a run killed with SIGKILL left - processes in a rootfs, mounts, half builds.
    Returns a line per thing removed."""
    done = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not d.is_dir():
            continue
        rootfs = d / "rootfs" if d.name.startswith(".build-") else d
        n = kill_processes_in(rootfs)
        if n:
            done.append(f"killed {n} leftover process(es) in {rootfs}")
        left = mounts_under(d)
        if left:
            still = unmount_all(d)
            done.append(f"unmounted {len(left) - len(still)} leftover mount(s) under {d}")
        if d.name.startswith(".build-"):
            safe_rmtree(d)
            done.append(f"removed the unfinished build {d}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(d / SESSION_DIR)
    return done


def read_info(rootfs: Path) -> dict | None:
    """The build info of a complete rootfs; None when it is missing or unfinished."""
    try:
        return json.loads((rootfs / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None


def status() -> dict:
    """What the cache holds: each rootfs with its size, build info and anything mounted under it."""
    root = cache_root()
    entries = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.is_dir():
            entries.append({"path": str(d), "complete": not d.name.startswith(".build-"),
                            "bytes": dir_bytes(d), "info": read_info(d if not d.name.startswith(".build-")
                                                                      else d / "rootfs"),
                            "mounted": mounts_under(d), "processes": len(processes_in(d))})
    return {"cache": str(root), "rootfs": entries, "bytes": sum(e["bytes"] for e in entries),
            "qemu": shutil.which(QEMU) and qemu_version()}


def clean() -> list[str]:
    """Remove the whole emulator cache (after unmounting and killing what a killed run left)."""
    root = cache_root()
    if not root.exists():
        return []
    if os.geteuid() != 0:
        raise EmulationError(f"removing {root} needs root (the rootfs files belong to root): sudo edgernn "
                             "emulate clean")
    with cache_lock(root):
        recover(root)
        removed = [str(d) for d in sorted(root.iterdir()) if d.is_dir()]
        for d in removed:
            safe_rmtree(d)
    with contextlib.suppress(OSError):
        (root / ".lock").unlink()
        root.rmdir()
    return removed
