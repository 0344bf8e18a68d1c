"""
Tests for edgernn.export.onnx (convert, torch_to_onnx, quantize): real torch -> ONNX exports, run by onnxruntime
and compared to torch.

    .venv/bin/pytest tests/test_export_onnx.py
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgernn.errors import ArtifactError, ConfigError, ExportError

pytestmark = pytest.mark.export

TOL = 1e-4


def _load(path):
    from edgernn.rundir import load_run

    return load_run(path)


def _session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _torch_out(run, xn):
    import torch

    with torch.no_grad():
        return run.load_model()(torch.from_numpy(xn)).numpy()


def _test_x(run, n=32):
    return run.normalize(run.data()["X_test"][:n])


def _stream(sess, cell, layers, hidden, xn):
    """Run a step artifact frame by frame from zero state; returns the last frame's y."""
    batch = xn.shape[0]
    names = ["h", "c"] if cell == "lstm" else ["h"]
    state = {n: np.zeros((layers, batch, hidden), np.float32) for n in names}
    for t in range(xn.shape[1]):
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": xn[:, t], **state})))
        state = {n: outs[f"{n}_out"] for n in names}
    return outs["y"]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_float_sequence_matches_torch(run_copy, tmp_path, cell):
    from edgernn.export.onnx.convert import export_onnx, onnx_op_types

    run = _load(run_copy(cell=cell))
    path = export_onnx(run, tmp_path / "out", precision="float", mode="sequence")
    assert path == tmp_path / "out" / "sequence-float.onnx"
    ops = onnx_op_types(path)
    assert ops.count(cell.upper()) == 1  # one native recurrent node, not an unrolled loop
    sess = _session(path)
    assert sess.get_inputs()[0].shape[:2] == ["batch", "time"]
    xn = _test_x(run)
    got = sess.run(None, {"x": xn})[0]
    assert got.shape == (32, 4)
    assert np.abs(got - _torch_out(run, xn)).max() <= TOL
    m = json.loads((tmp_path / "out" / "sequence-float.onnx.json").read_text())
    assert m["format"] == "onnx" and m["runtime"] == "onnxruntime" and m["precision"] == "float"
    assert m["mode"] == "sequence" and m["task"] == "classify" and m["sequence_length"] is None
    assert m["inputs"] == [{"name": "x", "shape": [None, None, 6], "dtype": "float32", "role": "x", "quant": None}]
    assert m["outputs"][0]["name"] == "y" and m["outputs"][0]["shape"] == [None, 4]
    assert m["quantization"]["recipe"] == "none" and m["quantization"]["int8_ops"] == []
    assert m["quantization"]["compute"] == {"recurrent": "float", "head": "float"}
    assert m["model"]["cell"] == cell and m["labels"] == ["f1", "f2", "f3", "f4"]
    assert m["preprocessing"]["mean"] == pytest.approx(run.mean.tolist())
    assert m["source"] == {"run": run.path.name, "model_sha256": run.identity["sha256"],
                           "model_summary": f"{cell.upper()} h16"}


@pytest.mark.slow
def test_time_axis_stays_dynamic_across_exports_in_one_process(make_run, tmp_path):
    """The torch 2.13 dynamo bug froze the time axis on the 2nd export of an RNN type in a process:
    export two LSTMs and two GRUs here and run each at lengths other than the example (40)."""
    from edgernn.export.onnx.convert import export_onnx

    specs = [("lstm", 16, 0), ("lstm", 24, 1), ("gru", 16, 0), ("gru", 24, 1)]
    rng = np.random.default_rng(3)
    for i, (cell, hidden, seed) in enumerate(specs):
        run = _load(make_run(cell=cell, hidden=hidden, seed=seed, steps=300 if seed == 0 else 40))
        path = export_onnx(run, tmp_path / f"a{i}", precision="float", mode="sequence")
        sess = _session(path)
        for T in (17, 63):
            xn = rng.standard_normal((3, T, 6)).astype(np.float32)
            diff = np.abs(sess.run(None, {"x": xn})[0] - _torch_out(run, xn)).max()
            assert diff <= TOL, (cell, hidden, T, diff)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_artifact_streams_to_the_full_sequence_output(run_copy, tmp_path, cell):
    from edgernn.export.onnx.convert import export_onnx

    run = _load(run_copy(cell=cell))
    path = export_onnx(run, tmp_path, precision="float", mode="step")
    assert path.name == "step-float.onnx"
    xn = _test_x(run, 8)
    y = _stream(_session(path), cell, 1, 16, xn)
    assert np.abs(y - _torch_out(run, xn)).max() <= TOL
    m = json.loads((tmp_path / "step-float.onnx.json").read_text())
    states = ["h", "c"] if cell == "lstm" else ["h"]
    assert [i["name"] for i in m["inputs"]] == ["x", *states]
    assert m["inputs"][0]["shape"] == [None, 6]
    assert all(i["role"] == "state" and i["shape"] == [1, None, 16] for i in m["inputs"][1:])
    outs = {o["name"]: o for o in m["outputs"]}
    assert list(outs) == ["y", *[f"{s}_out" for s in states]]
    for s in states:
        assert outs[f"{s}_out"]["role"] == "state" and outs[f"{s}_out"]["next"] == s
    assert outs["y"]["role"] == "y"
    assert "h: [layers, batch, hidden]" in m["state_layout"]


