"""
Tests for the TFLite Micro runtime (edgernn.runtimes.tflm_backend): load(path, runtime="tflm") gives LiteRT's
outputs on the same .tflite files, refusals carry TFLite Micro's one-line reason, and tflm_check() finds the
smallest arena without ever crashing this process. Artifacts come from the real TFLite exporter, int8 recipes
pinned (full-int8, int16x8: no recipe search, so the fixture takes 30-40 s; marked slow):

    .venv/bin/pytest tests/test_tflm.py

A GRU of hidden 32: TFLite's dynamic-range quantizer leaves weight tensors under 1024 elements in float, so a
hidden-8 "dynamic" artifact has no int8 weights at all and TFLite Micro runs it; at hidden 32 it has them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgernn.errors import ArtifactError, MissingDependencyError
from edgernn.runtimes import SaturationWarning

pytest.importorskip("tflite_micro", reason="the tflm extra (pip install 'edgernn[tflm]') is not installed")
pytestmark = [pytest.mark.export, pytest.mark.slow]  # every test uses the converted artifacts

ROOT = Path(__file__).resolve().parents[1]
FLOAT_TOL = 1e-5  # measured <= 3.6e-6 (float32 sums in another order; the LSTM runs one frame per invoke here)


@pytest.fixture(scope="module")
def arts(make_run, tmp_path_factory):
    """name -> artifact path: GRU h32 (float sequence / step, full-int8 step, int16x8 step, dynamic step, full-int8
    WHILE-loop sequence (its free length did not verify: fixed) and the same --integer-only (fixed at once)) and LSTM
    h16 (float fused sequence with a dynamic time axis, full-int8 fused step)."""
    from edgernn.export import ExportOptions
    from edgernn.export.tflite.convert import export_tflite
    from edgernn.export.tflite.pool import worker_pool
    from edgernn.rundir import load_run

    gru, lstm = load_run(make_run(cell="gru", hidden=32)), load_run(make_run(cell="lstm", hidden=16))
    out = tmp_path_factory.mktemp("tflm")
    jobs = {"gru-sequence-float": (gru, "gru", "float", "sequence", None),
            "gru-step-float": (gru, "gru", "float", "step", None),
            "gru-step-full-int8": (gru, "gru", "int8", "step", "full-int8"),
            "gru-step-int16x8": (gru, "gru16", "int8", "step", "int16x8"),
            "gru-step-dynamic": (gru, "gru", "dynamic", "step", None),
            "gru-sequence-full-int8": (gru, "gru", "int8", "sequence", "full-int8"),
            "gru-sequence-integer-only": (gru, "gru-io", "int8", "sequence", "full-int8"),
            "lstm-sequence-float": (lstm, "lstm", "float", "sequence", None),
            "lstm-step-full-int8": (lstm, "lstm", "int8", "step", "full-int8")}
    with worker_pool():  # one TensorFlow import for all eight conversions
        paths = {name: export_tflite(run, out / sub, precision, mode,
                                     ExportOptions(recipe=recipe, integer_only=name.endswith("integer-only")))
                 for name, (run, sub, precision, mode, recipe) in jobs.items()}
    paths["X_gru"] = gru.data()["X_test"][:24].astype(np.float32)
    paths["X_lstm"] = lstm.data()["X_test"][:24].astype(np.float32)
    return paths


def _both(path):
    from edgernn.runtimes import load

    return load(path, runtime="tflm"), load(path)


def _litert_feeds(litert, X) -> list:
    """The (quantized) feeds a LiteRT stream gives its interpreter over the windows X, each from a reset."""
    got, real = [], litert._invoke_fixed
    litert._invoke_fixed = lambda feeds: (got.append([np.array(a) for a in feeds]), real(feeds))[1]
    st = litert.stream(warn=False)
    for x in X:
        st.reset()
        for frame in x:
            st.step(frame)
    litert._invoke_fixed = real
    return got


# ---- same outputs as LiteRT ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gru-sequence-float", "gru-step-float", "lstm-sequence-float"])
def test_float_matches_litert(arts, name):
    s, ref = _both(arts[name])
    assert s.runtime_name == "tflm" and s.runtime_package == "tflite-micro" and s.manifest["runtime"] == "litert"
    X = arts["X_lstm" if name.startswith("lstm") else "X_gru"]
    assert np.abs(s.predict(X) - ref.predict(X)).max() <= FLOAT_TOL
    if s.mode == "step":
        st, st_ref = s.stream(), ref.stream()
        for frame in X[:2].reshape(-1, X.shape[-1]):  # 80 frames, no reset between the two windows
            assert np.abs(st.step(frame) - st_ref.step(frame)).max() <= FLOAT_TOL
    elif s.sequence_length:  # a short window is left-padded to the fixed length, as on LiteRT
        assert np.abs(s.predict(X[:4, -25:]) - ref.predict(X[:4, -25:])).max() <= FLOAT_TOL
    else:  # the fused LSTM's dynamic time axis: TFLite Micro holds length 1 and runs one frame per invoke
        assert s._x_shape == (1, 1, 6)
        assert np.abs(s.predict(X[:4, -25:]) - ref.predict(X[:4, -25:])).max() <= FLOAT_TOL


def test_int8_step_one_invoke_within_rounding(arts):
    """From identical quantized feeds (a LiteRT stream's, 960 frames), one invoke: every integer kernel of the two
    interpreters rounds its requantization within one step of the other's (measured per op on this GRU:
    FULLY_CONNECTED and MUL, and int16 QUANTIZE, differ by at most 1), compounded through the GRU update."""
    s, ref = _both(arts["gru-step-full-int8"])
    assert [t.dtype for t in s.outputs] == [np.int8, np.int8]
    worst = {}
    for feeds in _litert_feeds(ref, arts["X_gru"]):
        for t, a, b in zip(s.outputs, s._invoke(feeds), ref._invoke(feeds)):
            worst[t.role] = max(worst.get(t.role, 0), int(np.abs(a.astype(np.int32) - b).max()))
    assert worst["y"] <= 1  # measured 1 (in 8% of frames)
    assert worst["state"] <= 8  # measured 6 (h = z*h + (1-z)*n chains two FULLY_CONNECTED and three MUL)
    # int16x8, float I/O: y within one step of its int16 output (scale 2.53e-4 here; measured 2.54e-4)
    s, ref = _both(arts["gru-step-int16x8"])
    diff = max(np.abs(a - b).max() for feeds in _litert_feeds(ref, arts["X_gru"][:6])
               for a, b in zip(s._invoke(feeds), ref._invoke(feeds)))
    assert diff <= 4e-4


@pytest.mark.parametrize("name, bound", [
    ("gru-step-full-int8", 6),  # output steps (0.055 each); measured 4: a state step apart compounds over frames
    ("gru-step-int16x8", 2e-3),  # absolute (float output); measured 7.6e-4
    ("lstm-step-full-int8", 3),  # output steps (0.049 each); measured 1
    ("gru-sequence-integer-only", 6),  # output steps
    ("gru-sequence-full-int8", 6),  # the dynamic length did not verify on this GRU: fixed at T, as above
])
def test_int8_windows_agree_with_litert(arts, name, bound):
    """The same windows on both interpreters: within a few output steps, the same top-1. The --integer-only GRU
    sequence is its WHILE loop with every shape static (the window length fixed), which TFLite Micro allocates;
    the dynamic-length loop it refuses (test_refused_artifact_says_why_in_one_line)."""
    s, ref = _both(arts[name])
    if name.startswith("gru-sequence"):
        assert s.sequence_length == ref.manifest["inputs"][0]["shape"][1] > 1
        assert ref.manifest["sequence_length_note"].startswith(f"fixed at {s.sequence_length}: the GRU runs as a WHILE")
        assert ("--integer-only" in ref.manifest["sequence_length_note"]) == name.endswith("integer-only")
    X = arts["X_lstm" if name.startswith("lstm") else "X_gru"]
    with warnings.catch_warnings():  # the full-int8 GRU's input clips on a few test frames, on both runtimes
        warnings.simplefilter("ignore", SaturationWarning)
        a, b = s.predict(X), ref.predict(X)
    lsb = s._y.scale or 1.0
    assert np.abs(a - b).max() <= bound * lsb
    assert (a.argmax(1) == b.argmax(1)).all()


def test_stateful_int8_lstm_keeps_state_inside_and_counts_saturation(arts):
    """The full-int8 LSTM step is the fused op streamed one frame per invoke, its state in variable tensors: reset()
    must clear them, and the saturation count reads them (TFLite Micro's GetTensor) exactly as on LiteRT."""
    s, ref = _both(arts["lstm-step-full-int8"])
    assert s._stateful and len(s._internal_states()) == 2
    X = arts["X_lstm"]
    loud = np.concatenate([X[0], X[1] * 3.0])  # x3 the training amplitude: the int8 input and cell state clip
    st = s.stream(warn=False)
    first = [st.step(f) for f in X[0]]
    st.reset()
    assert np.array_equal([st.step(f) for f in X[0]], first)  # reset() zeroed the variable tensors
    st, st_ref = s.stream(warn=False), ref.stream(warn=False)
    for f in loud:
        st.step(f)
        st_ref.step(f)
    assert st.saturation == st_ref.saturation and st.saturation["input"] > 0


def test_tensors_are_paired_by_name_not_position(arts, tmp_path):
    """TFLite Micro addresses inputs and outputs by position only; the session pairs them with the manifest by
    the flatbuffer's tensor names, so a manifest listing them in another order gives the same outputs."""
    from edgernn.runtimes import load

    src = arts["gru-step-float"]
    p = tmp_path / src.name
    shutil.copy(src, p)
    m = json.loads(Path(f"{src}.json").read_text())
    m["inputs"], m["outputs"] = m["inputs"][::-1], m["outputs"][::-1]
    Path(f"{p}.json").write_text(json.dumps(m))
    X = arts["X_gru"][:4]
    assert np.abs(load(p, runtime="tflm").predict(X) - load(src).predict(X)).max() <= FLOAT_TOL


# ---- refusals ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, said, why", [
    ("gru-step-dynamic", "Input type: FLOAT32 with filter type: INT8 not supported",
     "dynamic-range artifacts need float activations with int8 weights"),
])
def test_refused_artifact_says_why_in_one_line(arts, name, said, why):
    from edgernn.runtimes import load
    from edgernn.runtimes.tflm_backend import tflm_check

    path = arts[name]
    load(path).predict(arts["X_gru"][0])  # LiteRT runs it: the refusal is TFLite Micro's
    with pytest.raises(ArtifactError) as e:
        load(path, runtime="tflm")
    msg = str(e.value)
    assert msg.startswith(f"{path.name} does not run on TFLite Micro: ") and "\n" not in msg
    assert said in msg and why in msg
    got = tflm_check(path)
    assert got == {"runs": False, "reason": msg.split("TFLite Micro: ", 1)[1], "arena_bytes": None}


