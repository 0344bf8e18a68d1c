"""
This machine's side of the emulated Pi: root, the host tools (qemu-user-static, binfmt-support,
debootstrap; installed with apt-get when missing), the qemu-aarch64 binfmt_misc handler, the Debian
mirror apt already uses, running a host command, and EmulationError (what every step here raises).

    ensure_host()                     # root + tools + binfmt handler, or one EmulationError naming the fix
    mirror = debian_mirror()          # $EDGERNN_DEBIAN_MIRROR, else the Debian mirror in /etc/apt
    res = run_cmd(["mount", ...], "mounting proc")   # a missing program or timeout -> EmulationError
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from edgernn.devices.targets import last_line
from edgernn.errors import TargetError
from edgernn.interrupts import die_with_parent

HOST_PACKAGES = ("qemu-user-static", "binfmt-support", "debootstrap")
QEMU = "qemu-aarch64-static"
BINFMT_DIR = "/proc/sys/fs/binfmt_misc"
MIRROR_ENV = "EDGERNN_DEBIAN_MIRROR"


class EmulationError(TargetError):
    """The emulated target could not be set up (host tools, root, rootfs build, sshd)."""


def run_cmd(argv, what: str, timeout: float = 600, env=None, log=None) -> subprocess.CompletedProcess:
    """Run a host command (it dies with us); its output goes to `log` when given."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              preexec_fn=die_with_parent)
    except FileNotFoundError:
        raise EmulationError(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise EmulationError(f"{what} did not finish within {timeout:g} s") from None
    if log is not None:
        log.write(f"$ {' '.join(map(str, argv))}\n{proc.stdout}{proc.stderr}\n")
    return proc


def last_line_of(text: str) -> str:
    """The last meaningful line of a command's output, for an error message."""
    return last_line(text) or "no output"


@functools.lru_cache(maxsize=None)
def host_cpu() -> str:
    """This machine's CPU model (what the emulator runs on)."""
    import platform

    from edgernn.runtimes.fingerprint import parse_cpuinfo

    try:
        with open("/proc/cpuinfo") as f:
            return parse_cpuinfo(f.read()).get("cpu_model") or platform.machine()
    except OSError:
        return platform.machine()


@functools.lru_cache(maxsize=None)
def qemu_version() -> str:
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else "unknown"


def debian_mirror(apt_dir: str = "/etc/apt") -> str:
    """The Debian mirror this machine's apt uses ($EDGERNN_DEBIAN_MIRROR overrides): never hard-coded."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV].strip()
    uris = []
    for f in sorted(glob.glob(f"{apt_dir}/sources.list.d/*.sources")):
        with contextlib.suppress(OSError):
            for block in Path(f).read_text().split("\n\n"):
                fields = dict(ln.split(":", 1) for ln in block.splitlines() if ":" in ln and not ln.startswith("#"))
                suites = fields.get("Suites", "").split()
                for uri in fields.get("URIs", "").split():
                    uris.append((uri, suites))
    for f in [f"{apt_dir}/sources.list"] + sorted(glob.glob(f"{apt_dir}/sources.list.d/*.list")):
        with contextlib.suppress(OSError):
            for ln in Path(f).read_text().splitlines():
                parts = re.sub(r"\[[^]]*\]", "", ln).split()
                if len(parts) >= 3 and parts[0] == "deb":
                    uris.append((parts[1], [parts[2]]))
    for uri, suites in uris:
        if uri.startswith(("http://", "https://")) and "security" not in uri and re.search(r"/debian/?$", uri) \
                and any("-" not in s for s in suites):
            return uri.rstrip("/")
    raise EmulationError(f"found no Debian mirror in {apt_dir}/sources.list*: set "
                         f"{MIRROR_ENV}=<a Debian mirror URL, e.g. the one your distribution uses>")


def _apt_install(packages, progress) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EmulationError(f"missing {', '.join(packages)}; install them: apt-get install {' '.join(packages)}")
    if progress:
        import click

        click.echo(f"installing {' '.join(packages)} (apt-get) ...", err=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    res = run_cmd(["apt-get", "update", "-qq"], "apt-get update", timeout=600, env=env)
    if res.returncode == 0:
        res = run_cmd(["apt-get", "install", "-y", "-qq", *packages], "apt-get install", timeout=900, env=env)
    if res.returncode != 0:
        raise EmulationError(f"missing {', '.join(packages)} and apt-get could not install them "
                             f"({last_line_of(res.stderr or res.stdout)}); install them by hand: "
                             f"apt-get install {' '.join(packages)}")


def require_root() -> None:
    if os.geteuid() != 0:
        raise EmulationError("--emulate needs root (it registers qemu with binfmt_misc, mounts /proc, /sys and "
                             "/dev into the rootfs and runs chroot): run it as root, e.g. sudo edgernn ...")


def ensure_host(progress: bool = True) -> None:
    """Root, qemu-user-static, debootstrap, binfmt_misc with the qemu-aarch64 handler enabled. One clear
    error naming what is missing and how to get it."""
    require_root()
    missing = [p for p, exe in (("qemu-user-static", QEMU), ("debootstrap", "debootstrap"),
                                ("binfmt-support", "update-binfmts")) if not shutil.which(exe)]
    if missing:
        _apt_install(missing, progress)
        still = [p for p, exe in (("qemu-user-static", QEMU), ("debootstrap", "debootstrap"),
                                  ("binfmt-support", "update-binfmts")) if not shutil.which(exe)]
        if still:
            raise EmulationError(f"{', '.join(still)} still missing after apt-get install")
    if not os.path.ismount(BINFMT_DIR):
        res = run_cmd(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR], "mounting binfmt_misc")
        if res.returncode != 0:
            raise EmulationError(f"cannot mount binfmt_misc at {BINFMT_DIR} ({last_line_of(res.stderr)}); in a "
                                 "container, start it with --privileged or register qemu-aarch64 on the host")
    handler = Path(BINFMT_DIR) / "qemu-aarch64"
    if not handler.exists() or "enabled" not in handler.read_text():
        run_cmd(["update-binfmts", "--enable", "qemu-aarch64"], "update-binfmts --enable qemu-aarch64")
    if not handler.exists() or "enabled" not in handler.read_text():
        raise EmulationError("the qemu-aarch64 binfmt handler is not enabled and `update-binfmts --enable "
                             "qemu-aarch64` did not enable it; reinstall qemu-user-static and binfmt-support")
    flags = re.search(r"^flags: *(\S*)", handler.read_text(), re.M)
    if not flags or "F" not in flags.group(1):
        raise EmulationError("the qemu-aarch64 binfmt handler lacks flag F (fix-binary), so it cannot run "
                             "inside a chroot; reinstall qemu-user-static (Debian's registers it with F)")
