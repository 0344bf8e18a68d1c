"""
One emulated Pi session: the Emulator context manager. Under the cache lock it recovers what a killed
run left, reuses or builds the rootfs, mounts proc, a Pi-like /proc/cpuinfo, sys, dev and dev/pts,
starts the rootfs's own sshd on a free loopback port with throwaway keys, and on every exit (errors,
Ctrl-C, SIGTERM) stops sshd, kills every process in the rootfs and unmounts in reverse order.

    with Emulator(load_board("rpi4")) as emu:
        tgt = get_target(board, host=emu.host, **emu.target_opts())
        env = emu.use_core("cortex-a53")      # emulate another core from now on (cpuinfo + QEMU_CPU)
    emu.describe()                            # the results' "emulated" block
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from edgernn.devices.boards import CORES
from edgernn.devices.emulated_pi.cache import SESSION_DIR, cache_lock, recover
from edgernn.devices.emulated_pi.host import EmulationError, ensure_host, host_cpu, last_line_of, qemu_version, run_cmd
from edgernn.devices.emulated_pi.mounts import kill_processes_in, unmount_all
from edgernn.devices.emulated_pi.rootfs import VENV, board_core, chroot_env, ensure_rootfs
from edgernn.errors import ConfigError
from edgernn.interrupts import die_with_parent


def cpuinfo_text(core: str, model: str) -> str:
    """A Pi-like /proc/cpuinfo for `core` (qemu would show the host's x86 one, which makes onnxruntime
    and ai-edge-litert crash)."""
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
    res = run_cmd(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgernn-emulate", "-f", str(path)],
                  "ssh-keygen")
    if res.returncode != 0:
        raise EmulationError(f"ssh-keygen failed: {last_line_of(res.stderr)}")


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
            res = run_cmd(argv, f"mounting {what}")
            if res.returncode != 0:
                raise EmulationError(f"cannot mount {what} into the rootfs ({last_line_of(res.stderr)}); "
                                     "in a container, it needs --privileged (CAP_SYS_ADMIN)")

    def _write_configs(self, port: int, client_key: Path) -> None:
        """sshd_config inside the rootfs (SetEnv QEMU_CPU=<board core>) and the client's ssh_config."""
        (self.rootfs / SESSION_DIR / "sshd_config").write_text(f"""\
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
        (self._tmp / "ssh_config").write_text(f"""\
Host {self.host}
    HostName 127.0.0.1
    Port {port}
    User root
    IdentityFile {client_key}
    IdentitiesOnly yes
    UserKnownHostsFile {self._tmp}/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking accept-new
    LogLevel ERROR
""")

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
        self._write_configs(port, client_key)
        log = tmp / "sshd.log"
        with open(log, "wb") as logf:
            self._sshd = subprocess.Popen(
                ["chroot", str(r), "/usr/sbin/sshd", "-D", "-e", "-f", f"/{SESSION_DIR}/sshd_config"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=chroot_env(self.cpu),
                start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.time() + 60  # an emulated sshd starts in ~1 s; a loaded CI machine is slower
        while True:
            if self._sshd.poll() is not None:
                raise EmulationError(f"sshd in the emulated rootfs exited with code {self._sshd.returncode} "
                                     f"at start: {last_line_of(log.read_text(errors='replace'))}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.settimeout(5)
                    if s.recv(64).startswith(b"SSH-"):
                        break
            if time.time() > deadline:
                raise EmulationError(f"sshd in the emulated rootfs did not answer on 127.0.0.1:{port} within "
                                     f"60 s: {last_line_of(log.read_text(errors='replace'))}")
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