# ---- tflm_check -------------------------------------------------------------------------------------------------
_TRY_ARENA = textwrap.dedent("""
    import sys, numpy as np
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
    for pos in range(int(sys.argv[3])):
        d = it.get_input_details(pos)
        it.set_input(np.zeros(d["shape"], d["dtype"]), pos)
    it.invoke()
    print("ran")
""")


def _runs_with(path, arena: int, inputs: int) -> bool:
    """An interpreter of this arena, in a fresh process (a too-small arena may segfault), ran one inference."""
    r = subprocess.run([sys.executable, "-c", _TRY_ARENA, str(path), str(arena), str(inputs)],
                       capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and r.stdout.strip() == "ran"


def test_tflm_check_finds_the_smallest_arena(arts):
    from edgernn.runtimes.tflm_backend import tflm_check

    for name in ("gru-sequence-float", "gru-step-float", "gru-step-full-int8", "gru-step-int16x8",
                 "lstm-sequence-float", "lstm-step-full-int8"):
        got = tflm_check(arts[name])
        assert got["runs"] and got["reason"] is None, (name, got)
        assert got["arena_bytes"] % 1024 == 0 and 1024 <= got["arena_bytes"] <= 1 << 20, (name, got)
        if name in ("gru-step-full-int8", "gru-sequence-float"):  # checked outside tflm_check's own prober
            n = len(json.loads(Path(f"{arts[name]}.json").read_text())["inputs"])
            assert _runs_with(arts[name], got["arena_bytes"], n), (name, got)
            assert not _runs_with(arts[name], got["arena_bytes"] - 1024, n), (name, got)


def test_a_crash_in_tflite_micro_ends_only_the_probe(arts):
    """Measured: an arena of 0 bytes makes TFLite Micro segfault (not fail) while it allocates. The prober
    counts that as "does not fit" and starts a new child for the next size."""
    from edgernn.runtimes.tflm_backend import ARENA, _Prober

    path = arts["gru-step-float"]
    probe = _Prober(path, 2, deadline=time.monotonic() + 60)
    try:
        ok, text, error, _ = probe(0)
        assert not ok and "crashed the process" in error and "Failed to allocate" in text
        assert probe(ARENA)[0]
    finally:
        probe.close()


# ---- load(), install, embedding ---------------------------------------------------------------------------------
def test_load_chooses_tflm_for_tflite_only(arts, tmp_path):
    from edgernn.runtimes import available_runtimes, load

    assert "tflm" in available_runtimes()
    assert load(arts["gru-step-float"]).runtime_name == "litert"  # the manifest's runtime stays the default
    src = arts["gru-step-float"]
    p = tmp_path / "step-float.onnx"
    shutil.copy(src, p)
    m = json.loads(Path(f"{src}.json").read_text())
    m.update(format="onnx", runtime="onnxruntime")
    Path(f"{p}.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=r"built for onnxruntime, not tflm.*--format tflite for tflm"):
        load(p, runtime="tflm")


def test_missing_tflite_micro_names_extra_and_pip_line(arts, monkeypatch):
    from edgernn.runtimes import load
    from edgernn.runtimes.tflm_backend import tflm_check

    for mod in ("tflite_micro", "tflite_micro.python", "tflite_micro.python.tflite_micro",
                "tflite_micro.python.tflite_micro.runtime"):
        monkeypatch.setitem(sys.modules, mod, None)  # import -> ImportError
    for call in (lambda: load(arts["gru-step-float"], runtime="tflm"), lambda: tflm_check(arts["gru-step-float"])):
        with pytest.raises(MissingDependencyError) as e:
            call()
        msg = str(e.value)
        assert "pip install 'edgernn[tflm]'" in msg and "pip install tflite-micro" in msg and "\n" not in msg


def test_clean_subprocess_imports_numpy_and_tflite_micro_only(arts):
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import edgernn.runtimes as r
        from edgernn.runtimes.tflm_backend import tflm_check
        st = r.load({str(arts['gru-step-full-int8'])!r}, runtime="tflm").stream()
        y = st.step(np.zeros(6, np.float32))
        assert tflm_check({str(arts['gru-step-float'])!r})["runs"]
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in
                       ('torch', 'tensorflow', 'tf_keras', 'keras', 'onnx', 'onnxruntime', 'ai_edge_litert'))
        assert not heavy, heavy
        print('ok', y.shape)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok (4,)"
