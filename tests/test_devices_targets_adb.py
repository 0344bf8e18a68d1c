"""
Tests for the Android target (edgernn.devices.targets.adb): parsing of REAL recorded output of TFLite's
benchmark_model and onnxruntime_perf_test (tests/fixtures/android/*.txt, each naming its source URL on
its first line), and the exact adb command lines the target builds, including quoting.

No Android device or emulator exists here, so the adb runner is replaced by a recorder - the one test
double in this file. It answers `adb shell` calls by running the device-side fingerprint script with
this machine's real sh, and the benchmark call with a recorded tool output; everything else the target
does (job checks, manifests, argv, parsing, cleanup) is the real code on real exported artifacts.

    .venv/bin/pytest tests/test_targets_adb.py
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgernn.devices.boards import load_board
from edgernn.devices.targets import BenchJob, get_target
from edgernn.devices.targets.adb import (
    FINGERPRINT_SCRIPT,
    RC_MARK,
    fingerprint_from_sections,
    parse_benchmark_model,
    parse_perf_test,
    parse_sections,
)
from edgernn.errors import ConfigError, TargetError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "android"
WORKDIR = "/data/local/tmp/edgernn-abcd1234"


def fixture(name: str) -> str:
    text = (FIXTURES / name).read_text()
    first, _, rest = text.partition("\n")
    assert first.startswith("# source: https://"), f"{name} must name its source URL on line 1"
    return rest


# ---- parsers on recorded output -----------------------------------------------------------------------
def test_benchmark_model_tf218_info_format():
    p = parse_benchmark_model(fixture("benchmark_model_ti_am62x_tf2.18.txt"))
    lat = p["latency_us"]
    # the timed run's line, not the warm-up's "count=1 curr=1357602 ..."
    assert lat == {"n": 50, "p50": 1239807.0, "p90": None, "p99": None, "mean": 1240270.0, "std": 2565.0,
                   "min": 1238588.0, "max": 1252566.0, "p5": 1238753.0, "p95": 1247415.0}
    assert p["load_s"] == pytest.approx(0.005579) and p["first_inference_s"] == pytest.approx(1.357602)
    assert p["warmup_mean_us"] == pytest.approx(1.3576e6)
    assert p["rss_mb"]["init"] == pytest.approx(6.36328) and p["rss_mb"]["overall"] == pytest.approx(109.832)


def test_benchmark_model_android_older_format():
    p = parse_benchmark_model(fixture("benchmark_model_android_issue42507.txt"))
    lat = p["latency_us"]
    assert (lat["n"], lat["mean"], lat["std"], lat["min"], lat["max"]) == (50, 33209.4, 450.0, 32641.0, 34005.0)
    assert lat["p50"] is None  # this version prints no median: never invented
    assert p["load_s"] == pytest.approx(855e-6) and p["first_inference_s"] == pytest.approx(0.04906)
    assert p["rss_mb"]["overall"] == pytest.approx(12.8672)


def test_perf_test_android_with_percentiles():
    p = parse_perf_test(fixture("onnxruntime_perf_test_android_c1pro.txt"))
    lat = p["latency_us"]
    assert lat["n"] == 5 and lat["mean"] == pytest.approx(98961.997)
    assert lat["p50"] == pytest.approx(99508.6) and lat["p90"] == pytest.approx(101519.0)
    assert lat["p99"] == pytest.approx(101519.0) and lat["min"] == pytest.approx(95820.4)
    assert lat["max"] == pytest.approx(101519.0) and lat["std"] is None
    assert p["load_s"] == pytest.approx(0.217932) and p["first_inference_s"] == pytest.approx(0.196)
    assert p["rss_mb"]["peak"] == pytest.approx(271122432 / 2**20, abs=1e-3)
    assert p["throughput_per_s"] == pytest.approx(10.104) and p["cpu_usage_pct"] == 11


def test_perf_test_old_and_variant_formats():
    old = parse_perf_test(fixture("onnxruntime_perf_test_acl_1.3.txt"))
    assert old["latency_us"]["n"] == 10 and old["latency_us"]["mean"] == pytest.approx(144871.0)
    assert old["latency_us"]["p50"] is None and old["first_inference_s"] is None
    assert old["load_s"] == pytest.approx(0.127918) and old["rss_mb"]["peak"] == pytest.approx(150.844, abs=1e-3)
    var = parse_perf_test(fixture("onnxruntime_perf_test_issue17313.txt"))
    assert var["latency_us"]["n"] == 1000 and var["latency_us"]["mean"] == pytest.approx(58805.3)
    assert var["latency_us"]["p50"] == pytest.approx(58710.8) and var["latency_us"]["p99"] == pytest.approx(61951.7)


def test_parsers_refuse_other_text():
    with pytest.raises(ValueError, match="benchmark_model"):
        parse_benchmark_model(fixture("onnxruntime_perf_test_acl_1.3.txt"))
    with pytest.raises(ValueError, match="onnxruntime_perf_test"):
        parse_perf_test(fixture("benchmark_model_ti_am62x_tf2.18.txt"))


def test_fingerprint_sections_from_a_real_shell():
    """The device-side fingerprint script, run by this machine's sh (getprop is absent here: null)."""
    out = subprocess.run(["sh", "-c", FINGERPRINT_SCRIPT + " 2>/dev/null; true"], capture_output=True, text=True,
                         timeout=30).stdout
    sec = parse_sections(out)
    assert {"uname", "machine", "cpuinfo", "meminfo", "model", "end"} <= set(sec)
    fp = fingerprint_from_sections(sec)
    assert fp["arch"] == os.uname().machine and fp["cores"] == os.cpu_count() and fp["ram_mb"] > 0
    assert fp["cpu_model"] and fp["os"] is None and fp["python"] is None


