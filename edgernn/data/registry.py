"""
The table of bundled datasets (name -> loader) and load_dataset, the one entry point: a bundled name or a
path to the user's .npz / .csv file.

    ds = load_dataset("basic-motions")       # a bundled set (see DATASETS)
    ds = load_dataset("synthetic", seed=1)   # seeded; loader keyword arguments pass through
    ds = load_dataset("my_data.npz")         # a user file (edgernn.data.files)

A new kind of input (an audio folder, a bundled keyword set, token/text sets) gets a module of its own and
a row here.
"""

from __future__ import annotations

from pathlib import Path

from edgernn.data.dataset import Dataset
from edgernn.data.files import load_csv, load_npz
from edgernn.data.synthetic import synthetic, synthetic_forecast
from edgernn.data.uea import basic_motions, japanese_vowels
from edgernn.errors import DataError

DATASETS = {
    "basic-motions": basic_motions,
    "japanese-vowels": japanese_vowels,
    "synthetic": synthetic,
    "synthetic-forecast": synthetic_forecast,
}


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
