"""
Datasets: real sensor data that ships inside installed packages (no download), a seeded synthetic
generator, and the user's own .npz / .csv files.

    ds = load_dataset("basic-motions")       # smartwatch accel+gyro, 6 ch x 100 steps, 4 activities
    ds = load_dataset("japanese-vowels")     # 12 LPC coefficients, 7-29 steps (padded), 9 speakers
    ds = load_dataset("my_data.npz")         # X [N,T,C] float, y [N] (+ optional X_test, y_test)
    ds.X_train.shape, ds.len_train, ds.labels

Variable-length sequences are LEFT-padded with zeros (raw units) to the longest sequence, so the last
step of every window is real data (what a classifier reads), and their true lengths are recorded.
The same padding is recorded in every artifact's manifest so the deployed model sees what it was
trained on. The UEA .ts files are read straight from the installed sktime package by a small parser
here: importing sktime (and pandas) is not needed.

CSV convention (one row per time step, rows in time order within a sequence):
    sequence,label,ch0,ch1,...      optional column `split` with values train/test
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgernn.errors import DataError

TASKS = ("classify", "tag", "forecast")


@dataclass
class Dataset:
    name: str
    task: str
    X_train: np.ndarray  # [N, T, C] float32, raw units, left-padded
    y_train: np.ndarray  # classify: [N] int64; tag: [N, T] int64; forecast: [N, horizon*C] float32
    len_train: np.ndarray  # [N] true lengths
    X_test: np.ndarray
    y_test: np.ndarray
    len_test: np.ndarray
    labels: list = field(default_factory=list)  # class names (classify/tag)
    description: str = ""
    horizon: int = 1

    @property
    def seq_len(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def channels(self) -> int:
        return int(self.X_train.shape[2])

    @property
    def num_outputs(self) -> int:
        if self.task == "forecast":
            return int(self.y_train.shape[1])
        return len(self.labels)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "task": self.task,
            "seq_len": self.seq_len,
            "channels": self.channels,
            "num_classes": len(self.labels),
            "n_train": int(len(self.X_train)),
            "n_test": int(len(self.X_test)),
            "variable_length": bool((self.len_train < self.seq_len).any() or (self.len_test < self.seq_len).any()),
            "horizon": self.horizon,
        }


# ----------------------------------------------------------------------------- helpers


def real_steps(lengths: np.ndarray, T: int) -> np.ndarray:
    """[N, T] bool mask of the real (non-padding) steps of left-padded windows with these true lengths."""
    return np.arange(T)[None, :] >= (T - np.asarray(lengths))[:, None]


def pad_sequences(seqs: list[np.ndarray], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad a list of [T_i, C] arrays with zeros to [N, T, C]; returns (X, lengths)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    T = int(length if length is not None else lengths.max())
    C = seqs[0].shape[1]
    X = np.zeros((len(seqs), T, C), dtype=np.float32)
    for i, s in enumerate(seqs):
        X[i, T - len(s):] = s[-T:]
    return X, np.minimum(lengths, T)


def _repad(X: np.ndarray, lengths: np.ndarray, T: int) -> np.ndarray:
    """Left-pad already left-padded windows to a longer T."""
    if X.shape[1] == T:
        return X
    out = np.zeros((X.shape[0], T, X.shape[2]), dtype=np.float32)
    out[:, T - X.shape[1]:] = X
    return out


def _sktime_data_dir() -> Path:
    spec = importlib.util.find_spec("sktime")
    if spec is None or spec.origin is None:
        raise DataError(
            "the bundled UEA datasets come from the sktime package, which is not installed; "
            "install it with: pip install 'edgernn[data]'"
        )
    return Path(spec.origin).parent / "datasets" / "data"


def read_ts(path: Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Parse a UEA/UCR .ts file: returns (list of [T_i, C] arrays, class labels per case, declared labels)."""
    seqs, ys, declared = [], [], []
    in_data = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                low = line.lower()
                if low.startswith("@classlabel"):
                    parts = line.split()
                    declared = parts[2:] if len(parts) > 2 and parts[1].lower() == "true" else []
                elif low.startswith("@data"):
                    in_data = True
                continue
            *dims, label = line.split(":")
            chans = [np.array([float(v) if v != "?" else np.nan for v in d.split(",")], dtype=np.float32) for d in dims]
            T = max(len(c) for c in chans)
            seq = np.stack([np.pad(c, (0, T - len(c)), constant_values=np.nan) for c in chans], axis=1)
            seqs.append(seq)
            ys.append(label.strip())
    return seqs, ys, declared