# ---- command construction -----------------------------------------------------------------------------
class Recorder:
    """Stands in for the adb binary (no device here). Records argv; answers like adb would."""

    def __init__(self, tool_output: str = "", fail_on: str | None = None, fail_text: str = ""):
        self.calls = []
        self.tool_output = tool_output
        self.fail_on, self.fail_text = fail_on, fail_text

    def __call__(self, argv, input=None, timeout=None):
        self.calls.append(list(argv))
        if self.fail_on and any(self.fail_on in a for a in argv):
            return subprocess.CompletedProcess(argv, 1, "", self.fail_text)
        if argv[-2] == "shell":
            script = argv[-1]
            if script.startswith(FINGERPRINT_SCRIPT):
                out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30).stdout
                return subprocess.CompletedProcess(argv, 0, out, "")
            if "--graph=" in script or " -I " in script:
                return subprocess.CompletedProcess(argv, 0, self.tool_output + f"\n{RC_MARK}0\n", "")
            return subprocess.CompletedProcess(argv, 0, f"{RC_MARK}0\n", "")
        if argv[-3] == "push":
            return subprocess.CompletedProcess(argv, 0, f"{argv[-2]}: 1 file pushed, 0 skipped.\n", "")
        raise AssertionError(f"unexpected adb call {argv}")


@pytest.fixture(autouse=True)
def fixed_workdir(monkeypatch):
    import edgernn.devices.targets.adb as adb_mod

    monkeypatch.setattr(adb_mod.secrets, "token_hex", lambda n: "abcd1234")


@pytest.fixture(scope="module")
def adb_artifacts(onnx_artifacts):
    """Real exported ONNX artifacts (sequence + step, float) of a tiny trained LSTM, and test windows
    (conftest.onnx_artifacts): ({"sequence": path, "step": path}, windows.npy)."""
    a = onnx_artifacts(cell="lstm", hidden=16)
    return {mode: a[mode] for mode in ("sequence", "step")}, a["windows"]


def _tool(tmp_path, name):
    d = tmp_path / "my tools; $(reboot)"
    d.mkdir(exist_ok=True)
    t = d / name
    t.write_bytes(b"\x7fELF not really a binary: never executed here")
    return t


def _shell(script: str) -> list:
    return ["adb", "-s", "SER123", "shell", script + f"; echo {RC_MARK}$?"]


