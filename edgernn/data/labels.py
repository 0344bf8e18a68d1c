"""
Class labels -> int64 class ids: labels are the sorted distinct training values (ints or strings; strings
sorted naturally, numbers inside them as numbers: "2" before "10", "run2" before "run10"), every test label
must be one of them, and floats count only when they are whole numbers.

    labels, y, y_test = classify_labels(y, y_test, path)   # [N] labels per window -> class ids
    labels, y, y_test = tag_labels(y, y_test, path)        # [N, T] labels per step -> class ids
    ids = encode(y, {"a": 0, "b": 1}, ["a", "b"], "y", path)

A broken rule is a one-line DataError naming the file (edgernn.data.checks has the other rules).
"""

from __future__ import annotations

import re

import numpy as np

from edgernn.errors import DataError


def natural_key(value) -> tuple:
    """Sort key: "10" after "2", "walk10" after "walk2"; ints as ints."""
    if isinstance(value, (int, np.integer)):
        return ((0, int(value), ""),)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(value)) if p)


def integral(y: np.ndarray) -> bool:
    return y.dtype.kind != "f" or bool(np.isfinite(y).all() and (y == np.floor(y)).all())


def encode(y, idx: dict, labels: list, what: str, path) -> np.ndarray:
    """Labels (any shape) -> int64 class ids; a label absent from the training labels is a DataError."""
    if not integral(y):
        raise DataError(f"{path}: {what} holds non-integer or NaN floats; class "
                        "labels must be ints or strings")
    num = y.dtype.kind in "iuf"
    keys = [str(int(v)) if num else str(v) for v in y.ravel().tolist()]
    unknown = sorted(set(keys) - set(idx))
    if unknown:
        raise DataError(f"{path}: {what} labels {unknown[:5]} never occur in the training labels {labels[:10]}; "
                        "add training windows with those labels or drop them from the test data")
    return np.array([idx[k] for k in keys], dtype=np.int64).reshape(y.shape)


def classify_labels(ytr, yte, path):
    """One label per window (1-D, ints or strings): (labels, y ids, y_test ids or None)."""
    for y, what in ((ytr, "y"), (yte, "y_test")):
        if y is None:
            continue
        if y.ndim != 1:
            raise DataError(f"{path}: {what} has shape {y.shape}; for classification expected 1-D [N] labels "
                            "(use y of shape [N, T] for per-step tagging)")
        if not integral(y):
            raise DataError(f"{path}: {what} holds non-integer floats; classification labels must be ints or "
                            "strings (for forecasting pass y with shape [N, C] or [N, horizon, C])")
    values = sorted({int(v) if ytr.dtype.kind in "iuf" else str(v) for v in ytr.tolist()}, key=natural_key)
    labels = [str(v) for v in values]
    idx = {lab: i for i, lab in enumerate(labels)}
    return labels, encode(ytr, idx, labels, "y", path), \
        (encode(yte, idx, labels, "y_test", path) if yte is not None else None)


def tag_labels(ytr, yte, path):
    """One label per step ([N, T], shapes already checked): (labels, y ids, y_test ids or None)."""
    labels = [str(v) for v in sorted(set(ytr.ravel().tolist()), key=natural_key)]
    idx = {lab: i for i, lab in enumerate(labels)}
    return labels, encode(ytr, idx, labels, "y", path), \
        (encode(yte, idx, labels, "y_test", path) if yte is not None else None)
