"""
The arm64 rootfs of an emulated Pi: what goes in it (Debian bookworm + a venv with numpy and the board's
runtimes at the versions installed HERE), its cache name, and the build (debootstrap, CA certificates,
venv, binary wheels only), done aside in CACHE/.build-* and renamed into place when complete.

    path, info, built_now = ensure_rootfs(load_board("rpi4"))   # under cache_lock(): reuse or build
    requirements(["onnxruntime"])     # ["numpy==<host's>", "onnxruntime==<host's>"]
    pip_install(rootfs, ["tensorflow-cpu==2.21.0"], "rpi4", "cortex-a72")   # no aarch64 wheel: named error
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from edgernn.devices.boards import CORES, normalize_arch
from edgernn.devices.emulated_pi.cache import INFO_FILE, cache_root, read_info
from edgernn.devices.emulated_pi.host import EmulationError, debian_mirror, last_line_of, qemu_version, run_cmd
from edgernn.devices.emulated_pi.mounts import kill_processes_in, mounts_under, safe_rmtree, unmount_all
from edgernn.errors import ConfigError
from edgernn.interrupts import die_with_parent
from edgernn.runtimes.files import CACHE_ENV  # one home for the cache location
from edgernn.runtimes.registry import PIP_NAMES

SUITE = "bookworm"  # Raspberry Pi OS 12 is bookworm: the same Debian, python3.11 and glibc 2.36
DEB_PACKAGES = ("python3", "python3-venv", "python3-pip", "openssh-server", "ca-certificates")
VENV = "/opt/edgernn-venv"
MIN_FREE_BYTES = 1500 * 2 ** 20  # a build peaks at ~0.9 GB (debs + unpacked + venv); keep a margin


def _host_version(dist: str):
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def requirements(runtimes) -> list[str]:
    """pip requirements for the rootfs venv: numpy + the board's runtimes, pinned to the versions
    installed on this machine when there are any."""
    dists = ["numpy"] + [PIP_NAMES[r] for r in sorted(set(runtimes)) if r in PIP_NAMES]
    return [f"{d}=={v}" if (v := _host_version(d)) else d for d in dists]


def rootfs_name(reqs) -> str:
    key = hashlib.sha256(json.dumps([SUITE, list(DEB_PACKAGES), sorted(reqs)]).encode()).hexdigest()[:10]
    return f"debian-{SUITE}-arm64-{key}"


def board_core(board) -> str:
    """The board's qemu CPU name; a clear error for a board that cannot be emulated."""
    if board.transport != "ssh" or normalize_arch(board.arch) != "aarch64":
        raise ConfigError(f"--emulate runs aarch64 boards reached over ssh (rpi3b, rpi4, rpi5, rpi-zero-2w); "
                          f"{board.name} is {board.arch} over {board.transport}")
    if not getattr(board, "qemu_cpu", ""):
        raise ConfigError(f"board profile {board.name} has no qemu_cpu: add e.g. qemu_cpu = \"cortex-a72\" "
                          f"(choose from {', '.join(CORES)}) to emulate it")
    return board.qemu_cpu


def chroot_env(cpu: str) -> dict:
    """The environment of a command run in the rootfs (chroot), emulating core `cpu`."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8", "QEMU_CPU": cpu}
    # a proxy or package index configured here applies inside too (file:// indexes are host paths: not)
    for k in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT"):
        v = os.environ.get(k)
        if v and "file:" not in v:
            env[k] = v
    return env


class _Steps:
    """A progress bar over the build's phases (weights in percent); silent when disabled."""

    def __init__(self, enabled: bool, label: str):
        from edgernn.progress import progressbar

        self._cm = progressbar(length=100, label=label, enabled=enabled, show=lambda _: self.phase)
        self.bar = self._cm.__enter__()
        self.done, self.phase = 0.0, ""

    def to(self, pct: float, phase: str | None = None):
        if phase is not None:
            self.phase = phase
        step = int(pct) - int(self.done)
        if step > 0:
            self.bar.update(step)
        self.done = max(self.done, pct)

    def close(self):
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = None


def _pip_error(text: str, board_name: str) -> str:
    m = re.search(r"(?:No matching distribution found for|Could not find a version that satisfies the "
                  r"requirement) ([^\s(]+)", text)
    if m:
        return (f"no aarch64 wheel of {m.group(1)} for Python 3.11 on Debian {SUITE}, which board {board_name} "
                "needs (its runtimes); pin a version that has one or drop the runtime from the board profile")
    return f"pip install in the arm64 rootfs failed: {last_line_of(text)}"


def pip_install(rootfs: Path, reqs: list[str], board_name: str, cpu: str, log=None) -> None:
    """pip install binary wheels only into the rootfs venv; a package without an aarch64 wheel is an
    error naming it and the board (never a compile from source under emulation)."""
    res = run_cmd(["chroot", str(rootfs), f"{VENV}/bin/pip", "install", "--no-cache-dir", "--only-binary=:all:",
                   "--disable-pip-version-check", *reqs], "pip install", timeout=1800, env=chroot_env(cpu), log=log)
    if res.returncode != 0:
        text = res.stderr + res.stdout
        if "No space left" in text:
            raise EmulationError(f"no space left on the device of {rootfs} while installing {' '.join(reqs)}")
        raise EmulationError(_pip_error(text, board_name))