@pytest.mark.export
def test_perf_test_command_lines(adb_artifacts, tmp_path):
    paths, windows = adb_artifacts
    tool = _tool(tmp_path, "onnxruntime_perf_test")
    rec = Recorder(tool_output=fixture("onnxruntime_perf_test_android_c1pro.txt"))
    tgt = get_target(load_board("android"), host="SER123", tool=str(tool), runner=rec)
    res = tgt.run([BenchJob(artifact=paths["sequence"], input=windows, runs=50, warmup=5, threads=2),
                   BenchJob(artifact=paths["step"], input=windows, runs=50, warmup=5, threads=1)])
    exe = f"{WORKDIR}/onnxruntime_perf_test"
    assert rec.calls[0][:4] == ["adb", "-s", "SER123", "shell"] and rec.calls[0][4].startswith(FINGERPRINT_SCRIPT)
    assert rec.calls[1:] == [
        _shell(f"mkdir -p {WORKDIR}"),
        ["adb", "-s", "SER123", "push", str(tool), exe],  # local path = one argv element, no shell
        _shell(f"chmod 755 {exe}"),
        ["adb", "-s", "SER123", "push", str(paths["sequence"]), f"{WORKDIR}/a0.onnx"],
        ["adb", "-s", "SER123", "push", str(paths["step"]), f"{WORKDIR}/a1.onnx"],
        _shell(f"cd {WORKDIR} && {exe} -I -m times -r 50 -x 2 -e cpu -s -f batch:1 -f time:40 {WORKDIR}/a0.onnx 2>&1"),
        _shell(f"cd {WORKDIR} && {exe} -I -m times -r 50 -x 1 -e cpu -s -f batch:1 {WORKDIR}/a1.onnx 2>&1"),
        rec.calls[8],  # fingerprint after
        _shell(f"rm -rf {WORKDIR}"),
    ]
    assert rec.calls[8][4].startswith(FINGERPRINT_SCRIPT)
    r = res[0]
    assert (r["artifact"], r["runtime"], r["tool"]) == ("sequence-float.onnx", "onnxruntime", "onnxruntime_perf_test")
    assert r["latency_us"]["p50"] == pytest.approx(99508.6) and r["threads"] == 2
    assert r["load_s"] == pytest.approx(0.217932)
    assert r["size_bytes"] == paths["sequence"].stat().st_size and r["latency_unit"] == "window"
    assert res[1]["latency_unit"] == "frame"
    # this machine (x86_64) stood in for the phone: the arch check must notice
    assert any("android-arm64" in w and "aarch64" in w for w in r["warnings"])
    assert any("random inputs" in w for w in r["warnings"])


@pytest.mark.export
def test_hostile_extra_args_are_quoted(adb_artifacts, tmp_path):
    paths, windows = adb_artifacts
    rec = Recorder(tool_output=fixture("onnxruntime_perf_test_android_c1pro.txt"))
    tgt = get_target(load_board("android"), tool=str(_tool(tmp_path, "onnxruntime_perf_test")), runner=rec,
                     extra_args=["-C", "session.x|1; reboot", "$(rm -rf /)"], cpu_mask="f0")
    tgt.run([BenchJob(artifact=paths["sequence"], input=windows, runs=5, warmup=0)])
    run_call = next(c for c in rec.calls if c[-1].startswith(f"cd {WORKDIR} && "))
    assert run_call[:2] == ["adb", "shell"]  # no -s without a serial
    script = run_call[-1]
    assert "taskset f0 " in script and "'session.x|1; reboot'" in script and "'$(rm -rf /)'" in script
    # a POSIX shell splits it back into exactly the intended words
    words = shlex.split(script.rsplit(";", 1)[0].split("&&", 1)[1])
    assert words[-5:] == [f"{WORKDIR}/a0.onnx", "-C", "session.x|1; reboot", "$(rm -rf /)", "2>&1"]


