"""
Tests for the local benchmark target (edgernn.devices.targets.local) and the machine fingerprint
(edgernn.runtimes.fingerprint): real ONNX artifacts measured by the real worker in fresh processes,
parity outputs equal to an in-process session, worker errors turned into one-line TargetErrors, and the
fingerprint parsers on /proc text and vcgencmd output.

    .venv/bin/pytest tests/test_targets_local.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgernn.devices.boards import load_board
from edgernn.devices.targets import BenchJob, get_target, throttle_warnings, worker_time_s
from edgernn.errors import ArtifactError, ConfigError, TargetError
from edgernn.runtimes import fingerprint as fpm

ROOT = Path(__file__).resolve().parents[1]
WORKER_KEYS = {"artifact", "format", "precision", "mode", "runtime", "runtime_version", "threads", "load_s",
               "first_inference_s", "latency_us", "throughput_per_s", "stream_us", "rss_mb", "size_bytes"}
ADDED_KEYS = {"target", "fingerprint_after", "transfer_s", "remote_overhead_s", "warnings", "wall_s",
              "worker_time_s"}
FP_KEYS = {"uname", "arch", "machine", "cpu_model", "cores", "ram_mb", "os", "python", "governor",
           "temperature_c", "throttled", "packages"}


@pytest.fixture(scope="module")
def artifacts(onnx_artifacts):
    """Real exported ONNX artifacts (sequence + step, float) of a tiny trained LSTM, and test windows
    (conftest.onnx_artifacts): ({"sequence": path, "step": path}, windows.npy)."""
    a = onnx_artifacts(cell="lstm", hidden=16)
    return {mode: a[mode] for mode in ("sequence", "step")}, a["windows"]


@pytest.mark.export
def test_local_run_sequence_and_step_with_parity(artifacts):
    paths, windows = artifacts
    tgt = get_target(load_board("desktop"))
    seen = []
    jobs = [BenchJob(artifact=paths["sequence"], input=windows, runs=30, warmup=3, threads=1, stream_frames=0,
                     parity_input=windows),
            BenchJob(artifact=paths["step"], input=windows, runs=30, warmup=3, threads=1, stream_frames=20)]
    res = tgt.run(jobs, progress=lambda done, total, job: seen.append((done, total, job.label)))
    assert seen == [(1, 2, "sequence-float.onnx"), (2, 2, "step-float.onnx")]
    assert len(res) == 2
    for r, job in zip(res, jobs):
        assert WORKER_KEYS | ADDED_KEYS <= set(r)
        assert r["artifact"] == Path(job.artifact).name and r["latency_us"]["n"] == 30
        assert 0 < r["latency_us"]["p50"] <= r["latency_us"]["p99"]
        assert r["transfer_s"] == 0.0
        # the wall time of a fresh process includes interpreter start + imports: always above the measured part
        assert r["wall_s"] > r["worker_time_s"] > 0 and r["remote_overhead_s"] > 0
        assert not any("architecture" in w for w in r["warnings"])  # desktop profile: arch "any"
        assert FP_KEYS <= set(r["target"]) and FP_KEYS <= set(r["fingerprint_after"])
    assert res[1]["stream_us"]["n"] == 20 and res[1]["latency_unit"] == "frame"
    # on-"device" parity outputs: the worker's predict() == an in-process session's
    from edgernn.runtimes import load

    X = np.load(windows)
    with load(paths["sequence"]) as s:
        want = s.predict(X)
    got = res[0]["parity_output"]
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-6)
    assert "parity_out" not in res[0] and "parity_output" not in res[1]


@pytest.mark.export
def test_worker_error_is_one_line_target_error(artifacts, tmp_path):
    paths, _ = artifacts
    bad = tmp_path / "flat.npy"
    np.save(bad, np.zeros((4, 6), np.float32))  # 2-D: the worker wants [N, T, C]
    before = paths["sequence"].read_bytes()
    with pytest.raises(TargetError) as e:
        get_target("desktop").run([BenchJob(artifact=paths["sequence"], input=bad, runs=5, warmup=0)])
    msg = str(e.value)
    assert "sequence-float.onnx" in msg and "[N, T, C]" in msg and "\n" not in msg
    assert paths["sequence"].read_bytes() == before


@pytest.mark.export
def test_tampered_artifact_is_refused_before_running(artifacts, tmp_path):
    paths, windows = artifacts
    import shutil

    a = tmp_path / "sequence-float.onnx"
    shutil.copy(paths["sequence"], a)
    shutil.copy(str(paths["sequence"]) + ".json", str(a) + ".json")
    with open(a, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="bytes but its manifest records"):
        get_target("desktop").run([BenchJob(artifact=a, input=windows)])


def test_job_validation_and_get_target_errors(tmp_path):
    tgt = get_target("desktop")
    with pytest.raises(ConfigError, match="does not exist"):
        tgt.run([BenchJob(artifact=None, input=tmp_path / "missing.npy", torch_run=tmp_path)])
    np.save(tmp_path / "w.npy", np.zeros((1, 4, 6), np.float32))
    with pytest.raises(ConfigError, match="artifact or a torch_run"):
        tgt.run([BenchJob(artifact=None, input=tmp_path / "w.npy")])
    with pytest.raises(ConfigError, match="--host"):
        get_target("rpi4")
    with pytest.raises(ConfigError, match="runs locally"):
        get_target("desktop", host="pi@raspberrypi.local")


def test_torch_eager_reference_runs_locally(make_run, tmp_path):
    from edgernn.rundir import load_run

    run_dir = make_run(cell="lstm", hidden=16)
    w = tmp_path / "w.npy"
    np.save(w, load_run(run_dir).data()["X_test"][:4].astype(np.float32))
    (r,) = get_target("desktop").run([BenchJob(artifact=None, input=w, runs=10, warmup=1, stream_frames=0,
                                               torch_run=run_dir)])
    assert r["runtime"] == "torch" and r["latency_us"]["n"] == 10


# ---- fingerprint --------------------------------------------------------------------------------------
def test_fingerprint_of_this_machine():
    fp = get_target("desktop").fingerprint()
    assert FP_KEYS <= set(fp)
    assert fp["arch"] == os.uname().machine and fp["cores"] == os.cpu_count()
    assert fp["ram_mb"] > 0 and fp["python"] == ".".join(map(str, sys.version_info[:3]))
    assert fp["packages"]["numpy"] == np.__version__
    assert fp["python_executable"] == sys.executable


def test_fingerprint_script_runs_with_a_python_that_has_no_numpy(tmp_path):
    """The device check feeds fingerprint.py to the device's python on stdin: it must need only the
    standard library, and report a missing module instead of failing."""
    src = (ROOT / "edgernn" / "runtimes" / "fingerprint.py").read_bytes()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONNOUSERSITE": "1"}
    proc = subprocess.run([sys.executable, "-S", "-", "--require", "numpy", "--require", "nonexistent_mod|json"],
                          input=src, capture_output=True, cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    fp = json.loads(proc.stdout)
    assert fp["imports"]["numpy"]["ok"] is False and "numpy" in fp["imports"]["numpy"]["error"]
    alt = fp["imports"]["nonexistent_mod|json"]  # alternatives: the first importable one wins
    assert alt["ok"] is True and alt["module"] == "json" and alt["error"] is None


def test_fingerprint_script_does_not_shadow_onnxruntime(tmp_path):
    """Run as a script from edgernn/runtimes/ (sys.path[0] is that directory), `import onnxruntime` must
    find the real package: no file there is named after a package it wraps (no sys.path workaround)."""
    names = {p.stem for p in (ROOT / "edgernn" / "runtimes").glob("*.py")}
    assert not names & {"onnxruntime", "torch", "tensorflow", "numpy", "ai_edge_litert", "tflite_runtime", "litert"}
    proc = subprocess.run([sys.executable, str(ROOT / "edgernn" / "runtimes" / "fingerprint.py"),
                           "--require", "onnxruntime"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)["imports"]["onnxruntime"]
    import onnxruntime

    assert res["ok"] and res["version"] == onnxruntime.__version__


# A Raspberry Pi 4's /proc/cpuinfo on 64-bit Raspberry Pi OS (12, kernel 6.12 rpi-v8) as posted by a user;
# aarch64 prints no "model name", only CPU part numbers, then the board lines
PI4_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n" for i in range(4)
) + "Revision\t: c03111\nSerial\t\t: 10000000a43957f6\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"


def test_cpuinfo_parsing():
    pi = fpm.parse_cpuinfo(PI4_CPUINFO)
    assert pi == {"cpu_model": "Cortex-A72", "board_model": "Raspberry Pi 4 Model B Rev 1.1", "hardware": None}
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n\n" * 2
    assert fpm.parse_cpuinfo(x86) == {"cpu_model": "AMD EPYC", "board_model": None, "hardware": None}
    big_little = "".join(f"processor\t: {i}\nCPU part\t: {'0xd05' if i < 4 else '0xd41'}\n\n" for i in range(8))
    assert fpm.parse_cpuinfo(big_little)["cpu_model"] == "4x Cortex-A55 + 4x Cortex-A78"
    armv7 = ("processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nCPU part\t: 0xd03\n\n"
             "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 3 Model B Rev 1.2\n")
    assert fpm.parse_cpuinfo(armv7) == {"cpu_model": "Cortex-A53", "board_model": "Raspberry Pi 3 Model B Rev 1.2",
                                        "hardware": "BCM2835"}
    assert fpm.parse_cpuinfo(None)["cpu_model"] is None


def test_meminfo_os_release_and_this_machines_files():
    assert fpm.parse_meminfo("MemTotal:        3884328 kB\nMemAvailable:    3301200 kB\n") == \
        {"ram_mb": 3793, "ram_available_mb": 3223}
    assert fpm.parse_os_release('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n') == \
        "Debian GNU/Linux 12 (bookworm)"
    assert fpm.parse_os_release('NAME="Raspbian"\nVERSION="11 (bullseye)"\n') == "Raspbian 11 (bullseye)"
    assert fpm.parse_os_release("") is None
    with open("/proc/meminfo") as f:
        assert fpm.parse_meminfo(f.read())["ram_mb"] > 0
    with open("/proc/cpuinfo") as f:
        assert fpm.parse_cpuinfo(f.read())["cpu_model"]


def test_vcgencmd_parsing_and_throttle_warnings():
    # output formats documented for `vcgencmd measure_temp` / `vcgencmd get_throttled`
    assert fpm.parse_vcgencmd_temp("temp=48.3'C\n") == 48.3
    assert fpm.parse_throttled("throttled=0x0\n") == ("0x0", 0)
    raw, value = fpm.parse_throttled("throttled=0x50005\n")
    assert (raw, value) == ("0x50005", 0x50005)
    assert fpm.decode_throttled(value) == ["under-voltage detected now", "throttled now",
                                           "under-voltage has occurred since boot",
                                           "throttling has occurred since boot"]
    assert fpm.parse_thermal_millic("48312\n") == 48.3
    ok = {"throttled": "0x0", "temperature_c": 45.0}
    assert throttle_warnings(ok, ok) == []
    hot = {"throttled": "0x50005", "throttled_flags": fpm.decode_throttled(0x50005), "temperature_c": 81.0}
    w = throttle_warnings(ok, hot)
    assert len(w) == 2 and "throttled after" in w[0] and "0x50005" in w[0] and "45.0 to 81.0" in w[1]
    assert throttle_warnings({}, {}) == []  # no vcgencmd: nothing to say


def test_worker_time_estimate():
    r = {"load_s": 0.1, "first_inference_s": 0.01, "warmup": 10, "latency_us": {"n": 90, "mean": 1000.0},
         "stream_us": {"n": 100, "mean": 500.0}}
    assert worker_time_s(r) == pytest.approx(0.1 + 0.01 + 100 * 1e-3 + 100 * 5e-4)
