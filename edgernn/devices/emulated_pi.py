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
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from edgernn.devices.boards import CORES, normalize_arch
from edgernn.devices.targets import last_line
from edgernn.errors import ConfigError, TargetError
from edgernn.interrupts import die_with_parent
from edgernn.runtimes.files import CACHE_ENV  # one home for the cache location
from edgernn.runtimes.registry import PIP_NAMES

SUITE = "bookworm"  # Raspberry Pi OS 12 is bookworm: the same Debian, python3.11 and glibc 2.36
DEB_PACKAGES = ("python3", "python3-venv", "python3-pip", "openssh-server", "ca-certificates")
HOST_PACKAGES = ("qemu-user-static", "binfmt-support", "debootstrap")
VENV = "/opt/edgernn-venv"
QEMU = "qemu-aarch64-static"
BINFMT_DIR = "/proc/sys/fs/binfmt_misc"
MIN_FREE_BYTES = 1500 * 2 ** 20  # a build peaks at ~0.9 GB (debs + unpacked + venv); keep a margin
MIRROR_ENV = "EDGERNN_DEBIAN_MIRROR"
SESSION_DIR = "run/edgernn-ssh"  # inside the rootfs: sshd config and throwaway keys of one session

class EmulationError(TargetError):
    """The emulated target could not be set up (host tools, root, rootfs build, sshd)."""


# ---- where things live -------------------------------------------------------------------------------
def cache_root() -> Path:
    """$EDGERNN_CACHE_DIR/emulate, else $XDG_CACHE_HOME/edgernn/emulate, else ~/.cache/edgernn/emulate."""
    from edgernn.runtimes.files import cache_dir

    return cache_dir("emulate")


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


# ---- small helpers -----------------------------------------------------------------------------------
def _run(argv, what: str, timeout: float = 600, env=None, log=None) -> subprocess.CompletedProcess:
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


def _last_line(text: str) -> str:
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


# ---- host preflight ----------------------------------------------------------------------------------
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
    res = _run(["apt-get", "update", "-qq"], "apt-get update", timeout=600, env=env)
    if res.returncode == 0:
        res = _run(["apt-get", "install", "-y", "-qq", *packages], "apt-get install", timeout=900, env=env)
    if res.returncode != 0:
        raise EmulationError(f"missing {', '.join(packages)} and apt-get could not install them "
                             f"({_last_line(res.stderr or res.stdout)}); install them by hand: "
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
        res = _run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR], "mounting binfmt_misc")
        if res.returncode != 0:
            raise EmulationError(f"cannot mount binfmt_misc at {BINFMT_DIR} ({_last_line(res.stderr)}); in a "
                                 "container, start it with --privileged or register qemu-aarch64 on the host")
    handler = Path(BINFMT_DIR) / "qemu-aarch64"
    if not handler.exists() or "enabled" not in handler.read_text():
        _run(["update-binfmts", "--enable", "qemu-aarch64"], "update-binfmts --enable qemu-aarch64")
    if not handler.exists() or "enabled" not in handler.read_text():
        raise EmulationError("the qemu-aarch64 binfmt handler is not enabled and `update-binfmts --enable "
                             "qemu-aarch64` did not enable it; reinstall qemu-user-static and binfmt-support")
    flags = re.search(r"^flags: *(\S*)", handler.read_text(), re.M)
    if not flags or "F" not in flags.group(1):
        raise EmulationError("the qemu-aarch64 binfmt handler lacks flag F (fix-binary), so it cannot run "
                             "inside a chroot; reinstall qemu-user-static (Debian's registers it with F)")


# ---- the cache ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def cache_lock(root: Path | None = None):
    """Exclusive lock on the cache: one build or emulated session at a time."""
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise EmulationError(f"another edgernn process (pid {holder}) is using the emulator cache {root}; "
                                 "wait for it to finish") from None
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
    try:
        return json.loads((rootfs / "etc" / "edgernn-rootfs.json").read_text())
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


# ---- building the rootfs -----------------------------------------------------------------------------
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


def _chroot_env(cpu: str) -> dict:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8", "QEMU_CPU": cpu}
    # a proxy or package index configured here applies inside too (file:// indexes are host paths: not)
    for k in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT"):
        v = os.environ.get(k)
        if v and "file:" not in v:
            env[k] = v
    return env


def _pip_error(text: str, board_name: str) -> str:
    m = re.search(r"(?:No matching distribution found for|Could not find a version that satisfies the "
                  r"requirement) ([^\s(]+)", text)
    if m:
        return (f"no aarch64 wheel of {m.group(1)} for Python 3.11 on Debian {SUITE}, which board {board_name} "
                "needs (its runtimes); pin a version that has one or drop the runtime from the board profile")
    return f"pip install in the arm64 rootfs failed: {_last_line(text)}"


