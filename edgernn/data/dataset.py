"""
The Dataset every loader returns: raw (un-normalized) left-padded windows, labels or targets, true lengths.

    ds = Dataset("mine", "classify", X_train, y_train, len_train, X_test, y_test, len_test, labels=["a", "b"])
    ds.seq_len, ds.channels, ds.num_outputs, ds.summary()

The task names come from the artifact manifest's schema (edgernn.runtimes.manifest.TASKS), which devices
embed: a dataset's task is what the model's head and every artifact's manifest say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgernn.runtimes.manifest import TASKS

__all__ = ["Dataset", "TASKS"]


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
    val_index: np.ndarray | None = None  # training windows that form the validation split (audio lists, speakers)
    groups: list | None = None  # speaker (or other group) of each training window, when known
    test_groups: list | None = None  # ... and of each test window
    audio: dict | None = None  # audio sets: sample rate, clip and hop lengths, counts, how it was split

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
            **({"audio": self.audio} if self.audio else {}),
        }
