"""
Keyword-spotting evaluation the way wake-word engines are judged: run the streaming Detector over one long
continuous stream and count false rejects (FRR) and false accepts per hour against the ground truth.
numpy + edgernn.runtimes.detector only (matplotlib inside plot_det).

    probs = Detector.softmax(logits_TK)                # [T, K] per-frame posteriors of the whole stream
    truth = [("yes", 12.30, 12.85), ("no", 40.1, 40.6), ...]   # (label, start_s, end_s) of each keyword
    r = evaluate_stream(probs, truth, labels, hop_s=0.02, thresholds=0.6)   # r["overall"]["fa_per_hour"]
    c = det_curve(probs, truth, labels, hop_s=0.02)    # {"threshold", "frr", "fa_per_hour", ...} arrays
    thr = choose_thresholds(probs, truth, labels, hop_s=0.02, max_fa_per_hour=1.0)   # {"yes": 0.83, ...}
    plot_det({"float": c, "int8 onnx": c8}, "det.png", max_fa_per_hour=1.0)

Scoring (match_events): an event is a hit (true accept) when its label is the keyword's and its time_s
(the end of the frame that fired) lies in [start_s, end_s + tolerance_s] of a truth item of that label
not matched yet (events in time order; of several such items, the one whose window ends first, which
matches as many as possible); every other event is a false accept, including a wrong-label
fire during a keyword and a second fire on an already matched keyword. Truth items left unmatched are
misses (false rejects). FRR = misses / truth items; false accepts per hour = false accepts / (T * hop_s
/ 3600). Truth items whose label is in never_fire (e.g. "_unknown_" speech) are not keywords: ignored.

Speed: the smoothing does not depend on the thresholds, so it is computed once for the whole stream
(the Detector's oldest-first ring sum as T x K vector adds: the same float64 operations in the same
order, hence identical events) together with each frame's best label and score; a threshold setting then
costs one vector compare and a Python loop over the events only (the refractory period skips ahead).
"""

from __future__ import annotations

import bisect
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgernn.runtimes.detector import DEFAULT_NEVER_FIRE, Detector, Event


def default_grid() -> np.ndarray:
    """0.05 .. 0.95 in steps of 0.025, then 0.96 .. 0.99 and 0.995, 0.998, 0.999 (44 thresholds)."""
    coarse = np.arange(37) * 0.025 + 0.05
    return np.unique(np.round(np.concatenate([coarse, [0.96, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999]]), 6))


class _Stream:
    """One stream's smoothed posteriors (computed once) and the cheap per-threshold state machine."""

    def __init__(self, probs, labels, hop_s, smooth_s, refractory_s, never_fire, thresholds=None):
        self.det = Detector(labels, hop_s, 0.5 if thresholds is None else thresholds,
                            smooth_s=smooth_s, refractory_s=refractory_s, never_fire=never_fire)
        P = self.det.check_probs(probs, 2)
        T = P.shape[0]
        if T == 0:
            raise ValueError("probs has no frames")
        n = self.det.n_smooth
        acc = np.zeros_like(P)
        for shift in range(min(n, T) - 1, -1, -1):  # oldest first, exactly like Detector.smoothed()
            acc[shift:] += P[:T - shift]
        count = np.minimum(np.arange(1, T + 1), n).astype(np.float64)
        self.smoothed = acc / count[:, None]
        fire = self.det.fire_index
        j = np.argmax(self.smoothed[:, fire], axis=1)  # first maximum, like Detector.update
        self.best_label = fire[j]
        self.best_score = self.smoothed[np.arange(T), self.best_label]
        self.T, self.hop_s, self.labels = T, self.det.hop_s, self.det.labels
        self.hours = T * self.det.hop_s / 3600.0

    def fire_frames(self, candidate: np.ndarray) -> np.ndarray:
        """Frames that fire, given the frames whose best label clears its threshold (bool [T])."""
        idx = np.flatnonzero(candidate)
        R = self.det.n_refractory
        if R == 0 or idx.size == 0:
            return idx
        out, pos = [], 0
        while pos < idx.size:  # one iteration per event: jump past the refractory period
            f = int(idx[pos])
            out.append(f)
            pos = int(np.searchsorted(idx, f + R + 1, side="left"))
        return np.asarray(out, dtype=np.int64)

    def events_arrays(self, thr_vec: np.ndarray):
        frames = self.fire_frames(self.best_score >= thr_vec[self.best_label])
        return frames, self.best_label[frames], (frames + 1) * self.hop_s

    def events(self, thr_vec: np.ndarray) -> list[Event]:
        frames, lab, times = self.events_arrays(thr_vec)
        return [Event(self.labels[k], int(k), int(f), float(t), float(self.best_score[f]))
                for f, k, t in zip(frames, lab, times)]