def pip_install(rootfs: Path, reqs: list[str], board_name: str, cpu: str, log=None) -> None:
    """pip install binary wheels only into the rootfs venv; a package without an aarch64 wheel is an
    error naming it and the board (never a compile from source under emulation)."""
    res = _run(["chroot", str(rootfs), f"{VENV}/bin/pip", "install", "--no-cache-dir", "--only-binary=:all:",
                "--disable-pip-version-check", *reqs], "pip install", timeout=1800, env=_chroot_env(cpu), log=log)
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
                why = tail[-1] if tail else _last_line(log_path.read_text())
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
            env = _chroot_env(cpu)
            chroot = ["chroot", str(rootfs)]
            res = _run(chroot + ["update-ca-certificates"], "update-ca-certificates", env=env, log=log)
            if res.returncode != 0:
                raise EmulationError(f"update-ca-certificates in the rootfs failed: {_last_line(res.stderr)}")
            steps.to(64, "python venv")
            res = _run(chroot + ["python3", "-m", "venv", VENV], "python3 -m venv", env=env, log=log)
            if res.returncode != 0:
                raise EmulationError(f"creating {VENV} in the rootfs failed: {_last_line(res.stderr)}")
            steps.to(68, "pip install " + " ".join(reqs))
            pip_install(rootfs, reqs, board_name, cpu, log=log)
            steps.to(95, "check")
            res = _run(chroot + [f"{VENV}/bin/python", "-c",
                                 "import json, platform, sys; from importlib import metadata as m; "
                                 "print(json.dumps({'machine': platform.machine(), 'python': "
                                 "platform.python_version(), 'packages': {d.metadata['Name'].lower(): d.version "
                                 "for d in m.distributions()}}))"], "checking the venv", env=env, log=log)
            if res.returncode != 0:
                raise EmulationError(f"the venv in the rootfs does not run: {_last_line(res.stderr)}")
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
            (rootfs / "etc" / "edgernn-rootfs.json").write_text(json.dumps(info, indent=2) + "\n")
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


# ---- one emulated session ----------------------------------------------------------------------------
def cpuinfo_text(core: str, model: str) -> str:
    part, features = CORES[core]
    n = os.cpu_count() or 1
    blocks = [f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
              f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 3\n" for i in range(n)]
    return "\n".join(blocks) + f"\nModel\t\t: {model}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    if not shutil.which("ssh-keygen"):
        raise EmulationError("ssh-keygen is not installed here (apt-get install openssh-client); the SSH target "
                             "needs the OpenSSH client anyway")
    res = _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgernn-emulate", "-f", str(path)],
               "ssh-keygen")
    if res.returncode != 0:
        raise EmulationError(f"ssh-keygen failed: {_last_line(res.stderr)}")


