"""Loaders for bundled, synthetic and user data, and one clear error per kind of bad data."""

import numpy as np
import pytest

from edgernn.data import DATASETS, MAX_ABS, MIN_PER_CLASS, TASKS, load_dataset, pad_sequences, read_ts
from edgernn.errors import DataError


def test_basic_motions_is_real_bundled_data():
    ds = load_dataset("basic-motions")
    assert ds.X_train.shape == (40, 100, 6) and ds.X_test.shape == (40, 100, 6)
    assert ds.labels == ["Standing", "Running", "Walking", "Badminton"]
    assert sorted(np.bincount(ds.y_train).tolist()) == [10, 10, 10, 10]
    assert np.isfinite(ds.X_train).all() and ds.X_train.std() > 0.1
    assert (ds.len_train == 100).all()


def test_japanese_vowels_variable_length_left_padded():
    ds = load_dataset("japanese-vowels")
    assert ds.X_train.shape == (270, 29, 12) and ds.X_test.shape == (370, 29, 12)
    assert len(ds.labels) == 9 and ds.len_train.min() == 7 and ds.len_test.max() == 29
    i = int(np.argmin(ds.len_train))
    pad = 29 - ds.len_train[i]
    assert np.all(ds.X_train[i, :pad] == 0) and np.any(ds.X_train[i, pad:] != 0)


def test_synthetic_is_seeded():
    a, b, c = load_dataset("synthetic", seed=1), load_dataset("synthetic", seed=1), load_dataset("synthetic", seed=2)
    assert np.array_equal(a.X_train, b.X_train) and not np.array_equal(a.X_train, c.X_train)


def test_synthetic_forecast():
    ds = load_dataset("synthetic-forecast")
    assert ds.task == "forecast" and ds.y_train.shape == (300, 2) and ds.num_outputs == 2


def test_every_registered_dataset_loads_and_meets_the_user_data_rules():
    for name in DATASETS:
        ds = load_dataset(name)
        assert len(ds.X_train) >= 2 and len(ds.X_test) >= 1
        assert np.isfinite(ds.X_train).all() and np.abs(ds.X_train).max() < MAX_ABS
        if ds.task == "classify":
            assert len(ds.labels) >= 2 and np.bincount(ds.y_train).min() >= MIN_PER_CLASS, name


def test_the_tasks_have_one_home():
    """classify/tag/forecast is the manifest schema's TASKS (what devices embed); data and models use it."""
    from edgernn.models import HEADS
    from edgernn.runtimes.manifest import TASKS as SCHEMA_TASKS

    assert TASKS is SCHEMA_TASKS and HEADS is SCHEMA_TASKS
    assert {load_dataset(name).task for name in DATASETS} <= set(TASKS)


def test_pad_sequences():
    X, lengths = pad_sequences([np.ones((2, 3)), np.ones((4, 3)) * 2])
    assert X.shape == (2, 4, 3) and lengths.tolist() == [2, 4]
    assert X[0, :2].sum() == 0 and (X[0, 2:] == 1).all()


def test_read_ts_parses_header_labels(tmp_path):
    p = tmp_path / "x.ts"
    p.write_text("@problemName x\n@classLabel true a b\n@data\n1,2,3:4,5,6:a\n1,2:3,4:b\n")
    seqs, ys, declared = read_ts(p)
    assert declared == ["a", "b"] and ys == ["a", "b"] and seqs[0].shape == (3, 2) and seqs[1].shape == (2, 2)