def _check_truth(truth, labels) -> list[tuple[str, float, float]]:
    out = []
    for item in truth:
        lab, s, e = item
        if lab not in labels:
            raise ValueError(f"truth label {lab!r} is not one of the labels {list(labels)}")
        s, e = float(s), float(e)
        if not (math.isfinite(s) and math.isfinite(e) and 0 <= s <= e):
            raise ValueError(f"truth item {item!r}: need 0 <= start_s <= end_s")
        out.append((str(lab), s, e))
    return out


def _match(ev_labels, ev_times, truth, tolerance_s: float) -> dict[str, dict[str, int]]:
    """ev_labels/ev_times in time order. Counts per label: hits, misses, false_accepts."""
    windows: dict[str, list[tuple[float, float]]] = {}
    for lab, s, e in truth:
        windows.setdefault(lab, []).append((s, e + tolerance_s))
    counts = {lab: {"hits": 0, "misses": 0, "false_accepts": 0} for lab in windows}
    starts, matched, lo = {}, {}, {}
    for lab, w in windows.items():
        w.sort()
        starts[lab], matched[lab], lo[lab] = [s for s, _ in w], [False] * len(w), 0
    for lab, t in zip(ev_labels, ev_times):
        c = counts.setdefault(lab, {"hits": 0, "misses": 0, "false_accepts": 0})
        w = windows.get(lab)
        hit = False
        if w:
            m, i = matched[lab], lo[lab]
            while i < len(w) and (m[i] or w[i][1] < t):  # matched, or over for good (time only increases)
                i += 1
            lo[lab] = i
            best = None  # of the open windows holding t, the one that ends first (a maximum matching)
            for j in range(i, bisect.bisect_right(starts[lab], t)):
                if not m[j] and w[j][1] >= t and (best is None or w[j][1] < w[best][1]):
                    best = j
            if best is not None:
                m[best] = hit = True
        c["hits" if hit else "false_accepts"] += 1
    for lab, w in windows.items():
        counts[lab]["misses"] = len(w) - counts[lab]["hits"]
    return counts


def match_events(events, truth, tolerance_s: float = 0.5) -> dict[str, dict[str, int]]:
    """Score events (anything with .label and .time_s) against truth [(label, start_s, end_s)]: per label
    {"hits", "misses", "false_accepts"} (rules in the module docstring)."""
    evs = sorted(events, key=lambda ev: ev.time_s)
    truth = [(str(lab), float(s), float(e)) for lab, s, e in truth]
    return _match([ev.label for ev in evs], [ev.time_s for ev in evs], truth, float(tolerance_s))


def _summary(n_truth: int, hits: int, fa: int, hours: float) -> dict:
    return {"n_truth": n_truth, "hits": hits, "false_rejects": n_truth - hits,
            "frr": (n_truth - hits) / n_truth if n_truth else None, "false_accepts": fa,
            "fa_per_hour": fa / hours}


def _score(st: _Stream, truth, thr_vec, tolerance_s) -> dict:
    _, lab, times = st.events_arrays(thr_vec)
    names = [st.labels[k] for k in lab.tolist()]
    counts = _match(names, times.tolist(), truth, tolerance_s)
    per = {}
    for kw in st.det.keywords:
        c = counts.get(kw, {"hits": 0, "misses": 0, "false_accepts": 0})
        per[kw] = _summary(c["hits"] + c["misses"], c["hits"], c["false_accepts"], st.hours)
    hits = sum(v["hits"] for v in per.values())
    overall = _summary(sum(v["n_truth"] for v in per.values()), hits,
                       sum(v["false_accepts"] for v in per.values()), st.hours)
    return {"keywords": per, "overall": overall, "events": len(names)}


def _prepare(probs, truth, labels, hop_s, smooth_s, refractory_s, never_fire, thresholds=None):
    st = _Stream(probs, labels, hop_s, smooth_s, refractory_s, never_fire, thresholds)
    truth = [t for t in _check_truth(truth, st.labels) if t[0] not in st.det.never_fire]
    return st, truth


