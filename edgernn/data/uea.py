"""
The UEA sets that ship inside the installed sktime package (no download), read from disk by a small .ts
parser: importing sktime (and pandas) is not needed.

    ds = basic_motions()       # smartwatch accel+gyro, 6 ch x 100 steps, 4 activities
    ds = japanese_vowels()     # 12 LPC coefficients, 7-29 steps (left-padded), 9 speakers
    seqs, ys, declared = read_ts(Path("X_TRAIN.ts"))

Variable-length sequences are left-padded (edgernn.data.padding) to the longest of train and test.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgernn.data.dataset import Dataset
from edgernn.data.padding import pad_sequences
from edgernn.errors import DataError


def sktime_data_dir() -> Path:
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


def load_uea(name: str, folder: str, description: str) -> Dataset:
    """The sktime-bundled UEA set in datasets/data/<folder>/ (its own train/test split) as a classify Dataset."""
    d = sktime_data_dir() / folder
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


def basic_motions(**_) -> Dataset:
    return load_uea("basic-motions", "BasicMotions",
                    "smartwatch accelerometer + gyroscope (6 ch x 100 steps at 10 Hz), 4 activities, 40/40 split")


def japanese_vowels(**_) -> Dataset:
    return load_uea("japanese-vowels", "JapaneseVowels",
                    "12 LPC cepstrum coefficients, 7-29 frames (left-padded), 9 speakers, 270/370 split")
