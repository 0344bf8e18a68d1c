"""Loaders for bundled, synthetic and user data, and one clear error per kind of bad data."""

import numpy as np
import pytest

from edgernn.data import DATASETS, load_dataset, pad_sequences, read_ts
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


def test_every_registered_dataset_loads():
    for name in DATASETS:
        ds = load_dataset(name)
        assert len(ds.X_train) and len(ds.X_test)


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
