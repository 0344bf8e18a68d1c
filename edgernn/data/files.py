"""
The user's own data files: .npz arrays (classify, tag or forecast) and .csv rows (classify), validated
so a bad file fails here with one line, before anything is written (rules: docs/data.md, edgernn.data.checks).

    ds = load_npz("my_data.npz")     # X [N,T,C] float, y [N] (+ optional X_test, y_test)
    ds = load_csv("my_data.csv", test_fraction=0.25, seed=0)

The task follows y's shape: [N] labels classify, [N, T] labels tag each step, float [N, C] or [N, H, C]
targets forecast. Without a test set, a seeded test_fraction is held out (edgernn.data.split).

CSV convention (one row per time step, rows in time order within a sequence):
    sequence,label,ch0,ch1,...      optional column `split` with values train/test
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edgernn.data.checks import (
    MIN_PER_CLASS,
    check_channel_row,
    check_classes,
    check_labels_for,
    check_real_steps,
    check_sizes,
    check_trained_classes,
    check_values,
    check_X,
    first_line,
)
from edgernn.data.dataset import Dataset
from edgernn.data.labels import classify_labels, tag_labels
from edgernn.data.padding import infer_lengths, pad_sequences, repad
from edgernn.data.split import seeded_split
from edgernn.errors import DataError


def _member(z, key: str, path) -> np.ndarray:
    """One array of an open .npz; object (ragged) arrays and unreadable members become a DataError."""
    try:
        return np.asarray(z[key])
    except ValueError as exc:
        if "Object arrays" not in str(exc):
            raise DataError(f"{path}: cannot read {key} ({first_line(exc)}); re-save it with np.savez") from exc
        fix = ("pad the sequences to one float array [N, T, C] with zeros at the start (left padding), or use "
               "the CSV format, which allows sequences of different lengths" if key.startswith("X") else
               "store labels as one int or str array: [N], or [N, T] per-step tags left-padded like X")
        raise DataError(f"{path}: {key} is an object array (ragged: items of different lengths or types), "
                        f"which .npz data cannot hold; {fix}") from exc
    except Exception as exc:
        raise DataError(f"{path}: cannot read {key} ({first_line(exc)}); re-save it with np.savez") from exc


def _read_npz(path: Path):
    """(X, y, X_test or None, y_test or None) of an .npz, X/X_test checked, y/y_test one row per window."""
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except Exception as exc:  # numpy reads what is neither a zip nor .npy data as a pickle, which it refuses
        why = "neither a zip archive nor .npy data" if "pickled" in str(exc) else first_line(exc)
        raise DataError(f"{path}: not a readable .npz file ({why}); expected np.savez "
                        "with X [N, T, C] and y [N]") from exc
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array (np.save), not an .npz archive; save it with "
                        "np.savez(path, X=X, y=y)")
    with z:
        keys = set(z.files)
        if not keys:
            raise DataError(f"{path}: the .npz is empty; expected arrays X [N, T, C] and y [N]")
        missing = [k for k in ("X", "y") if k not in keys]
        if missing:
            raise DataError(f"{path}: missing key(s) {', '.join(missing)} (found {', '.join(sorted(keys))}); "
                            "expected X [N, T, C] and y [N], optionally X_test and y_test")
        if ("X_test" in keys) != ("y_test" in keys):
            raise DataError(f"{path}: has {'X_test' if 'X_test' in keys else 'y_test'} without its partner; "
                            "provide both X_test and y_test or neither")
        X = check_X(_member(z, "X", path), "X", path)
        y = check_labels_for(_member(z, "y", path), X, "y", "X", path)
        Xte = check_X(_member(z, "X_test", path), "X_test", path) if "X_test" in keys else None
        yte = check_labels_for(_member(z, "y_test", path), Xte, "y_test", "X_test", path) if Xte is not None else None
    return X, y, Xte, yte


def load_npz(path: Path | str, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """User data: X [N,T,C] float, y [N] labels (classify), [N,T] (tag) or [N,C] / [N,H,C] float
    (forecast); optional X_test/y_test, else a seeded test split of test_fraction. Validates everything
    training relies on (see docs/data.md), so a bad file fails here, before anything is written."""
    path = Path(path)
    X, y, Xte, yte = _read_npz(path)
    N, T, C = X.shape
    if Xte is not None and Xte.shape[2] != C:
        raise DataError(f"{path}: X has {C} channels but X_test has {Xte.shape[2]}")

    if y.dtype.kind == "f" and y.ndim >= 2:
        task = "forecast"
        if y.ndim > 3 or (y.ndim == 2 and y.shape[1] % C) or (y.ndim == 3 and y.shape[2] != C):
            raise DataError(f"{path}: forecasting y has shape {y.shape} but X has {C} channels; expected "
                            f"[{N}, {C}] or [{N}, horizon, {C}] (a forecaster predicts every channel)")
        check_values(y, "y", path)
        if yte is not None:
            if yte.shape[1:] != y.shape[1:]:
                raise DataError(f"{path}: y_test has shape {yte.shape} but y has {y.shape}; forecasting targets "
                                f"must match per window: y_test of shape {(len(yte),) + y.shape[1:]}")
            if yte.dtype.kind not in "fiu":
                raise DataError(f"{path}: y_test has dtype {yte.dtype}; forecasting targets must be numbers like y")
            check_values(yte, "y_test", path)
            yte = yte.reshape(len(yte), -1).astype(np.float32)
        y = y.reshape(N, -1).astype(np.float32)
        labels = []
        horizon = y.shape[1] // C
    elif y.ndim == 2:
        task = "tag"
        if y.shape[1] != T:
            raise DataError(f"{path}: per-step labels y have {y.shape[1]} steps but X has {T}; expected y of shape "
                            f"[{N}, {T}] (or [{N}] for one label per window)")
        if yte is not None and Xte.shape[1] != T:
            raise DataError(f"{path}: X has {T} steps but X_test has {Xte.shape[1]}; per-step tagging needs one "
                            "window length: left-pad the shorter windows (and their labels) to the same T")
        if yte is not None and yte.shape != Xte.shape[:2]:
            raise DataError(f"{path}: y_test has shape {yte.shape}; per-step labels must match X_test: "
                            f"[{len(Xte)}, {Xte.shape[1]}]")
        labels, y, yte = tag_labels(y, yte, path)
        check_classes(labels, y, path)
        horizon = 1
    else:
        task = "classify"
        labels, y, yte = classify_labels(y, yte, path)
        check_classes(labels, y, path)
        horizon = 1
    check_sizes(path, task, N, labels, Xte is not None)

    ltr = infer_lengths(X)
    if Xte is None:
        X, y, ltr, Xte, yte, lte = seeded_split(X, y, ltr, test_fraction, seed, path)
        note = f" after the seeded {test_fraction:.0%} test split (seed {seed})"
    else:
        lte = infer_lengths(Xte)
        T = max(X.shape[1], Xte.shape[1])
        X, Xte = repad(X, T), repad(Xte, T)
        note = ""
    check_real_steps(path, ltr)
    if task == "classify":
        check_trained_classes(path, y, labels, note)
    return Dataset(path.stem, task, X, y, ltr, Xte, yte, lte, labels=labels,
                   description=f"user data from {path.name}", horizon=horizon)


def _read_csv_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text CSV") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({first_line(exc)}); expected plain comma-separated "
                        "text `sequence,label[,split],ch0,ch1,...`") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or first_line(exc)})") from exc


def load_csv(path: Path | str, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """User CSV: columns `sequence`, `label`, optional `split` (train/test), then numeric channels;
    one row per time step in time order. Sequences may differ in length (left-padded)."""
    path = Path(path)
    rows = _read_csv_rows(path)
    if not rows or not rows[0]:
        raise DataError(f"{path}: empty CSV; expected a header `sequence,label[,split],ch0,ch1,...`")
    header = [h.strip() for h in rows[0]]
    for col in ("sequence", "label"):
        if col not in header:
            raise DataError(f"{path}: missing column {col!r} (header: {','.join(header)!r}); expected "
                            "`sequence,label[,split],ch0,ch1,...`, one row per time step")
    si, li = header.index("sequence"), header.index("label")
    pi = header.index("split") if "split" in header else None
    chan_idx = [i for i in range(len(header)) if i not in (si, li, pi)]
    if not chan_idx:
        raise DataError(f"{path}: no channel columns after sequence/label; expected at least one numeric column")
    if not any(rows[1:]):
        raise DataError(f"{path}: header only, no data rows")
    seqs: dict[str, list] = {}
    meta: dict[str, tuple] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not row:  # a blank line (e.g. at the end of the file) holds no data
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{n}: {len(row)} fields but the header has {len(header)}")
        try:
            vals = [float(row[i]) for i in chan_idx]
        except ValueError as exc:
            raise DataError(f"{path}:{n}: non-numeric channel value in {row}") from exc
        check_channel_row(path, n, vals)
        key = row[si]
        split = row[pi].strip().lower() if pi is not None else "train"
        if split not in ("train", "test"):
            raise DataError(f"{path}:{n}: split must be train or test, got {row[pi]!r}")
        if key in meta and meta[key] != (row[li], split):
            raise DataError(f"{path}:{n}: sequence {key!r} changes its label or split mid-sequence")
        meta[key] = (row[li], split)
        seqs.setdefault(key, []).append(vals)
    keys = list(seqs)
    arrays = [np.asarray(seqs[k], dtype=np.float32) for k in keys]
    X, lengths = pad_sequences(arrays)
    y = np.array([meta[k][0] for k in keys])
    is_test = np.array([meta[k][1] == "test" for k in keys])
    if is_test.all():
        raise DataError(f"{path}: all {len(keys)} sequences have split=test; mark at least "
                        f"{MIN_PER_CLASS} per class as train")
    if is_test.any():
        labels, ytr, yte = classify_labels(y[~is_test], y[is_test], path)
        check_classes(labels, ytr, path)
        check_sizes(path, "classify", len(ytr), labels, True)
        check_real_steps(path, lengths[~is_test])
        check_trained_classes(path, ytr, labels, "")
        return Dataset(path.stem, "classify", X[~is_test], ytr, lengths[~is_test], X[is_test], yte,
                       lengths[is_test], labels=labels, description=f"user CSV {path.name}")
    labels, yall, _ = classify_labels(y, None, path)
    check_classes(labels, yall, path)
    check_sizes(path, "classify", len(yall), labels, False)
    Xtr, ytr, ltr, Xte, yte, lte = seeded_split(X, yall, lengths, test_fraction, seed, path)
    check_real_steps(path, ltr)
    check_trained_classes(path, ytr, labels, f" after the seeded {test_fraction:.0%} test split (seed {seed})")
    return Dataset(path.stem, "classify", Xtr, ytr, ltr, Xte, yte, lte, labels=labels,
                   description=f"user CSV {path.name}")
