"""
Property-based tests (Hypothesis) of the runtime input checks on real exported artifacts: whatever a device
app hands to predict() or step() (odd shapes, dtypes, NaN/inf, huge values, lists, non-arrays), the session
either returns finite float32 outputs or raises its one-line RuntimeInputError; valid windows are accepted.

    .venv/bin/pytest -q tests/test_runtime_inputs_props.py -s            # prints how many cases ran, how each ended
    .venv/bin/pytest -q tests/test_runtime_inputs_props.py -m "not slow"  # without the TFLite artifact

Shared settings and the case counter: tests/props_common.py (the data loaders: tests/test_data_props.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgernn.errors import RuntimeInputError
from tests.props_common import FLOATS, INTS, SPECIAL, case_summary, props, record, shapes  # noqa: F401

# the inputs here reach float32's limits on purpose: numpy says so ("overflow encountered in dot/cast") in the
# finiteness check just before the runtime refuses them with a RuntimeInputError, which is what is tested
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

_SESSIONS: dict = {}  # artifact path -> loaded runtime session, shared by the module's examples


@pytest.fixture(scope="module", autouse=True)
def close_sessions():
    yield
    for s in _SESSIONS.values():
        s.close()
    _SESSIONS.clear()


# ---- runtime inputs on real exported artifacts ------------------------------------------------------------
CLASSES, T_SYN, C_SYN = 4, 12, 3


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 4-unit GRU trained for 2 epochs on a small synthetic set (4 classes, 3 channels, T=12)."""
    import torch

    from edgernn.data import synthetic
    from edgernn.train import TrainConfig, train

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("props") / "run"
    ds = synthetic(n_train=64, n_test=16, seq_len=T_SYN, channels=C_SYN, classes=CLASSES)
    train(TrainConfig(dataset="synthetic", hidden=4, epochs=2, batch_size=32), run, progress=False, dataset=ds)
    return run


def _export(run, fmt):
    from edgernn.export import export_run

    res = [r for r in export_run(run, formats=(fmt,), precisions=("float",), streaming=True, progress=False) if r.path]
    return {r.mode: r.path for r in res}


@pytest.fixture(scope="module")
def onnx_float(tiny_run):
    return _export(tiny_run, "onnx")


ODD_INPUTS = [None, "abc", b"\x00\x01", 3.0, {"x": 1}, [], [[]], [None] * C_SYN, [[1.0] * C_SYN, [1.0] * (C_SYN - 1)],
              [[1.0, "a", 2.0]], object(), [[[1.0] * C_SYN]] * 2 + [[[1.0] * C_SYN] * 2]]