def evaluate_stream(probs, truth, labels, hop_s: float, thresholds: float | dict[str, float] = 0.5,
                    smooth_s: float = 0.2, refractory_s: float = 1.0, tolerance_s: float = 0.5,
                    never_fire: tuple[str, ...] = DEFAULT_NEVER_FIRE) -> dict:
    """Run the Detector (these settings) over the stream probs [T, K] and score it against truth.
    Returns {"duration_s", "hours", "frames", "detector": Detector.to_dict(), "tolerance_s", "events",
    "keywords": {kw: {n_truth, hits, false_rejects, frr, false_accepts, fa_per_hour}}, "overall": same}
    (frr is None for a keyword that has no truth item)."""
    st, truth = _prepare(probs, truth, labels, hop_s, smooth_s, refractory_s, never_fire, thresholds)
    r = _score(st, truth, st.det.threshold_vector, float(tolerance_s))
    return {"duration_s": st.T * st.hop_s, "hours": st.hours, "frames": st.T, "detector": st.det.to_dict(),
            "tolerance_s": float(tolerance_s), **r}


def stream_events(probs, labels, hop_s: float, thresholds: float | dict[str, float] = 0.5, smooth_s: float = 0.2,
                  refractory_s: float = 1.0, never_fire: tuple[str, ...] = DEFAULT_NEVER_FIRE) -> list[Event]:
    """The events Detector(...).run(probs) returns, computed the vectorized way (identical, and faster)."""
    st = _Stream(probs, labels, hop_s, smooth_s, refractory_s, never_fire, thresholds)
    return st.events(st.det.threshold_vector)


def _grid(grid) -> np.ndarray:
    g = default_grid() if grid is None else np.unique(np.asarray(grid, dtype=np.float64))
    if g.size == 0 or not np.all((g > 0) & (g <= 1)):
        raise ValueError("grid must hold thresholds in (0, 1]")
    return g


def det_curve(probs, truth, labels, hop_s: float, grid=None, smooth_s: float = 0.2, refractory_s: float = 1.0,
              tolerance_s: float = 0.5, never_fire: tuple[str, ...] = DEFAULT_NEVER_FIRE) -> dict:
    """Sweep one global threshold over grid (default: default_grid()). Returns arrays over the grid:
    {"threshold", "frr", "fa_per_hour", "false_rejects", "false_accepts"}, plus "n_truth", "hours" and
    "per_keyword": {kw: {"false_rejects", "false_accepts"}} (arrays). frr is NaN when truth is empty."""
    st, truth = _prepare(probs, truth, labels, hop_s, smooth_s, refractory_s, never_fire)
    g = _grid(grid)
    kws = st.det.keywords
    fr = np.zeros(g.size, dtype=np.int64)
    fa = np.zeros(g.size, dtype=np.int64)
    per = {kw: {"false_rejects": np.zeros(g.size, np.int64), "false_accepts": np.zeros(g.size, np.int64)} for kw in kws}
    for i, thr in enumerate(g):
        vec = np.where(st.det.fire_mask, thr, np.inf)
        r = _score(st, truth, vec, float(tolerance_s))
        fr[i], fa[i] = r["overall"]["false_rejects"], r["overall"]["false_accepts"]
        for kw in kws:
            per[kw]["false_rejects"][i] = r["keywords"][kw]["false_rejects"]
            per[kw]["false_accepts"][i] = r["keywords"][kw]["false_accepts"]
    n_truth = len(truth)
    return {"threshold": g, "frr": fr / n_truth if n_truth else np.full(g.size, np.nan),
            "fa_per_hour": fa / st.hours, "false_rejects": fr, "false_accepts": fa, "n_truth": n_truth,
            "hours": st.hours, "per_keyword": per}


