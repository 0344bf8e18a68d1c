"""
Tests for the SSH target (edgernn.devices.targets.ssh) against a real OpenSSH server on 127.0.0.1
(tests/sshd_fixture.py): the full remote benchmark path on exported ONNX artifacts, and each failure
case - host unreachable, auth refused, remote python without numpy/runtime, read-only and full remote
temp dirs, connection dropped mid-run, Ctrl-C - ending in a one-line TargetError with local files intact
and the remote temp dir removed. Hostile names (`;`, `$()`, backticks, spaces) must never run anything.

The "device" is this machine (x86_64) logged into over ssh, so the rpi4 profile (aarch64) must warn
about the architecture. Its python is the project venv's (remote_python), which has numpy + onnxruntime.

    .venv/bin/pytest tests/test_devices_targets_ssh.py            # needs: apt-get install -y openssh-server
    CI=true .venv/bin/pytest tests/test_devices_targets_ssh.py    # as CI: missing OpenSSH fails instead of skipping
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgernn.devices.boards import load_board
from edgernn.devices.targets import BenchJob, get_target
from edgernn.devices.targets.ssh import check_host, remote_path_expr
from edgernn.errors import ConfigError, TargetError
from tests.sshd_fixture import free_port, ssh_client, sshd, wait_until  # noqa: F401 - fixtures (also a plugin)

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = str(ROOT / ".venv" / "bin" / "python")
WORKER_KEYS = {"artifact", "format", "precision", "mode", "runtime", "runtime_version", "threads", "load_s",
               "first_inference_s", "latency_us", "throughput_per_s", "stream_us", "rss_mb", "size_bytes"}


def sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def artifacts(onnx_artifacts):
    """Real exported ONNX artifacts (sequence + step, float) of a tiny trained LSTM, and test windows
    (conftest.onnx_artifacts): ({"sequence": path, "step": path}, windows.npy)."""
    a = onnx_artifacts(cell="lstm", hidden=16)
    return {mode: a[mode] for mode in ("sequence", "step")}, a["windows"]


@pytest.fixture
def remote_base(tmp_path):
    """Where the "device" makes its temp dirs (remote_tmp): must be empty again after every run."""
    d = tmp_path / "remote tmp"  # a space in the remote path, on purpose
    d.mkdir()
    return d


def target(sshd, remote_base, **kw):  # noqa: F811
    opts = dict(config=str(sshd.config), remote_python=VENV_PY, remote_tmp=str(remote_base))
    opts.update(kw)
    return get_target(load_board("rpi4"), host=kw.pop("host", sshd.host), **{k: v for k, v in opts.items()
                                                                            if k != "host"})


def jobs_for(artifacts, runs=20, parity=True):
    paths, windows = artifacts
    return [BenchJob(artifact=paths["sequence"], input=windows, runs=runs, warmup=2, threads=1, stream_frames=0,
                     parity_input=windows if parity else None),
            BenchJob(artifact=paths["step"], input=windows, runs=runs, warmup=2, threads=1, stream_frames=10)]


@pytest.fixture
def tmpfs(tmp_path):
    """mount a tmpfs (root only); skip where mounting is not allowed. Yields mount(name, options)."""
    mounted = []

    def mount(name: str, options: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); run as root to test this case")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


# ---- unit: quoting and host checks (no sshd) ----------------------------------------------------------
def test_host_check_refuses_shell_characters(tmp_path):
    for ok in ("pi@raspberrypi.local", "raspberrypi", "edgernn-test", "pi@192.168.1.20", "root@[::1]",
               "ssh://pi@host:2222", "my_pi.lan"):
        assert check_host(ok) == ok
    for bad in (f"host; touch {tmp_path}/PWNED", "$(touch PWNED)", "`touch PWNED`", "pi@host && reboot",
                "-oProxyCommand=touch PWNED", "pi host", "pi@host\nid", "pi@host\n", "a|b", "'quoted'"):
        with pytest.raises(ConfigError, match="not a valid destination"):
            get_target(load_board("rpi4"), host=bad)
    with pytest.raises(ConfigError, match="give --host"):
        get_target(load_board("rpi4"), host="")
    assert not list(tmp_path.iterdir())


def test_remote_path_expr_quotes_everything_but_a_leading_tilde():
    assert remote_path_expr("python3") == "python3"
    assert remote_path_expr("~/edgernn-venv/bin/python") == "\"$HOME\"/edgernn-venv/bin/python"
    assert remote_path_expr("/opt/my env/bin/python") == "'/opt/my env/bin/python'"
    assert remote_path_expr("~/x; rm -rf ~") == "\"$HOME\"/'x; rm -rf ~'"
    assert remote_path_expr("$(reboot)") == "'$(reboot)'"


# ---- the full path ------------------------------------------------------------------------------------
@pytest.mark.ssh
@pytest.mark.export
def test_full_remote_bench(sshd, artifacts, remote_base):  # noqa: F811
    paths, windows = artifacts
    before = {p: sha(p) for p in (*paths.values(), windows)}
    tgt = target(sshd, remote_base)
    res = tgt.run(jobs_for(artifacts))
    assert len(res) == 2
    for r in res:
        assert WORKER_KEYS <= set(r)
        assert {"target", "fingerprint_after", "transfer_s", "remote_overhead_s", "ssh"} <= set(r)
        assert r["latency_us"]["n"] == 20 and r["latency_us"]["p50"] > 0
        assert r["transfer_s"] > 0 and r["remote_overhead_s"] > 0
        assert r["target"]["arch"] == "x86_64" and r["target"]["host"] == sshd.host
        assert r["target"]["python_executable"].startswith(str(ROOT / ".venv"))
        assert any("x86_64" in w and "rpi4" in w and "aarch64" in w for w in r["warnings"])
        assert r["ssh"]["multiplex"] is True and r["ssh"]["push_bytes"] > 0
    assert [r["artifact"] for r in res] == ["sequence-float.onnx", "step-float.onnx"]
    # parity outputs computed on the device == this machine's
    from edgernn.runtimes import load

    with load(paths["sequence"]) as s:
        want = s.predict(np.load(windows))
    assert np.allclose(res[0]["parity_output"], want, atol=1e-6)
    # the remote temp dir existed under remote_tmp and is gone; local files untouched
    assert Path(tgt.last_remote_dir).parent == remote_base and not Path(tgt.last_remote_dir).exists()
    assert list(remote_base.iterdir()) == []
    assert {p: sha(p) for p in before} == before
    assert tgt._control_dir is None  # the master connection was closed


@pytest.mark.ssh
def test_fingerprint_over_ssh_with_port_identity_and_options(sshd, tmp_path):  # noqa: F811
    tgt = get_target(load_board("rpi4"), host=f"{sshd.user}@127.0.0.1", port=sshd.port, identity=str(sshd.key),
                     ssh_options=[f"UserKnownHostsFile={tmp_path / 'kh'}", "StrictHostKeyChecking=accept-new",
                                  "GlobalKnownHostsFile=/dev/null"],
                     remote_python=VENV_PY, multiplex=False)
    fp = tgt.fingerprint()
    for k in ("uname", "arch", "cpu_model", "cores", "ram_mb", "os", "python", "governor", "temperature_c",
              "throttled"):
        assert k in fp
    assert fp["arch"] == "x86_64" and fp["cores"] >= 1 and fp["host"] == f"{sshd.user}@127.0.0.1"
    assert fp["packages"]["onnxruntime"]


# ---- failures -----------------------------------------------------------------------------------------
@pytest.mark.ssh
@pytest.mark.export
def test_unreachable_host(ssh_client, artifacts, remote_base, tmp_path):  # noqa: F811
    paths, windows = artifacts
    before = sha(paths["sequence"])
    tgt = get_target(load_board("rpi4"), host="root@127.0.0.1", port=free_port(), connect_timeout=3,
                     ssh_options=[f"UserKnownHostsFile={tmp_path / 'kh'}"], remote_python=VENV_PY)
    with pytest.raises(TargetError) as e:
        tgt.run(jobs_for(artifacts))
    msg = str(e.value)
    assert "cannot reach root@127.0.0.1" in msg and "Connection refused" in msg and "\n" not in msg
    assert sha(paths["sequence"]) == before and tgt._control_dir is None


@pytest.mark.ssh
@pytest.mark.export
def test_auth_refused(sshd, artifacts, remote_base, tmp_path):  # noqa: F811
    tgt = get_target(load_board("rpi4"), host=f"{sshd.user}@127.0.0.1", port=sshd.port,
                     identity=str(sshd.wrong_key),
                     ssh_options=[f"UserKnownHostsFile={tmp_path / 'kh'}", "StrictHostKeyChecking=accept-new"],
                     remote_python=VENV_PY, remote_tmp=str(remote_base))
    with pytest.raises(TargetError) as e:
        tgt.run(jobs_for(artifacts))
    msg = str(e.value)
    assert "was refused" in msg and "Permission denied" in msg and "ssh-copy-id" in msg
    assert list(remote_base.iterdir()) == []


@pytest.mark.ssh
@pytest.mark.export
def test_remote_python_without_numpy_prints_the_pip_line(sshd, artifacts, remote_base):  # noqa: F811
    if subprocess.run(["/usr/bin/python3", "-c", "import numpy"], capture_output=True).returncode == 0:
        pytest.skip("/usr/bin/python3 has numpy here; this case needs a python without it")
    tgt = target(sshd, remote_base, remote_python="/usr/bin/python3")
    with pytest.raises(TargetError) as e:
        tgt.run(jobs_for(artifacts))
    msg = str(e.value)
    board = load_board("rpi4")
    assert "/usr/bin/python3" in msg and "cannot import numpy, onnxruntime" in msg
    assert board.install_hint in msg and "/usr/bin/python3 -m pip install numpy onnxruntime" in msg
    assert list(remote_base.iterdir()) == []  # failed before anything was copied


@pytest.mark.ssh
@pytest.mark.export
def test_remote_python_missing(sshd, artifacts, remote_base):  # noqa: F811
    tgt = target(sshd, remote_base, remote_python="~/no-such-venv/bin/python")
    with pytest.raises(TargetError) as e:
        tgt.run(jobs_for(artifacts))
    msg = str(e.value)
    assert "~/no-such-venv/bin/python was not found" in msg and load_board("rpi4").install_hint in msg


@pytest.mark.ssh
@pytest.mark.export
def test_read_only_remote_temp_dir(sshd, artifacts, tmpfs):  # noqa: F811
    ro = tmpfs("ro", "ro,size=1m")
    tgt = target(sshd, ro)
    with pytest.raises(TargetError) as e:
        tgt.run(jobs_for(artifacts))
    msg = str(e.value)
    assert f"cannot create a temp dir under {ro}" in msg and "Read-only file system" in msg and "remote_tmp" in msg


@pytest.mark.ssh
@pytest.mark.export
def test_full_remote_disk(sshd, artifacts, tmpfs):  # noqa: F811
    full = tmpfs("full", "size=48k")  # the push is ~130 kB: tar fails part-way
    paths, _ = artifacts
    before = sha(paths["step"])
    tgt = target(sshd, full)
    with pytest.raises(TargetError) as e:
        tgt.run(jobs_for(artifacts))
    msg = str(e.value)
    assert "copying" in msg and "No space left on device" in msg and "could not remove" not in msg
    assert tgt.last_remote_dir and list(full.iterdir()) == []  # the half-filled temp dir was removed
    assert sha(paths["step"]) == before


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _proc_text(pid: int, name: str) -> str:
    """/proc/<pid>/<name> as text ("" when the process is gone)."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _measuring_worker(remote_base: Path) -> int | None:
    """The pid of the remote worker once it is at work: its pid file is written, the shell has exec'd the
    worker, and the worker has imported onnxruntime (next it loads the model and times 3 million runs)."""
    for pidfile in remote_base.glob("*/.worker.pid"):
        try:
            text = pidfile.read_text().strip()
        except OSError:
            continue
        if not text.isdigit():
            continue  # created, not yet written
        pid = int(text)
        if "edgernn.runtimes.bench_worker" in _proc_text(pid, "cmdline") and "onnxruntime" in _proc_text(pid, "maps"):
            return pid
    return None


