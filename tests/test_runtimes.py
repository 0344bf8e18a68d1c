"""
Tests for edgernn.runtimes: load(), predict() on raw windows, stream(), the error cases, and the proof
that embedding it imports neither torch nor tensorflow. Artifacts come from the real exporters
(edgernn.export.onnx.convert / edgernn.export.tflite.convert) run on a tiny trained LSTM from conftest's make_run.

    .venv/bin/pytest tests/test_runtimes.py            # all (TFLite conversion ~20 s, marked slow)
    .venv/bin/pytest tests/test_runtimes.py -m "not slow"
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgernn.errors import ArtifactError, ConfigError, MissingDependencyError, RuntimeInputError

pytestmark = pytest.mark.export

ROOT = Path(__file__).resolve().parents[1]


# ---- fixtures: one tiny LSTM run, its ONNX and TFLite artifacts --------------------------------------
@pytest.fixture(scope="module")
def run(make_run):
    import torch

    torch.set_num_threads(1)  # 2 threads on a shared 2-core box makes torch RNNs 100x slower
    from edgernn.rundir import load_run

    return load_run(make_run(cell="lstm", hidden=16))


@pytest.fixture(scope="module")
def X(run):
    return run.data()["X_test"][:24].astype(np.float32)


@pytest.fixture(scope="module")
def ref(run, X):
    """Torch float outputs on the raw windows (normalization applied as in training)."""
    import torch

    with torch.no_grad():
        return run.load_model()(torch.from_numpy(run.normalize(X))).numpy()


@pytest.fixture(scope="module")
def onnx_dir(run, tmp_path_factory):
    from edgernn.export.onnx.convert import export_onnx

    out = tmp_path_factory.mktemp("onnx-artifacts")
    for precision in ("float", "int8"):
        for mode in ("sequence", "step"):
            export_onnx(run, out, precision=precision, mode=mode)
    return out


@pytest.fixture(scope="module")
def gru(make_run, run):
    """A GRU run (its TFLite sequence artifacts are unrolled: fixed length, so padding applies) with raw
    test windows and torch outputs."""
    import torch

    from edgernn.rundir import load_run

    g = load_run(make_run(cell="gru", hidden=16))
    X = g.data()["X_test"][:24].astype(np.float32)
    with torch.no_grad():
        ref = g.load_model()(torch.from_numpy(g.normalize(X))).numpy()
    return g, X, ref


@pytest.fixture(scope="module")
def tflite_dir(gru, tmp_path_factory):
    """Real exporter output (about 10 s per artifact): GRU float / int8 (int8 I/O), sequence / step."""
    from edgernn.export import ExportOptions
    from edgernn.export.tflite.convert import export_tflite

    out = tmp_path_factory.mktemp("tflite-artifacts")
    for precision in ("float", "int8"):
        for mode in ("sequence", "step"):
            export_tflite(gru[0], out, precision=precision, mode=mode, options=ExportOptions(int8_io="int8"))
    return out


@pytest.fixture(scope="module")
def tflite_lstm(run, tmp_path_factory):
    """LSTM float sequence: the fused LSTM op keeps state inside the interpreter."""
    from edgernn.export.tflite.convert import export_tflite

    return export_tflite(run, tmp_path_factory.mktemp("tflite-lstm"), precision="float", mode="sequence")


def _copy_artifact(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_name(src.name + ".json"), dst.with_name(dst.name + ".json"))
    return dst


# ---- load / registry ----------------------------------------------------------------------------------
def test_available_runtimes_lists_installed_backends():
    from edgernn.runtimes import RUNTIMES, available_runtimes

    got = available_runtimes()
    assert set(got) <= set(RUNTIMES)
    assert "onnxruntime" in got and "litert" in got  # both are installed in the dev venv


def test_load_reads_manifest_and_names_runtime(onnx_dir):
    from edgernn.runtimes import load

    s = load(onnx_dir / "sequence-float.onnx", threads=1)
    assert s.runtime_name == "onnxruntime"
    import onnxruntime

    assert s.runtime_version == onnxruntime.__version__
    assert s.manifest["precision"] == "float" and s.manifest["mode"] == "sequence"
    assert s.channels == 6


# ---- predict on raw input vs torch ---------------------------------------------------------------------
def test_onnx_float_predict_matches_torch_on_raw_windows(onnx_dir, X, ref):
    from edgernn.runtimes import load

    s = load(onnx_dir / "sequence-float.onnx")
    batch = s.predict(X)
    assert batch.dtype == np.float32 and batch.shape == ref.shape
    assert np.abs(batch - ref).max() <= 1e-4
    single = s.predict(X[3])  # fast path: one float32 window
    assert single.shape == (4,)
    assert np.abs(single - ref[3]).max() <= 1e-4
    # float64 and list input go through the checked path and agree
    assert np.abs(s.predict(X[3].astype(np.float64)) - single).max() <= 1e-6
    assert np.abs(s.predict(X[3].tolist()) - single).max() <= 1e-6


def test_normalization_is_applied(onnx_dir, run, X):
    """predict(raw) == run_normalized((raw - mean) / std), and != run_normalized(raw)."""
    from edgernn.runtimes import load

    s = load(onnx_dir / "sequence-float.onnx")
    y = s.predict(X[:4])
    assert np.abs(s.run_normalized(run.normalize(X[:4])) - y).max() <= 1e-6
    assert np.abs(s.run_normalized(X[:4]) - y).max() > 1e-2


def test_onnx_int8_batch_equals_one_window_at_a_time(onnx_dir, X, ref):
    """ORT dynamic int8 scales activations per input tensor; predict(batch) must equal what a device
    gets window by window."""
    from edgernn.runtimes import load

    s = load(onnx_dir / "sequence-int8.onnx")
    batch = s.predict(X)
    single = np.stack([s.predict(w) for w in X])
    assert np.array_equal(batch, single)
    assert (batch.argmax(-1) == ref.argmax(-1)).mean() >= 0.9


def test_ort_format_artifact_loads(run, onnx_dir, X, ref):
    from edgernn.export import ExportOptions
    from edgernn.export.onnx.convert import export_ort
    from edgernn.runtimes import load

    s = load(export_ort(run, onnx_dir, "float", "sequence", ExportOptions(source=onnx_dir / "sequence-float.onnx")))
    assert s.manifest["format"] == "ort" and s.runtime_name == "onnxruntime"
    assert np.abs(s.predict(X) - ref).max() <= 1e-4


def test_onnx_public_api_fallback_gives_same_outputs(onnx_dir, X):
    """Sessions call the C++ session directly; the public InferenceSession.run fallback must agree."""
    from edgernn.runtimes import load

    for name in ("sequence-int8.onnx", "step-float.onnx"):
        s = load(onnx_dir / name)
        fast = s.predict(X[:3])
        s._crun = lambda names, feeds, _opts, sess=s._sess: sess.run(names, feeds)
        s._x_name = None
        assert np.array_equal(s.predict(X[:3]), fast)


@pytest.mark.slow
def test_tflite_float_predict_matches_torch(tflite_dir, gru):
    from edgernn.runtimes import load

    _, X, ref = gru

    s = load(tflite_dir / "sequence-float.tflite", threads=1)
    assert s.runtime_name == "litert" and s.runtime_package in ("ai-edge-litert", "tflite-runtime", "tensorflow")
    y = s.predict(X)  # batch-1 artifact: looped
    assert y.shape == ref.shape and y.dtype == np.float32
    assert np.abs(y - ref).max() <= 1e-4
    assert np.abs(s.predict(X[5]) - ref[5]).max() <= 1e-4


@pytest.mark.slow
def test_tflite_int8_io_is_quantized_and_dequantized(tflite_dir, gru):
    """int8 in/out: predict() quantizes the normalized window with the interpreter's input params and
    dequantizes the int8 output; compare with a hand-driven interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    from edgernn.runtimes import load

    run, X, ref = gru

    path = tflite_dir / "sequence-int8.tflite"
    s = load(path)
    m = s.manifest
    assert m["inputs"][0]["dtype"] == "int8" and m["outputs"][0]["dtype"] == "int8"
    y = s.predict(X[:6])
    assert y.dtype == np.float32

    it = Interpreter(model_path=str(path))
    din = it.get_input_details()[0]
    it.resize_tensor_input(din["index"], [1, *X.shape[1:]])  # a GRU int8 loop has a dynamic time axis
    it.allocate_tensors()
    din, dout = it.get_input_details()[0], it.get_output_details()[0]
    (si, zi), (so, zo) = din["quantization"], dout["quantization"]
    manual = []
    for w in run.normalize(X[:6]):
        it.reset_all_variables()
        q = np.clip(np.round(w[None] / si) + zi, -128, 127).astype(np.int8)
        it.set_tensor(din["index"], q)
        it.invoke()
        manual.append((it.get_tensor(dout["index"]).astype(np.float32)[0] - zo) * so)
    assert np.abs(y - np.stack(manual)).max() <= 1e-5
    # dequantized values are on the float model's scale (not raw int8 codes)
    assert np.abs(y - ref[:6]).max() < 1.0
    assert (s.predict(X).argmax(-1) == ref.argmax(-1)).mean() >= 0.9