def test_user_npz_with_test_split(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "mine.npz"
    np.savez(p, X=rng.normal(size=(30, 10, 3)), y=np.array(["walk", "run", "sit"] * 10),
             X_test=rng.normal(size=(9, 10, 3)), y_test=np.array(["sit", "walk", "run"] * 3))
    ds = load_dataset(str(p))
    assert ds.task == "classify" and ds.labels == ["run", "sit", "walk"]
    assert ds.X_train.shape == (30, 10, 3) and ds.y_test.tolist()[:3] == [1, 2, 0]


def test_user_npz_without_test_split_gets_seeded_split(tmp_path):
    p = tmp_path / "mine.npz"
    np.savez(p, X=np.random.default_rng(0).normal(size=(40, 5, 2)), y=np.arange(40) % 2)
    a, b = load_dataset(str(p)), load_dataset(str(p))
    assert len(a.X_test) == 10 and len(a.X_train) == 30 and np.array_equal(a.y_test, b.y_test)


def test_user_npz_forecast_and_tag(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "f.npz"
    np.savez(p, X=rng.normal(size=(20, 8, 2)), y=rng.normal(size=(20, 2)))
    assert load_dataset(str(p)).task == "forecast"
    p = tmp_path / "t.npz"
    np.savez(p, X=rng.normal(size=(20, 8, 2)), y=rng.integers(0, 3, size=(20, 8)))
    assert load_dataset(str(p)).task == "tag"


def test_user_csv(tmp_path):
    p = tmp_path / "d.csv"
    lines = ["sequence,label,split,ax,ay"]
    for s in range(8):
        for t in range(3 + s % 2):
            lines.append(f"s{s},{'up' if s % 2 else 'down'},{'test' if s >= 6 else 'train'},{t},{s}")
    p.write_text("\n".join(lines) + "\n")
    ds = load_dataset(str(p))
    assert ds.X_train.shape == (6, 4, 2) and ds.X_test.shape == (2, 4, 2)
    assert ds.len_train.tolist() == [3, 4, 3, 4, 3, 4] and ds.labels == ["down", "up"]


BAD_NPZ = {
    "wrong_ndim": (dict(X=np.zeros((4, 5)), y=np.zeros(4)), "(2-D); expected 3-D [N, T, C]"),
    "nan": (dict(X=np.full((4, 5, 2), np.nan), y=np.zeros(4)), "NaN/inf"),
    "inf": (dict(X=np.where(np.eye(5)[None, :, :2] > 0, np.inf, 1.0).repeat(4, 0), y=np.zeros(4)), "NaN/inf"),
    "label_mismatch": (dict(X=np.ones((4, 5, 2)), y=np.zeros(3)), "3 labels but X has 4 samples"),
    "missing_key": (dict(X=np.ones((4, 5, 2))), "missing key(s) y"),
    "empty_X": (dict(X=np.zeros((0, 5, 2)), y=np.zeros(0)), "X is empty"),
    "test_without_partner": (dict(X=np.ones((4, 5, 2)), y=np.zeros(4), X_test=np.ones((2, 5, 2))),
                             "without its partner"),
    "unseen_test_label": (dict(X=np.ones((4, 5, 2)), y=np.array([0, 1, 0, 1]), X_test=np.ones((1, 5, 2)),
                               y_test=np.array([7])), "never occur in the training labels"),
    "channel_mismatch": (dict(X=np.ones((4, 5, 2)), y=np.zeros(4), X_test=np.ones((1, 5, 3)), y_test=np.zeros(1)),
                         "2 channels but X_test has 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_one_line_error(tmp_path, case):
    arrays, expected = BAD_NPZ[case]
    p = tmp_path / f"{case}.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError) as err:
        load_dataset(str(p))
    msg = str(err.value)
    assert expected in msg and "\n" not in msg


def test_empty_and_corrupt_files(tmp_path):
    empty = tmp_path / "empty.npz"
    np.savez(empty)
    with pytest.raises(DataError, match="empty"):
        load_dataset(str(empty))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(str(corrupt))
    zero = tmp_path / "zero.npz"
    zero.write_bytes(b"")
    with pytest.raises(DataError):
        load_dataset(str(zero))
    with pytest.raises(DataError, match="file not found"):
        load_dataset(str(tmp_path / "nope.npz"))
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("no-such-set")
    txt = tmp_path / "d.txt"
    txt.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_dataset(str(txt))


@pytest.mark.parametrize("content,expected", [
    ("", "empty CSV"),
    ("sequence,ax\ns,1\n", "missing column 'label'"),
    ("sequence,label\ns,a\n", "no channel columns"),
    ("sequence,label,ax\ns,a,oops\n", "non-numeric"),
    ("sequence,label,ax\ns,a,nan\n", "NaN/inf"),
    ("sequence,label,ax\ns,a\n", "2 fields but the header has 3"),
    ("sequence,label,ax\n", "header only"),
])
def test_bad_csv(tmp_path, content, expected):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(DataError, match=expected):
        load_dataset(str(p))


# ---- issue 13: each of these trained, crashed or wrote a run before; now one line naming the fix, no files -----
def _ragged():
    X = np.empty(2, dtype=object)
    X[0], X[1] = np.zeros((5, 2)), np.zeros((7, 2))
    return X


_rng = np.random.default_rng(0)


def _X(n, T=20, C=3):
    return _rng.standard_normal((n, T, C)).astype(np.float32)


def _fc_nan_y_test():
    yt = _rng.standard_normal((10, 3)).astype(np.float32)
    yt[2, 1] = np.nan
    return yt


ISSUE13 = {
    "ragged": (dict(X=_ragged(), y=np.array([0, 1])),
               ["X is an object array (ragged", "left padding", "CSV format"]),
    "ragged_y": (dict(X=_X(2), y=_ragged()), ["y is an object array (ragged", "[N, T] per-step tags"]),
    "tag_unseen": (dict(X=_X(30), y=_rng.integers(0, 2, (30, 20)), X_test=_X(10), y_test=np.full((10, 20), 7)),
                   ["y_test labels ['7'] never occur in the training labels ['0', '1']"]),
    "tag_T": (dict(X=_X(30), y=_rng.integers(0, 2, (30, 20)), X_test=_X(10, T=25),
                   y_test=_rng.integers(0, 2, (10, 25))), ["X has 20 steps but X_test has 25", "left-pad"]),
    "tag_y_test_T": (dict(X=_X(30), y=_rng.integers(0, 2, (30, 20)), X_test=_X(10),
                          y_test=_rng.integers(0, 2, (10, 25))),
                     ["y_test has shape (10, 25); per-step labels must match X_test: [10, 20]"]),
    "tag_y_test_1d": (dict(X=_X(30), y=_rng.integers(0, 2, (30, 20)), X_test=_X(10), y_test=np.zeros(10, int)),
                      ["y_test has shape (10,); per-step labels must match X_test: [10, 20]"]),
    "one_class": (dict(X=_X(40), y=np.zeros(40, int)),
                  ["all 40 labels in y are '0'", "needs at least 2 classes"]),
    "one_class_tag": (dict(X=_X(40), y=np.ones((40, 20), int)),
                      ["all 800 per-step labels in y are '1'", "needs at least 2 classes"]),
    "fc_nan": (dict(X=_X(40), y=_rng.standard_normal((40, 3)).astype(np.float32), X_test=_X(10),
                    y_test=_fc_nan_y_test()), ["y_test contains 1 NaN/inf values (first at index (2, 1))"]),
    "fc_width": (dict(X=_X(40), y=_rng.standard_normal((40, 3)).astype(np.float32), X_test=_X(10),
                      y_test=_rng.standard_normal((10, 1)).astype(np.float32)),
                 ["y_test has shape (10, 1) but y has (40, 3)", "y_test of shape (10, 3)"]),
    "fc_y_width": (dict(X=_X(40), y=_rng.standard_normal((40, 2)).astype(np.float32)),
                   ["forecasting y has shape (40, 2) but X has 3 channels", "[40, horizon, 3]"]),
    "huge": (dict(X=_X(40) * 1e30, y=_rng.integers(0, 3, 40)),
             ["X has 2400 values with |x| >= 1e+14", "rescale to sensible units (e.g. divide by 1e+30)"]),
    "huge_X_test": (dict(X=_X(40), y=np.arange(40) % 2, X_test=np.full((4, 20, 3), -5e15), y_test=np.arange(4) % 2),
                    ["X_test has 240 values with |x| >= 1e+14 (largest 5e+15"]),
    "beyond_float32": (dict(X=np.full((40, 20, 3), 1e300), y=np.arange(40) % 2),
                       ["X has 2400 values with |x| >= 1e+14 (largest 1e+300"]),
    "huge_forecast_y": (dict(X=_X(40), y=np.full((40, 3), 2e20)), ["y has 120 values with |x| >= 1e+14"]),
    "three": (dict(X=_X(3), y=np.array([0, 1, 0])),
              ["only 3 windows for 2 classes", "needs at least 5 (2 training windows per class plus 1 test window)"]),
    "one_window_of_a_class": (dict(X=_X(9), y=np.array([0, 0, 0, 0, 1, 1, 1, 1, 2]), X_test=_X(2), y_test=[0, 1]),
                              ["class '2' has 1 training window(s); every class needs at least 2"]),
    "split_leaves_one": (dict(X=_X(7), y=np.array([1, 1, 0, 1, 0, 0, 1])),  # the seed-0 split tests windows 2, 4
                         ["class '0' has 1 training window(s) after the seeded 25% test split (seed 0)"]),
    "one_forecast_window": (dict(X=_X(2), y=np.ones((2, 3))), ["only 2 windows; forecasting needs at least 3"]),
    "all_zero": (dict(X=np.zeros((12, 5, 2)), y=np.arange(12) % 2), ["every training window is all zeros"]),
}


@pytest.mark.parametrize("case", list(ISSUE13))
def test_issue13_bad_data_one_line_error(tmp_path, case):
    arrays, expected = ISSUE13[case]
    p = tmp_path / f"{case}.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError) as err:
        load_dataset(str(p))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(p)), msg
    for fact in expected:
        assert fact in msg, msg


@pytest.mark.parametrize("case", ["ragged", "tag_unseen", "tag_T", "one_class", "fc_nan", "fc_width", "huge", "three"])
def test_issue13_cli_train_exits_1_and_writes_nothing(tmp_path, case):
    from click.testing import CliRunner

    from edgernn.cli import main

    arrays, expected = ISSUE13[case]
    p = tmp_path / f"{case}.npz"
    np.savez(p, **arrays)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "-d", str(p), "--epochs", "3", "-q", "--out", str(out)])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output  # no uncaught exception
    assert r.exit_code == 1 and r.output.startswith("Error: ") and len(r.output.strip().splitlines()) == 1, r.output
    assert expected[0] in r.output and not out.exists()


def test_npz_numbers_check_before_float32_cast(tmp_path):
    """float16 and int data load; a float64 NaN is reported as NaN, not as a magnitude."""
    p = tmp_path / "ok.npz"
    np.savez(p, X=(_X(12) * 100).astype(np.float16), y=np.arange(12) % 3)
    assert load_dataset(str(p)).X_train.dtype == np.float32
    np.savez(p, X=np.arange(12 * 4 * 2).reshape(12, 4, 2) - 40, y=np.arange(12) % 3)
    assert load_dataset(str(p)).X_train.dtype == np.float32
    X = _X(12).astype(np.float64)
    X[1, 2, 0] = np.nan
    np.savez(p, X=X, y=np.arange(12) % 3)
    with pytest.raises(DataError, match=r"X contains 1 NaN/inf values \(first at index \(1, 2, 0\)\)"):
        load_dataset(str(p))


def test_npz_that_is_not_an_npz(tmp_path):
    p = tmp_path / "single.npz"
    with open(p, "wb") as f:
        np.save(f, _X(4))
    with pytest.raises(DataError, match=r"holds a single array \(np.save\), not an .npz archive"):
        load_dataset(str(p))
    p.write_bytes(b"\x80\x04random bytes")
    with pytest.raises(DataError, match=r"not a readable .npz file \(neither a zip archive nor .npy data\)"):
        load_dataset(str(p))


def _csv(tmp_path, rows, header="sequence,label,ax,ay"):
    p = tmp_path / "d.csv"
    p.write_text("\n".join([header] + rows) + "\n")
    return p


@pytest.mark.parametrize("rows,expected", [
    ([f"s{i},a,{i},1" for i in range(6)], "all 6 labels in y are 'a'; a classifier needs at least 2 classes"),
    (["s0,a,1,1", "s1,b,1,1", "s2,a,1,1"], "only 3 windows for 2 classes; classification needs at least 5"),
    ([f"s{i},{'ab'[i % 2]},1,1" for i in range(8)] + ["s9,b,3e20,1"],
     "d.csv:10: channel value 3e+20 has |x| >= 1e+14"),
])
def test_csv_gets_the_same_rules(tmp_path, rows, expected):
    with pytest.raises(DataError) as err:
        load_dataset(str(_csv(tmp_path, rows)))
    assert expected in str(err.value)


def test_csv_split_rules_and_blank_lines(tmp_path):
    rows = [f"s{i},{'ab'[i % 2]},{'test' if i >= 4 else 'train'},{i},1" for i in range(6)]
    ds = load_dataset(str(_csv(tmp_path, rows + [""], header="sequence,label,split,ax,ay")))  # trailing blank line
    assert len(ds.X_train) == 4 and len(ds.X_test) == 2
    rows = [f"s{i},{'ab'[i % 2]},test,{i},1" for i in range(6)]
    with pytest.raises(DataError, match="all 6 sequences have split=test"):
        load_dataset(str(_csv(tmp_path, rows, header="sequence,label,split,ax,ay")))
    rows = [f"s{i},{'aab'[i % 3]},{'test' if i >= 5 else 'train'},{i},1" for i in range(6)]
    with pytest.raises(DataError, match=r"class 'b' has 1 training window\(s\); every class needs at least 2"):
        load_dataset(str(_csv(tmp_path, rows, header="sequence,label,split,ax,ay")))


def test_string_class_names_sort_naturally(tmp_path):
    """"10" after "2" (class ids follow that order everywhere: the manifest's labels, the C label table)."""
    from edgernn.data.labels import classify_labels, tag_labels

    y = np.array(["10", "2", "1", "0", "2"])
    labels, ids, _ = classify_labels(y, None, "x.npz")
    assert labels == ["0", "1", "2", "10"] and ids.tolist() == [3, 2, 1, 0, 2]
    assert tag_labels(np.array([["walk10", "walk2"], ["walk1", "walk2"]]), None, "x.npz")[0] == \
        ["walk1", "walk2", "walk10"]
