"""
The emulated Raspberry Pi (edgernn/devices/emulated_pi/): a real arm64 Debian rootfs under qemu user emulation,
its own sshd on 127.0.0.1, the normal SSH target end to end.

Fast tests cover the host checks, the mount-safe removal and the mirror lookup with real mounts and real
processes. The `emulated` tests (marked slow) build or reuse the cached rootfs (~6 min cold, in CI once
per machine) and run one GRU and one LSTM run, every format, sequence and step, on emulated Cortex-A72
(rpi4) and Cortex-A76 (rpi5), plus the fault cases (sshd failing to start, a wheel without an aarch64
build, SIGTERM and SIGKILL mid-run). Needs root, qemu-user-static, binfmt-support and debootstrap
(`make system-deps`); outside CI they skip without them, in CI they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgernn.devices import emulated_pi as emulate
from edgernn.devices.boards import load_board, read_board_file
from edgernn.devices.emulated_pi import emulator
from edgernn.errors import ConfigError
from tests.sshd_fixture import in_ci, wait_until

ROOT = Path(__file__).resolve().parents[1]
EDGERNN = [sys.executable, "-m", "edgernn"]


def cli(*args, env=None, timeout=1800, **kw):
    e = dict(os.environ, **(env or {}))
    return subprocess.run(EDGERNN + [str(a) for a in args], capture_output=True, text=True, env=e, timeout=timeout,
                          cwd=ROOT, **kw)


def needs_root_tools():
    missing = [] if os.geteuid() == 0 else ["root"]
    missing += [t for t in ("qemu-aarch64-static", "debootstrap", "update-binfmts") if not shutil.which(t)]
    if missing:
        msg = f"the emulated Pi needs {', '.join(missing)} (make system-deps, as root)"
        if in_ci():
            pytest.fail(msg + " - CI must run the emulated path", pytrace=False)
        pytest.skip(msg)


# ---- boards ------------------------------------------------------------------------------------------
def test_packaged_pi_profiles_name_their_core():
    assert {b: load_board(b).qemu_cpu for b in ("rpi3b", "rpi4", "rpi5", "rpi-zero-2w")} == {
        "rpi3b": "cortex-a53", "rpi4": "cortex-a72", "rpi5": "cortex-a76", "rpi-zero-2w": "cortex-a53"}


def test_bad_qemu_cpu_in_a_profile(tmp_path):
    text = (ROOT / "edgernn/devices/boards/rpi4.toml").read_text()
    p = tmp_path / "pi.toml"
    p.write_text(text.replace('qemu_cpu = "cortex-a72"', 'qemu_cpu = "max"'))
    with pytest.raises(ConfigError, match="qemu_cpu 'max' is not one of cortex-a53"):
        read_board_file(p)
    p.write_text(text.replace('arch = "aarch64"', 'arch = "x86_64"'))
    with pytest.raises(ConfigError, match="qemu_cpu is for aarch64 boards"):
        read_board_file(p)


def test_emulate_refuses_boards_it_cannot_emulate(make_run):
    run = make_run()
    for target, want in (("desktop", "desktop is any over local"), ("android", "android-arm64 is aarch64 over adb")):
        res = cli("bench", run, "--target", target, "--emulate")
        assert res.returncode == 1, res.stderr
        assert want in res.stderr and "Traceback" not in res.stderr
    res = cli("bench", run, "--target", "rpi4", "--emulate", "--host", "pi@x")
    assert res.returncode == 1 and "drop --host pi@x" in res.stderr
    res = cli("parity", run, "--emulate")
    assert res.returncode == 2 and "--emulate needs --target" in res.stderr


# ---- host checks -------------------------------------------------------------------------------------
def test_not_root_is_one_clear_error(make_run, tmp_path):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to drop to another user) and setpriv")
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="edgernn-nonroot-"))  # pytest's tmp_path is private to root
    try:
        os.chmod(home, 0o777)
        run = home / "run"
        shutil.copytree(make_run(), run)
        subprocess.run(["chmod", "-R", "a+rX", str(run)], check=True)
        for cmd in (["bench", run, "--target", "rpi4", "--emulate", "-q"], ["emulate", "build", "-q"],
                    ["parity", run, "--target", "rpi5", "--emulate", "-q"]):
            res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *EDGERNN,
                                  *map(str, cmd)], capture_output=True, text=True, cwd=ROOT, timeout=300,
                                 env=dict(os.environ, HOME=str(home), EDGERNN_CACHE_DIR=str(home / "cache")))
            assert res.returncode == 1, res.stderr
            assert "--emulate needs root" in res.stderr and "Traceback" not in res.stderr
        assert not (home / "cache").exists()
    finally:
        shutil.rmtree(home)


def test_missing_tools_that_cannot_be_installed(make_run, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("as non-root the not-root error comes first")
    # a PATH with python only: no qemu, debootstrap, update-binfmts - and no apt-get to install them
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(sys.executable, bindir / "python")
    res = cli("emulate", "build", "-q", env={"PATH": str(bindir), "EDGERNN_CACHE_DIR": str(tmp_path / "cache")})
    assert res.returncode == 1, res.stderr
    assert ("missing qemu-user-static, debootstrap, binfmt-support; install them: apt-get install "
            "qemu-user-static debootstrap binfmt-support") in res.stderr
    assert "Traceback" not in res.stderr


def test_debian_mirror_from_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(emulate.MIRROR_ENV, raising=False)
    d = tmp_path / "apt"
    (d / "sources.list.d").mkdir(parents=True)
    (d / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert emulate.debian_mirror(str(d)) == "http://mirror.invalid/debian"
    (d / "sources.list.d/debian.sources").unlink()
    (d / "sources.list").write_text("deb [arch=amd64] http://other.invalid/debian bookworm main\n")
    assert emulate.debian_mirror(str(d)) == "http://other.invalid/debian"
    (d / "sources.list").write_text("deb http://archive.invalid/ubuntu jammy main\n")
    with pytest.raises(emulate.EmulationError, match="set EDGERNN_DEBIAN_MIRROR"):
        emulate.debian_mirror(str(d))
    monkeypatch.setenv(emulate.MIRROR_ENV, "http://given.invalid/debian")
    assert emulate.debian_mirror(str(d)) == "http://given.invalid/debian"


def _bind(src, dst):
    subprocess.run(["mount", "--bind", str(src), str(dst)], check=True)


def test_safe_rmtree_never_deletes_through_a_bind_mount(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    host = tmp_path / "host-dir"          # stands in for the host's /dev
    host.mkdir()
    (host / "precious").write_text("keep me")
    tree = tmp_path / "rootfs"
    (tree / "dev").mkdir(parents=True)
    (tree / "dir with space").mkdir()
    _bind(host, tree / "dev")
    _bind(host, tree / "dir with space")
    assert len(emulate.mounts_under(tree)) == 2
    emulate.safe_rmtree(tree)
    assert not tree.exists()
    assert (host / "precious").read_text() == "keep me"
    assert emulate.mounts_under(tmp_path) == []


def test_recover_cleans_what_a_killed_run_left(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    cache = tmp_path / "cache"
    monkeypatch.setenv(emulate.CACHE_ENV, str(cache))
    root = emulate.cache_root()
    host = tmp_path / "host-dir"
    host.mkdir()
    (host / "precious").write_text("keep me")
    done = root / "debian-bookworm-arm64-x"
    half = root / ".build-x" / "rootfs"
    for d in (done / "proc", half / "proc", done / emulate.SESSION_DIR):
        d.mkdir(parents=True)
    _bind(host, done / "proc")
    _bind(host, half / "proc")
    with emulate.cache_lock(root):
        lines = emulate.recover(root)
    assert any("unmounted 1 leftover mount" in ln for ln in lines) and any("unfinished build" in ln for ln in lines)
    assert done.is_dir() and not (done / emulate.SESSION_DIR).exists() and not (root / ".build-x").exists()
    assert emulate.mounts_under(tmp_path) == [] and (host / "precious").exists()


def test_no_space_for_the_rootfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    needs_root_tools()
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(small)], check=True)
    try:
        res = cli("emulate", "build", "-q", env={"EDGERNN_CACHE_DIR": str(small)})
        assert res.returncode == 1, res.stderr
        assert "needs about 1.5 GB free in" in res.stderr and "only 0.06 GB are" in res.stderr
        assert "Traceback" not in res.stderr
        assert sorted(p.name for p in (small / "emulate").iterdir()) == [".lock"]  # nothing half-built
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_cache_lock_is_exclusive_and_a_second_run_waits(tmp_path, monkeypatch):
    """A second run waits for the busy cache with one line saying so, up to EDGERNN_LOCK_WAIT seconds, then
    fails naming the holder; when the holder lets go within the wait, the second run goes ahead."""
    monkeypatch.setenv(emulate.CACHE_ENV, str(tmp_path))
    code = ("import edgernn.devices.emulated_pi as e\ntry:\n    e.cache_lock().__enter__()\n    print('got it')\n"
            "except e.EmulationError as x:\n    print(x)")
    env = dict(os.environ, EDGERNN_CACHE_DIR=str(tmp_path), EDGERNN_LOCK_WAIT="1")
    with emulate.cache_lock():
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert f"another edgernn process (pid {os.getpid()}) is using the emulator cache" in r.stdout
    assert "waited 1 s" in r.stdout and r.stderr.count("waiting for the emulator cache") == 1
    lock = emulate.cache_lock()
    lock.__enter__()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=dict(env, EDGERNN_LOCK_WAIT="60"))
    try:
        deadline = time.monotonic() + 30
        while not proc.stderr.readline().startswith("waiting for the emulator cache") and time.monotonic() < deadline:
            pass
    finally:
        lock.__exit__(None, None, None)
    out, _ = proc.communicate(timeout=60)
    assert out.strip() == "got it"


# ---- the real emulated board -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def emulated_cache():
    """Build (cold) or reuse (warm) the cached rootfs; records how long that took."""
    needs_root_tools()
    t0 = time.time()
    res = cli("emulate", "build", "--target", "rpi4", "-q", timeout=3000)
    assert res.returncode == 0, res.stderr
    return {"seconds": time.time() - t0, "stdout": res.stdout}


@pytest.fixture(scope="session")
def exported_runs(make_run, tmp_path_factory):
    """One GRU and one LSTM run (synthetic, T=40), every format and precision, sequence and step (18 artifacts)."""
    runs = {}
    for cell in ("gru", "lstm"):
        d = tmp_path_factory.mktemp(f"emu-{cell}") / cell
        shutil.copytree(make_run(cell=cell), d)
        res = cli("export", d, "--format", "onnx,ort,tflite,c", "--precision", "float,int8,dynamic", "--streaming",
                  "-q", timeout=1800)
        assert res.returncode == 0, res.stderr
        runs[cell] = d
    return runs


def _assert_torn_down():
    root = emulate.cache_root()
    assert emulate.mounts_under(root) == [], "something is still mounted under the emulator cache"
    for d in root.iterdir():
        if d.is_dir():
            assert emulate.processes_in(d) == [], f"processes left running in {d}"


@pytest.mark.slow
def test_bench_emulated_rpi4_gru(emulated_cache, exported_runs):
    run = exported_runs["gru"]
    res = cli("bench", run, "--target", "rpi4", "--emulate", "--runs", "20", "--warmup", "2", "--json", "-q")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    n = len(list((run / "artifacts").glob("*.json")))
    assert rep["target"] == "rpi4-emulated" and rep["emulated"]["emulated"] is True
    assert rep["emulated"]["qemu_cpu"] == "cortex-a72" and rep["emulated"]["qemu_version"] != "unknown"
    assert rep["machine"]["arch"] == "aarch64" and rep["machine"]["cpu_model"].startswith("4x Cortex-A72") is False
    assert "Cortex-A72" in rep["machine"]["cpu_model"]
    assert "NOT Raspberry Pi timings" in rep["warnings"][0]
    assert len(rep["results"]) == n == 18
    for r in rep["results"]:  # C artifacts run from the library cross-compiled here (the rootfs has no compiler)
        if r["artifact"].endswith(".h"):
            assert r["runtime_version"] == f"prebuilt {r['artifact']}.aarch64.so", r["runtime_version"]
    dp = rep["device_parity"]
    assert {r["mode"] for r in dp["artifacts"]} == {"sequence", "step"} and len(dp["artifacts"]) == n
    assert _verdicts(dp) == _verdicts(_host_parity(run))  # ARM passes and fails exactly what x86 does
    for r in dp["artifacts"]:
        vs = r["vs_host"]
        if r["precision"] != "int8":
            assert vs["max_abs_diff"] < 1e-4, (r["artifact"], vs)  # float/dynamic: ARM == x86 to rounding
        assert vs["agreement"] >= 0.95, (r["artifact"], vs)
    assert (run / "bench-rpi4-emulated.json").is_file() and not (run / "bench-rpi4.json").exists()
    _assert_torn_down()
    # the report: emulated timings are never shown, nor used to choose
    res = cli("report", run, "--target", "rpi4-emulated")
    assert res.returncode == 0, res.stderr
    md = (run / "report.md").read_text()
    assert "is EMULATED" in md and "latencies are omitted" in md and "no recommendation" in md
    passed = sum(_verdicts(dp).values())
    assert "on ARM (`rpi4-emulated`" in md and f"{passed} of {n} artifacts pass" in md


def _verdicts(report: dict) -> dict:
    return {r["artifact"]: r["passed"] for r in report["artifacts"]}


def _host_parity(run) -> dict:
    """This machine's parity on the same outputs the device computes (no soak: a device report has none)."""
    from edgernn.device_parity import host_outputs
    from edgernn.parity import check_parity, find_artifacts
    from edgernn.rundir import load_run

    r = load_run(run)
    paths = find_artifacts(r)
    return check_parity(run, write=False, outputs=host_outputs(r, paths, r.data()["X_test"]))