@pytest.mark.slow
def test_short_window_is_left_padded_for_fixed_length_artifacts(tflite_dir, gru):
    import torch

    from edgernn.runtimes import load

    run, X, _ = gru

    s = load(tflite_dir / "sequence-float.tflite")
    L = s.sequence_length
    assert L == X.shape[1]
    short = X[2, -(L - 13):]
    padded = np.concatenate([np.full((13, 6), s.manifest["preprocessing"]["pad_value"], np.float32), short])
    with torch.no_grad():
        want = run.load_model()(torch.from_numpy(run.normalize(padded[None]))).numpy()[0]
    assert np.abs(s.predict(short) - want).max() <= 1e-4
    assert np.abs(s.predict(short[None])[0] - want).max() <= 1e-4
    with pytest.raises(RuntimeInputError, match=rf"{L + 5} steps .* fixed at {L}.*window\[-{L}:\]"):
        s.predict(np.zeros((L + 5, 6), np.float32))


@pytest.mark.slow
def test_stateful_interpreter_is_reset_before_each_sequence(tflite_lstm, X, ref):
    from edgernn.runtimes import load

    s = load(tflite_lstm)
    assert s.manifest["stateful_interpreter"] is True
    assert np.abs(s.predict(X) - ref).max() <= 1e-4
    calls = []
    real = s._it.reset_all_variables
    s._it = _Spy(s._it, lambda: (calls.append(1), real())[1])
    a = s.predict(X[0])
    s.predict(X[1])
    s.predict(X[:3])
    assert len(calls) == 5
    assert np.array_equal(a, s.predict(X[0]))