def test_int8_lstm_runs_dynamicquantizelstm_and_says_so(run_copy, tmp_path):
    from edgernn.export.onnx.convert import export_onnx, onnx_op_types

    run = _load(run_copy(cell="lstm"))
    path = export_onnx(run, tmp_path, precision="int8")
    ops = onnx_op_types(path)
    assert "com.microsoft::DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    assert "MatMulInteger" in ops  # the head is quantized too
    q = json.loads((tmp_path / "sequence-int8.onnx.json").read_text())["quantization"]
    assert q["recipe"] == "dynamic"
    assert q["compute"] == {"recurrent": "dynamic-int8", "head": "dynamic-int8"}
    assert "DynamicQuantizeLSTM" in q["int8_ops"] and "MatMulInteger" in q["int8_ops"]
    assert "LSTM" not in q["float_ops"]


def test_int8_gru_manifest_is_honest_about_float_gru(run_copy, tmp_path):
    from edgernn.export.onnx.convert import export_onnx, onnx_op_types

    run = _load(run_copy(cell="gru"))
    path = export_onnx(run, tmp_path, precision="int8")
    assert "GRU" in onnx_op_types(path)
    q = json.loads((tmp_path / "sequence-int8.onnx.json").read_text())["quantization"]
    assert q["float_ops"] == ["GRU"]
    assert q["int8_ops"] == ["DynamicQuantizeLinear", "MatMulInteger"]
    # the GRU op computes in float; its weights are stored int8 behind DequantizeLinear
    assert q["compute"] == {"recurrent": "weights-int8", "head": "dynamic-int8"}
    assert "DequantizeLinear" in onnx_op_types(path)
    assert "no integer GRU" in q["note"] and "tflite" in q["note"] and "integer-matmul" in q["note"]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_int8_top1_agrees_with_float(run_copy, tmp_path, cell):
    from edgernn.export.onnx.convert import export_onnx

    run = _load(run_copy(cell=cell))
    f = export_onnx(run, tmp_path, precision="float")
    q = export_onnx(run, tmp_path, precision="int8")
    xn = run.normalize(run.data()["X_test"])
    yf = _session(f).run(None, {"x": xn})[0]
    yq = _session(q).run(None, {"x": xn})[0]
    agree = float((yf.argmax(-1) == yq.argmax(-1)).mean())
    assert agree >= 0.95, agree
    assert 0 < np.abs(yf - yq).max() < 0.5  # really quantized, but close


