"""
The seeded synthetic sets (for fast tests and demos): same seed, same arrays, on every machine.

    ds = synthetic(seed=1)                                  # 4-class sine frequencies, 6 ch x 40 steps
    ds = synthetic(n_train=64, seq_len=12, channels=3)      # smaller
    ds = synthetic_forecast()                               # noisy multi-sine series, next-step forecast

Channels have different raw scales and offsets, so normalization matters as it does for real sensors.
"""

from __future__ import annotations

import numpy as np

from edgernn.data.dataset import Dataset


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