@pytest.mark.slow
def test_parity_emulated_rpi5_lstm(emulated_cache, exported_runs):
    run = exported_runs["lstm"]
    res = cli("parity", run, "--target", "rpi5", "--emulate", "-q")
    assert "emulated: qemu" in res.stdout and "-cpu cortex-a76" in res.stdout, res.stderr
    rep = json.loads((run / "parity-rpi5-emulated.json").read_text())
    assert res.returncode == (0 if rep["passed"] else 1), res.stderr
    assert rep["device"]["qemu_cpu"] == "cortex-a76" and rep["device"]["arch"] == "aarch64"
    assert len(rep["artifacts"]) == 18 and _verdicts(rep) == _verdicts(_host_parity(run))
    assert all(rep["artifacts"][i]["passed"] for i, r in enumerate(rep["artifacts"]) if r["artifact"].endswith(".h"))
    for r in rep["artifacts"]:
        assert r["vs_host"]["agreement"] >= 0.95, r
        if r["precision"] != "int8":
            assert r["vs_host"]["max_abs_diff"] < 1e-4, r
        if not r["passed"]:  # a failure is re-run on another core (with that core's /proc/cpuinfo: no SIGILL)
            assert r["recheck"]["qemu_cpu"] == "cortex-a72" and "cortex-a76 and cortex-a72" in r["recheck"]["verdict"]
    _assert_torn_down()