@st.composite
def window_inputs(draw, channels: int, frame: bool):
    """Numeric arrays of likely and unlikely shapes/dtypes/values, python lists, and non-arrays."""
    r = draw(st.integers(0, 9))
    if r == 0:
        return draw(st.sampled_from(ODD_INPUTS))
    dims = draw(st.sampled_from([[channels], [1, channels]] if frame else [[T_SYN, channels], [None, T_SYN, channels]]))
    if r == 1:
        dims = draw(shapes())
    shape = [draw(st.integers(1, 3)) if d is None else d for d in dims]
    if r in (2, 3) and shape:  # a wrong or empty axis
        i = draw(st.integers(0, len(shape) - 1))
        shape[i] = draw(st.sampled_from([0, 1, 2, shape[i] - 1, shape[i] + 1, 2 * T_SYN]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    a = np.asarray(rng.normal(size=shape) * 20 + 15)
    if r == 4 and a.size:
        for _ in range(draw(st.integers(1, 3))):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(SPECIAL + [-1e38, 1e19, -1e19]))
    if r == 5:
        a = a * draw(st.sampled_from([1e10, 1e18, 1e30, 1e37, 3e38]))
    dtype = draw(st.sampled_from(["float32"] * 4 + FLOATS + INTS + ["bool", "U3", "complex64", "object"]))
    with np.errstate(all="ignore"):
        if dtype == "object":
            a = a.astype(object)
        elif dtype in INTS or dtype == "bool":
            a = np.nan_to_num(a, nan=0, posinf=0, neginf=0).clip(-1e6, 1e6).astype(dtype)
        else:
            a = a.astype(dtype)
    if draw(st.integers(0, 5)) == 0:
        a = a.tolist()
    elif a.ndim >= 2 and draw(st.integers(0, 5)) == 0:
        a = np.swapaxes(a, -1, -2).copy().swapaxes(-1, -2)  # non-contiguous view
    return a


def _sane(x, channels: int, frame: bool, fixed: int | None) -> bool:
    """Whether this input must be accepted: a real-number array of a valid shape with ordinary values."""
    try:
        a = np.asarray(x)
    except (ValueError, TypeError):
        return False
    if a.dtype.kind not in "fiu" or not a.size or not np.isfinite(a.astype(np.float64)).all():
        return False
    if np.abs(a.astype(np.float64)).max() > 1e6:
        return False
    if frame:
        return a.shape in ((channels,), (1, channels))
    return a.ndim in (2, 3) and a.shape[-1] == channels and (fixed is None or a.shape[-2] <= fixed)


def _bad_values(x) -> bool:
    """Whether this input holds values that must never reach the model: NaN/inf once in float32, or a magnitude
    (>= 1e21, over 1e20 standard deviations for these artifacts) that the runtime must call too large."""
    try:
        a = np.asarray(x)
        if a.dtype.kind not in "fiu" or not a.size:
            return False
        with np.errstate(over="ignore"):
            a = a.astype(np.float32)
    except (ValueError, TypeError):
        return False
    return not np.isfinite(a).all() or float(np.abs(a).max()) >= 1e21


def _check_run(name, fn, x, expect_shape, must_accept):
    try:
        y = fn(x)
    except RuntimeInputError as exc:
        assert not must_accept, f"rejected a valid input: {exc}"
        assert str(exc) and "\n" not in str(exc)
        record(name, "RuntimeInputError")
        return
    assert not _bad_values(x), f"accepted NaN/inf or a huge value (max |x| {np.abs(np.asarray(x, float)).max():.3g})"
    assert isinstance(y, np.ndarray) and y.dtype == np.float32, (type(y), getattr(y, "dtype", None))
    assert y.shape == expect_shape, (y.shape, expect_shape, np.shape(x))
    assert np.isfinite(y).all(), f"non-finite output for input {np.asarray(x, dtype=object).shape}: {y}"
    record(name, "returned")


def _predict_property(session, name, x):
    fixed = session.sequence_length if session.mode == "sequence" else None
    try:
        shape = np.asarray(x).shape
    except (ValueError, TypeError):
        shape = ()
    expect = (shape[0], CLASSES) if len(shape) == 3 else (CLASSES,)
    must = _sane(x, session.channels, False, fixed)
    _check_run(name, session.predict, x, expect, must)


def _step_property(stream, name, x):
    _check_run(name, stream.step, x, (CLASSES,), _sane(x, stream.session.channels, True, None))


@props(400)
@given(data=st.data())
def test_onnx_predict_returns_finite_or_runtime_input_error(onnx_float, data):
    for mode in ("sequence", "step"):
        s = _sessions(onnx_float[mode])
        _predict_property(s, f"onnx {mode} predict", data.draw(window_inputs(C_SYN, frame=False)))


@props(400)
@given(data=st.data())
def test_onnx_stream_step_returns_finite_or_runtime_input_error(onnx_float, data):
    st_ = _sessions(onnx_float["step"]).stream()
    for _ in range(data.draw(st.integers(1, 4))):
        _step_property(st_, "onnx stream step", data.draw(window_inputs(C_SYN, frame=True)))


def _sessions(path):
    """One loaded session per artifact for the whole module (loading per example would dominate the time)."""
    from edgernn.runtimes import load

    if path not in _SESSIONS:
        _SESSIONS[path] = load(path)
    return _SESSIONS[path]


@pytest.fixture(scope="module")
def tflite_float(tiny_run):
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    return _export(tiny_run, "tflite")


@pytest.mark.slow
@pytest.mark.export
@props(200)
@given(data=st.data())
def test_tflite_predict_and_step_return_finite_or_runtime_input_error(tflite_float, data):
    for mode in ("sequence", "step"):
        _predict_property(_sessions(tflite_float[mode]), f"tflite {mode} predict",
                          data.draw(window_inputs(C_SYN, frame=False)))
    _step_property(_sessions(tflite_float["step"]).stream(), "tflite stream step",
                   data.draw(window_inputs(C_SYN, frame=True)))


def test_huge_values_cannot_cancel_out(onnx_float):
    """+1e38 and -1e38 in one window (or frame) sum to 0, so a plain sum would let them through to the model."""
    s = _sessions(onnx_float["sequence"])
    w = np.tile(s._mean, (T_SYN, 1)).astype(np.float32)
    w[3, :2] = [1e38, -1e38]
    with pytest.raises(RuntimeInputError, match=r"window values are too large to normalize \(max \|x\| 1e\+38"):
        s.predict(w)
    with pytest.raises(RuntimeInputError, match=r"frame values are too large to normalize"):
        _sessions(onnx_float["step"]).stream().step(np.array([1e30, -1e30, 0.0], np.float32))
