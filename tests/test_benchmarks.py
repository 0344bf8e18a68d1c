"""
The benchmark scripts under benchmarks/ run on what `edgernn export` writes: sequence and step artifacts.
They are benchmarks (their numbers go into docs/results.md); this only checks they run and answer in JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mode", ["sequence", "step"])
def test_harness_overhead_runs_on_sequence_and_step_artifacts(run_copy, mode):
    from edgernn.export.onnx.convert import export_onnx
    from edgernn.rundir import load_run

    run_dir = run_copy(cell="lstm", hidden=16)
    art = export_onnx(load_run(run_dir), run_dir / "artifacts", precision="float", mode=mode)
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "harness_overhead.py"), str(art),
                        "--runs", "60", "--warmup", "5", "--rounds", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout[:r.stdout.rindex("}") + 1])
    assert report["artifact"] == art.name
    for key in ("worker_p50_us", "bare_loop_p50_us", "app_loop_p50_us"):
        assert report[key] > 0
    assert "ratio" in r.stdout.splitlines()[-1]


def test_harness_overhead_says_what_is_missing_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "harness_overhead.py"),
                        str(tmp_path / "artifacts" / "nope.onnx")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and "nope.onnx" in r.stderr
