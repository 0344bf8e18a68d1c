"""
The left-padding convention: windows of different lengths are LEFT-padded with zeros (raw units) to one
length T, so the last step of every window is real data (what a classifier reads); true lengths are kept.

    X, lengths = pad_sequences([a, b])          # [T_i, C] arrays -> [N, T, C] float32, [N] int64
    mask = real_steps(lengths, X.shape[1])      # [N, T] bool: True on real (non-padding) steps
    lengths = infer_lengths(X)                  # from an already padded array: leading all-zero steps are padding
    X = repad(X, 40)                            # left-pad padded windows to a longer T
"""

from __future__ import annotations

import numpy as np


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


def repad(X: np.ndarray, T: int) -> np.ndarray:
    """Left-pad already left-padded windows to a longer T."""
    if X.shape[1] == T:
        return X
    out = np.zeros((X.shape[0], T, X.shape[2]), dtype=np.float32)
    out[:, T - X.shape[1]:] = X
    return out


def infer_lengths(X: np.ndarray, pad_value: float = 0.0) -> np.ndarray:
    """True length = T minus the count of leading steps equal to pad_value in every channel (left padding)."""
    nonzero = np.any(np.asarray(X) != pad_value, axis=2)
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), X.shape[1])
    return (X.shape[1] - first).astype(np.int64)
