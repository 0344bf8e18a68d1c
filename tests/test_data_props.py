"""
Property-based tests (Hypothesis): whatever a user hands in, the data loaders and the runtime input checks
either work or raise their one-line error (DataError / RuntimeInputError); never another exception, never
a traceback from the CLI, never a run directory for bad data.

    .venv/bin/pytest -q tests/test_data_props.py -s            # prints how many cases ran, how each ended
    .venv/bin/pytest -q tests/test_data_props.py -m "not slow"  # without the TFLite artifact (~20-40 s)

Examples are derandomized (same cases on every run and in CI) and counted per test; the summary is printed
when the module finishes.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgernn.data import MAX_ABS, MIN_PER_CLASS, TASKS, load_csv, load_dataset
from edgernn.errors import DataError, RuntimeInputError

COUNTS: dict[str, Counter] = defaultdict(Counter)
_SESSIONS: dict = {}  # artifact path -> loaded runtime session, shared by the module's examples


def props(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


@pytest.fixture(scope="module", autouse=True)
def case_summary():
    yield
    for s in _SESSIONS.values():
        s.close()
    _SESSIONS.clear()
    if COUNTS:
        print("\nHypothesis cases (ran = returned + raised the one-line error):")
        for name, c in COUNTS.items():
            ends = [f"returned {c['returned']}"] + [f"{k} {v}" for k, v in sorted(c.items())
                                                   if k not in ("ran", "returned")]
            print(f"  {name}: ran {c['ran']} = {' + '.join(ends)}")


def record(name: str, outcome: str) -> None:
    COUNTS[name]["ran"] += 1
    COUNTS[name][outcome] += 1


# ---- generated .npz files ---------------------------------------------------------------------------
FLOATS = ["float16", "float32", "float64"]
INTS = ["int8", "int32", "int64", "uint8", "uint64"]
ODD = ["bool", "U3", "S2", "complex64", "object"]
SPECIAL = [np.nan, np.inf, -np.inf, 1e14, -3e20, 1e30, 3e38, 1e300, 65504.0, 2.0 ** 63]


def _cast(a: np.ndarray, dtype: str) -> np.ndarray:
    """Any array -> dtype (object: a ragged array of rows; strings: the numbers as text)."""
    if dtype == "object":
        rows = [np.zeros((i + 1,) + a.shape[2:]) for i in range(max(len(a) if a.ndim else 1, 2))]
        out = np.empty(len(rows), dtype=object)
        for i, r in enumerate(rows):
            out[i] = r
        return out
    try:
        a = (a.real if a.dtype.kind == "c" else a).astype(float)
    except (ValueError, TypeError):  # ragged objects, text that is not a number
        a = np.zeros(a.shape)
    if dtype[0] in "US":
        return a.round(1).astype(dtype)
    with np.errstate(all="ignore"):
        return np.nan_to_num(a.astype(float), nan=0, posinf=0, neginf=0).astype(dtype) \
            if dtype in INTS + ["bool"] else a.astype(dtype)


@st.composite
def shapes(draw, max_dims=4):
    return tuple(draw(st.lists(st.integers(0, 5), max_size=max_dims)))


@st.composite
def random_array(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    a = rng.normal(size=draw(shapes())) * draw(st.sampled_from([1.0, 10.0, 1e6]))
    return _cast(a, draw(st.sampled_from(FLOATS + INTS + ODD)))


DEFECTS = ["drop", "dtype", "special", "special", "reshape", "zeros", "one_class", "unseen", "transpose", "random",
           "test_T", "y_test_width", "ragged", "few"]
# defects that only matter for one task, drawn more often for it
TASK_DEFECTS = {"classify": ["few", "unseen"], "tag": ["test_T", "y_test_T", "unseen"], "forecast": ["y_test_width"]}


def _defect(draw, d: dict, kind: str) -> None:
    """Apply one kind of damage to one array of d (in place)."""
    floats = sorted(k for k, v in d.items() if v.dtype.kind == "f")
    key = draw(st.sampled_from(floats if kind == "special" and floats else sorted(d) + ["X_extra"]))
    if key not in d:
        d[key] = draw(random_array())
    a = d[key]
    if kind == "drop":
        d.pop(key)
    elif kind == "dtype":
        d[key] = _cast(a, draw(st.sampled_from(FLOATS + INTS + ODD)))
    elif kind == "ragged":
        d[key] = _cast(a, "object")
    elif kind == "special" and a.size and a.dtype.kind == "f":
        a = a.astype(np.float64)
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(SPECIAL))
        with np.errstate(over="ignore"):
            d[key] = a.astype(draw(st.sampled_from(FLOATS)))
    elif kind == "reshape":
        d[key] = np.resize(a, draw(shapes())) if a.size else np.zeros(draw(shapes()), a.dtype)
    elif kind == "random":
        d[key] = draw(random_array())
    elif kind == "zeros":
        d[key] = np.zeros_like(a)
    elif kind == "one_class" and a.size and a.dtype != object:
        d[key] = np.full_like(a, a.flat[0])
    elif kind == "unseen" and a.size and a.dtype.kind in "iu":
        d[key] = a + 7
    elif kind == "transpose" and a.ndim >= 2:
        d[key] = np.swapaxes(a, 0, -1)
    elif kind == "test_T" and "X_test" in d and d["X_test"].ndim == 3:  # another window length for the test split
        t = max(d["X_test"].shape[1] + draw(st.sampled_from([1, -1])), 1)
        d["X_test"] = np.resize(d["X_test"], (len(d["X_test"]), t, d["X_test"].shape[2]))
        if d.get("y_test") is not None and d["y_test"].ndim == 2 and d["y_test"].dtype.kind in "iuUS":
            d["y_test"] = np.resize(d["y_test"], (len(d["y_test"]), t))
    elif kind == "y_test_T" and "y_test" in d and d["y_test"].ndim == 2:  # tag labels for another length
        yt = d["y_test"]
        d["y_test"] = np.resize(yt, (len(yt), max(yt.shape[1] + draw(st.sampled_from([1, -1])), 1)))
    elif kind == "y_test_width" and "y_test" in d and d["y_test"].ndim >= 2:
        d["y_test"] = np.resize(d["y_test"], (len(d["y_test"]), draw(st.integers(1, 7))))
    elif kind == "few":  # keep only a few windows
        k = draw(st.integers(1, 4))
        for key in ("X", "y"):
            if key in d and d[key].ndim:
                d[key] = d[key][:k]


@st.composite
def npz_arrays(draw, scenario=None):
    """One task's data: well formed ("clean"), with exactly one defect, with several ("chaos"), or four
    unrelated random arrays ("random"). Degenerate sizes, huge units and one-class labels occur in all of them."""
    scenario = scenario or draw(st.sampled_from(["clean"] * 3 + ["one_defect"] * 4 + ["chaos"] * 2 + ["random"]))
    if scenario == "random":
        return {k: draw(random_array()) for k in ("X", "y", "X_test", "y_test") if draw(st.booleans())}
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    task = draw(st.sampled_from(TASKS))
    dims = {k: draw(st.sampled_from(v)) for k, v in (("N", [12, 20, 8, 16, 5, 3, 2, 1]), ("T", [4, 6, 1, 2, 3]),
                                                     ("C", [2, 3, 1, 4]))}
    zero = draw(st.sampled_from([None] * 20 + ["N", "T", "C"]))  # now and then an empty axis
    N, T, C = (0 if k == zero else v for k, v in dims.items())
    K = draw(st.sampled_from([3, 2, 4, 2, 3, 1]))
    width = draw(st.sampled_from([(1,), (2,), (2, 1)]))  # forecast y: [N, C], [N, 2C] or [N, 2, C]

    def make(n, t):
        X = rng.normal(size=(n, t, C)) * 5 + 2
        if t > 1 and n and draw(st.booleans()):  # some left padding
            X[: (n + 1) // 2, : rng.integers(1, t)] = 0
        if task == "classify":
            y = rng.integers(0, K, size=n)
        elif task == "tag":
            y = rng.integers(0, K, size=(n, t))
        else:
            y = rng.normal(size=(n, width[0] * C) if len(width) == 1 else (n, width[0], C))
        return X, y

    d = dict(zip(("X", "y"), make(N, T)))
    if draw(st.sampled_from([True, True, False])):
        d["X_test"], d["y_test"] = make(draw(st.sampled_from([4, 2, 6, 1])), T)
    # raw units: mostly ordinary, sometimes near/over MAX_ABS or beyond float32 (one array, one magnitude)
    key = draw(st.sampled_from(sorted(k for k, v in d.items() if v.dtype.kind == "f")))
    d[key] = d[key] * draw(st.sampled_from([1.0] * 10 + [1e12, 1e13, 1e15, 1e20, 1e30, 1e300]))
    d["X"] = _cast(d["X"], draw(st.sampled_from(["float32", "float64", "float16", "int32"])))
    if task == "classify" and draw(st.booleans()):  # string labels
        for k in ("y", "y_test"):
            if k in d:
                d[k] = np.array(["walk", "run", "sit", "jump"])[d[k]]
    for _ in range({"clean": 0, "one_defect": 1}[scenario] if scenario != "chaos" else draw(st.integers(2, 4))):
        _defect(draw, d, draw(st.sampled_from(DEFECTS + TASK_DEFECTS[task] * 3)))
    return d


@st.composite
def npz_file(draw, path: Path, scenarios=None):
    """An .npz of npz_arrays(), usually from np.savez; sometimes compressed, a bare .npy, cut short or noise."""
    d = draw(npz_arrays(draw(st.sampled_from(scenarios)) if scenarios else None))
    how = draw(st.sampled_from(["savez"] * 12 + ([] if scenarios else ["compressed", "npy", "truncated", "bytes"])))
    if how == "npy" and "X" in d:
        with open(path, "wb") as f:
            np.save(f, d["X"])
    elif how in ("truncated", "bytes"):
        buf = io.BytesIO()
        np.savez(buf, **d)
        raw = buf.getvalue()
        raw = raw[: draw(st.integers(0, len(raw)))] if how == "truncated" else draw(st.binary(max_size=64))
        path.write_bytes(raw)
    else:
        (np.savez_compressed if how == "compressed" else np.savez)(path, **d)
    return d


def check_dataset(ds) -> None:
    """What training relies on: finite float32 windows [N, T, C], labels/targets consistent with them."""
    N, T, C = ds.X_train.shape
    assert ds.task in TASKS and N >= 2 and T >= 1 and C >= 1
    for X, y, lengths in ((ds.X_train, ds.y_train, ds.len_train), (ds.X_test, ds.y_test, ds.len_test)):
        assert X.dtype == np.float32 and X.ndim == 3 and X.shape[1:] == (T, C) and len(X) >= 1
        assert np.isfinite(X).all() and np.abs(X).max() < MAX_ABS
        assert len(y) == len(X) and lengths.shape == (len(X),) and ((0 <= lengths) & (lengths <= T)).all()
        if ds.task == "classify":
            assert y.dtype == np.int64 and y.shape == (len(X),) and ((0 <= y) & (y < len(ds.labels))).all()
        elif ds.task == "tag":
            assert y.dtype == np.int64 and y.shape == (len(X), T) and ((0 <= y) & (y < len(ds.labels))).all()
        else:
            assert y.dtype == np.float32 and y.shape == (len(X), ds.num_outputs) and np.isfinite(y).all()
            assert np.abs(y).max() < MAX_ABS
    assert ds.len_train.any()  # some real (non-padding) steps to compute normalization on
    if ds.task == "forecast":
        assert ds.num_outputs == ds.horizon * C and ds.horizon >= 1
    else:
        assert len(ds.labels) >= 2 and len(set(ds.labels)) == len(ds.labels)
    if ds.task == "classify":
        assert np.bincount(ds.y_train, minlength=len(ds.labels)).min() >= MIN_PER_CLASS


def _outcome(name: str, fn):
    try:
        ds = fn()
    except DataError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, repr(msg)
        record(name, "DataError")
        return None
    check_dataset(ds)
    record(name, "returned")
    return ds


@props(1000)
@given(data=st.data())
def test_npz_loader_returns_valid_data_or_data_error(tmp_path, data):
    p = tmp_path / "case.npz"
    data.draw(npz_file(p))
    _outcome("load_dataset(.npz)", lambda: load_dataset(str(p)))


# ---- generated CSV text -----------------------------------------------------------------------------
CELLS = ["0", "1.5", "-2", "3e2", " 4 ", "nan", "inf", "-inf", "1e14", "-2e30", "1e400", "abc", "", "train", "test",
         "TEST", "x", "0x1F", "1_000"]


@st.composite
def csv_bytes(draw):
    """A well-formed CSV (random column order, lengths, classes, splits, units), then 0-2 random mutations;
    or random bytes / text."""
    if draw(st.sampled_from(["csv"] * 7 + ["noise"])) == "noise":
        return draw(st.one_of(st.binary(max_size=80), st.text(max_size=80).map(lambda s: s.encode("utf-8"))))
    cols = draw(st.permutations(["sequence", "label", "split", "ax", "ay"]))
    if draw(st.booleans()):
        cols = [c for c in cols if c != "split"]
    rows = []
    n_seq, K = draw(st.integers(1, 14)), draw(st.sampled_from([2, 3, 2, 1]))
    unit = draw(st.sampled_from([1.0] * 8 + [1e13, 1e15, 1e30]))  # channel ax in raw units: sometimes huge
    for s in range(n_seq):
        label, split = f"c{s % K}", draw(st.sampled_from(["train", "train", "train", "test"]))
        for t in range(draw(st.integers(1, 4))):
            fields = {"sequence": f"s{s}", "label": label, "split": split, "ax": f"{(t * 0.5 + s) * unit:.6g}",
                      "ay": f"{-t}"}
            rows.append([fields[c] for c in cols])
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        kind = draw(st.sampled_from(["cell", "cell", "short", "drop_column", "header"]))
        r = draw(st.integers(0, len(rows) - 1))
        if kind == "cell" and rows[r]:
            rows[r][draw(st.integers(0, len(rows[r]) - 1))] = draw(st.sampled_from(CELLS))
        elif kind == "short" and rows[r]:
            rows[r] = rows[r][: draw(st.integers(0, len(rows[r]) - 1))]
        elif kind == "drop_column" and cols:
            i = draw(st.integers(0, len(cols) - 1))
            cols = cols[:i] + cols[i + 1:]
            rows = [row[:i] + row[i + 1:] for row in rows]
        elif kind == "header" and cols:
            cols = cols[:-1] + [draw(st.sampled_from(["label", "sequence", "", "x y", '"q"']))]
    text = "\n".join(",".join(row) for row in [cols] + rows) + draw(st.sampled_from(["\n", "", "\n\n", "\r\n"]))
    raw = text.encode("utf-8")
    if draw(st.integers(0, 15)) == 0:
        raw += draw(st.sampled_from([b"\x00", b"\xff\xfe", b'"unterminated', b"\n" + b"9" * 200_000]))
    return raw


@props(600)
@given(data=st.data())
def test_csv_loader_returns_valid_data_or_data_error(tmp_path, data):
    p = tmp_path / "case.csv"
    p.write_bytes(data.draw(csv_bytes()))
    _outcome("load_csv", lambda: load_csv(p))


# ---- the CLI: exit 0 or a one-line error (exit 1) and no run directory ------------------------------------
RUN_IDS = itertools.count()


@props(60)
@given(data=st.data())
def test_cli_train_exit_0_or_1_and_nothing_written(tmp_path, data):
    from click.testing import CliRunner

    from edgernn.cli import main

    p = tmp_path / "case.npz"
    data.draw(npz_file(p, scenarios=["clean", "one_defect"]))  # more cases that train than in the loader test
    out = tmp_path / f"run{next(RUN_IDS)}"
    r = CliRunner().invoke(main, ["train", "-d", str(p), "--epochs", "1", "--hidden", "4", "-q", "--out", str(out)])
    assert r.exception is None or isinstance(r.exception, SystemExit), \
        f"uncaught {type(r.exception).__name__}: {r.exception}\n{r.output}"
    assert r.exit_code in (0, 1), r.output
    if r.exit_code == 1:
        assert r.output.startswith("Error: ") and len(r.output.strip().splitlines()) == 1, r.output
        assert "Traceback" not in r.output and not out.exists(), r.output
        record("cli train", "exit 1")
    else:
        m = json.loads((out / "metrics.json").read_text())
        assert math.isfinite(m[f"test_{m['headline_metric']}"]), m
        record("cli train", "returned")


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
