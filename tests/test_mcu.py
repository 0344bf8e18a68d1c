"""
Emulated microcontrollers (edgernn.devices.mcu, edgernn.mcu_parity, edgernn.mcu_bench): real firmware
built with arm-none-eabi-gcc + newlib and run by a real qemu-system-arm on Cortex-M4/M7/M55 boards, against
the same harness built for this machine. Nothing is mocked except PATH in the missing-tool test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgernn.cli import main

TOOLS = ("qemu-system-arm", "arm-none-eabi-gcc")
need_tools = pytest.mark.skipif(not os.environ.get("CI") and not all(shutil.which(t) for t in TOOLS),
                                reason="needs qemu-system-arm and arm-none-eabi-gcc (make mcu-deps)")
pytestmark = need_tools


@pytest.fixture(scope="module")
def c_run(make_run, tmp_path_factory):
    """A private copy of the synthetic GRU h16 run with float and int8 C artifacts (sequence and step)."""
    from edgernn.export import export_run

    dst = tmp_path_factory.mktemp("mcu") / "gru"
    shutil.copytree(make_run(cell="gru"), dst)
    export_run(dst, formats=["c"], precisions=["float", "int8"], streaming=True)
    return dst


def _session(run_dir, name, core="cortex-m4", tmp=None, timeout=600.0):
    from edgernn.devices.mcu.cores import CORES
    from edgernn.devices.mcu.session import McuSession
    from edgernn.runtimes.manifest import read_manifest

    p = Path(run_dir) / "artifacts" / name
    return McuSession(p, read_manifest(p), CORES[core], core, Path(tmp), timeout=timeout)


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7", "cortex-m55"])
def test_every_core_runs_int8_bit_exact_and_counts_repeatably(c_run, tmp_path, core):
    """The int8 step artifact on each core: outputs identical to this machine's build of the same harness and
    to the C runtime the desktop uses (within float rounding), an instruction count that is the same on a
    second run, a stack high-water mark from painting."""
    from edgernn.rundir import load_run
    from edgernn.runtimes import load

    X = load_run(c_run).data()["X_test"][:4]
    s = _session(c_run, "step-int8.h", core, tmp_path)
    frames = X.reshape(-1, X.shape[-1])
    out, _ = s.stream_outputs(frames, range(0, len(frames), X.shape[1]))
    out2, _ = s.stream_outputs(frames, range(0, len(frames), X.shape[1]))
    a, b = s.jobs
    assert a["bit_exact_vs_host"] and b["bit_exact_vs_host"], a
    assert np.array_equal(out, out2)
    assert a["instructions"] == b["instructions"] and a["instructions_per_call"] > 1000, (a, b)
    assert 100 < a["stack_bytes"] < 16384, a
    desk = load(Path(c_run) / "artifacts" / "step-int8.h")
    last = out.reshape(len(X), X.shape[1], -1)[:, -1]
    np.testing.assert_allclose(last, desk.predict(X), atol=1e-5)


def test_parity_on_emulated_cortex_m4_with_soak(c_run):
    """`edgernn parity --target cortex-m4 --emulate`: every C artifact gated on the MCU, the soak streamed
    there, int8 bit-exact with the host, flash/RAM/stack in the JSON; the other formats are named, not run."""
    res = CliRunner().invoke(main, ["parity", str(c_run), "--target", "cortex-m4", "--emulate", "-q"])
    assert res.exit_code == 0, res.output
    assert "bit-exact" in res.output and "cortex-m4" in res.output
    rep = json.loads((c_run / "parity-cortex-m4-emulated.json").read_text())
    rows = {r["artifact"]: r for r in rep["artifacts"]}
    assert sorted(rows) == ["sequence-float.h", "sequence-int8.h", "step-float.h", "step-int8.h"]
    for name, r in rows.items():
        assert r["passed"], (name, r.get("failed_rules"))
        assert r["vs_host"]["bit_exact"], name
        fp = r["mcu"]["footprint"]
        assert fp["flash_bytes"] > 1000 and fp["stack_bytes"] > 0 and fp["ram_bytes"] > fp["stack_bytes"]
    soak = rows["step-int8.h"]["long_stream"]
    assert soak["frames"] >= 20000 and soak["passed"]
    assert rows["step-int8.h"]["mcu"]["by_op"]["stream"]["calls"] >= 2 * 20000  # the soak ran on the MCU


def test_bench_counts_estimates_and_refuses_what_does_not_fit(c_run, tmp_path, monkeypatch):
    """bench on an emulated board: instructions per window/frame, an estimate labelled as one, stack, flash,
    RAM; on a board profile too small for the model, every artifact is marked as not fitting, with numbers,
    and parity refuses to run them."""
    from edgernn.mcu_bench import mcu_bench_run

    rep = mcu_bench_run(c_run, "cortex-m55", stream_frames=200, progress=False)
    assert rep["kind"] == "mcu" and "ESTIMATE" in rep["estimate_note"] and rep["cpi_assumption"] == 1.0
    rows = {r["artifact"]: r for r in rep["artifacts"]}
    step = rows["step-float.h"]
    assert step["per"] == "frame" and step["calls"] == 200 and step["fits"]
    assert step["estimated_us"] == pytest.approx(step["instructions"] / 32, rel=1e-3)
    assert set(rep["int8_vs_float_instructions"]) == {"sequence", "step"}
    assert (c_run / "bench-cortex-m55-emulated.json").is_file()

    tiny = tmp_path / "tiny.toml"
    tiny.write_text('description = "tiny"\narch = "armv7e-m"\ncpu = "M4"\ntransport = "mcu"\ncore = "cortex-m4"\n'
                    'flash_kb = 4\nram_kb = 64\nclock_mhz = 48\n')
    res = CliRunner().invoke(main, ["parity", str(c_run), "--target", str(tiny), "--emulate", "-q"])
    assert res.exit_code == 1, res.output
    assert "REFUSED: needs" in res.output and "B of flash, tiny has 4,096 B" in res.output


def _broken(c_run, tmp_path, body: str) -> Path:
    """A copy of step-float.h whose step function starts with `body` (a fault, a hang), manifest re-hashed."""
    import hashlib

    src = Path(c_run) / "artifacts" / "step-float.h"
    m = json.loads(Path(str(src) + ".json").read_text())
    p = m["c"]["prefix"]
    text = src.read_text()
    marker = f"void {p}_step({p}_state *st, const float *frame, float *out)\n{{"
    assert marker in text
    text = text.replace(marker, marker + "\n    " + body, 1)
    dst = tmp_path / "artifacts" / "step-float.h"
    dst.parent.mkdir(parents=True)
    dst.write_text(text)
    m["sha256"] = hashlib.sha256(dst.read_bytes()).hexdigest()
    m["size_bytes"] = dst.stat().st_size
    Path(str(dst) + ".json").write_text(json.dumps(m))
    return dst


def test_a_fault_and_a_hang_are_one_line_and_leave_nothing_running(c_run, tmp_path):
    from edgernn.devices.mcu.cores import CORES
    from edgernn.devices.mcu.emulator import run_mcu, stream_job
    from edgernn.devices.mcu.firmware import build
    from edgernn.errors import TargetError

    job = stream_job(np.zeros((3, 6), np.float32), [0])
    for body, expect, timeout in (("*(volatile unsigned *)0x70000000u = 1u; /* no memory there */", "BusFault", 60),
                                  ("for (;;) { }", "no answer within 3 s", 3)):
        d = tmp_path / expect.split()[0]
        path = _broken(c_run, d, body)
        m = json.loads(Path(str(path) + ".json").read_text())
        fw = build(path, m, CORES["cortex-m4"], d / "work")
        with pytest.raises(TargetError) as e:
            run_mcu(fw, job, 4, "step-float.h", "nucleo-l476rg", timeout=timeout)
        msg = str(e.value)
        assert "\n" not in msg and expect in msg and "step-float.h" in msg and "nucleo-l476rg" in msg, msg
        left = subprocess.run(["pgrep", "-f", str(fw.elf)], capture_output=True, text=True).stdout.strip()
        assert not left, f"qemu still running: {left}"


def test_missing_tools_and_bad_profiles_are_one_line(tmp_path, monkeypatch):
    from edgernn.devices.boards import load_board
    from edgernn.devices.mcu.cores import check_tools
    from edgernn.errors import ConfigError, MissingDependencyError

    monkeypatch.setenv("PATH", str(tmp_path))  # the only double here: an empty PATH, so no tool is found
    with pytest.raises(MissingDependencyError, match="apt-get install qemu-system-arm gcc-arm-none-eabi"):
        check_tools()
    monkeypatch.undo()
    bad = tmp_path / "bad.toml"
    bad.write_text('description = "x"\narch = "a"\ncpu = "c"\ntransport = "mcu"\ncore = "cortex-m3"\n'
                   'flash_kb = 1\nram_kb = 1\nclock_mhz = 1\n')
    with pytest.raises(ConfigError, match="core 'cortex-m3' is not one of cortex-m4"):
        load_board(bad)
    bad.write_text('description = "x"\narch = "a"\ncpu = "c"\ntransport = "mcu"\ncore = "cortex-m4"\n')
    with pytest.raises(ConfigError, match="missing key.*flash_kb"):
        load_board(bad)
    res = CliRunner().invoke(main, ["bench", str(tmp_path), "--target", "nrf52840-dk"])
    assert res.exit_code == 2 and "add --emulate" in res.output


def test_report_shows_the_mcu_table_and_what_to_ship(c_run, tmp_path):
    """The report's microcontroller section: per board the instruction counts, the estimate labelled as one,
    the MCU parity verdict, and a ship choice made only from C artifacts that passed and fit."""
    from edgernn.mcu_bench import mcu_bench_run
    from edgernn.mcu_parity import mcu_parity_run
    from edgernn.parity import check_parity
    from edgernn.report import build_report

    check_parity(c_run)
    mcu_parity_run(c_run, "cortex-m7", progress=False)
    mcu_bench_run(c_run, "cortex-m7", stream_frames=100, progress=False)
    text = build_report([c_run], out_dir=tmp_path)["markdown"]
    section = text[text.index("### On microcontrollers (emulated)"):]
    assert "**est. us is an ESTIMATE**" in section and "*ESTIMATE:" in section
    assert "| step-int8.h | cortex-m7 (cortex-m7, 25 MHz) |" in section
    assert "| PASS, bit-exact |" in section  # the MCU parity verdict of cortex-m7 is joined to its bench row
    ship = [ln for ln in section.splitlines() if ln.startswith("- cortex-m7, step: ")]
    assert ship and ".h: fewest instructions of 2 passing C step artifact(s) that fit" in ship[0], ship
