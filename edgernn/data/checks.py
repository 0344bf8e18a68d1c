"""
The one-line validation of user arrays: every rule training relies on (docs/data.md), each broken rule a
DataError of one line that names the file, the fact and the fix - raised before anything is written.

    X = check_X(z["X"], "X", path)                     # 3-D numbers, finite, |x| < MAX_ABS -> float32
    y = check_labels_for(z["y"], X, "y", "X", path)    # one label/target row per window
    check_classes(labels, y, path)                     # at least 2 classes
    check_sizes(path, "classify", len(X), labels, given_test=False)   # enough windows to train and test

Ragged (object) arrays are refused where the file is read (edgernn.data.files); label encoding, with its
unknown-label rule, is edgernn.data.labels.
"""

from __future__ import annotations

import numpy as np

from edgernn.errors import DataError

# Largest |value| accepted in X, X_test and forecasting targets. Training statistics are float32 (see
# train.norm_stats): the variance sums squared deviations of up to (2 * MAX_ABS)^2 = 4e28 each, which stays
# below float32's 3.4e38 for up to ~8e9 values per channel. A bound of 1e18 would not do: 1000 values near
# 1e18 already overflow to std = inf. No sensor reading in sensible units comes near 1e14 (Unix time in ms is
# ~2e12); larger values are unit mistakes, or ns timestamps that float32 cannot resolve anyway.
MAX_ABS = 1e14
MIN_PER_CLASS = 2  # classification: training windows per class (after any test split)
TASK_NAMES = {"classify": "classification", "tag": "per-step tagging", "forecast": "forecasting"}


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def check_values(a: np.ndarray, what: str, path) -> None:
    """No NaN/inf and |x| < MAX_ABS, checked in the array's own dtype (before a float32 cast overflows)."""
    bad = ~np.isfinite(a)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{path}: {what} contains {int(bad.sum())} NaN/inf values (first at index {i}); "
                        "clean or impute them before training")
    big = (a >= np.float64(MAX_ABS)) | (a <= -np.float64(MAX_ABS))  # float64 limit: no float16 overflow
    if big.any():
        i = tuple(int(v) for v in np.argwhere(big)[0])
        peak = float(np.abs(a[big].astype(np.float64)).max())
        raise DataError(f"{path}: {what} has {int(big.sum())} values with |x| >= {MAX_ABS:.0e} (largest {peak:.3g}, "
                        f"first at index {i}), where float32 training statistics overflow; rescale to sensible "
                        f"units (e.g. divide by {10.0 ** np.floor(np.log10(peak)):.0e})")


def check_channel_row(path, n: int, vals: list[float]) -> None:
    """One CSV row's channel values (line n): finite, |x| < MAX_ABS."""
    if not all(np.isfinite(vals)):
        raise DataError(f"{path}:{n}: NaN/inf channel value; clean or impute it before training")
    peak = max(abs(v) for v in vals)
    if peak >= MAX_ABS:
        raise DataError(f"{path}:{n}: channel value {peak:.3g} has |x| >= {MAX_ABS:.0e}, where float32 training "
                        f"statistics overflow; rescale to sensible units (e.g. divide by "
                        f"{10.0 ** np.floor(np.log10(peak)):.0e})")


def check_X(X, what: str, path) -> np.ndarray:
    X = np.asarray(X)
    if X.size == 0:
        raise DataError(f"{path}: {what} is empty (shape {X.shape}); expected a float array [N, T, C] with "
                        "N, T, C >= 1")
    if X.ndim != 3:
        raise DataError(f"{path}: {what} has shape {X.shape} ({X.ndim}-D); expected 3-D [N, T, C] "
                        "(samples, time steps, channels)")
    if X.dtype.kind not in "fiu":
        raise DataError(f"{path}: {what} has dtype {X.dtype}; expected numbers [N, T, C]")
    check_values(X, what, path)
    return X.astype(np.float32)


def check_labels_for(y, X, what: str, xwhat: str, path) -> np.ndarray:
    """y holds one label (or target row) per window of X, of a label-like dtype."""
    y = np.asarray(y)
    n = len(y) if y.ndim else 0
    if y.size == 0 and n:
        raise DataError(f"{path}: {what} is empty (shape {y.shape}); expected {len(X)} labels or targets, one per "
                        f"window of {xwhat}")
    if y.size == 0 or n != len(X):
        raise DataError(f"{path}: {what} has {n} labels but {xwhat} has {len(X)} samples; expected {what} with "
                        f"{len(X)} rows (got shape {y.shape})")
    if y.dtype.kind not in "biufUS":
        raise DataError(f"{path}: {what} has dtype {y.dtype}; expected int or str labels (float for forecasting)")
    return y


def check_classes(labels: list, y, path) -> None:
    if len(labels) < 2:
        what = "per-step labels" if y.ndim == 2 else "labels"
        raise DataError(f"{path}: all {y.size} {what} in y are {labels[0]!r}; a classifier needs at least 2 classes: "
                        "add windows of another class")


def check_sizes(path, task: str, n: int, labels: list, given_test: bool) -> None:
    """Before the split: enough windows for MIN_PER_CLASS training windows per class (classify) or 2 (tag,
    forecast), plus 1 test window unless X_test is given."""
    need = MIN_PER_CLASS * len(labels) if task == "classify" else 2
    what = f"{n} window{'s' * (n != 1)}" + (f" for {len(labels)} classes" if task == "classify" else "")
    rule = f"{MIN_PER_CLASS} training windows per class" if task == "classify" else "2 training windows"
    if given_test and n < need:
        raise DataError(f"{path}: only {what} to train on; {TASK_NAMES[task]} needs at least {need} ({rule}): "
                        "add windows")
    if not given_test and n < need + 1:
        raise DataError(f"{path}: only {what}; {TASK_NAMES[task]} needs at least {need + 1} ({rule} plus 1 test "
                        "window): add windows or pass X_test/y_test")


def check_trained_classes(path, y, labels: list, split_note: str) -> None:
    """After the split: every class keeps MIN_PER_CLASS training windows."""
    counts = np.bincount(y, minlength=len(labels))
    k = int(np.argmin(counts))
    if counts[k] < MIN_PER_CLASS:
        raise DataError(f"{path}: class {labels[k]!r} has {int(counts[k])} training window(s){split_note}; every "
                        f"class needs at least {MIN_PER_CLASS}: add windows of that class or pass X_test/y_test")


def check_real_steps(path, lengths: np.ndarray) -> None:
    if not lengths.any():
        raise DataError(f"{path}: every training window is all zeros, which reads as left padding (no real steps); "
                        "check the data")
