"""
What is mounted and running inside a directory tree (a rootfs), and removing it without ever deleting
through a mount: an `rm -rf` through a bind-mounted /dev or /sys would delete the HOST's files.

    mounts_under(rootfs)        # mount points at or below it, deepest first
    unmount_all(rootfs)         # -> what is STILL mounted ([] on success)
    kill_processes_in(rootfs)   # every process whose root directory is the rootfs: TERM, then KILL
    safe_rmtree(rootfs)         # unmount first; refuses while anything stays mounted
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from edgernn.devices.emulated_pi.host import EmulationError


def mounts_under(path) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo), deepest first."""
    root = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].encode().decode("unicode_escape")  # \040 for a space, etc.
                if mp == root or mp.startswith(root + "/"):
                    found.append(mp)
    except OSError:
        return []
    return sorted(found, key=lambda m: (-m.count("/"), m))


def unmount_all(path) -> list[str]:
    """Unmount everything at or below `path`, deepest first (lazily when busy). Returns what is STILL
    mounted (empty on success)."""
    for _ in range(3):
        left = mounts_under(path)
        if not left:
            return []
        for mp in left:
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
    return mounts_under(path)


def safe_rmtree(path) -> None:
    """rm -rf that first unmounts everything below `path` and refuses if anything stays mounted (an
    rm -rf through a bind-mounted /dev or /sys would delete the HOST's files)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    left = unmount_all(path)
    if left:
        raise EmulationError(f"cannot remove {path}: still mounted: {', '.join(left)}; unmount by hand "
                             f"(umount -l {left[0]}) and re-run")
    shutil.rmtree(path)


def processes_in(rootfs) -> list[int]:
    """PIDs of processes whose root directory is the rootfs (its sshd, sessions and workers)."""
    root = os.path.realpath(rootfs)
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                if os.readlink(f"/proc/{d}/root") == root:
                    pids.append(int(d))
            except OSError:
                continue
    return pids


def kill_processes_in(rootfs, grace: float = 2.0) -> int:
    pids = processes_in(rootfs)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            with contextlib.suppress(OSError):
                os.kill(p, sig)
        deadline = time.time() + grace
        while time.time() < deadline and processes_in(rootfs):
            time.sleep(0.05)
        if not processes_in(rootfs):
            break
    return len(pids)


def dir_bytes(path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, f))
                total += st.st_blocks * 512
    return total