@pytest.mark.parametrize("precision,mode", [("float", "sequence"), ("int8", "sequence"), ("int8", "step")])
def test_ort_format_loads_and_matches_onnx(run_copy, tmp_path, precision, mode):
    from edgernn.export import ExportOptions
    from edgernn.export.onnx.convert import export_onnx, export_ort, onnx_op_types
    from edgernn.runtimes.manifest import read_manifest

    run = _load(run_copy(cell="lstm"))
    src = export_onnx(run, tmp_path, precision=precision, mode=mode)
    ort_path = export_ort(run, tmp_path, precision, mode, ExportOptions(source=src))
    assert ort_path == tmp_path / f"{mode}-{precision}.ort"
    assert ort_path.read_bytes()[4:8] == b"ORTM"  # flatbuffer file identifier of the ORT format
    m = read_manifest(ort_path)
    m_src = read_manifest(src)
    assert m["format"] == "ort" and m["runtime"] == "onnxruntime"
    for key in ("precision", "mode", "task", "model", "inputs", "outputs", "preprocessing", "labels", "quantization"):
        assert m[key] == m_src[key], key
    if precision == "int8":
        assert "com.microsoft::DynamicQuantizeLSTM" in onnx_op_types(ort_path)
    a, b = _session(src), _session(ort_path)
    xn = _test_x(run, 8)
    if mode == "sequence":
        feeds = {"x": xn[:, :23]}
    else:
        feeds = {"x": xn[:, 0], "h": np.full((1, 8, 16), 0.3, np.float32), "c": np.zeros((1, 8, 16), np.float32)}
    for ya, yb in zip(a.run(None, feeds), b.run(None, feeds)):
        assert np.abs(ya - yb).max() <= TOL


def test_bidirectional_cannot_stream_but_exports_as_sequence(run_copy, tmp_path):
    from edgernn.export.onnx.convert import export_onnx

    run = _load(run_copy(cell="gru", bidirectional=True, steps=60))
    with pytest.raises(ConfigError, match="bidirectional models cannot stream"):
        export_onnx(run, tmp_path / "o", mode="step")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    path = export_onnx(run, tmp_path / "o", mode="sequence")
    xn = _test_x(run, 8)
    assert np.abs(_session(path).run(None, {"x": xn[:, :31]})[0] - _torch_out(run, xn[:, :31])).max() <= TOL


def test_two_layer_sequence_export(run_copy, tmp_path):
    from edgernn.export.onnx.convert import export_onnx, onnx_op_types

    run = _load(run_copy(cell="lstm", layers=2, steps=60))
    path = export_onnx(run, tmp_path, precision="float")
    assert onnx_op_types(path).count("LSTM") == 2
    xn = _test_x(run, 8)
    for T in (40, 11):
        assert np.abs(_session(path).run(None, {"x": xn[:, :T]})[0] - _torch_out(run, xn[:, :T])).max() <= TOL
    step = export_onnx(run, tmp_path, precision="float", mode="step")
    assert np.abs(_stream(_session(step), "lstm", 2, 16, xn) - _torch_out(run, xn)).max() <= TOL


def test_tag_head_keeps_time_in_the_output(tmp_path):
    import torch

    from edgernn.export.onnx.convert import export_onnx
    from edgernn.models import ModelConfig, build_model
    from edgernn.rundir import save_run

    cfg = ModelConfig(cell="gru", hidden=8, head="tag", num_outputs=3)
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((10, 20, 6)).astype(np.float32)
    save_run(tmp_path / "tag", build_model(cfg), cfg, {}, {"name": "t", "task": "tag", "seq_len": 20},
             ["a", "b", "c"], np.zeros(6, np.float32), np.ones(6, np.float32),
             {"X_calib": x, "y_calib": np.zeros((10, 20)), "X_test": x, "y_test": np.zeros((10, 20))})
    run = _load(tmp_path / "tag")
    path = export_onnx(run, tmp_path / "a")
    m = json.loads((tmp_path / "a" / "sequence-float.onnx.json").read_text())
    assert m["task"] == "tag" and m["outputs"][0]["shape"] == [None, None, 3]
    got = _session(path).run(None, {"x": x[:, :13]})[0]
    assert got.shape == (10, 13, 3)
    assert np.abs(got - _torch_out(run, x[:, :13])).max() <= TOL


def test_manifest_sha256_is_verified(run_copy, tmp_path):
    from edgernn.export.onnx.convert import export_onnx
    from edgernn.runtimes.manifest import ManifestError, read_manifest, sha256_file

    run = _load(run_copy(cell="gru"))
    path = export_onnx(run, tmp_path)
    m = read_manifest(path)
    assert m["sha256"] == sha256_file(path) and m["size_bytes"] == path.stat().st_size
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        read_manifest(path)


def test_failed_validation_leaves_no_file(run_copy, tmp_path, monkeypatch):
    import edgernn.export.onnx.convert as mod
    from edgernn.export.onnx import torch_to_onnx

    run = _load(run_copy(cell="lstm"))
    out = tmp_path / "out"
    monkeypatch.setattr(torch_to_onnx, "max_diff", lambda a, b: 0.5)
    with pytest.raises(ExportError, match=r"does not match torch .*max\|diff\| 0\.5 .*no file written"):
        mod.export_onnx(run, out, precision="int8")
    assert list(out.iterdir()) == []  # no artifact, no manifest, no scratch directory


