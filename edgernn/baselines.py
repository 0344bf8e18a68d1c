"""
Baselines every run is measured against: if the RNN does not beat these, it learned nothing worth shipping.

    from edgernn.baselines import baselines, beats_baseline
    b = baselines(ds, mean, std)      # {"majority": {...}, "nearest_neighbour" | "last_value": {...}}
    ok, line = beats_baseline(metrics["test"], b, task)

classify: the majority-class rate (the most frequent training class, scored on the test windows) and a
1-nearest-neighbour classifier (Euclidean distance between whole normalized windows, padding included:
the same inputs the RNN sees). tag: the same two per time step (the nearest training frame). forecast:
the last-value forecast (the last input frame repeated over the horizon), as RMSE/MAE in raw units.
Pure numpy; train() stores the result in metrics.json under "baselines".
"""

from __future__ import annotations

import numpy as np

from edgernn.data import real_steps

MAX_TAG_FRAMES = 20000  # 1-NN over frames: a seeded subsample of training frames keeps this O(seconds)


def _nearest(train: np.ndarray, test: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Index of each test row's nearest training row (squared Euclidean), in chunks to bound memory."""
    tr = train.astype(np.float64)
    tr_sq = (tr ** 2).sum(1)
    out = np.empty(len(test), dtype=np.int64)
    for i in range(0, len(test), chunk):
        te = test[i:i + chunk].astype(np.float64)
        d = tr_sq[None, :] - 2.0 * te @ tr.T  # + |te|^2, the same for every training row
        out[i:i + chunk] = d.argmin(1)
    return out


def baselines(ds, mean: np.ndarray, std: np.ndarray, seed: int = 0) -> dict:
    """Baseline scores on ds's test split, fitted on its training split (normalized with mean/std)."""
    if len(ds.y_test) == 0:
        return {}
    if ds.task == "forecast":
        reps = ds.y_test.shape[1] // ds.channels
        pred = np.tile(ds.X_test[:, -1, :].astype(np.float64), (1, reps))
        err = pred - ds.y_test.astype(np.float64)
        return {"last_value": {"rmse": float(np.sqrt((err ** 2).mean())), "mae": float(np.abs(err).mean()),
                               "n": int(len(err))}}
    Xtr = ((ds.X_train - mean) / std).astype(np.float32)
    Xte = ((ds.X_test - mean) / std).astype(np.float32)
    if ds.task == "classify":
        counts = np.bincount(ds.y_train, minlength=max(len(ds.labels), 1))
        majority = int(counts.argmax())
        nn = ds.y_train[_nearest(Xtr.reshape(len(Xtr), -1), Xte.reshape(len(Xte), -1))]
        n = len(ds.y_test)
        return {"majority": {"accuracy": float((ds.y_test == majority).mean()), "n": int(n),
                             "class": ds.labels[majority] if ds.labels else majority},
                "nearest_neighbour": {"accuracy": float((nn == ds.y_test).mean()), "n": int(n)}}
    # tag: per real time step
    T = ds.seq_len
    mtr, mte = real_steps(ds.len_train, T), real_steps(ds.len_test, T)
    ftr, ytr = Xtr[mtr], ds.y_train[mtr]
    if len(ftr) > MAX_TAG_FRAMES:
        keep = np.sort(np.random.default_rng(seed).permutation(len(ftr))[:MAX_TAG_FRAMES])
        ftr, ytr = ftr[keep], ytr[keep]
    yte = ds.y_test[mte]
    majority = int(np.bincount(ytr).argmax())
    nn = ytr[_nearest(ftr, Xte[mte])]
    return {"majority": {"accuracy": float((yte == majority).mean()), "n": int(len(yte)),
                         "class": ds.labels[majority] if ds.labels else majority},
            "nearest_neighbour": {"accuracy": float((nn == yte).mean()), "n": int(len(yte))}}


def best_baseline(b: dict, task: str) -> tuple[str, float] | None:
    """(name, score) of the strongest baseline: highest accuracy, or lowest RMSE for forecast."""
    if not b:
        return None
    if task == "forecast":
        return "last_value", b["last_value"]["rmse"]
    name = max(b, key=lambda k: b[k]["accuracy"])
    return name, b[name]["accuracy"]


NAMES = {"majority": "majority class", "nearest_neighbour": "1-nearest-neighbour", "last_value": "last-value forecast"}


def beats_baseline(test: dict, b: dict, task: str) -> tuple[bool, str]:
    """Whether the model's test score beats the strongest baseline, and one line saying so (which names
    chance level when the model does not even beat the majority class)."""
    best = best_baseline(b, task)
    if best is None or not test:
        return True, "no test windows: no baseline comparison"
    name, score = best
    if task == "forecast":
        got = test["rmse"]
        ok = got < score
        return ok, (f"test RMSE {got:.4g} vs {NAMES[name]} {score:.4g}: "
                    + ("beats the baseline" if ok else "does NOT beat the baseline"))
    got = test["accuracy"]
    ok = got > score or (got == score == 1.0)
    line = f"test accuracy {got:.3f} vs {NAMES[name]} {score:.3f}: " + ("beats the baseline" if ok else
                                                                      "does NOT beat the baseline")
    if not ok and "majority" in b and got <= b["majority"]["accuracy"]:
        line += f" (at chance: the majority class alone scores {b['majority']['accuracy']:.3f})"
    return ok, line