def choose_thresholds(probs, truth, labels, hop_s: float, max_fa_per_hour: float = 1.0, grid=None,
                      smooth_s: float = 0.2, refractory_s: float = 1.0, tolerance_s: float = 0.5,
                      never_fire: tuple[str, ...] = DEFAULT_NEVER_FIRE) -> dict[str, float]:
    """Per-keyword thresholds that keep the stream's total false accepts per hour <= max_fa_per_hour.

    Rule: each of the N keywords (labels that may fire) gets a budget of max_fa_per_hour / N. For keyword
    k, its threshold is the lowest grid value at which k, firing alone (score = k's smoothed posterior,
    same smoothing and refractory period), makes at most budget * hours false accepts; the highest grid
    value if none does. Firing together can differ (only the best label fires; refractory periods
    interact), so the total is then verified with the full detector (evaluate_stream's scoring): while it
    exceeds max_fa_per_hour, every keyword over its own budget moves up to the next grid value. If that is
    impossible (all such keywords at the top of the grid) a RuntimeWarning says the budget is not met.
    """
    st, truth = _prepare(probs, truth, labels, hop_s, smooth_s, refractory_s, never_fire)
    if not (max_fa_per_hour >= 0):
        raise ValueError(f"max_fa_per_hour must be >= 0, got {max_fa_per_hour!r}")
    g = _grid(grid)
    kws, tol = st.det.keywords, float(tolerance_s)
    budget = max_fa_per_hour / len(kws)
    step = {}
    for k, kw in zip(st.det.fire_index, kws):
        step[kw] = g.size - 1
        for i, thr in enumerate(g):
            frames = st.fire_frames(st.smoothed[:, k] >= thr)
            fa = _match([kw] * frames.size, ((frames + 1) * st.hop_s).tolist(), truth, tol).get(kw, {})
            if fa.get("false_accepts", 0) / st.hours <= budget:
                step[kw] = i
                break
    while True:
        chosen = {kw: float(g[i]) for kw, i in step.items()}
        vec = np.full(len(st.labels), np.inf)
        vec[st.det.fire_index] = [chosen[kw] for kw in kws]
        r = _score(st, truth, vec, tol)
        if r["overall"]["fa_per_hour"] <= max_fa_per_hour:
            return chosen
        over = [kw for kw in kws if r["keywords"][kw]["fa_per_hour"] > budget and step[kw] < g.size - 1]
        if not over:
            warnings.warn(f"choose_thresholds: {r['overall']['fa_per_hour']:.3g} false accepts per hour at the "
                          f"highest usable thresholds, above max_fa_per_hour={max_fa_per_hour}", RuntimeWarning,
                          stacklevel=2)
            return chosen
        for kw in over:
            step[kw] += 1


def plot_det(curves: dict[str, dict], path, max_fa_per_hour: float | None = None) -> Path:
    """DET plot: FRR (%) against false accepts per hour (symlog x: 0 stays visible), one line per curve
    (det_curve results, e.g. {"float": c, "int8 onnx": c8}), a dashed vertical line at max_fa_per_hour and,
    per curve, its best operating point within it. Written atomically (temp file + os.replace)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    path = Path(path)
    fig = Figure(figsize=(7.0, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    fas = np.concatenate([np.asarray(c["fa_per_hour"], float) for c in curves.values()] or [np.zeros(1)])
    pos = fas[fas > 0]
    linthresh = float(min(1.0, pos.min())) if pos.size else 1.0
    for name, c in curves.items():  # points joined in threshold order, the curve's own parameter
        o = np.argsort(np.asarray(c["threshold"], float), kind="stable")
        x = np.asarray(c["fa_per_hour"], float)[o]
        y = 100.0 * np.asarray(c["frr"], float)[o]
        thr = np.asarray(c["threshold"], float)[o]
        label = name
        best = None
        if max_fa_per_hour is not None and (x <= max_fa_per_hour).any():
            best = np.flatnonzero(x <= max_fa_per_hour)[np.argmin(y[x <= max_fa_per_hour])]
            label += f": FRR {y[best]:.1f}% at {x[best]:g} FA/h (threshold {thr[best]:g})"
        line = ax.plot(x, y, marker=".", markersize=5, linewidth=1.4, label=label)[0]
        if best is not None:
            ax.plot([x[best]], [y[best]], marker="o", markersize=9, mfc="none", color=line.get_color())
    ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    hi = max(float(fas.max()) if fas.size else 1.0, max_fa_per_hour or 0.0, 10 * linthresh)
    ax.set_xlim(-0.15 * linthresh, hi * 1.5)  # a margin left of 0 keeps the zero-FA points off the axis
    ax.set_ylim(0, 100)
    if max_fa_per_hour is not None:
        ax.axvline(max_fa_per_hour, color="0.3", linestyle="--", linewidth=1,
                   label=f"budget: {max_fa_per_hour:g} FA/h")
    ax.set_xlabel(f"False accepts per hour, FA/h (symlog scale: linear below {linthresh:g}, log above)")
    ax.set_ylabel("False reject rate (%)")
    ax.set_title("DET curve: keyword detection on a continuous stream")
    ax.grid(True, which="both", alpha=0.3)
    # lower left: a DET curve runs from the upper left down to the right, so that corner stays empty
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=path.suffix.lstrip(".") or "png")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