def test_failed_ort_check_leaves_no_file(run_copy, tmp_path, monkeypatch):
    import edgernn.export.onnx.convert as mod
    from edgernn.export import ExportOptions
    from edgernn.export.onnx import torch_to_onnx

    run = _load(run_copy(cell="gru"))
    src = mod.export_onnx(run, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.setattr(torch_to_onnx, "max_diff", lambda a, b: 0.5)
    with pytest.raises(ExportError, match="differs from the .onnx"):
        mod.export_ort(run, tmp_path, "float", "sequence", ExportOptions(source=src))
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_export_ort_needs_an_exported_onnx(run_copy, tmp_path):
    from edgernn.export import ExportOptions
    from edgernn.export.onnx.convert import export_ort

    bogus = tmp_path / "sequence-float.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="manifest"):
        export_ort(_load(run_copy(cell="gru")), tmp_path, "float", "sequence", ExportOptions(source=bogus))


def test_bad_options_and_unwritable_out_dir(run_copy, tmp_path):
    from edgernn.export.onnx.convert import export_onnx

    run = _load(run_copy(cell="gru"))
    with pytest.raises(ConfigError, match="float, int8"):
        export_onnx(run, tmp_path, precision="int4")
    with pytest.raises(ConfigError, match="sequence, step"):
        export_onnx(run, tmp_path, mode="window")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match=str(blocker / "sub")):
        export_onnx(run, blocker / "sub")