def _uea(name: str, folder: str, description: str) -> Dataset:
    d = _sktime_data_dir() / folder
    try:
        tr_x, tr_y, declared = read_ts(d / f"{folder}_TRAIN.ts")
        te_x, te_y, _ = read_ts(d / f"{folder}_TEST.ts")
    except FileNotFoundError as exc:
        raise DataError(f"{exc.filename} not found in the installed sktime; reinstall 'edgernn[data]'") from exc
    labels = declared or sorted(set(tr_y))
    T = max(max(len(s) for s in tr_x), max(len(s) for s in te_x))
    Xtr, ltr = pad_sequences(tr_x, T)
    Xte, lte = pad_sequences(te_x, T)
    idx = {lab: i for i, lab in enumerate(labels)}
    return Dataset(
        name=name, task="classify",
        X_train=Xtr, y_train=np.array([idx[v] for v in tr_y], dtype=np.int64), len_train=ltr,
        X_test=Xte, y_test=np.array([idx[v] for v in te_y], dtype=np.int64), len_test=lte,
        labels=list(labels), description=description,
    )


# ----------------------------------------------------------------------------- bundled sets


def basic_motions(**_) -> Dataset:
    return _uea("basic-motions", "BasicMotions",
                "smartwatch accelerometer + gyroscope (6 ch x 100 steps at 10 Hz), 4 activities, 40/40 split")


def japanese_vowels(**_) -> Dataset:
    return _uea("japanese-vowels", "JapaneseVowels",
                "12 LPC cepstrum coefficients, 7-29 frames (left-padded), 9 speakers, 270/370 split")


def synthetic(n_train: int = 200, n_test: int = 100, seq_len: int = 40, channels: int = 6,
              classes: int = 4, seed: int = 0, **_) -> Dataset:
    """Seeded sine-frequency classification task (for fast tests); channels have different raw scales."""
    def make(n, s):
        rng = np.random.default_rng(s)
        y = rng.integers(0, classes, size=n)
        t = np.arange(seq_len)[None, :, None]
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1, channels))
        freq = (y[:, None, None] + 1) * 3.0 * np.pi / seq_len
        x = np.sin(freq * t + phase) + 0.1 * rng.standard_normal((n, seq_len, channels))
        x = x * ((np.arange(channels) + 1) * 3.0) + np.arange(channels) * 10.0
        return x.astype(np.float32), y.astype(np.int64)

    Xtr, ytr = make(n_train, seed)
    Xte, yte = make(n_test, seed + 1)
    full = lambda n: np.full(n, seq_len, dtype=np.int64)  # noqa: E731
    return Dataset("synthetic", "classify", Xtr, ytr, full(n_train), Xte, yte, full(n_test),
                   labels=[f"freq{k + 1}" for k in range(classes)],
                   description=f"seeded synthetic sines, {channels} ch x {seq_len} steps, {classes} classes")


def synthetic_forecast(n_train: int = 300, n_test: int = 100, seq_len: int = 32, channels: int = 2,
                       seed: int = 0, **_) -> Dataset:
    """Seeded noisy multi-sine series; predict the next step of every channel."""
    rng = np.random.default_rng(seed)
    total = n_train + n_test + seq_len + 1
    t = np.arange(total)[:, None]
    series = (np.sin(t * 2 * np.pi / 20 + np.arange(channels)) * (np.arange(channels) + 1)
              + 0.5 * np.sin(t * 2 * np.pi / 7) + 0.05 * rng.standard_normal((total, channels))) * 5 + 20
    X = np.stack([series[i:i + seq_len] for i in range(n_train + n_test)]).astype(np.float32)
    y = np.stack([series[i + seq_len] for i in range(n_train + n_test)]).astype(np.float32)
    full = lambda n: np.full(n, seq_len, dtype=np.int64)  # noqa: E731
    return Dataset("synthetic-forecast", "forecast", X[:n_train], y[:n_train], full(n_train),
                   X[n_train:], y[n_train:], full(n_test), labels=[],
                   description=f"seeded multi-sine series, {channels} ch, window {seq_len}, next-step forecast")