class Emulator:
    """Context manager: an emulated board reachable over ssh on 127.0.0.1 (see the module docstring)."""

    def __init__(self, board, progress: bool = True, cpu: str | None = None):
        self.board = board
        self.cpu = cpu or board_core(board)
        if self.cpu not in CORES:
            raise ConfigError(f"qemu_cpu {self.cpu!r} of board {board.name} is not one of {', '.join(CORES)}")
        self.progress = progress
        self.rootfs: Path | None = None
        self.host = f"edgernn-emulated-{board.name}"
        self.info: dict = {}
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._sshd: subprocess.Popen | None = None
        self.recovered: list[str] = []
        self.timings: dict = {}

    # what the SSH target needs
    def target_opts(self) -> dict:
        return {"config": str(self._tmp / "ssh_config"), "remote_python": f"{VENV}/bin/python",
                "connect_timeout": 30}

    def describe(self) -> dict:
        """What goes into results: the JSON's "emulated" block."""
        return {"emulated": True, "qemu_cpu": self.cpu, "qemu_version": qemu_version(), "host_cpu": host_cpu(),
                "rootfs": self.rootfs.name if self.rootfs else None,
                "runtimes": (self.info or {}).get("packages"),
                "note": "qemu user emulation on this machine's CPU: outputs are real aarch64 results, "
                        "timings are NOT Raspberry Pi timings"}

    def __enter__(self):
        t0 = time.time()
        try:
            ensure_host(self.progress)
            root = self._stack.enter_context(cache_lock())
            self.recovered = recover(root)
            if self.recovered:  # always said, also with --quiet: something was killed before
                import click

                click.echo("note: cleaned up after an earlier killed run: " + "; ".join(self.recovered), err=True)
            self.rootfs, self.info, built = ensure_rootfs(self.board, progress=self.progress)
            self.timings["rootfs_s"] = round(time.time() - t0, 1)
            self.timings["built"] = built
            self._stack.callback(self._teardown)
            self._mount()
            self._start_sshd()
            self.timings["ready_s"] = round(time.time() - t0, 1)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        # no second Ctrl-C/SIGTERM in the middle of unmounting
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._stack.close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return False

    def use_core(self, cpu: str) -> dict:
        """Emulate another core from now on: rewrites the bind-mounted /proc/cpuinfo IN PLACE (same inode,
        so the rootfs sees it at once) and returns the environment a worker needs ({"QEMU_CPU": cpu}).
        Both must change together: onnxruntime reads its CPU features from /proc/cpuinfo, and a kernel
        the emulated core lacks dies with SIGILL."""
        if cpu not in CORES:
            raise ConfigError(f"qemu cpu {cpu!r} is not one of {', '.join(CORES)}")
        (self._tmp / "cpuinfo").write_text(cpuinfo_text(cpu, f"{self.board.description} (emulated: qemu {cpu})"))
        self.active_cpu = cpu
        return {"QEMU_CPU": cpu}

    def _mount(self) -> None:
        r = self.rootfs
        self._tmp = Path(tempfile.mkdtemp(prefix="edgernn-emu-"))
        cpuinfo = self._tmp / "cpuinfo"
        cpuinfo.write_text(cpuinfo_text(self.cpu, f"{self.board.description} (emulated: qemu {self.cpu})"))
        self.active_cpu = self.cpu
        steps = [(["mount", "-t", "proc", "proc", str(r / "proc")], "proc"),
                 (["mount", "--bind", str(cpuinfo), str(r / "proc/cpuinfo")], "proc/cpuinfo"),
                 (["mount", "-t", "sysfs", "sysfs", str(r / "sys")], "sys"),
                 (["mount", "--bind", "/dev", str(r / "dev")], "dev"),
                 (["mount", "--bind", "/dev/pts", str(r / "dev/pts")], "dev/pts")]
        for argv, what in steps:
            res = _run(argv, f"mounting {what}")
            if res.returncode != 0:
                raise EmulationError(f"cannot mount {what} into the rootfs ({_last_line(res.stderr)}); "
                                     "in a container, it needs --privileged (CAP_SYS_ADMIN)")

    def _start_sshd(self) -> None:
        r, tmp = self.rootfs, self._tmp
        sess = r / SESSION_DIR
        sess.mkdir(parents=True, exist_ok=True)
        (r / "run/sshd").mkdir(parents=True, exist_ok=True)
        host_key, client_key = sess / "host_ed25519", tmp / "client_ed25519"
        _keygen(host_key)
        _keygen(client_key)
        (sess / "authorized_keys").write_text(Path(str(client_key) + ".pub").read_text())
        port = free_port()
        (sess / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey /{SESSION_DIR}/host_ed25519
PidFile /{SESSION_DIR}/sshd.pid
AuthorizedKeysFile /{SESSION_DIR}/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowUsers root
MaxStartups 50:30:100
MaxSessions 50
SetEnv QEMU_CPU={self.cpu}
""")
        (tmp / "ssh_config").write_text(f"""\
Host {self.host}
    HostName 127.0.0.1
    Port {port}
    User root
    IdentityFile {client_key}
    IdentitiesOnly yes
    UserKnownHostsFile {tmp}/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking accept-new
    LogLevel ERROR
""")
        log = tmp / "sshd.log"
        with open(log, "wb") as logf:
            self._sshd = subprocess.Popen(
                ["chroot", str(r), "/usr/sbin/sshd", "-D", "-e", "-f", f"/{SESSION_DIR}/sshd_config"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=_chroot_env(self.cpu),
                start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.time() + 60  # an emulated sshd starts in ~1 s; a loaded CI machine is slower
        while True:
            if self._sshd.poll() is not None:
                raise EmulationError(f"sshd in the emulated rootfs exited with code {self._sshd.returncode} "
                                     f"at start: {_last_line(log.read_text(errors='replace'))}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.settimeout(5)
                    if s.recv(64).startswith(b"SSH-"):
                        break
            if time.time() > deadline:
                raise EmulationError(f"sshd in the emulated rootfs did not answer on 127.0.0.1:{port} within "
                                     f"60 s: {_last_line(log.read_text(errors='replace'))}")
            time.sleep(0.1)
        self.port = port

    def _teardown(self) -> None:
        problems = []
        if self._sshd is not None:
            with contextlib.suppress(OSError):
                os.killpg(self._sshd.pid, signal.SIGTERM)
            try:
                self._sshd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(self._sshd.pid, signal.SIGKILL)
                self._sshd.wait()
        if self.rootfs is not None:
            kill_processes_in(self.rootfs)
            left = unmount_all(self.rootfs)
            if left:
                problems.append(f"still mounted: {', '.join(left)} (umount -l them by hand)")
            with contextlib.suppress(OSError):
                shutil.rmtree(self.rootfs / SESSION_DIR)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if problems:
            raise EmulationError("stopping the emulated board: " + "; ".join(problems))
