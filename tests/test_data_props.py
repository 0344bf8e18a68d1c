"""
Property-based tests (Hypothesis) of the data loaders: whatever a user hands in (.npz arrays, CSV text),
load_dataset either returns finite, consistent windows or raises its one-line DataError; never another
exception, never a traceback from the CLI, never a run directory for bad data.

    .venv/bin/pytest -q tests/test_data_props.py -s            # prints how many cases ran, how each ended

The runtime input checks on exported artifacts have their own module: tests/test_runtime_inputs_props.py.
Shared settings and the case counter: tests/props_common.py.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from edgernn.data import MAX_ABS, MIN_PER_CLASS, TASKS, load_csv, load_dataset
from edgernn.errors import DataError
from tests.props_common import FLOATS, INTS, ODD, SPECIAL, case_summary, props, record, shapes  # noqa: F401


# ---- generated .npz files ---------------------------------------------------------------------------
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
