"""
Datasets: real sensor data that ships inside installed packages (no download), seeded synthetic sets,
and the user's own .npz / .csv files - each loaded into one Dataset of raw, left-padded windows.

    from edgernn.data import load_dataset, DATASETS
    ds = load_dataset("basic-motions")       # smartwatch accel+gyro, 6 ch x 100 steps, 4 activities
    ds = load_dataset("japanese-vowels")     # 12 LPC coefficients, 7-29 steps (padded), 9 speakers
    ds = load_dataset("my_data.npz")         # X [N,T,C] float, y [N] (+ optional X_test, y_test)
    ds.X_train.shape, ds.len_train, ds.labels

Variable-length sequences are LEFT-padded with zeros (raw units) to the longest sequence, so the last
step of every window is real data (what a classifier reads), and their true lengths are recorded.
The same padding is recorded in every artifact's manifest so the deployed model sees what it was
trained on.

One job per file:
    registry.py     DATASETS (bundled name -> loader) and load_dataset (a name or a file path)
    dataset.py      Dataset; TASKS (classify/tag/forecast) comes from edgernn.runtimes.manifest
    uea.py          the UEA sets bundled with sktime, read from its .ts files (no sktime import)
    synthetic.py    the seeded synthetic sets
    files.py        the user's .npz / .csv files
    checks.py       the one-line validation of arrays (shapes, NaN/inf, magnitude, classes, sizes)
    labels.py       labels -> class ids          split.py    the seeded train/test split
    padding.py      the left-padding convention: pad_sequences, real_steps, infer_lengths, repad
"""

from __future__ import annotations

from edgernn.data.checks import MAX_ABS, MIN_PER_CLASS
from edgernn.data.dataset import TASKS, Dataset
from edgernn.data.files import load_csv, load_npz
from edgernn.data.padding import pad_sequences, real_steps
from edgernn.data.registry import DATASETS, load_dataset
from edgernn.data.synthetic import synthetic, synthetic_forecast
from edgernn.data.uea import basic_motions, japanese_vowels, read_ts

__all__ = ["Dataset", "TASKS", "DATASETS", "load_dataset", "load_npz", "load_csv", "real_steps", "pad_sequences",
           "read_ts", "basic_motions", "japanese_vowels", "synthetic", "synthetic_forecast", "MAX_ABS",
           "MIN_PER_CLASS"]