class _Spy:
    def __init__(self, inner, reset):
        self._inner, self.reset_all_variables = inner, reset

    def __getattr__(self, name):
        return getattr(self._inner, name)


# ---- streaming -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["step-float.onnx", "step-int8.onnx"])
def test_onnx_stream_last_frame_equals_full_sequence(onnx_dir, name, X, ref):
    from edgernn.runtimes import load

    seq = load(onnx_dir / name.replace("step", "sequence"))
    st = load(onnx_dir / name).stream()
    assert sorted(st.state) == ["c", "h"] and all(v.dtype == np.float32 for v in st.state.values())
    for i in (0, 7):
        st.reset()
        outs = [st.step(frame) for frame in X[i]]
        assert outs[-1].shape == (4,)
        if "float" in name:
            assert np.abs(outs[-1] - seq.predict(X[i])).max() <= 1e-5
            assert np.abs(outs[-1] - ref[i]).max() <= 1e-4
        else:
            assert np.abs(outs[-1] - ref[i]).max() < 0.1  # int8 weights, activations quantized per frame
    # [1, C] frames, lists and float64 frames are accepted
    st.reset()
    outs2 = [st.step(frame[None].astype(np.float64)) for frame in X[7]]
    assert np.abs(outs2[-1] - outs[-1]).max() <= 1e-5


def test_step_artifact_predict_streams_the_window(onnx_dir, X):
    from edgernn.runtimes import load

    step, seq = load(onnx_dir / "step-float.onnx"), load(onnx_dir / "sequence-float.onnx")
    assert np.abs(step.predict(X[:5]) - seq.predict(X[:5])).max() <= 1e-5
    assert np.abs(step.predict(X[4]) - seq.predict(X[4])).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::edgernn.runtimes.SaturationWarning")  # int8 streams of raw windows clip
