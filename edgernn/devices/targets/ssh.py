"""
SSH target: benchmark on a device (Raspberry Pi, any Linux board) with the system OpenSSH client.

    tgt = get_target(load_board("rpi4"), host="pi@raspberrypi.local")   # or an alias from ~/.ssh/config
    tgt.fingerprint()
    results = tgt.run(jobs)

What happens, in order (every step one `ssh` call; one multiplexed connection is kept open for all):
  1. fingerprint + import check: the device's python runs edgernn/runtimes/fingerprint.py fed on stdin
     (nothing copied yet); if it cannot import numpy or a needed runtime -> TargetError with the exact
     install line for the device (the board profile's install_hint).
  2. `mktemp -d <remote_tmp or $TMPDIR or /tmp>/edgernn-XXXXXXXX` on the device.
  3. push (one tar stream over ssh): edgernn/__init__.py, errors.py, runtimes/*.py, the artifacts with
     their manifests, the input windows.
  4. each job: `python -m edgernn.runtimes.bench_worker ...` in the temp dir; RESULT.json (+ parity .npy)
     pulled back with a tar stream.
  5. fingerprint again; warnings for throttling (vcgencmd) and an architecture that is not the profile's.
  6. always (also after an error or Ctrl-C): kill a still-running worker and `rm -rf` the temp dir; if
     that fails the error says so and gives the command to run by hand.

The OpenSSH client is used as installed, so ~/.ssh/config (aliases, User, Port, IdentityFile,
ProxyJump), the agent and known_hosts all apply. Options: BatchMode=yes (never prompt),
ConnectTimeout, ServerAliveInterval. Every remote command is a POSIX sh script run as
`sh -c '<script>'`, and every path or name in it goes through shlex.quote: a file name such as
"x; rm -rf ~" or "$(reboot)" is just a file name. Host strings are checked against what ssh
destinations look like ([user@]host[:port] or ssh://...) before anything runs. A failed call becomes one
TargetError saying what to do (edgernn.devices.targets.ssh_errors: crash, auth, host key, unreachable, disk).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from edgernn.devices.targets import BenchJob, Target, last_line, worker_args
from edgernn.devices.targets.ssh_errors import ssh_failure, tar_error
from edgernn.errors import ConfigError, TargetError

PACKAGE_DIR = Path(__file__).resolve().parents[2]  # edgernn/
# what a device needs to run the worker: nothing else of edgernn
PUSHED_PACKAGE_FILES = ("__init__.py", "errors.py")
PUSHED_PACKAGE_DIRS = ("runtimes",)
# an ssh destination or ~/.ssh/config alias; anything else (spaces, ; $ ` ' " | & < > newlines) is refused
HOST_RE = re.compile(r"^(ssh://)?[A-Za-z0-9_.%+\-]+(@[A-Za-z0-9_.%\-\[\]:]+)?(:[0-9]+)?$|^\[?[0-9A-Fa-f:.]+\]?$")


def q(s) -> str:
    return shlex.quote(str(s))


def remote_path_expr(path: str) -> str:
    """A remote path as a sh word: quoted, except a leading ~/ which becomes "$HOME"/ (quoting would
    stop the shell from expanding it)."""
    path = str(path)
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + q(path[2:])
    return q(path)


def check_host(host: str) -> str:
    if not isinstance(host, str) or not host or host.startswith("-") or not HOST_RE.fullmatch(host):
        raise ConfigError(f"ssh host {host!r} is not a valid destination: use user@hostname, hostname, an IP "
                          "address or an alias from ~/.ssh/config (no spaces or shell characters)")
    return host


class SSHTarget(Target):
    name = "ssh"

    def __init__(self, board, host: str, port: int | None = None, identity: str | None = None,
                 ssh_options=(), config: str | None = None, remote_python: str | None = None,
                 remote_tmp: str | None = None, connect_timeout: int = 10, job_timeout: float | None = 1800.0,
                 multiplex: bool | None = None, ssh: str = "ssh", keep_remote: bool = False,
                 remote_env: dict | None = None):
        super().__init__(board)
        self.host = check_host(host)
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise ConfigError(f"ssh port must be an integer 1-65535, got {port!r}")
        self.port = port
        self.identity = str(identity) if identity else None
        if isinstance(ssh_options, str):
            ssh_options = [ssh_options]
        for o in ssh_options:
            if not isinstance(o, str) or "=" not in o and " " not in o:
                raise ConfigError(f"ssh option {o!r} must look like Name=value (passed as -o Name=value)")
        self.ssh_options = list(ssh_options)
        self.config = str(config) if config else None
        self.remote_python = remote_python or getattr(board, "python", None) or "python3"
        if "\n" in self.remote_python or "\x00" in self.remote_python:
            raise ConfigError(f"remote_python {self.remote_python!r} is not a path")
        self.remote_tmp = remote_tmp
        if not isinstance(connect_timeout, int) or connect_timeout < 1:
            raise ConfigError(f"connect_timeout must be an integer >= 1 second, got {connect_timeout!r}")
        self.connect_timeout = connect_timeout
        self.job_timeout = job_timeout
        self.multiplex = (os.name != "nt") if multiplex is None else bool(multiplex)
        self.ssh = ssh
        self.keep_remote = keep_remote
        self.remote_env = dict(remote_env or {})  # exported before each worker (e.g. QEMU_CPU on an emulated Pi)
        for k in self.remote_env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)):
                raise ConfigError(f"remote_env name {k!r} is not an environment variable name")
        self._control_dir = None
        self._master_pid = None
        self.last_remote_dir = None  # for tests and error messages
        self.stats = {}

    def describe(self) -> str:
        return f"{self.board.name} at {self.host} (ssh, {self.remote_python})"

    # ---- ssh plumbing --------------------------------------------------------------------------------
    def _base_argv(self) -> list:
        argv = [self.ssh]
        if self.config:
            argv += ["-F", self.config]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                 "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.identity:
            argv += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        for o in self.ssh_options:
            argv += ["-o", o]
        if self._control_dir:
            argv += ["-o", f"ControlPath={self._control_dir}/cm", "-o", "ControlMaster=no"]
        return argv

    def _argv(self, script: str) -> list:
        """argv for running a POSIX sh script on the device (the login shell only sees one quoted word)."""
        return self._base_argv() + ["--", self.host, "sh -c " + q(script)]

    def _run_ssh(self, script: str, what: str, input_bytes: bytes | None = None, timeout: float | None = None,
                 check: bool = True) -> subprocess.CompletedProcess:
        argv = self._argv(script)
        try:
            proc = subprocess.run(argv, input=input_bytes if input_bytes is not None else b"",
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TargetError(f"{what} on {self.host} did not finish within {timeout:g} s; the device or network is "
                              "too slow or hung (raise the timeout, or check `ssh " + self.host + " uptime`)") from None
        except FileNotFoundError:
            raise TargetError(f"the OpenSSH client {self.ssh!r} is not installed here; install it "
                              "(Debian/Ubuntu: apt-get install openssh-client)") from None
        if check and proc.returncode != 0:
            raise self._failure(proc, what)
        return proc

    def _failure(self, proc, what: str) -> TargetError:
        return ssh_failure(self.host, proc, what)

    def _open(self) -> None:
        """Start one master connection that later ssh calls reuse (saves ~0.3-0.5 s per call)."""
        self.stats["multiplex"] = False
        if not self.multiplex:
            return
        d = tempfile.mkdtemp(prefix="edgernn-ssh-")  # short path: unix socket paths are limited to ~100 bytes
        argv = self._base_argv() + ["-o", f"ControlPath={d}/cm", "-o", "ControlMaster=yes",
                                    "-o", "ControlPersist=no", "-N", "-f", "--", self.host]
        with tempfile.TemporaryFile() as errf:
            try:
                # stderr to a file, not a pipe: the backgrounded master would hold a pipe open forever
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                                      timeout=self.connect_timeout + 30)
            except FileNotFoundError:
                os.rmdir(d)
                raise TargetError(f"the OpenSSH client {self.ssh!r} is not installed here; install it "
                                  "(Debian/Ubuntu: apt-get install openssh-client)") from None
            except subprocess.TimeoutExpired:
                os.rmdir(d)
                raise TargetError(f"connecting to {self.host} took over {self.connect_timeout + 30} s") from None
            errf.seek(0)
            err = errf.read()
        if proc.returncode != 0:
            try:
                os.rmdir(d)
            except OSError:
                pass
            raise self._failure(subprocess.CompletedProcess(argv, proc.returncode, b"", err), "connecting")
        self._control_dir = d
        self.stats["multiplex"] = True
        chk = subprocess.run(self._base_argv() + ["-O", "check", "--", self.host], capture_output=True, timeout=30)
        m = re.search(rb"pid=(\d+)", chk.stderr + chk.stdout)
        self._master_pid = int(m.group(1)) if m else None

    def _close(self) -> None:
        if not self._control_dir:
            return
        try:
            subprocess.run(self._base_argv() + ["-O", "exit", "--", self.host], capture_output=True, timeout=15)
        except (OSError, subprocess.SubprocessError):
            pass
        if self._master_pid:  # the master is our own child process: make sure it is gone
            for _ in range(20):
                try:
                    os.kill(self._master_pid, 0)
                except OSError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(self._master_pid, signal.SIGTERM)
                except OSError:
                    pass
        for name in os.listdir(self._control_dir) if os.path.isdir(self._control_dir) else []:
            try:
                os.unlink(os.path.join(self._control_dir, name))
            except OSError:
                pass
        try:
            os.rmdir(self._control_dir)
        except OSError:
            pass
        self._control_dir = None
        self._master_pid = None

    # ---- device checks -------------------------------------------------------------------------------
    def _remote_fingerprint(self, requires=()) -> dict:
        script_text = (PACKAGE_DIR / "runtimes" / "fingerprint.py").read_bytes()
        py = remote_path_expr(self.remote_python)
        args = " ".join(f"--require {q(r)}" for r in requires)
        script = f"cd && exec {py} - {args}"
        proc = self._run_ssh(script, "reading the device fingerprint", input_bytes=script_text,
                             timeout=self.connect_timeout + 120, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace")
            if proc.returncode == 127 or "not found" in err or "No such file" in err:
                raise TargetError(
                    f"{self.remote_python} was not found on {self.host} ({last_line(err)}); run this on the "
                    f"device: {self.board.install_hint} - or pass the device's python with remote_python")
            raise self._failure(proc, f"running {self.remote_python} on the device")
        try:
            return json.loads(proc.stdout.decode("utf-8", "replace"))
        except ValueError:
            raise TargetError(f"{self.remote_python} on {self.host} printed no fingerprint JSON "
                              f"(stderr: {last_line(proc.stderr.decode('utf-8', 'replace'))}); "
                              "is it Python 3.8 or newer?") from None

    def fingerprint(self) -> dict:
        """The device's fingerprint (one ssh call; nothing is copied to the device)."""
        opened = False
        if self.multiplex and not self._control_dir:
            self._open()
            opened = True
        try:
            fp = self._remote_fingerprint()
        finally:
            if opened:
                self._close()
        fp["host"] = self.host
        return fp

    def _check_imports(self, fp: dict, runtimes: set) -> None:
        from edgernn.runtimes import INSTALL
        from edgernn.runtimes.registry import PIP_NAMES

        imports = fp.get("imports") or {}
        missing, details = [], []
        for req, res in imports.items():
            if not res.get("ok"):
                name = next((rt for rt, (_, _, mods) in INSTALL.items() if req == "|".join(mods)), req)
                missing.append(name)
                details.append(res.get("error") or req)
        if missing:
            pkgs = " ".join(PIP_NAMES.get(m, m) for m in missing)
            raise TargetError(
                f"{self.remote_python} on {self.host} (Python {fp.get('python', '?')}, {fp.get('arch', '?')}) cannot "
                f"import {', '.join(missing)} ({'; '.join(details)}); run this on the device: "
                f"{self.board.install_hint} (or: {self.remote_python} -m pip install {pkgs})")

    # ---- the benchmark -------------------------------------------------------------------------------
    def run(self, jobs: list, progress=None) -> list:
        from edgernn.runtimes import INSTALL

        manifests = self._check_jobs(jobs, allow_torch=False)
        runtimes = {m["runtime"] for m in manifests.values()}
        requires = ["numpy"] + ["|".join(INSTALL[rt][2]) for rt in sorted(runtimes) if rt in INSTALL and INSTALL[rt][2]]
        update, close_progress = self._progress(progress, len(jobs))
        tmp = None
        primary = None
        results = []
        try:
            t0 = time.perf_counter()
            self._open()
            self.stats["connect_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            before = self._remote_fingerprint(requires)
            self._check_imports(before, runtimes)
            before.pop("imports", None)
            before["host"] = self.host
            self.stats["check_s"] = time.perf_counter() - t0
            tmp = self._mktemp()
            layout, push_s, push_bytes = self._push(tmp, jobs, arch=before.get("arch"))
            self.stats.update(push_s=push_s, push_bytes=push_bytes)
            raw = []
            for k, job in enumerate(jobs):
                raw.append(self._run_job(tmp, k, job, layout))
                update(job)
            after = self._remote_fingerprint()
            after["host"] = self.host
            share = push_s / max(1, len(jobs))
            for result, wall, pull_s in raw:
                r = self._finish(result, before, after, share + pull_s, wall)
                r["ssh"] = {"host": self.host, "multiplex": self.stats.get("multiplex"),
                            "connect_s": round(self.stats.get("connect_s", 0.0), 4),
                            "check_s": round(self.stats.get("check_s", 0.0), 4),
                            "push_s": round(push_s, 4), "push_bytes": push_bytes, "pull_s": round(pull_s, 4),
                            "remote_dir": tmp}
                results.append(r)
        except BaseException as exc:  # noqa: B036 - also Ctrl-C: clean up, then re-raise
            primary = exc
        finally:
            close_progress()
        cleanup_error = None
        if tmp is not None and not self.keep_remote:
            cleanup_error = self._cleanup(tmp)
        self._close()
        if primary is not None:
            if cleanup_error:
                if isinstance(primary, KeyboardInterrupt):
                    raise TargetError(f"interrupted; {cleanup_error}") from primary
                raise TargetError(f"{primary}; {cleanup_error}") from primary
            raise primary
        if cleanup_error:
            for r in results:
                r["warnings"].append(cleanup_error)
        return results

    def _mktemp(self) -> str:
        base = remote_path_expr(self.remote_tmp) if self.remote_tmp else '"${TMPDIR:-/tmp}"'
        proc = self._run_ssh(f"mktemp -d {base}/edgernn-XXXXXXXX", "creating a temp dir",
                             timeout=self.connect_timeout + 30, check=False)
        if proc.returncode != 0:
            if proc.returncode == 255:
                raise self._failure(proc, "creating a temp dir")
            where = self.remote_tmp or "$TMPDIR (or /tmp)"
            raise TargetError(f"cannot create a temp dir under {where} on {self.host}: "
                              f"{last_line(proc.stderr.decode('utf-8', 'replace'))}; free space there or pass "
                              "remote_tmp=<a writable directory on the device>")
        path = proc.stdout.decode("utf-8", "replace").strip()
        if not path.startswith("/") or "\n" in path or not Path(path).name.startswith("edgernn-"):
            raise TargetError(f"mktemp on {self.host} returned {path!r}, not a temp dir path")
        self.last_remote_dir = path
        return path

    def _push(self, tmp: str, jobs: list, arch: str | None = None):
        """One tar stream with the runtime package, the artifacts (+ manifests) and the inputs; a C artifact
        also gets its library built here for the device's architecture (`<artifact>.<arch>.so`: the device
        needs no compiler). Returns ({local path: remote relative path}, seconds, bytes)."""
        buf = io.BytesIO()
        layout = {}
        libs = tempfile.TemporaryDirectory(prefix="edgernn-clib-")

        def add(tar, local: Path, arc: str):
            info = tar.gettarinfo(str(local), arcname=arc)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(local, "rb") as f:
                tar.addfile(info, f)

        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in PUSHED_PACKAGE_FILES:
                add(tar, PACKAGE_DIR / name, f"edgernn/{name}")
            for d in PUSHED_PACKAGE_DIRS:
                for f in sorted((PACKAGE_DIR / d).glob("*.py")):
                    add(tar, f, f"edgernn/{d}/{f.name}")
            n_art = n_in = 0
            for job in jobs:
                a = Path(job.artifact).resolve()
                if a not in layout:
                    layout[a] = f"a/{n_art}/{a.name}"
                    add(tar, a, layout[a])
                    add(tar, a.with_name(a.name + ".json"), layout[a] + ".json")
                    if a.suffix == ".h" and arch:
                        add(tar, device_library(a, arch, Path(libs.name) / f"{n_art}.so"), f"{layout[a]}.{arch}.so")
                    n_art += 1
                for p in (job.input, job.parity_input):
                    if p is None:
                        continue
                    p = Path(p).resolve()
                    if p not in layout:
                        layout[p] = f"in/{n_in}/{p.name}"
                        add(tar, p, layout[p])
                        n_in += 1
            info = tarfile.TarInfo("out")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        libs.cleanup()
        data = buf.getvalue()
        t0 = time.perf_counter()
        timeout = self.connect_timeout + 120 + len(data) / 50e3  # >= 50 kB/s
        proc = self._run_ssh(f"cd {q(tmp)} && tar -xf -", "copying files", input_bytes=data, timeout=timeout,
                             check=False)
        if proc.returncode != 0:
            if proc.returncode == 255:
                raise self._failure(proc, "copying files")
            raise TargetError(f"copying {len(data) / 1e6:.2f} MB to {self.host}:{tmp} failed: "
                              f"{tar_error(proc.stderr.decode('utf-8', 'replace'))}; free space on the device or "
                              "pass remote_tmp=<a writable directory with room>")
        return layout, time.perf_counter() - t0, len(data)

    def _run_job(self, tmp: str, k: int, job: BenchJob, layout: dict):
        a = layout[Path(job.artifact).resolve()]
        inp = layout[Path(job.input).resolve()]
        pin = layout[Path(job.parity_input).resolve()] if job.parity_input is not None else None
        out, pout = f"out/r{k}.json", f"out/p{k}.npy"
        args = worker_args(job, a, inp, out, pin, pout)
        py = remote_path_expr(self.remote_python)
        env = "".join(f"export {k}={q(v)} && " for k, v in self.remote_env.items())
        script = (f"cd {q(tmp)} && echo $$ > .worker.pid && {env}export PYTHONDONTWRITEBYTECODE=1 && "
                  f"exec {py} -m edgernn.runtimes.bench_worker {' '.join(q(x) for x in args)}")
        t0 = time.perf_counter()
        proc = self._run_ssh(script, f"the benchmark of {job.label}", timeout=self.job_timeout, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            if proc.returncode == 255 or proc.returncode < 0:
                raise self._failure(proc, f"the benchmark of {job.label}")
            msg = last_line(proc.stderr.decode("utf-8", "replace"))
            if msg.startswith("error: "):
                msg = msg[len("error: "):]
            msg = msg or f"exit code {proc.returncode}"
            raise TargetError(f"benchmark of {job.label} failed on {self.host}: {msg}")
        names = [out] + ([pout] if pin is not None else [])
        t0 = time.perf_counter()
        proc = self._run_ssh(f"cd {q(tmp)} && tar -cf - {' '.join(q(n) for n in names)}",
                             f"fetching the result of {job.label}", timeout=self.connect_timeout + 120)
        pull_s = time.perf_counter() - t0
        try:
            with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:") as tar:
                files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
            result = json.loads(files[out].decode("utf-8"))
            if pin is not None:
                result["parity_output"] = np.load(io.BytesIO(files[pout]), allow_pickle=False)
                result.pop("parity_out", None)
        except (KeyError, ValueError, tarfile.TarError, OSError) as exc:
            raise TargetError(f"the result of {job.label} came back from {self.host} unreadable ({exc}); "
                              "re-run") from exc
        return result, wall, pull_s

    def _cleanup(self, tmp: str):
        """Kill a worker that may still run, remove the temp dir, verify. Returns None, or an error text."""
        script = (f"d={q(tmp)}; if [ -f \"$d/.worker.pid\" ]; then p=$(cat \"$d/.worker.pid\"); "
                  "kill \"$p\" 2>/dev/null && sleep 0.2; kill -9 \"$p\" 2>/dev/null; fi; "
                  "rm -rf \"$d\"; test ! -e \"$d\"")
        try:
            proc = self._run_ssh(script, "removing the temp dir", timeout=self.connect_timeout + 60, check=False)
        except TargetError as exc:
            return (f"could not remove the temp dir {tmp} on {self.host} ({exc}); remove it by hand: "
                    f"ssh {self.host} rm -rf {q(tmp)}")
        except KeyboardInterrupt:
            return (f"cleanup interrupted: the temp dir {tmp} may remain on {self.host}; remove it by hand: "
                    f"ssh {self.host} rm -rf {q(tmp)}")
        if proc.returncode != 0:
            why = last_line(proc.stderr.decode("utf-8", "replace")) or f"exit code {proc.returncode}"
            return (f"could not remove the temp dir {tmp} on {self.host} ({why}); remove it by hand: "
                    f"ssh {self.host} rm -rf {q(tmp)}")
        return None


def device_library(artifact: Path, arch: str, out: Path) -> Path:
    """The C runtime library of `artifact` for a device of architecture `arch`, built on this host (the
    native compiler without -march=native when the device has this host's architecture, else a cross
    compiler; a missing one is a TargetError naming the package)."""
    import platform

    from edgernn.devices.compilers import cross_library
    from edgernn.errors import MissingDependencyError
    from edgernn.runtimes.c_backend import build_library
    from edgernn.runtimes.manifest import read_manifest

    manifest = read_manifest(artifact)
    try:
        if arch == platform.machine():
            return build_library(artifact, manifest, out, flags=[])
        return cross_library(artifact, manifest, arch, out)
    except MissingDependencyError as exc:
        raise TargetError(str(exc)) from exc