@pytest.mark.slow
def test_a_failure_is_rechecked_on_a_second_core(emulated_cache, exported_runs):
    run = exported_runs["gru"]
    # a zero float tolerance fails the float artifacts that differ from torch at all: each failure is re-run
    # under another core, and the verdict says whether it is the artifact or the emulator
    res = cli("parity", run, "--target", "rpi4", "--emulate", "--float-tol", "0", "--float-rtol", "0", "--json",
              "-q", "--artifact", run / "artifacts/sequence-float.onnx", "--artifact",
              run / "artifacts/step-float.tflite")
    assert res.returncode == 1, res.stderr
    assert "parity gate failed" in res.stderr
    rep = json.loads(res.stdout)
    failed = [r for r in rep["artifacts"] if not r["passed"]]
    assert failed, "expected max|diff| > 0 on at least one float artifact"
    for r in failed:
        assert r["recheck"]["qemu_cpu"] == "cortex-a53"
        assert "fails on cortex-a72 and cortex-a53: the artifact, not the emulator" == r["recheck"]["verdict"]
    _assert_torn_down()


@pytest.mark.slow
def test_sshd_that_cannot_start(emulated_cache, monkeypatch):
    # the port sshd is given is taken (the race free_port() cannot exclude): one error, nothing left behind
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setattr(emulator, "free_port", lambda: busy.getsockname()[1])  # where Emulator looks it up
        with pytest.raises(emulate.EmulationError, match="sshd in the emulated rootfs exited with code 255 at start: "
                                                          "Cannot bind any address"):
            with emulate.Emulator(load_board("rpi4"), progress=False):
                pass
    _assert_torn_down()


