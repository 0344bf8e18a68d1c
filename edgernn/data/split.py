"""
The seeded train/test split of user data that comes without a test set: same seed, same split.

    X, y, lengths, X_test, y_test, len_test = seeded_split(X, y, lengths, 0.25, seed=0, path=path)

At least 1 window is held out and at least 2 stay for training (else a one-line DataError naming the file).
"""

from __future__ import annotations

import numpy as np

from edgernn.errors import DataError


def seeded_split(X, y, lengths, test_fraction: float, seed: int, path):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    n_test = max(1, int(round(len(X) * test_fraction)))
    if len(X) - n_test < 2:
        raise DataError(f"{path}: only {len(X)} samples: need at least 3 to hold out a test split; "
                        "add samples or provide X_test/y_test")
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr], y[tr], lengths[tr], X[te], y[te], lengths[te]