@pytest.mark.ssh
@pytest.mark.export
@pytest.mark.slow
def test_connection_dropped_mid_run(sshd, artifacts, remote_base):  # noqa: F811
    """Kill the server side of the connection while the worker runs a long job: clear error, the orphaned
    worker is killed and the temp dir removed over a fresh connection."""
    paths, windows = artifacts
    seen = {}

    def killer():
        pid = wait_until(lambda: _measuring_worker(remote_base), timeout=60)
        if pid:
            seen["pid"] = pid
            seen["killed"] = sshd.kill_sessions()

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    tgt = target(sshd, remote_base)
    t0 = time.time()
    with pytest.raises(TargetError) as e:
        tgt.run([BenchJob(artifact=paths["sequence"], input=windows, runs=3_000_000, warmup=0, stream_frames=0)])
    th.join(5)
    msg = str(e.value)
    assert seen.get("killed", 0) >= 1, "the test never saw the worker start"
    assert "failed or was lost during the benchmark of sequence-float.onnx" in msg and "could not remove" not in msg
    assert time.time() - t0 < 60
    assert list(remote_base.iterdir()) == []
    assert wait_until(lambda: not _pid_alive(seen["pid"]), timeout=5), "the orphaned remote worker is still running"


@pytest.mark.ssh
@pytest.mark.export
def test_ctrl_c_cleans_up(sshd, artifacts, remote_base):  # noqa: F811
    def interrupt(done, total, job):
        raise KeyboardInterrupt

    tgt = target(sshd, remote_base)
    with pytest.raises(KeyboardInterrupt):
        tgt.run(jobs_for(artifacts, runs=5), progress=interrupt)
    assert tgt.last_remote_dir and list(remote_base.iterdir()) == []
    assert tgt._control_dir is None