def test_a_frozen_time_axis_is_caught(run_copy, tmp_path, monkeypatch):
    """If the exporter fixed the time axis (the dynamo bug), validation must refuse the file."""
    import torch

    import edgernn.export.onnx.convert as mod

    real = torch.onnx.export

    def frozen(*args, dynamic_axes=None, **kw):
        return real(*args, dynamic_axes={k: {0: "batch"} for k in dynamic_axes}, **kw)

    monkeypatch.setattr(torch.onnx, "export", frozen)
    run = _load(run_copy(cell="lstm"))
    with pytest.raises(ExportError, match=r"fails in onnxruntime at batch 3, T=17 .*no file written"):
        mod.export_onnx(run, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_int8_rnn_manifest_lists_rnn_as_float(run_copy, tmp_path):
    from edgernn.export.onnx.convert import export_onnx

    run = _load(run_copy(cell="rnn", steps=60))
    export_onnx(run, tmp_path, precision="int8", mode="step")
    q = json.loads((tmp_path / "step-int8.onnx.json").read_text())["quantization"]
    assert q["float_ops"] == ["RNN"] and q["compute"]["recurrent"] == "weights-int8" and "no integer RNN" in q["note"]
    assert "MatMulInteger" in q["int8_ops"]


# ---- the format registry and the manifest schema ----------------------------------------------------
def test_ort_alone_writes_no_stray_onnx(run_copy):
    """ort is converted from onnx: when onnx is not asked for, its file is built aside and removed, so
    parity and bench never pick up an artifact nobody asked for."""
    from edgernn.export import export_run

    run = run_copy(cell="gru")
    results = export_run(run, formats="ort", precisions="float,int8", streaming=True)
    names = sorted(p.name for p in (run / "artifacts").iterdir())
    assert names == ["sequence-float.ort", "sequence-float.ort.json", "sequence-int8.ort", "sequence-int8.ort.json",
                     "step-float.ort", "step-float.ort.json", "step-int8.ort", "step-int8.ort.json"]
    assert [r.format for r in results] == ["ort"] * 4


def test_registry_drives_plan_and_cli_choices():
    from click.testing import CliRunner

    from edgernn.cli import main
    from edgernn.export import FORMATS, plan
    from edgernn.runtimes.manifest import FORMAT_RUNTIME

    assert {f.name: f.runtime for f in FORMATS.values()} == FORMAT_RUNTIME
    todo, skipped = plan(["onnx", "tflite"], ["float", "dynamic"], streaming=False, bidirectional=False)
    assert todo == [("onnx", "float", "sequence"), ("tflite", "float", "sequence"), ("tflite", "dynamic", "sequence")]
    assert [s[:3] for s in skipped] == [("onnx", "dynamic", "sequence")]
    help_text = CliRunner().invoke(main, ["export", "--help"]).output
    for f in FORMATS.values():
        assert f"{f.name} (" in help_text


def test_manifest_schema_is_enforced_on_write_and_read(run_copy, tmp_path):
    from edgernn.export.manifest import write_manifest
    from edgernn.export.onnx.convert import export_onnx
    from edgernn.runtimes.manifest import ManifestError, read_manifest, validate

    run = _load(run_copy(cell="gru"))
    path = export_onnx(run, tmp_path, precision="float")
    m = read_manifest(path)
    assert validate({k: v for k, v in m.items() if k != "_artifact_path"}) == []
    fields = {k: v for k, v in m.items() if k not in ("schema", "artifact", "sha256", "size_bytes", "versions",
                                                       "created", "_artifact_path")}
    bad = dict(fields, quantization=dict(fields["quantization"], compute={"recurrent": "int4"}))
    with pytest.raises(ExportError, match=r"breaks the schema: quantization.compute recurrent='int4'"):
        write_manifest(path, bad)
    assert read_manifest(path)["sha256"] == m["sha256"]  # the good manifest was not replaced
    old = json.loads(path.with_name(path.name + ".json").read_text())
    old["schema"] = "edgernn.manifest/1"
    old["quantization"] = {"scheme": "none", "fully_int8": False, "int8_ops": [], "float_ops": [], "note": ""}
    path.with_name(path.name + ".json").write_text(json.dumps(old))
    with pytest.raises(ManifestError, match=r"has schema 'edgernn.manifest/1', expected 'edgernn.manifest/2'"):
        read_manifest(path)
    assert issubclass(ManifestError, ArtifactError)


@pytest.mark.parametrize("cell,recipe,mode", [("gru", "dynamic", "sequence"), ("gru", "integer-matmul", "sequence"),
                                              ("lstm", "weights-int8", "step")])
def test_int8_onnx_has_short_internal_names_and_the_same_outputs(run_copy, tmp_path, monkeypatch, cell, recipe,
                                                                  mode):
    """Every int8 ONNX recipe renames its internal tensors t0, t1, ... (Loop bodies too) and drops node names:
    the quantizer's names ("/head/Gemm_MatMul_quant_scales_mul:0") are stored in the .onnx and again in the
    .ort. Graph inputs/outputs keep their names; the outputs are exactly those of the unrenamed graph."""
    import re
    import shutil

    import onnx

    from edgernn.export import ExportOptions
    from edgernn.export.onnx import integer_matmul as onnx_integer
    from edgernn.export.onnx.convert import export_onnx

    run = _load(run_copy(cell=cell, hidden=16))
    calls = []
    real = onnx_integer.compact_names

    def keep_a_copy(path):  # the graph as the recipe built it, before renaming
        shutil.copy(path, tmp_path / "before.onnx")
        calls.append(path)
        return real(path)

    monkeypatch.setattr(onnx_integer, "compact_names", keep_a_copy)
    art = export_onnx(run, tmp_path / "out", precision="int8", mode=mode, options=ExportOptions(recipe=recipe))
    assert len(calls) == 1
    m = onnx.load(str(art))
    io = {v.name for v in m.graph.input} | {v.name for v in m.graph.output}

    def names(g):
        for t in g.initializer:
            yield t.name
        for node in g.node:
            assert node.name == ""
            yield from node.input
            yield from node.output
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from names(a.g)

    inner = {n for n in names(m.graph) if n and n not in io}
    assert inner and all(re.fullmatch(r"t\d+", n) for n in inner), sorted(inner)[:5]
    assert art.stat().st_size < (tmp_path / "before.onnx").stat().st_size
    xn = _test_x(run, 8)
    sa, sb = _session(tmp_path / "before.onnx"), _session(art)
    if mode == "sequence":
        feeds = {"x": xn}
    else:
        feeds = {"x": xn[:, 0], "h": np.full((1, 8, 16), 0.3, np.float32), "c": np.zeros((1, 8, 16), np.float32)}
    for ya, yb in zip(sa.run(None, feeds), sb.run(None, feeds)):
        assert np.array_equal(ya, yb)
