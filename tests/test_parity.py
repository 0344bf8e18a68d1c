"""`edgernn export` + `edgernn parity` end to end on ONNX artifacts (TFLite has its own test file):
the gate passes on honest artifacts, fails on a deliberately damaged one, and every bad input is a
one-line error that leaves no half-written file."""

import json
import os
import stat

import numpy as np
import pytest
from click.testing import CliRunner

from edgernn.cli import main
from edgernn.errors import ExportError
from edgernn.export.manifest import write_manifest
from edgernn.parity import check_parity, format_table

pytestmark = pytest.mark.export


@pytest.fixture(params=["gru", "lstm"])
def exported(run_copy, request):
    run = run_copy(cell=request.param, hidden=24, steps=400)
    r = CliRunner().invoke(main, ["export", str(run), "--format", "onnx", "--precision", "float,int8",
                                  "--streaming", "-q"])
    assert r.exit_code == 0, r.output
    return run


def test_parity_passes_and_reports_every_number(exported):
    r = CliRunner().invoke(main, ["parity", str(exported), "-q", "--json"])
    rep = json.loads(r.output[: r.output.rindex("}") + 1])
    assert r.exit_code == (0 if rep["passed"] else 1)
    names = {a["artifact"] for a in rep["artifacts"]}
    assert names == {"sequence-float.onnx", "sequence-int8.onnx", "step-float.onnx", "step-int8.onnx"}
    for a in rep["artifacts"]:
        for key in ("accuracy", "accuracy_change", "agreement", "max_abs_diff", "mean_abs_diff", "passed", "gate"):
            assert key in a
        if a["precision"] == "float":
            assert a["max_abs_diff"] <= 1e-4
        if a["mode"] == "step":
            assert a["stream_vs_full_max_diff"] == a["max_abs_diff"]
    assert all(a["passed"] for a in rep["artifacts"] if a["precision"] == "float")
    assert (exported / "parity.json").is_file()
    table = format_table(rep)
    assert "sequence-int8.onnx" in table and "PASS" in table


def test_gate_fails_on_damaged_artifact(exported):
    """Simulate a broken exporter: perturb the LSTM weights of the float artifact and re-sign its
    manifest (so the sha256 check passes and only the parity gate can catch it)."""
    import onnx
    from onnx import numpy_helper

    art = exported / "artifacts" / "sequence-float.onnx"
    model = onnx.load(str(art))
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.ndim == 3:  # LSTM W / R
            init.CopyFrom(numpy_helper.from_array((w + 0.05 * np.sign(w)).astype(w.dtype), init.name))
    onnx.save(model, str(art))
    m = json.loads((exported / "artifacts" / "sequence-float.onnx.json").read_text())
    write_manifest(art, {k: v for k, v in m.items() if k not in ("schema", "artifact", "sha256", "size_bytes",
                                                                 "versions", "created")})
    r = CliRunner().invoke(main, ["parity", str(exported), "-q"])
    assert r.exit_code == 1
    assert "FAIL" in r.output and "parity gate failed for 1 artifact(s): sequence-float.onnx" in r.output
    rep = json.loads((exported / "parity.json").read_text())
    bad = next(a for a in rep["artifacts"] if a["artifact"] == "sequence-float.onnx")
    assert not bad["passed"] and bad["max_abs_diff"] > 1e-4


def test_int8_gate_uses_accuracy_ratio(exported):
    rep = check_parity(exported, min_accuracy_ratio=1.0, write=False)
    int8 = [a for a in rep["artifacts"] if a["precision"] == "int8"]
    ref = rep["reference"]["accuracy"]
    for a in int8:
        assert a["passed"] == (a["accuracy"] >= ref)


def test_truncated_artifact_is_caught_by_sha256(exported):
    art = exported / "artifacts" / "sequence-int8.onnx"
    art.write_bytes(art.read_bytes()[:-100])
    r = CliRunner().invoke(main, ["parity", str(exported), "-q"])
    assert r.exit_code == 1 and "truncated or replaced after export" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_swapped_artifact_is_caught_by_sha256(exported):
    a, b = exported / "artifacts" / "sequence-float.onnx", exported / "artifacts" / "step-float.onnx"
    data = b.read_bytes()
    a.write_bytes(data)
    r = CliRunner().invoke(main, ["parity", str(exported), "-q"])
    assert r.exit_code == 1 and ("sha256" in r.output or "truncated or replaced" in r.output)


def test_export_bad_inputs(run_copy, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["export", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "does not exist" in r.output
    (tmp_path / "empty").mkdir()
    r = runner.invoke(main, ["export", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "missing model.pt" in r.output
    run = run_copy(cell="gru")
    r = runner.invoke(main, ["export", str(run), "--format", "coreml"])
    assert r.exit_code == 1 and "unknown format coreml; choose from: onnx, ort, tflite" in r.output
    r = runner.invoke(main, ["export", str(run), "--precision", "int4"])
    assert r.exit_code == 1 and "unknown precision int4" in r.output
    (run / "config.json").write_text("{not json")
    r = runner.invoke(main, ["export", str(run)])
    assert r.exit_code == 1 and "corrupt JSON" in r.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; read-only bind mounts need privileges")
def test_export_unwritable_out_dir_nonroot(run_copy, tmp_path):  # pragma: no cover - CI runs as root
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    r = CliRunner().invoke(main, ["export", str(run_copy()), "--format", "onnx", "--out", str(out)])
    assert r.exit_code == 1 and "not writable" in r.output


def test_export_unwritable_out_dir(run_copy, tmp_path):
    """An output path that cannot be a directory (a file in the way) - works even as root."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = CliRunner().invoke(main, ["export", str(run_copy()), "--format", "onnx", "--out", str(blocker / "sub")])
    assert r.exit_code == 1 and "cannot create output directory" in r.output
    assert blocker.read_text() == "x"  # untouched


def test_failed_export_leaves_no_half_file(run_copy, monkeypatch):
    import edgernn.export.manifest as manifest_mod
    from edgernn.export import export_run

    run = run_copy(cell="gru")

    def boom(*a, **k):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(manifest_mod, "write_manifest", boom)
    with pytest.raises(ExportError, match="No space left"):
        export_run(run, formats="onnx", precisions="float")
    assert [p.name for p in (run / "artifacts").iterdir()] == []


def test_streaming_bidirectional_is_refused(run_copy):
    run = run_copy(cell="gru", bidirectional=True)
    r = CliRunner().invoke(main, ["export", str(run), "--format", "onnx", "--streaming", "-q"])
    assert r.exit_code == 1 and "bidirectional models cannot stream" in r.output
    r = CliRunner().invoke(main, ["export", str(run), "--format", "onnx", "-q"])
    assert r.exit_code == 0, r.output


def test_parity_without_artifacts(run_copy):
    r = CliRunner().invoke(main, ["parity", str(run_copy())])
    assert r.exit_code == 1 and "run `edgernn export" in r.output