def test_tflite_stream_float_and_int8_state(tflite_dir, gru):
    from edgernn.runtimes import load

    _, X, ref = gru

    seq = load(tflite_dir / "sequence-float.tflite")
    st = load(tflite_dir / "step-float.tflite").stream()
    outs = [st.step(f) for f in X[1]]
    assert np.abs(outs[-1] - seq.predict(X[1])).max() <= 1e-4
    s8 = load(tflite_dir / "step-int8.tflite")
    assert any(t["dtype"] == "int8" and t["role"] == "state" for t in s8.manifest["inputs"])
    st8 = s8.stream()
    for i in range(3):
        st8.reset()
        o = [st8.step(f) for f in X[i]]
        assert o[-1].dtype == np.float32 and o[-1].shape == (4,)
        assert all(v.dtype == np.float32 for v in st8.state.values())  # state kept in float
        assert np.abs(o[-1] - ref[i]).max() < 1.0  # dequantized, on the float model's scale
    assert (s8.predict(X).argmax(-1) == ref.argmax(-1)).mean() >= 0.8


def test_forecast_outputs_are_denormalized(onnx_dir, tmp_path, X):
    """A manifest with preprocessing.output converts outputs back to raw units: y = out * std + mean."""
    from edgernn.export.manifest import write_manifest
    from edgernn.runtimes import load

    src = onnx_dir / "sequence-float.onnx"
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    m = json.loads(src.with_name(src.name + ".json").read_text())
    m["preprocessing"]["output"] = {"mean": [10.0, 20.0, 30.0, 40.0], "std": [2.0, 2.0, 2.0, 2.0]}
    skip = ("schema", "artifact", "sha256", "size_bytes", "versions", "created")
    fields = {k: v for k, v in m.items() if k not in skip}
    write_manifest(dst, fields)
    plain = load(src).predict(X[:3])
    got = load(dst).predict(X[:3])
    assert np.abs(got - (plain * 2.0 + np.array([10, 20, 30, 40], np.float32))).max() <= 1e-5


# ---- torch reference -------------------------------------------------------------------------------------
def test_torch_session_is_the_same_api(run, X, ref):
    from edgernn.reference import TorchSession

    s = TorchSession(run.path, threads=1)
    assert s.runtime_name == "torch"
    assert np.abs(s.predict(X) - ref).max() <= 1e-6
    st = s.stream()
    outs = [st.step(f) for f in X[2]]
    assert np.abs(outs[-1] - ref[2]).max() <= 1e-5


# ---- errors ---------------------------------------------------------------------------------------------
def test_artifact_for_another_runtime(onnx_dir):
    from edgernn.runtimes import load

    with pytest.raises(ArtifactError, match=r"built for onnxruntime, not litert.*runtime='onnxruntime'"):
        load(onnx_dir / "sequence-float.onnx", runtime="litert")
    with pytest.raises(ConfigError, match=r"unknown runtime 'tflite'; choose one of: onnxruntime, litert"):
        load(onnx_dir / "sequence-float.onnx", runtime="tflite")
    with pytest.raises(ConfigError, match="threads must be an integer >= 1"):
        load(onnx_dir / "sequence-float.onnx", threads=0)


def test_missing_onnxruntime_names_extra_and_pip_line(onnx_dir, monkeypatch):
    from edgernn.runtimes import load

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(MissingDependencyError) as e:
        load(onnx_dir / "sequence-float.onnx")
    msg = str(e.value)
    assert "pip install 'edgernn[ort]'" in msg and "pip install onnxruntime" in msg
    assert "\n" not in msg


def test_missing_litert_names_extra_and_pip_line(onnx_dir, tmp_path, monkeypatch):
    """No ai_edge_litert, no tflite_runtime, no tensorflow -> one clear error (before the file is read)."""
    from edgernn.runtimes import litert_backend as litert

    for mod in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter",
                "tensorflow"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(MissingDependencyError) as e:
        litert.interpreter_class()
    msg = str(e.value)
    assert "pip install 'edgernn[litert]'" in msg and "pip install ai-edge-litert (or tflite-runtime)" in msg