@pytest.mark.slow
@pytest.mark.export
def test_benchmark_model_command_line_for_a_real_tflite(make_run, tmp_path_factory, tmp_path):
    from edgernn.export.tflite.convert import export_tflite
    from edgernn.rundir import load_run

    run = load_run(make_run(cell="lstm", hidden=16))
    out = tmp_path_factory.mktemp("adb-tflite")
    art = export_tflite(run, out, precision="float", mode="sequence")
    windows = out / "w.npy"
    np.save(windows, run.data()["X_test"][:4].astype(np.float32))
    tool = _tool(tmp_path, "android_aarch64_benchmark_model")
    rec = Recorder(tool_output=fixture("benchmark_model_ti_am62x_tf2.18.txt"))
    tgt = get_target(load_board("android-arm64"), tool=str(tool), serial="emulator-5554", runner=rec)
    (r,) = tgt.run([BenchJob(artifact=art, input=windows, runs=100, warmup=10, threads=4)])
    exe = f"{WORKDIR}/benchmark_model"
    assert ["adb", "-s", "emulator-5554", "push", str(tool), exe] in rec.calls
    assert ["adb", "-s", "emulator-5554", "push", str(art), f"{WORKDIR}/a0.tflite"] in rec.calls
    from edgernn.runtimes.manifest import read_manifest

    x = read_manifest(art)["inputs"][0]
    want = [exe, f"--graph={WORKDIR}/a0.tflite", "--num_threads=4", "--num_runs=100", "--warmup_runs=10",
            "--report_peak_memory_footprint=true"]
    if None in (x["shape"] or [None]):  # dynamic time axis: the tool needs the window shape
        want += [f"--input_layer={x['name']}", "--input_layer_shape=1,40,6"]
    run_call = next(c for c in rec.calls if "--graph=" in c[-1])
    assert run_call[-1] == f"cd {WORKDIR} && " + " ".join(shlex.quote(w) for w in want) + f" 2>&1; echo {RC_MARK}$?"
    assert r["runtime"] == "litert" and r["latency_us"]["p50"] == pytest.approx(1239807.0)
    assert r["rss_mb"]["overall"] == pytest.approx(109.832)


# ---- failures -----------------------------------------------------------------------------------------
@pytest.mark.export
def test_no_device(adb_artifacts, tmp_path):
    paths, windows = adb_artifacts
    rec = Recorder(fail_on="shell", fail_text="adb: no devices/emulators found")
    tgt = get_target(load_board("android"), tool=str(_tool(tmp_path, "onnxruntime_perf_test")), runner=rec)
    with pytest.raises(TargetError, match="no Android device visible to adb.*USB debugging"):
        tgt.run([BenchJob(artifact=paths["sequence"], input=windows)])
    assert len(rec.calls) == 1  # nothing created, so nothing to remove


@pytest.mark.export
def test_tool_output_without_timings_cleans_up(adb_artifacts, tmp_path):
    paths, windows = adb_artifacts
    # made-up text, not a recording: any output without timings must fail clearly
    rec = Recorder(tool_output='CANNOT LINK EXECUTABLE "./onnxruntime_perf_test": library "libc++_shared.so" '
                               "not found")
    tgt = get_target(load_board("android"), tool=str(_tool(tmp_path, "onnxruntime_perf_test")), runner=rec)
    with pytest.raises(TargetError, match="printed no timings.*libc\\+\\+_shared.so"):
        tgt.run([BenchJob(artifact=paths["sequence"], input=windows)])
    assert rec.calls[-1] == ["adb", "shell", f"rm -rf {WORKDIR}; echo {RC_MARK}$?"]


@pytest.mark.export
def test_tool_and_format_must_match(adb_artifacts, tmp_path):
    paths, windows = adb_artifacts
    rec = Recorder()
    tgt = get_target(load_board("android"), tool=str(_tool(tmp_path, "benchmark_model")), runner=rec)
    with pytest.raises(ConfigError, match="runs .tflite files only.*--runtime litert.*onnxruntime_perf_test"):
        tgt.run([BenchJob(artifact=paths["sequence"], input=windows)])
    assert rec.calls == []  # refused before touching the device


def test_tool_option_errors(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros((1, 4, 6), np.float32))
    with pytest.raises(ConfigError, match="needs --tool"):
        get_target(load_board("android")).run([BenchJob(artifact=None, input=tmp_path / "w.npy")])
    with pytest.raises(ConfigError, match="cannot tell which tool"):
        get_target(load_board("android"), tool=str(tmp_path / "mybench"))
    with pytest.raises(ConfigError, match="does not exist"):
        get_target(load_board("android"), tool=str(tmp_path / "benchmark_model")).run(
            [BenchJob(artifact=None, input=tmp_path / "w.npy")])
    with pytest.raises(ConfigError, match="not a device serial"):
        get_target(load_board("android"), host="SER; reboot", tool="benchmark_model")


def test_missing_adb_binary_is_a_clear_error():
    tgt = get_target(load_board("android"), tool="benchmark_model", adb="/nonexistent/adb")
    with pytest.raises(TargetError, match="adb .*is not installed.*apt-get install adb"):
        tgt.fingerprint()
