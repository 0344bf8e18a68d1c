"""
An emulated Raspberry Pi: a cached arm64 Debian rootfs with its own python3, numpy, onnxruntime and
ai-edge-litert, run under qemu user emulation, with its own sshd on 127.0.0.1 - so the normal SSH
target (push, fingerprint, bench, on-device parity, pull, cleanup) runs real aarch64 code here.

    with Emulator(load_board("rpi4")) as emu:          # builds or reuses the rootfs, starts sshd
        tgt = get_target(board, host=emu.host, **emu.target_opts())
        tgt.run(jobs)
    # sshd stopped, every process in the rootfs killed, everything unmounted - on every exit path

    edgernn bench RUN --target rpi4 --emulate
    edgernn emulate status | build --target rpi4 | clean

One file per job (this package holds only what is Pi-specific: Linux userland under qemu-user; a
bare-metal Cortex-M board under qemu-system-arm is a different kind of emulated device and gets a
sibling package of its own under edgernn/devices/):
    host.py      root, host tools via apt, binfmt_misc, the Debian mirror; EmulationError
    mounts.py    mounts and processes inside a rootfs; removal that never deletes through a mount
    cache.py     the cache root, its lock, recovery after a killed run, status, clean, rootfs info
    rootfs.py    what the rootfs holds (requirements, name), the debootstrap build, pip into its venv
    emulator.py  the Emulator context manager: mounts, cpuinfo, sshd, teardown

What it does (needs root: binfmt_misc, chroot and mounts):
  1. host tools: qemu-user-static, binfmt-support, debootstrap (installed with apt-get when missing and
     we are root on Debian/Ubuntu), binfmt_misc mounted and the qemu-aarch64 handler enabled.
  2. rootfs (once; CACHE/debian-bookworm-arm64-<hash>): debootstrap --arch=arm64 from the Debian mirror
     this machine's apt already uses, the host's extra CA certificates, a venv at /opt/edgernn-venv with
     the board's runtimes at the versions installed HERE (so an ARM-vs-x86 difference is the architecture's,
     not a version's), binary wheels only (a package without an aarch64 wheel is named, never compiled).
     Built aside in CACHE/.build-*, renamed into place when complete: the cache is never half-built.
  3. each session: an exclusive lock on the cache; mounts proc, a Pi-like /proc/cpuinfo (qemu would show
     the host's x86 one, which makes onnxruntime and ai-edge-litert crash), sys, dev, dev/pts; throwaway
     host and client keys; the rootfs's own sshd on a free loopback port with SetEnv QEMU_CPU=<board core>.
  4. exit (also Ctrl-C, SIGTERM, errors): stop sshd, kill every process whose root is the rootfs, unmount
     in reverse order, remove the keys. A run killed with SIGKILL leaves mounts: the next run (or
     `edgernn emulate clean`) finds and removes them before doing anything else.

QEMU_CPU is always set to the board's core (board profile key qemu_cpu): qemu's default `max` CPU
advertises SVE/SME/i8mm and gives WRONG int8 results under qemu 7.2. Emulated timings are not Pi
timings: results are marked "emulated" and the report says so.

The names below are re-exported for callers; a test that monkeypatches one patches it in the module
that looks it up (e.g. edgernn.devices.emulated_pi.emulator.free_port).
"""

from __future__ import annotations

from edgernn.devices.emulated_pi.cache import SESSION_DIR, cache_lock, cache_root, clean, read_info, recover, status
from edgernn.devices.emulated_pi.emulator import Emulator, cpuinfo_text, free_port
from edgernn.devices.emulated_pi.host import (
    BINFMT_DIR,
    HOST_PACKAGES,
    MIRROR_ENV,
    QEMU,
    EmulationError,
    debian_mirror,
    ensure_host,
    host_cpu,
    qemu_version,
    require_root,
)
from edgernn.devices.emulated_pi.mounts import (
    dir_bytes,
    kill_processes_in,
    mounts_under,
    processes_in,
    safe_rmtree,
    unmount_all,
)
from edgernn.devices.emulated_pi.rootfs import (
    DEB_PACKAGES,
    MIN_FREE_BYTES,
    SUITE,
    VENV,
    board_core,
    build_rootfs,
    ensure_rootfs,
    pip_install,
    requirements,
    rootfs_name,
)
from edgernn.runtimes.files import CACHE_ENV

__all__ = ["BINFMT_DIR", "CACHE_ENV", "DEB_PACKAGES", "HOST_PACKAGES", "MIN_FREE_BYTES", "MIRROR_ENV", "QEMU",
           "SESSION_DIR", "SUITE", "VENV", "EmulationError", "Emulator", "board_core", "build_rootfs",
           "cache_lock", "cache_root", "clean", "cpuinfo_text", "debian_mirror", "dir_bytes", "ensure_host",
           "ensure_rootfs", "free_port", "host_cpu", "kill_processes_in", "mounts_under", "pip_install",
           "processes_in", "qemu_version", "read_info", "recover", "require_root", "requirements",
           "rootfs_name", "safe_rmtree", "status", "unmount_all"]