DATASETS = {
    "basic-motions": basic_motions,
    "japanese-vowels": japanese_vowels,
    "synthetic": synthetic,
    "synthetic-forecast": synthetic_forecast,
}


# ----------------------------------------------------------------------------- user files


# Largest |value| accepted in X, X_test and forecasting targets. Training statistics are float32 (see
# train.norm_stats): the variance sums squared deviations of up to (2 * MAX_ABS)^2 = 4e28 each, which stays
# below float32's 3.4e38 for up to ~8e9 values per channel. A bound of 1e18 would not do: 1000 values near
# 1e18 already overflow to std = inf. No sensor reading in sensible units comes near 1e14 (Unix time in ms is
# ~2e12); larger values are unit mistakes, or ns timestamps that float32 cannot resolve anyway.
MAX_ABS = 1e14
MIN_PER_CLASS = 2  # classification: training windows per class (after any test split)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _member(z, key: str, path) -> np.ndarray:
    """One array of an open .npz; object (ragged) arrays and unreadable members become a DataError."""
    try:
        return np.asarray(z[key])
    except ValueError as exc:
        if "Object arrays" not in str(exc):
            raise DataError(f"{path}: cannot read {key} ({_first_line(exc)}); re-save it with np.savez") from exc
        fix = ("pad the sequences to one float array [N, T, C] with zeros at the start (left padding), or use "
               "the CSV format, which allows sequences of different lengths" if key.startswith("X") else
               "store labels as one int or str array: [N], or [N, T] per-step tags left-padded like X")
        raise DataError(f"{path}: {key} is an object array (ragged: items of different lengths or types), "
                        f"which .npz data cannot hold; {fix}") from exc
    except Exception as exc:
        raise DataError(f"{path}: cannot read {key} ({_first_line(exc)}); re-save it with np.savez") from exc


def _check_values(a: np.ndarray, what: str, path) -> None:
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


def _check_X(X, what: str, path) -> np.ndarray:
    X = np.asarray(X)
    if X.size == 0:
        raise DataError(f"{path}: {what} is empty (shape {X.shape}); expected a float array [N, T, C] with "
                        "N, T, C >= 1")
    if X.ndim != 3:
        raise DataError(f"{path}: {what} has shape {X.shape} ({X.ndim}-D); expected 3-D [N, T, C] "
                        "(samples, time steps, channels)")
    if X.dtype.kind not in "fiu":
        raise DataError(f"{path}: {what} has dtype {X.dtype}; expected numbers [N, T, C]")
    _check_values(X, what, path)
    return X.astype(np.float32)


def _labels_for(y, X, what: str, xwhat: str, path) -> np.ndarray:
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


def _integral(y: np.ndarray) -> bool:
    return y.dtype.kind != "f" or bool(np.isfinite(y).all() and (y == np.floor(y)).all())


def _encode(y, idx: dict, labels: list, what: str, path) -> np.ndarray:
    """Labels (any shape) -> int64 class ids; a label absent from the training labels is a DataError."""
    if not _integral(y):
        raise DataError(f"{path}: {what} holds non-integer or NaN floats; class "
                        "labels must be ints or strings")
    num = y.dtype.kind in "iuf"
    keys = [str(int(v)) if num else str(v) for v in y.ravel().tolist()]
    unknown = sorted(set(keys) - set(idx))
    if unknown:
        raise DataError(f"{path}: {what} labels {unknown[:5]} never occur in the training labels {labels[:10]}; "
                        "add training windows with those labels or drop them from the test data")
    return np.array([idx[k] for k in keys], dtype=np.int64).reshape(y.shape)


def _classify_labels(ytr, yte, path):
    for y, what in ((ytr, "y"), (yte, "y_test")):
        if y is None:
            continue
        if y.ndim != 1:
            raise DataError(f"{path}: {what} has shape {y.shape}; for classification expected 1-D [N] labels "
                            "(use y of shape [N, T] for per-step tagging)")
        if not _integral(y):
            raise DataError(f"{path}: {what} holds non-integer floats; classification labels must be ints or "
                            "strings (for forecasting pass y with shape [N, C] or [N, horizon, C])")
    values = sorted({int(v) if ytr.dtype.kind in "iuf" else str(v) for v in ytr.tolist()})
    labels = [str(v) for v in values]
    idx = {lab: i for i, lab in enumerate(labels)}
    return labels, _encode(ytr, idx, labels, "y", path), \
        (_encode(yte, idx, labels, "y_test", path) if yte is not None else None)


