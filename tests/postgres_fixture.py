"""
A real PostgreSQL server on 127.0.0.1 for the `edgernn tune` tests (shared Optuna storage).

The session-scoped `postgres` fixture runs Debian's server binaries (/usr/lib/postgresql/<version>/bin,
package `postgresql`): `initdb` into a throwaway data directory (trust authentication on loopback, user
`edgernn`), then `postgres -D DIR -p PORT` in the foreground on a free port, with fsync off (a test
database needs no durability). It yields the URL postgresql://edgernn@127.0.0.1:PORT/postgres and stops
the server and removes the directory afterwards. PostgreSQL refuses to run as root: as root the data
directory is given to the `postgres` system user (which the Debian package creates) and the server runs
as that user. Needs: apt-get install -y postgresql (make test installs it). Outside CI the tests skip
with that hint when it is missing; in CI they fail instead (tests/sshd_fixture.py: unavailable).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sshd_fixture import free_port, unavailable

APT_HINT = "apt-get install -y postgresql"


@dataclass
class Postgres:
    url: str
    port: int
    data: Path
    log: Path


def server_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (Debian layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _as_user():
    """subprocess kwargs to run the server: as `postgres` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        unavailable(f"running as root and there is no `postgres` user to run the server as: {APT_HINT}")
    return {"user": pw.pw_uid, "group": pw.pw_gid}, pw


@pytest.fixture(scope="session")
def postgres():
    bindir = server_bin()
    if bindir is None:
        unavailable(f"PostgreSQL server not installed (no /usr/lib/postgresql/*/bin/postgres): {APT_HINT}")
    run_as, pw = _as_user()
    root = Path(tempfile.mkdtemp(prefix="edgernn-pg-"))
    os.chmod(root, 0o755)
    data, log = root / "data", root / "server.log"
    data.mkdir()
    log.touch()
    if pw is not None:
        for p in (root, data, log):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    env = {**os.environ, "LC_ALL": "C"}
    init = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "edgernn", "--auth=trust", "-E", "UTF8",
                           "--no-sync"], capture_output=True, text=True, env=env, cwd=root, **run_as)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr.strip()[-800:]}", pytrace=False)
    port = free_port()
    with open(log, "ab") as logf:
        proc = subprocess.Popen([str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
                                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50"],
                                stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=root, **run_as)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"postgres exited ({proc.returncode}): {log.read_text()[-800:]}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pass
                ready = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                       capture_output=True)
                if ready.returncode == 0:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"postgres did not accept connections in 30 s: {log.read_text()[-800:]}", pytrace=False)
            time.sleep(0.2)
        yield Postgres(url=f"postgresql://edgernn@127.0.0.1:{port}/postgres", port=port, data=data, log=log)
    finally:
        proc.terminate()  # SIGTERM: "smart" shutdown
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)
