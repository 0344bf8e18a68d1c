"""
A real OpenSSH server on 127.0.0.1 for the SSH target tests (a pytest plugin).

Register it in tests/conftest.py with:   pytest_plugins = ["tests.sshd_fixture"]
(tests/test_devices_targets_ssh.py also works standalone: it imports the fixture from here).

The session-scoped `sshd` fixture starts Debian's /usr/sbin/sshd in the foreground
(`sshd -D -e -f CONFIG`) on a free high port with a throwaway host key and an authorized client key made
with ssh-keygen in a temp dir (StrictModes no, public key only, no PAM), and writes a client config
(`sshd.config`) that never touches ~/.ssh: Host alias `edgernn-test` -> 127.0.0.1:<port>, the client key,
UserKnownHostsFile in the temp dir, StrictHostKeyChecking accept-new. The "device" is this machine and
the login user is the current user. Needs: apt-get install -y openssh-server openssh-client.
Outside CI the SSH tests skip with that hint when sshd/ssh are missing; in CI (environment variable CI
set, as .ci/run and CI services do) they FAIL instead, so a runner without OpenSSH can never report the
SSH path as green while silently testing nothing. sshd also needs /run/sshd (created when we are root).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

SSHD_BIN = "/usr/sbin/sshd"
ALIAS = "edgernn-test"
APT_HINT = "apt-get install -y openssh-server openssh-client"


def in_ci() -> bool:
    """CI=true (or any value but empty/0/false/no): the environment promises to run every test."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip with `reason` on a developer machine; fail in CI, where the SSH tests must really run."""
    if in_ci():
        pytest.fail(f"{reason} (CI={os.environ['CI']}: the SSH tests must run in CI, not skip)", pytrace=False)
    pytest.skip(reason)


def missing_openssh(server: bool = True) -> list[str]:
    """The OpenSSH programs these tests need that are not installed."""
    missing = [SSHD_BIN] if server and not os.path.exists(SSHD_BIN) else []
    return missing + [p for p in ("ssh", "ssh-keygen") if shutil.which(p) is None]


def require_openssh(server: bool = True) -> None:
    missing = missing_openssh(server)
    if missing:
        unavailable(f"OpenSSH {'server/' if server else ''}client not installed (missing: {', '.join(missing)}): "
                    f"{APT_HINT}")


def wait_until(condition, timeout: float, interval: float = 0.05):
    """Poll condition() until it returns something truthy or `timeout` seconds have passed; returns its last
    value (falsy on timeout). For tests: wait for what they need to see, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgernn-test", "-f", str(path)],
                   check=True, capture_output=True)


def _children(pid: int) -> list[int]:
    """Direct children of pid, from /proc (Linux)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # field 4 (ppid) comes after the parenthesised command name, which may contain spaces
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(d))
    return out


@dataclass
class SSHD:
    host: str                 # alias defined in `config`
    config: Path              # client config for ssh -F
    port: int
    user: str
    key: Path                 # authorized client key
    wrong_key: Path           # a key the server does not know
    known_hosts: Path
    tmp: Path
    proc: subprocess.Popen
    log: Path
    extra: dict = field(default_factory=dict)

    def target_opts(self, **kw) -> dict:
        """Options for edgernn.devices.targets.get_target(..., host=self.host, **opts)."""
        opts = {"config": str(self.config)}
        opts.update(kw)
        return opts

    def session_pids(self) -> list[int]:
        """sshd processes serving connections (children of the listening daemon)."""
        return _children(self.proc.pid)

    def kill_sessions(self) -> int:
        """SIGKILL every connection's sshd process: the client sees the connection drop."""
        pids = self.session_pids()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        return len(pids)


@pytest.fixture(scope="session")
def ssh_client():
    """For tests that run only the ssh client (no server): the same skip-or-fail rule as `sshd`."""
    require_openssh(server=False)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    require_openssh(server=True)
    tmp = tmp_path_factory.mktemp("sshd")
    os.chmod(tmp, 0o755)
    if not os.path.isdir("/run/sshd"):
        try:
            os.makedirs("/run/sshd", mode=0o755)
        except OSError as exc:
            unavailable(f"sshd needs its privilege separation dir /run/sshd ({exc.strerror}); create it as root")
    host_key, key, wrong_key = tmp / "host_ed25519", tmp / "client_ed25519", tmp / "wrong_ed25519"
    for k in (host_key, key, wrong_key):
        _keygen(k)
    auth = tmp / "authorized_keys"
    auth.write_text(Path(str(key) + ".pub").read_text())
    port = free_port()
    user = getpass.getuser()
    log = tmp / "sshd.log"
    cfg = tmp / "sshd_config"
    cfg.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {tmp}/sshd.pid
AuthorizedKeysFile {auth}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowUsers {user}
MaxStartups 100:30:200
MaxSessions 50
LogLevel INFO
Subsystem sftp internal-sftp
""")
    known = tmp / "known_hosts"
    client = tmp / "ssh_config"
    client.write_text(f"""\
Host {ALIAS}
    HostName 127.0.0.1
    Port {port}
    User {user}
    IdentityFile {key}
    IdentitiesOnly yes
    UserKnownHostsFile {known}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking accept-new
    LogLevel ERROR
""")
    proc = subprocess.Popen([SSHD_BIN, "-D", "-e", "-f", str(cfg), "-E", str(log)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        if proc.poll() is not None:
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"sshd exited with {proc.returncode}: {text[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                pytest.fail("sshd did not start listening within 10 s")
            time.sleep(0.05)
    server = SSHD(host=ALIAS, config=client, port=port, user=user, key=key, wrong_key=wrong_key,
                  known_hosts=known, tmp=tmp, proc=proc, log=log)
    try:
        yield server
    finally:
        server.kill_sessions()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
