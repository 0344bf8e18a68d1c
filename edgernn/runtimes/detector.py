"""
Streaming keyword detection: per-frame posteriors in, keyword events out (what a wake-word engine does).
Standard library + numpy only (a device app embeds it); the logic is kept small so that a C port can
reproduce it bit for bit.

    det = Detector(labels, hop_s=0.02, thresholds={"yes": 0.7, "no": 0.8}, smooth_s=0.2, refractory_s=1.0)
    for logits in model_outputs:                     # one frame at a time
        ev = det.update(Detector.softmax(logits))    # -> Event(label, index, frame, time_s, score) or None
    events = det.run(probs_TK)                        # many frames at once, same state machine
    manifest["detector"] = det.to_dict(); det2 = Detector.from_dict(manifest["detector"], labels)

The algorithm (state: ring[n][K] of float64, pos, count, refractory counter; all zero after reset()):
  n = max(1, round(smooth_s / hop_s))     R = round(refractory_s / hop_s)
      round() is round-half-up, floor(x + 0.5) (C: (int)floor(x + 0.5)); Python's round() would round
      ties to even. Both frame counts are fixed at construction.
  per frame, with p = the frame's K posteriors converted to float64:
    1. ring[pos] = p; pos = (pos + 1) % n; count = min(count + 1, n)
    2. acc[k] = 0.0 + the `count` newest ring rows added one at a time, OLDEST FIRST (the exact sum of
       the ring every frame: no running sum, so no drift); mean[k] = acc[k] / count (float64 division).
       Before n frames have been seen this averages the frames seen so far.
    3. best = the label with the highest mean among the labels that may fire (labels not in never_fire),
       the lowest index on a tie.
    4. if refractory > 0: refractory -= 1 (nothing fires this frame)
       elif mean[best] >= threshold[best]: emit Event(best, frame, time_s, mean[best]); refractory = R
    5. frame += 1
  So after an event at frame f, frames f+1 .. f+R cannot fire: two events are at least R + 1 frames
  apart. Only the best label is compared with its own threshold: a lower-scoring label that clears its
  (lower) threshold does not fire on that frame. The ring keeps filling during the refractory period.
Event.frame counts frames since reset() (0-based); Event.time_s = (frame + 1) * hop_s, the END of the
frame that fired: the moment the decision is available (its posterior has seen audio up to there).
edgernn.detection_eval scores streams with a vectorized copy of steps 1-4 and tests it against this one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_NEVER_FIRE = ("_unknown_", "_silence_", "unknown", "silence")
DEFAULT_THRESHOLD = 0.5


@dataclass
class Event:
    label: str  # keyword
    index: int  # class index in labels
    frame: int  # frame index (0-based, since reset) at which it fired
    time_s: float  # (frame + 1) * hop_s: the end of the frame that fired
    score: float  # smoothed posterior that crossed the threshold


def frames_of(seconds: float, hop_s: float) -> int:
    """Seconds -> whole frames, rounding half up: floor(seconds / hop_s + 0.5) (the C port's rule)."""
    return int(math.floor(seconds / hop_s + 0.5))


def _positive_seconds(name: str, value, allow_zero: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v


class Detector:
    """Moving-average smoothing + per-keyword thresholds + a refractory period (see the module docstring)."""

    def __init__(self, labels: list[str], hop_s: float, thresholds: float | dict[str, float] = DEFAULT_THRESHOLD,
                 smooth_s: float = 0.2, refractory_s: float = 1.0,
                 never_fire: tuple[str, ...] = DEFAULT_NEVER_FIRE):
        self.labels = [str(lab) for lab in labels]
        if not self.labels:
            raise ValueError("labels is empty: a detector needs the model's class labels, in output order")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels has duplicates: {self.labels}")
        self.hop_s = _positive_seconds("hop_s", hop_s, allow_zero=False)
        self.smooth_s = _positive_seconds("smooth_s", smooth_s, allow_zero=True)
        self.refractory_s = _positive_seconds("refractory_s", refractory_s, allow_zero=True)
        self.never_fire = tuple(str(lab) for lab in never_fire)
        self.n_smooth = max(1, frames_of(self.smooth_s, self.hop_s))
        self.n_refractory = frames_of(self.refractory_s, self.hop_s)
        K = len(self.labels)
        self.fire_mask = np.array([lab not in self.never_fire for lab in self.labels])
        self.fire_index = np.flatnonzero(self.fire_mask)
        self.keywords = [self.labels[i] for i in self.fire_index]
        if not self.keywords:
            raise ValueError(f"no label may fire: every label of {self.labels} is in never_fire {self.never_fire}")
        # threshold per class; +inf for the labels that never fire (they are never compared anyway)
        self.threshold_vector = np.full(K, np.inf)
        self.threshold_vector[self.fire_index] = DEFAULT_THRESHOLD
        if isinstance(thresholds, dict):
            items = thresholds.items()
        else:
            items = [(lab, thresholds) for lab in self.keywords]
        for lab, thr in items:
            if lab not in self.labels:
                raise ValueError(f"threshold for unknown label {lab!r}: the valid labels are {self.keywords}")
            if lab in self.never_fire:
                raise ValueError(f"threshold for {lab!r}, which never fires (never_fire={list(self.never_fire)}); "
                                 f"labels that may fire: {self.keywords}")
            try:
                t = float(thr)
            except (TypeError, ValueError):
                raise ValueError(f"threshold for {lab!r} must be a number, got {thr!r}") from None
            if not (0.0 < t <= 1.0):
                raise ValueError(f"threshold for {lab!r} must be in (0, 1], got {thr!r}")
            self.threshold_vector[self.labels.index(lab)] = t
        self.thresholds = {lab: float(self.threshold_vector[i]) for i, lab in zip(self.fire_index, self.keywords)}
        self._ring = np.zeros((self.n_smooth, K), dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Forget everything: empty ring, no refractory period, frame counter 0."""
        self._ring[:] = 0.0
        self._pos = 0
        self._count = 0
        self._refractory = 0
        self._frame = 0

    def check_probs(self, probs, ndim: int = 1) -> np.ndarray:
        """probs as float64, checked: shape [K] (ndim=1) or [T, K] (ndim=2), all finite; else ValueError."""
        p = np.asarray(probs, dtype=np.float64)
        K = len(self.labels)
        if p.ndim != ndim or p.shape[-1] != K:
            want = "[K]" if ndim == 1 else "[T, K]"
            raise ValueError(f"probs must have shape {want} with K={K} ({len(self.labels)} labels), got {p.shape}")
        if not np.all(np.isfinite(p)):
            raise ValueError("probs contains NaN or inf")
        return p

    def smoothed(self) -> np.ndarray:
        """The current moving average [K] (zeros before the first frame): step 2 of the algorithm."""
        n, count = self.n_smooth, self._count
        acc = np.zeros(len(self.labels), dtype=np.float64)
        if count == 0:
            return acc
        start = (self._pos - count) % n  # oldest row in the ring
        for j in range(count):
            acc += self._ring[(start + j) % n]
        return acc / float(count)

    def update(self, probs) -> Event | None:
        """Feed one frame of posteriors [K] (softmax output); returns the Event it fires, or None."""
        p = self.check_probs(probs, 1)
        self._ring[self._pos] = p
        self._pos = (self._pos + 1) % self.n_smooth
        self._count = min(self._count + 1, self.n_smooth)
        mean = self.smoothed()
        frame = self._frame
        self._frame += 1
        if self._refractory > 0:
            self._refractory -= 1
            return None
        best = int(self.fire_index[int(np.argmax(mean[self.fire_index]))])
        if mean[best] >= self.threshold_vector[best]:
            self._refractory = self.n_refractory
            return Event(self.labels[best], best, frame, (frame + 1) * self.hop_s, float(mean[best]))
        return None

    def run(self, probs_TK) -> list[Event]:
        """Feed T frames [T, K] through update() (state carries over from earlier calls); returns the events."""
        p = self.check_probs(probs_TK, 2)
        return [ev for ev in (self.update(row) for row in p) if ev is not None]

    @staticmethod
    def softmax(logits) -> np.ndarray:
        """Numerically stable softmax over the last axis, float64 (logits [K] or [..., K])."""
        z = np.asarray(logits, dtype=np.float64)
        z = z - np.max(z, axis=-1, keepdims=True)
        e = np.exp(z)
        return e / np.sum(e, axis=-1, keepdims=True)

    def to_dict(self) -> dict:
        """The settings, JSON-ready, for a manifest (labels are the model's and stored with it elsewhere)."""
        return {"hop_s": self.hop_s, "smooth_s": self.smooth_s, "refractory_s": self.refractory_s,
                "thresholds": dict(self.thresholds), "never_fire": list(self.never_fire)}

    @classmethod
    def from_dict(cls, d: dict, labels: list[str]) -> Detector:
        """The inverse of to_dict(); missing keys take the constructor's defaults (except hop_s)."""
        if "hop_s" not in d:
            raise ValueError(f"detector settings have no hop_s (keys: {sorted(d)})")
        kw = {k: d[k] for k in ("thresholds", "smooth_s", "refractory_s") if k in d}
        if "never_fire" in d:
            kw["never_fire"] = tuple(d["never_fire"])
        return cls(labels, d["hop_s"], **kw)

    def __repr__(self) -> str:
        return (f"Detector(keywords={self.keywords}, hop_s={self.hop_s}, n_smooth={self.n_smooth}, "
                f"n_refractory={self.n_refractory}, thresholds={self.thresholds})")