def _check_classes(labels: list, y, path) -> None:
    if len(labels) < 2:
        what = "per-step labels" if y.ndim == 2 else "labels"
        raise DataError(f"{path}: all {y.size} {what} in y are {labels[0]!r}; a classifier needs at least 2 classes: "
                        "add windows of another class")


def _check_sizes(path, task: str, n: int, labels: list, given_test: bool) -> None:
    """Before the split: enough windows for MIN_PER_CLASS training windows per class (classify) or 2 (tag,
    forecast), plus 1 test window unless X_test is given."""
    need = MIN_PER_CLASS * len(labels) if task == "classify" else 2
    what = f"{n} window{'s' * (n != 1)}" + (f" for {len(labels)} classes" if task == "classify" else "")
    rule = f"{MIN_PER_CLASS} training windows per class" if task == "classify" else "2 training windows"
    if given_test and n < need:
        raise DataError(f"{path}: only {what} to train on; {_TASK_NAMES[task]} needs at least {need} ({rule}): "
                        "add windows")
    if not given_test and n < need + 1:
        raise DataError(f"{path}: only {what}; {_TASK_NAMES[task]} needs at least {need + 1} ({rule} plus 1 test "
                        "window): add windows or pass X_test/y_test")


_TASK_NAMES = {"classify": "classification", "tag": "per-step tagging", "forecast": "forecasting"}


def _check_trained_classes(path, y, labels: list, split_note: str) -> None:
    """After the split: every class keeps MIN_PER_CLASS training windows."""
    counts = np.bincount(y, minlength=len(labels))
    k = int(np.argmin(counts))
    if counts[k] < MIN_PER_CLASS:
        raise DataError(f"{path}: class {labels[k]!r} has {int(counts[k])} training window(s){split_note}; every "
                        f"class needs at least {MIN_PER_CLASS}: add windows of that class or pass X_test/y_test")


def _check_real_steps(path, lengths: np.ndarray) -> None:
    if not lengths.any():
        raise DataError(f"{path}: every training window is all zeros, which reads as left padding (no real steps); "
                        "check the data")


def _split(X, y, lengths, test_fraction: float, seed: int, path):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    n_test = max(1, int(round(len(X) * test_fraction)))
    if len(X) - n_test < 2:
        raise DataError(f"{path}: only {len(X)} samples: need at least 3 to hold out a test split; "
                        "add samples or provide X_test/y_test")
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr], y[tr], lengths[tr], X[te], y[te], lengths[te]


def _infer_lengths(X: np.ndarray) -> np.ndarray:
    """True length = T minus the count of leading all-zero steps (left padding)."""
    nonzero = np.any(X != 0, axis=2)
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), X.shape[1])
    return (X.shape[1] - first).astype(np.int64)


