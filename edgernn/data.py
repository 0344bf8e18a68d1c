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

from .errors import DataError

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


def _check_X(X, what: str, path) -> np.ndarray:
    X = np.asarray(X)
    if X.size == 0:
        raise DataError(f"{path}: {what} is empty; expected a float array [N, T, C] with N, T, C >= 1")
    if X.ndim != 3:
        raise DataError(f"{path}: {what} has shape {X.shape} ({X.ndim}-D); expected 3-D [N, T, C] "
                        "(samples, time steps, channels)")
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{path}: {what} has dtype {X.dtype}; expected numbers [N, T, C]")
    X = X.astype(np.float32)
    bad = ~np.isfinite(X)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{path}: {what} contains {int(bad.sum())} NaN/inf values (first at index {i}); "
                        "clean or impute them before training")
    return X


def _labels_for(y, X, what: str, path, task: str):
    y = np.asarray(y)
    if y.size == 0 or len(y) != len(X):
        raise DataError(f"{path}: {what} has {len(y) if y.ndim else 0} labels but X has {len(X)} samples; "
                        f"expected {what} of shape [{len(X)}]")
    return y


def _classify_labels(ytr, yte, path):
    if ytr.ndim != 1 or (yte is not None and yte.ndim != 1):
        raise DataError(f"{path}: y has shape {ytr.shape}; for classification expected 1-D [N] labels "
                        "(use y of shape [N, T] for per-step tagging)")
    if np.issubdtype(ytr.dtype, np.floating) and not np.all(np.mod(ytr, 1) == 0):
        raise DataError(f"{path}: y holds non-integer floats; classification labels must be ints or strings "
                        "(for forecasting pass y with shape [N, C] or [N, horizon, C])")
    values = sorted({str(v) if not np.issubdtype(ytr.dtype, np.number) else int(v) for v in ytr.tolist()})
    labels = [str(v) for v in values]
    idx = {lab: i for i, lab in enumerate(labels)}

    def enc(y):
        keys = [str(int(v)) if np.issubdtype(y.dtype, np.number) else str(v) for v in y.tolist()]
        unknown = sorted(set(keys) - set(idx))
        if unknown:
            raise DataError(f"{path}: test labels {unknown[:5]} never occur in the training labels {labels[:10]}")
        return np.array([idx[k] for k in keys], dtype=np.int64)

    return labels, enc(ytr), (enc(yte) if yte is not None else None)


def _split(X, y, lengths, test_fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    n_test = max(1, int(round(len(X) * test_fraction)))
    if len(X) - n_test < 2:
        raise DataError(f"only {len(X)} samples: need at least 3 to hold out a test split; "
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
    (forecast); optional X_test/y_test, else a seeded test split of test_fraction."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({str(exc).splitlines()[0]}); expected np.savez "
                        "with X [N, T, C] and y [N]") from exc
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
        X = _check_X(z["X"], "X", path)
        y = _labels_for(z["y"], X, "y", path, "")
        Xte = _check_X(z["X_test"], "X_test", path) if "X_test" in keys else None
        yte = _labels_for(z["y_test"], Xte, "y_test", path, "") if Xte is not None else None
    if Xte is not None and Xte.shape[2] != X.shape[2]:
        raise DataError(f"{path}: X has {X.shape[2]} channels but X_test has {Xte.shape[2]}")

    if np.issubdtype(y.dtype, np.floating) and y.ndim >= 2:
        task = "forecast"
        y = y.reshape(len(y), -1).astype(np.float32)
        if not np.isfinite(y).all():
            raise DataError(f"{path}: y contains NaN/inf values")
        if yte is not None:
            yte = yte.reshape(len(yte), -1).astype(np.float32)
        labels = []
        horizon = max(1, y.shape[1] // X.shape[2])
    elif y.ndim == 2:
        task = "tag"
        if y.shape[1] != X.shape[1]:
            raise DataError(f"{path}: per-step labels y have {y.shape[1]} steps but X has {X.shape[1]}")
        labels = [str(v) for v in sorted(set(np.asarray(y).ravel().tolist()))]
        idx = {lab: i for i, lab in enumerate(labels)}
        enc = np.vectorize(lambda v: idx[str(v)])
        y = enc(y).astype(np.int64)
        yte = enc(yte).astype(np.int64) if yte is not None else None
        horizon = 1
    else:
        task = "classify"
        labels, y, yte = _classify_labels(y, yte, path)
        horizon = 1

    ltr = _infer_lengths(X)
    if Xte is None:
        X, y, ltr, Xte, yte, lte = _split(X, y, ltr, test_fraction, seed)
    else:
        lte = _infer_lengths(Xte)
        T = max(X.shape[1], Xte.shape[1])
        X, Xte = _repad(X, ltr, T), _repad(Xte, lte, T)
    return Dataset(path.stem, task, X, y, ltr, Xte, yte, lte, labels=labels,
                   description=f"user data from {path.name}", horizon=horizon)


def load_csv(path: Path | str, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """User CSV: columns `sequence`, `label`, optional `split` (train/test), then numeric channels;
    one row per time step in time order. Sequences may differ in length (left-padded)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text CSV") from None
    if not rows or not rows[0]:
        raise DataError(f"{path}: empty CSV; expected a header `sequence,label[,split],ch0,ch1,...`")
    header = [h.strip() for h in rows[0]]
    for col in ("sequence", "label"):
        if col not in header:
            raise DataError(f"{path}: missing column {col!r} (header: {','.join(header)}); expected "
                            "`sequence,label[,split],ch0,ch1,...`, one row per time step")
    si, li = header.index("sequence"), header.index("label")
    pi = header.index("split") if "split" in header else None
    chan_idx = [i for i in range(len(header)) if i not in (si, li, pi)]
    if not chan_idx:
        raise DataError(f"{path}: no channel columns after sequence/label; expected at least one numeric column")
    if len(rows) < 2:
        raise DataError(f"{path}: header only, no data rows")
    seqs: dict[str, list] = {}
    meta: dict[str, tuple] = {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{n}: {len(row)} fields but the header has {len(header)}")
        try:
            vals = [float(row[i]) for i in chan_idx]
        except ValueError:
            raise DataError(f"{path}:{n}: non-numeric channel value in {row}") from None
        if not all(np.isfinite(vals)):
            raise DataError(f"{path}:{n}: NaN/inf channel value; clean or impute it before training")
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
    if is_test.any():
        labels, ytr, yte = _classify_labels(y[~is_test], y[is_test], path)
        return Dataset(path.stem, "classify", X[~is_test], ytr, lengths[~is_test], X[is_test], yte,
                       lengths[is_test], labels=labels, description=f"user CSV {path.name}")
    labels, yall, _ = _classify_labels(y, None, path)
    Xtr, ytr, ltr, Xte, yte, lte = _split(X, yall, lengths, test_fraction, seed)
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