@pytest.mark.parametrize("bad, pattern", [
    (np.zeros((40,), np.float32), r"window has shape \[40\] \(1-D\); expected \[T, 6\] or \[B, T, 6\]"),
    (np.zeros((2, 2, 40, 6), np.float32), r"shape \[2, 2, 40, 6\] \(4-D\)"),
    (np.zeros((40, 5), np.float32), r"window has 5 channels \(shape \[40, 5\]\); this model expects 6"),
    (np.zeros((3, 40, 7)), r"window has 7 channels"),
    (np.array([["a"] * 6] * 40), r"dtype <U1; expected numbers"),
    (np.zeros((40, 6), bool), r"dtype bool; expected numbers"),
    ([[1.0] * 6, [1.0] * 5], r"not a numeric array"),
    (np.zeros((0, 6), np.float32), r"window is empty"),
])
def test_bad_window_shape_or_dtype(onnx_dir, bad, pattern):
    from edgernn.runtimes import load

    s = load(onnx_dir / "sequence-float.onnx")
    with pytest.raises(RuntimeInputError, match=pattern):
        s.predict(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_input(onnx_dir, X, value):
    from edgernn.runtimes import load

    for name in ("sequence-float.onnx", "sequence-int8.onnx"):
        s = load(onnx_dir / name)
        w = X[0].copy()
        w[5, 2] = value
        with pytest.raises(RuntimeInputError, match=r"window contains 1 NaN/inf value"):
            s.predict(w)  # fast path
        b = X[:3].copy()
        b[1, 0, 0] = value
        with pytest.raises(RuntimeInputError, match=r"NaN/inf"):
            s.predict(b)  # batch path
    st = load(onnx_dir / "step-float.onnx").stream()
    frame = X[0, 0].copy()
    frame[1] = value
    with pytest.raises(RuntimeInputError, match=r"frame contains 1 NaN/inf"):
        st.step(frame)


def test_bad_frame_shape(onnx_dir):
    from edgernn.runtimes import load

    st = load(onnx_dir / "step-float.onnx").stream()
    for bad in (np.zeros(5, np.float32), np.zeros((2, 6), np.float32), np.zeros((1, 1, 6), np.float32)):
        with pytest.raises(RuntimeInputError, match=r"frame has shape .*; expected \[6\] or \[1, 6\]"):
            st.step(bad)
    with pytest.raises(RuntimeInputError, match="dtype <U"):
        st.step(np.array(["x"] * 6))


def test_stream_on_sequence_artifact(onnx_dir):
    from edgernn.runtimes import load

    with pytest.raises(RuntimeInputError, match=r"sequence artifact and cannot stream.*--streaming"):
        load(onnx_dir / "sequence-float.onnx").stream()


def test_manifest_missing_corrupt_or_mismatched(onnx_dir, tmp_path):
    from edgernn.runtimes import load

    src = onnx_dir / "sequence-float.onnx"
    p = _copy_artifact(src, tmp_path)
    mpath = p.with_name(p.name + ".json")

    mpath.unlink()
    with pytest.raises(ArtifactError, match=r"manifest .* is missing; re-run `edgernn export`"):
        load(p)
    mpath.write_text("{not json")
    with pytest.raises(ArtifactError, match="is not valid JSON"):
        load(p)
    shutil.copy(src.with_name(src.name + ".json"), mpath)
    data = bytearray(p.read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes
    p.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 .* does not match its manifest"):
        load(p)
    p.write_bytes(bytes(data[:-100]))
    with pytest.raises(ArtifactError, match="truncated"):
        load(p)
    with pytest.raises(ArtifactError, match="does not exist"):
        load(tmp_path / "nope.onnx")


def test_manifest_runtime_format_mismatch(onnx_dir, tmp_path):
    """A manifest claiming litert for an .onnx file is refused before any backend is imported."""
    from edgernn.runtimes import load

    p = _copy_artifact(onnx_dir / "sequence-float.onnx", tmp_path)
    mpath = p.with_name(p.name + ".json")
    m = json.loads(mpath.read_text())
    m["runtime"] = "litert"
    mpath.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="format 'onnx' but runtime 'litert'"):
        load(p)


# ---- embedding: no torch, no tensorflow ---------------------------------------------------------------
@pytest.mark.slow
def test_clean_subprocess_imports_neither_torch_nor_tensorflow(onnx_dir, tflite_dir, X, tmp_path):
    xp = tmp_path / "x.npy"
    np.save(xp, X[:3])
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import edgernn.runtimes as r
        x = np.load({str(xp)!r})
        y1 = r.load({str(onnx_dir / 'sequence-int8.onnx')!r}).predict(x)
        y2 = r.load({str(tflite_dir / 'sequence-int8.tflite')!r}).predict(x[0])
        st = r.load({str(onnx_dir / 'step-float.onnx')!r}).stream(); st.step(x[0, 0])
        st = r.load({str(tflite_dir / 'step-int8.tflite')!r}).stream(); st.step(x[0, 0])
        banned = ('torch', 'tensorflow', 'onnx', 'tf_keras', 'keras')
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in banned)
        assert not heavy, heavy
        print('ok', y1.shape, y2.shape)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok (3, 4) (4,)"