@pytest.mark.ssh
@pytest.mark.export
@pytest.mark.slow
def test_shell_metacharacters_in_names_run_nothing(sshd, artifacts, tmp_path):  # noqa: F811
    """Artifact, input and remote-dir names built to run `touch PWNED` one directory up if any of them
    reached a shell unquoted; the files must simply be benchmarked, and no PWNED file may appear."""
    paths, windows = artifacts
    base = tmp_path / "base $(touch PWNED_base) `touch PWNED_tick`"
    base.mkdir()
    remote = base / "re mote; touch PWNED_remote"
    remote.mkdir()
    names = ["x; cd ..; touch PWNED1; y.onnx", "$(cd ..; touch PWNED2).onnx", "`cd ..; touch PWNED3`.onnx",
             "it's \"quoted\" & | > < *.onnx"]
    jobs = []
    for n in names:
        a = base / n
        shutil.copy(paths["sequence"], a)
        shutil.copy(str(paths["sequence"]) + ".json", str(a) + ".json")
        inp = base / f"in $(touch PWNED_in) {len(jobs)}.npy"
        shutil.copy(windows, inp)
        jobs.append(BenchJob(artifact=a, input=inp, runs=3, warmup=0, stream_frames=0, parity_input=inp))
    tgt = target(sshd, remote)
    res = tgt.run(jobs)
    assert len(res) == len(names) and all(r["latency_us"]["n"] == 3 for r in res)
    assert all(r["parity_output"].shape[0] == 8 for r in res)
    pwned = [p for p in (tmp_path.rglob("PWNED*"))] + [p for p in Path.home().glob("PWNED*")] \
        + [p for p in Path.cwd().glob("PWNED*")] + [p for p in Path("/tmp").glob("PWNED*")]
    assert pwned == []
    assert list(remote.iterdir()) == []