@pytest.mark.slow
def test_a_wheel_without_aarch64_build_is_named(emulated_cache):
    rootfs = next(p for p in emulate.cache_root().iterdir() if p.name.startswith("debian-"))
    with pytest.raises(emulate.EmulationError) as exc:
        emulate.pip_install(rootfs, ["tensorflow-cpu==2.21.0"], "rpi4", "cortex-a72")
    assert str(exc.value).startswith("no aarch64 wheel of tensorflow-cpu==2.21.0 for Python 3.11 on Debian bookworm, "
                                     "which board rpi4 needs")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_mid_run_leaves_nothing(emulated_cache, exported_runs, sig):
    run = exported_runs["gru"]
    proc = subprocess.Popen(EDGERNN + ["bench", str(run), "--target", "rpi4", "--emulate", "--runs", "2000", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    root = emulate.cache_root()
    rootfs = next(p for p in root.iterdir() if p.name.startswith("debian-"))
    deadline = time.time() + 300
    while not any("edgernn.runtimes.bench_worker" in _cmdline(p) for p in emulate.processes_in(rootfs)):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.2)
    ours = [p for p in emulate.processes_in(rootfs) if _stat(p)[1] == proc.pid]  # its sshd: dies with it
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and err.strip().endswith("terminated"), err
        _assert_torn_down()
        return
    # SIGKILL: no handler runs; the sshd and its sessions die with us, the mounts stay - and the next run
    # (here `emulate status`, then any emulated command) reports and removes them
    assert ours and wait_until(lambda: not any(_stat(p)[0] not in ("", "Z") for p in ours), timeout=30), \
        "the emulated sshd outlived the SIGKILLed edgernn"
    st = json.loads(cli("emulate", "status", "--json").stdout)
    entry = next(e for e in st["rootfs"] if e["path"] == str(rootfs))
    assert entry["mounted"], "SIGKILL should have left the mounts"
    res = cli("emulate", "build", "-q")
    assert res.returncode == 0, res.stderr
    _assert_torn_down()


def _stat(pid: int) -> tuple[str, int]:
    """(state, parent pid) of a process; ("", 0) when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return "", 0
    return fields[0], int(fields[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_cpuinfo_names_the_board_core():
    from edgernn.runtimes.fingerprint import parse_cpuinfo

    text = emulate.cpuinfo_text("cortex-a76", "Raspberry Pi 5 (emulated)")
    assert parse_cpuinfo(text)["cpu_model"].endswith("Cortex-A76")
    assert "Model\t\t: Raspberry Pi 5 (emulated)" in text
    from edgernn.devices.boards import CORES, SECOND_CORE

    assert np.all([c in SECOND_CORE for c in CORES])


@pytest.mark.slow
def test_a_worker_killed_by_sigill_is_named_not_taken_for_a_lost_connection(emulated_cache, exported_runs):
    # cpuinfo says Cortex-A76 (dot product) while qemu runs a Cortex-A72: onnxruntime's int8 kernels for the
    # A76 hit an instruction the A72 lacks. ssh exits 255 as on a lost connection; the error must say crash.
    from edgernn.device_parity import collect_outputs
    from edgernn.devices.targets import get_target
    from edgernn.errors import TargetError
    from edgernn.rundir import load_run

    run = load_run(exported_runs["lstm"])
    board = load_board("rpi5")
    with emulate.Emulator(board, progress=False) as emu:
        tgt = get_target(board, host=emu.host, remote_env={"QEMU_CPU": "cortex-a72"}, **emu.target_opts())
        with pytest.raises(TargetError, match=r"crashed on edgernn-emulated-rpi5 \(qemu: uncaught target signal 4 "
                                              r"\(Illegal instruction\).*SIGILL means"):
            collect_outputs(tgt, [run.artifacts_dir / "sequence-int8.onnx"], run.data()["X_test"], progress=False)
    _assert_torn_down()