def test_import_is_light():
    code = ("import sys, edgernn.runtimes, edgernn.runtimes.bench_worker; "
            "bad = [m for m in ('torch', 'tensorflow', 'onnxruntime', 'ai_edge_litert', 'onnx') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]


# ---- tag head: an output per step; left padding is cropped back off -----------------------------------
@pytest.fixture(scope="module")
def tag_dir(run, tmp_path_factory):
    """An untrained GRU tagger (weights random but seeded: parity does not need accuracy), exported to
    ONNX sequence + step; a copy of the sequence manifest claims a fixed length so padding kicks in."""
    import torch

    from edgernn.export.manifest import write_manifest
    from edgernn.export.onnx.convert import export_onnx
    from edgernn.models import ModelConfig, build_model
    from edgernn.rundir import load_run, save_run

    d = tmp_path_factory.mktemp("tag-run")
    cfg = ModelConfig(cell="gru", input_size=6, hidden=8, head="tag", num_outputs=3)
    torch.manual_seed(0)
    data = run.data()
    y = np.zeros(data["X_test"].shape[:2], np.int64)
    save_run(d, build_model(cfg), cfg, train_config={}, dataset={"name": "t", "task": "tag", "seq_len": 40},
             labels=["a", "b", "c"], mean=run.mean, std=run.std,
             data={"X_calib": data["X_calib"][:8], "y_calib": y[:8], "X_test": data["X_test"][:8], "y_test": y[:8]})
    tag_run = load_run(d)
    out = d / "artifacts"
    export_onnx(tag_run, out, precision="float", mode="sequence")
    export_onnx(tag_run, out, precision="float", mode="step")
    fixed = out / "fixed"
    fixed.mkdir()
    src = out / "sequence-float.onnx"
    shutil.copy(src, fixed / src.name)
    m = json.loads(src.with_name(src.name + ".json").read_text())
    m["sequence_length"] = 40
    skip = ("schema", "artifact", "sha256", "size_bytes", "versions", "created")
    write_manifest(fixed / src.name, {k: v for k, v in m.items() if k not in skip})
    return tag_run, out


def test_tag_outputs_per_step_and_padding_is_cropped(tag_dir, X):
    import torch

    from edgernn.runtimes import load

    tag_run, out = tag_dir
    with torch.no_grad():
        ref = tag_run.load_model()(torch.from_numpy(tag_run.normalize(X[:4]))).numpy()
    s = load(out / "sequence-float.onnx")
    assert s.predict(X[:4]).shape == (4, 40, 3) and np.abs(s.predict(X[:4]) - ref).max() <= 1e-4
    assert s.predict(X[0]).shape == (40, 3)
    step = load(out / "step-float.onnx")
    assert np.abs(step.predict(X[1]) - ref[1]).max() <= 1e-4  # streamed window: every frame's output
    fixed = load(out / "fixed" / "sequence-float.onnx")
    short = X[2, -25:]
    padded = np.concatenate([np.zeros((15, 6), np.float32), short])
    with torch.no_grad():
        want = tag_run.load_model()(torch.from_numpy(tag_run.normalize(padded[None]))).numpy()[0, -25:]
    got = fixed.predict(short)
    assert got.shape == (25, 3) and np.abs(got - want).max() <= 1e-4
    assert fixed.predict(short[None]).shape == (1, 25, 3)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::edgernn.runtimes.SaturationWarning")  # int8 streams of raw windows clip
def test_litert_public_api_fallback_gives_same_outputs(tflite_dir, gru):
    from edgernn.runtimes import load

    _, X, _ = gru
    for name in ("sequence-int8.tflite", "step-int8.tflite"):
        s = load(tflite_dir / name)
        assert s._direct  # ai-edge-litert exposes the C++ interpreter
        fast = s.predict(X[:3])
        s._direct = False
        assert np.array_equal(s.predict(X[:3]), fast)