def load_npz(path: Path | str, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """User data: X [N,T,C] float, y [N] labels (classify), [N,T] (tag) or [N,C] / [N,H,C] float
    (forecast); optional X_test/y_test, else a seeded test split of test_fraction. Validates everything
    training relies on (see docs/data.md), so a bad file fails here, before anything is written."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except Exception as exc:  # numpy reads what is neither a zip nor .npy data as a pickle, which it refuses
        why = "neither a zip archive nor .npy data" if "pickled" in str(exc) else _first_line(exc)
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
        X = _check_X(_member(z, "X", path), "X", path)
        y = _labels_for(_member(z, "y", path), X, "y", "X", path)
        Xte = _check_X(_member(z, "X_test", path), "X_test", path) if "X_test" in keys else None
        yte = _labels_for(_member(z, "y_test", path), Xte, "y_test", "X_test", path) if Xte is not None else None
    N, T, C = X.shape
    if Xte is not None and Xte.shape[2] != C:
        raise DataError(f"{path}: X has {C} channels but X_test has {Xte.shape[2]}")

    if y.dtype.kind == "f" and y.ndim >= 2:
        task = "forecast"
        if y.ndim > 3 or (y.ndim == 2 and y.shape[1] % C) or (y.ndim == 3 and y.shape[2] != C):
            raise DataError(f"{path}: forecasting y has shape {y.shape} but X has {C} channels; expected "
                            f"[{N}, {C}] or [{N}, horizon, {C}] (a forecaster predicts every channel)")
        _check_values(y, "y", path)
        if yte is not None:
            if yte.shape[1:] != y.shape[1:]:
                raise DataError(f"{path}: y_test has shape {yte.shape} but y has {y.shape}; forecasting targets "
                                f"must match per window: y_test of shape {(len(yte),) + y.shape[1:]}")
            if yte.dtype.kind not in "fiu":
                raise DataError(f"{path}: y_test has dtype {yte.dtype}; forecasting targets must be numbers like y")
            _check_values(yte, "y_test", path)
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
        labels = [str(v) for v in sorted(set(y.ravel().tolist()))]
        idx = {lab: i for i, lab in enumerate(labels)}
        y = _encode(y, idx, labels, "y", path)
        yte = _encode(yte, idx, labels, "y_test", path) if yte is not None else None
        _check_classes(labels, y, path)
        horizon = 1
    else:
        task = "classify"
        labels, y, yte = _classify_labels(y, yte, path)
        _check_classes(labels, y, path)
        horizon = 1
    _check_sizes(path, task, N, labels, Xte is not None)

    ltr = _infer_lengths(X)
    if Xte is None:
        X, y, ltr, Xte, yte, lte = _split(X, y, ltr, test_fraction, seed, path)
        note = f" after the seeded {test_fraction:.0%} test split (seed {seed})"
    else:
        lte = _infer_lengths(Xte)
        T = max(X.shape[1], Xte.shape[1])
        X, Xte = _repad(X, ltr, T), _repad(Xte, lte, T)
        note = ""
    _check_real_steps(path, ltr)
    if task == "classify":
        _check_trained_classes(path, y, labels, note)
    return Dataset(path.stem, task, X, y, ltr, Xte, yte, lte, labels=labels,
                   description=f"user data from {path.name}", horizon=horizon)


def load_csv(path: Path | str, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """User CSV: columns `sequence`, `label`, optional `split` (train/test), then numeric channels;
    one row per time step in time order. Sequences may differ in length (left-padded)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text CSV") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({_first_line(exc)}); expected plain comma-separated "
                        "text `sequence,label[,split],ch0,ch1,...`") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or _first_line(exc)})") from exc
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
        if not all(np.isfinite(vals)):
            raise DataError(f"{path}:{n}: NaN/inf channel value; clean or impute it before training")
        peak = max(abs(v) for v in vals)
        if peak >= MAX_ABS:
            raise DataError(f"{path}:{n}: channel value {peak:.3g} has |x| >= {MAX_ABS:.0e}, where float32 training "
                            f"statistics overflow; rescale to sensible units (e.g. divide by "
                            f"{10.0 ** np.floor(np.log10(peak)):.0e})")
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
        labels, ytr, yte = _classify_labels(y[~is_test], y[is_test], path)
        _check_classes(labels, ytr, path)
        _check_sizes(path, "classify", len(ytr), labels, True)
        _check_real_steps(path, lengths[~is_test])
        _check_trained_classes(path, ytr, labels, "")
        return Dataset(path.stem, "classify", X[~is_test], ytr, lengths[~is_test], X[is_test], yte,
                       lengths[is_test], labels=labels, description=f"user CSV {path.name}")
    labels, yall, _ = _classify_labels(y, None, path)
    _check_classes(labels, yall, path)
    _check_sizes(path, "classify", len(yall), labels, False)
    Xtr, ytr, ltr, Xte, yte, lte = _split(X, yall, lengths, test_fraction, seed, path)
    _check_real_steps(path, ltr)
    _check_trained_classes(path, ytr, labels, f" after the seeded {test_fraction:.0%} test split (seed {seed})")
    return Dataset(path.stem, "classify", Xtr, ytr, ltr, Xte, yte, lte, labels=labels,
                   description=f"user CSV {path.name}")


def load_dataset(spec: str, seed: int = 0, **kw) -> Dataset:
    """A bundled dataset name (see DATASETS) or a path to a .npz / .csv file."""
    if spec in DATASETS:
        return DATASETS[spec](seed=seed, **kw)
    p = Path(spec)
    if p.suffix.lower() == ".npz":
        return load_npz(p, seed=seed)
    if p.suffix.lower() == ".csv":
        return load_csv(p, seed=seed)
    if p.exists():
        raise DataError(f"{spec}: unsupported file type {p.suffix or '(none)'}; use .npz (X [N,T,C], y [N]) or .csv")
    raise DataError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}, or give a .npz/.csv path")
