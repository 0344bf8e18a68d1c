"""`edgernn bench --target desktop` and `edgernn report` end to end on real ONNX artifacts (few runs:
this checks the numbers are there and consistent, not how fast anything is)."""

import json

import pytest
from click.testing import CliRunner

from edgernn.bench import aggregate
from edgernn.cli import main

pytestmark = [pytest.mark.export, pytest.mark.slow]


@pytest.fixture(scope="module")
def benched(make_run, tmp_path_factory):
    import shutil

    run = tmp_path_factory.mktemp("bench") / "lstm"
    shutil.copytree(make_run(cell="lstm"), run)
    r = CliRunner().invoke(main, ["export", str(run), "--format", "onnx", "--precision", "float,int8",
                                  "--streaming", "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["parity", str(run), "-q"])
    r = CliRunner().invoke(main, ["bench", str(run), "--runs", "30", "--warmup", "3", "--repeat", "2",
                                  "--stream-frames", "20", "-q"])
    assert r.exit_code == 0, r.output
    return run, r.output


def test_bench_table_and_json(benched):
    run, out = benched
    assert "sequence-float.onnx" in out and "(torch eager reference)" in out and "p50 us" in out
    rep = json.loads((run / "bench-desktop.json").read_text())
    assert rep["target"] == "desktop" and rep["machine"]["cores"] >= 1
    assert rep["settings"] == {"runs": 30, "warmup": 3, "threads": 1, "repeat": 2, "stream_frames": 20,
                               "batch": 1, "window_length": 40}
    names = {r["artifact"] for r in rep["results"]}
    assert names == {"sequence-float.onnx", "sequence-int8.onnx", "step-float.onnx", "step-int8.onnx"}
    for r in rep["results"]:
        lat = r["latency_us"]
        assert lat["n"] == 30 and 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["repeats"] == 2 and len(r["repeat_p50_us"]) == 2
        assert r["rss_mb"]["inference_peak"] > 0 and r["load_s"] > 0 and r["size_bytes"] > 0
        assert r["macs"] > 0 and r["mac_per_s"] == pytest.approx(r["macs"] / (lat["p50"] * 1e-6))
        if r["mode"] == "step":
            assert r["stream_us"]["n"] == 20 and r["macs"] < rep["results"][0]["macs"] * 2
    assert rep["torch_eager"]["runtime"] == "torch"


def test_report_joins_everything(benched, tmp_path):
    run, _ = benched
    r = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "report.md").read_text()
    assert "| sequence-int8.onnx | onnxruntime |" in md and "faster than PyTorch eager" in md
    for png in ("latency.png", "tradeoff.png"):
        data = (tmp_path / "plots" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    rep = json.loads((tmp_path / "report.json").read_text())
    art = {a["artifact"]: a for a in rep["runs"][0]["artifacts"]}
    assert "parity" in art["sequence-int8.onnx"] and "bench" in art["sequence-int8.onnx"]


def test_aggregate_spread_warning():
    base = {"latency_us": {"p50": 100.0}, "warnings": []}
    res = [dict(base, latency_us={"p50": v}) for v in (100.0, 101.0, 120.0)]
    agg = aggregate(res, macs=1000)
    assert agg["latency_us"]["p50"] == 101.0 and agg["spread_pct"] == pytest.approx(100 * 20 / 101, rel=1e-3)
    assert any("varies" in w for w in agg["warnings"])
    calm = aggregate([dict(base, latency_us={"p50": v}) for v in (100.0, 101.0, 102.0)], macs=None)
    assert calm["spread_pct"] < 5 and not calm["warnings"]


def test_bench_bad_inputs(make_run, tmp_path):
    r = CliRunner().invoke(main, ["bench", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "does not exist" in r.output
    r = CliRunner().invoke(main, ["bench", str(make_run()), "--target", "toaster"])
    assert r.exit_code == 1 and "toaster" in r.output
    r = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "does not exist" in r.output