def build_rootfs(dest: Path, reqs: list[str], board_name: str, cpu: str, progress: bool = True) -> dict:
    """Build the rootfs aside (dest.parent/.build-*), then rename it to dest. Call under cache_lock."""
    root = dest.parent
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_BYTES:
        raise EmulationError(f"the arm64 rootfs needs about {MIN_FREE_BYTES / 2 ** 30:.1f} GB free in {root}; "
                             f"only {free / 2 ** 30:.2f} GB are: free space or set {CACHE_ENV} to a larger disk")
    mirror = debian_mirror()
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    rootfs = work / "rootfs"
    log_path = work / "build.log"
    steps = _Steps(progress, f"building the arm64 rootfs (once, ~6 min) {dest.name}")
    t0 = time.time()
    proc = None
    try:
        with open(log_path, "w") as log:
            argv = ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(DEB_PACKAGES)}",
                    SUITE, str(rootfs), mirror]
            log.write(f"$ {' '.join(argv)}\n")
            steps.to(0, "debootstrap")
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=dict(os.environ, LANG="C.UTF-8"), preexec_fn=die_with_parent)
            lines = 0
            for line in proc.stdout:
                log.write(line)
                lines += 1
                steps.to(min(60.0, 60.0 * lines / 640), "debootstrap: " + line.strip()[3:40])
            rc = proc.wait()
            if rc != 0:
                tail = [ln for ln in log_path.read_text().splitlines() if ln.startswith(("E:", "W:"))]
                why = tail[-1] if tail else last_line_of(log_path.read_text())
                if "No space left" in log_path.read_text():
                    why = f"no space left on the device of {root}"
                raise EmulationError(f"debootstrap of the arm64 rootfs failed ({why}); full log: {log_path} "
                                     "(kept until the next build)")
            proc = None
            unmount_all(rootfs)  # debootstrap mounts proc/sys in the target while configuring
            steps.to(62, "CA certificates")
            certs = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))
            for c in certs:  # the host's extra CAs (a TLS-inspecting proxy): pip inside needs them too
                shutil.copy(c, rootfs / "usr/local/share/ca-certificates" / os.path.basename(c))
            env = chroot_env(cpu)
            chroot = ["chroot", str(rootfs)]
            res = run_cmd(chroot + ["update-ca-certificates"], "update-ca-certificates", env=env, log=log)
            if res.returncode != 0:
                raise EmulationError(f"update-ca-certificates in the rootfs failed: {last_line_of(res.stderr)}")
            steps.to(64, "python venv")
            res = run_cmd(chroot + ["python3", "-m", "venv", VENV], "python3 -m venv", env=env, log=log)
            if res.returncode != 0:
                raise EmulationError(f"creating {VENV} in the rootfs failed: {last_line_of(res.stderr)}")
            steps.to(68, "pip install " + " ".join(reqs))
            pip_install(rootfs, reqs, board_name, cpu, log=log)
            steps.to(95, "check")
            res = run_cmd(chroot + [f"{VENV}/bin/python", "-c",
                                    "import json, platform, sys; from importlib import metadata as m; "
                                 "print(json.dumps({'machine': platform.machine(), 'python': "
                                    "platform.python_version(), 'packages': {d.metadata['Name'].lower(): d.version "
                                    "for d in m.distributions()}}))"], "checking the venv", env=env, log=log)
            if res.returncode != 0:
                raise EmulationError(f"the venv in the rootfs does not run: {last_line_of(res.stderr)}")
            venv = json.loads(res.stdout)
            for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (rootfs / sub).glob("*"):
                    if p.is_file():
                        p.unlink()
            info = {"suite": SUITE, "arch": venv["machine"], "python": venv["python"], "requirements": reqs,
                    "packages": {k: v for k, v in venv["packages"].items()
                                 if k in ("numpy", "onnxruntime", "ai-edge-litert")},
                    "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_s": round(time.time() - t0, 1),
                    "qemu": qemu_version()}
            (rootfs / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        steps.to(99, "finishing")
        if mounts_under(rootfs):
            unmount_all(rootfs)
        if dest.exists():
            safe_rmtree(dest)
        os.rename(rootfs, dest)
        safe_rmtree(work)
        steps.to(100, "done")
        return info
    except BaseException:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        # the half-built rootfs goes (never through a mount); the log stays beside it for a failed build
        with contextlib.suppress(EmulationError, OSError):
            kill_processes_in(rootfs)
            safe_rmtree(rootfs)
        raise
    finally:
        steps.close()


def ensure_rootfs(board, progress: bool = True) -> tuple[Path, dict, bool]:
    """(path, info, built_now) of the cached rootfs for the board's runtimes. Call under cache_lock."""
    reqs = requirements(board.runtimes)
    dest = cache_root() / rootfs_name(reqs)
    info = read_info(dest)
    if info is not None:
        return dest, info, False
    # a completed rootfs of other requirements (other runtime versions) is replaced, not kept beside
    for old in cache_root().glob(f"debian-{SUITE}-arm64-*"):
        if old != dest:
            safe_rmtree(old)
    for old in cache_root().glob(".build-*"):  # failed builds' logs
        safe_rmtree(old)
    info = build_rootfs(dest, reqs, board.name, board_core(board), progress=progress)
    return dest, info, True
