"""
The long continuous audio stream a keyword spotter is judged on: held-out clips (keywords, unknown words,
silence) one after another over a continuous background, every keyword's time known.

    s = build_stream(X_test, y_test, labels, minutes=60, seed=0)   # s.frames [N, hop] PCM, s.truth, s.hop_s
    logits = torch_stream_outputs(run, s.frames)                   # the float model (edgernn.reference)
    logits = artifact_stream(session, s.frames)                    # a step artifact, hop by hop, no reset
    probs = Detector.softmax(logits)                               # -> edgernn.detection_eval

How it is built (seeded; the same clips, seed and length give the same stream): a background bed runs the
whole length - the silence-class clips (cut from background recordings) back to back in a seeded order, or,
without a silence class, white noise at -60 dBFS. On it, segments follow one another: a keyword clip
(KEYWORD_SHARE of the segments), an unknown-word clip (UNKNOWN_SHARE) or a stretch of background alone, each
followed by a gap of GAP_S seconds. A keyword's truth item spans its clip: (label, clip start, clip end).
Only clips of held-out speakers are used (the run's test clips, or its validation clips for choosing
thresholds), so no voice in the stream was heard in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgernn.runtimes.detector import DEFAULT_NEVER_FIRE

KEYWORD_SHARE, UNKNOWN_SHARE = 0.4, 0.3  # of the segments; the rest are background alone
GAP_S = (0.2, 1.0)  # seconds of background after every segment
BACKGROUND_ALONE_S = (1.0, 3.0)
SILENCE_NAMES = ("_silence_", "silence")


@dataclass
class KeywordStream:
    frames: np.ndarray  # [N, hop] float32 PCM: the stream cut into the model's hops
    truth: list  # [(keyword, start_s, end_s)] of every keyword spoken in it
    hop_s: float
    seconds: float
    counts: dict  # segments by kind, keywords by label

    def describe(self) -> str:
        kw = sum(self.counts.get("keywords", {}).values())
        return (f"{self.seconds / 3600:.2f} h of continuous audio ({len(self.frames)} hops of "
                f"{self.hop_s * 1000:g} ms): "
                f"{kw} keywords, {self.counts.get('unknown', 0)} unknown words, "
                f"{self.counts.get('background', 0)} stretches of background alone, held-out speakers only")


def build_stream(X: np.ndarray, y: np.ndarray, labels: list, sample_rate: int, minutes: float = 60.0,
                 seed: int = 0, never_fire=DEFAULT_NEVER_FIRE) -> KeywordStream:
    """A seeded continuous stream from clips X [N, T, hop] (PCM) with labels y [N] (see the module docstring)."""
    X = np.asarray(X, np.float32)
    N, T, hop = X.shape
    clips = X.reshape(N, T * hop)
    clip_len = T * hop
    rng = np.random.default_rng([seed, 0x6B7773])  # "kws"
    total = int(round(minutes * 60 * sample_rate)) // hop * hop
    silence = [i for i, lab in enumerate(labels) if lab in SILENCE_NAMES]
    keyword_ids = [i for i, lab in enumerate(labels) if lab not in never_fire]
    unknown_ids = [i for i, lab in enumerate(labels) if lab in never_fire and lab not in SILENCE_NAMES]
    by_class = {c: np.flatnonzero(y == c) for c in range(len(labels))}
    kw_clips = np.concatenate([by_class[c] for c in keyword_ids]) if keyword_ids else np.array([], int)
    unk_clips = np.concatenate([by_class[c] for c in unknown_ids]) if unknown_ids else np.array([], int)
    sil_clips = np.concatenate([by_class[c] for c in silence]) if silence else np.array([], int)
    if not len(kw_clips):
        raise ValueError("no keyword clips to build a detection stream from (every class is unknown or silence)")
    # the background bed
    if len(sil_clips):
        order = rng.permutation(np.resize(sil_clips, -(-total // clip_len)))
        bed = clips[order].reshape(-1)[:total].copy()
    else:
        bed = rng.normal(0.0, 1e-3, total).astype(np.float32)
    truth, counts = [], {"keywords": {}, "unknown": 0, "background": 0}
    pos = int(rng.uniform(*GAP_S) * sample_rate)
    while True:
        u = rng.uniform()
        if u < KEYWORD_SHARE or (u < KEYWORD_SHARE + UNKNOWN_SHARE and len(unk_clips)):
            pool = kw_clips if u < KEYWORD_SHARE else unk_clips
            i = int(pool[rng.integers(len(pool))])
            if pos + clip_len > total:
                break
            bed[pos:pos + clip_len] = np.clip(bed[pos:pos + clip_len] + clips[i], -1.0, 1.0)
            lab = labels[int(y[i])]
            if u < KEYWORD_SHARE:
                truth.append((lab, pos / sample_rate, (pos + clip_len) / sample_rate))
                counts["keywords"][lab] = counts["keywords"].get(lab, 0) + 1
            else:
                counts["unknown"] += 1
            pos += clip_len
        else:
            pos += int(rng.uniform(*BACKGROUND_ALONE_S) * sample_rate)
            counts["background"] += 1
        pos += int(rng.uniform(*GAP_S) * sample_rate)
        if pos >= total:
            break
    counts["keywords"] = dict(sorted(counts["keywords"].items()))
    return KeywordStream(frames=bed.reshape(-1, hop), truth=truth, hop_s=hop / sample_rate,
                         seconds=total / sample_rate, counts=counts)


def artifact_stream(session, frames: np.ndarray, progress=None) -> np.ndarray:
    """A step artifact's outputs [N, K] after every hop of one stream, from a reset, never reset again (what a
    device listening for hours does). progress: called with the number of hops done every 1000 hops."""
    st = session.stream(warn=False)
    st.reset()
    rows = []
    for k, f in enumerate(frames):
        rows.append(np.asarray(st.step(f), np.float32).reshape(-1))
        if progress is not None and k % 1000 == 999:
            progress(1000)
    return np.stack(rows)


VALIDATION_MINUTES = 30.0  # the stream thresholds are chosen on (validation speakers)
TEST_MINUTES = 60.0  # the stream every streaming artifact is judged on (test speakers)


def float_posteriors(run, frames: np.ndarray) -> np.ndarray:
    """The float model's posteriors after every hop of one stream (one pass, from a reset)."""
    from edgernn.reference import torch_stream_outputs
    from edgernn.runtimes.detector import Detector

    return Detector.softmax(torch_stream_outputs(run, frames))


def validation_clips(run) -> tuple[np.ndarray, np.ndarray, str]:
    """Clips of speakers the model never trained on for choosing thresholds: the validation split, else (a
    dataset without one) the calibration clips, which are training data - said in the returned text."""
    d = run.data()
    if "X_val" in d and len(d["X_val"]):
        return d["X_val"], d["y_val"], f"{len(d['X_val'])} validation clips (speakers not in training)"
    return d["X_calib"], d["y_calib"], f"{len(d['X_calib'])} calibration clips (TRAINING speakers: optimistic)"


def choose_detector(run, max_fa_per_hour: float = 1.0, minutes: float = VALIDATION_MINUTES, seed: int = 1) -> dict:
    """Per-keyword thresholds for the float model on a continuous validation stream: the lowest that keep its
    false accepts within max_fa_per_hour (edgernn.detection_eval.choose_thresholds). The manifest's "detector"
    block: the Detector settings plus how they were chosen and the float model's FRR / FA per hour there."""
    from edgernn.detection_eval import choose_thresholds, evaluate_stream
    from edgernn.runtimes.detector import Detector

    fe = run.config.front_end()
    X, y, what = validation_clips(run)
    s = build_stream(X, y, run.labels, fe.sample_rate, minutes=minutes, seed=seed)
    probs = float_posteriors(run, s.frames)
    det = Detector(run.labels, s.hop_s)
    thr = choose_thresholds(probs, s.truth, run.labels, s.hop_s, max_fa_per_hour=max_fa_per_hour,
                            smooth_s=det.smooth_s, refractory_s=det.refractory_s)
    det = Detector(run.labels, s.hop_s, thresholds=thr, smooth_s=det.smooth_s, refractory_s=det.refractory_s)
    res = evaluate_stream(probs, s.truth, run.labels, s.hop_s, thresholds=thr, smooth_s=det.smooth_s,
                          refractory_s=det.refractory_s)
    o = res["overall"]
    return {**det.to_dict(), "chosen_for": {"max_fa_per_hour": float(max_fa_per_hour),
                                            "on": f"{s.describe()}, from {what}",
                                            "float_frr": o["frr"], "float_fa_per_hour": o["fa_per_hour"]}}


def detection_gate(row: dict, float_row: dict, gates) -> tuple[bool, str]:
    """An artifact's keyword detection on the test stream against the float model's, with the same thresholds:
    its false reject rate may exceed float's by gates.max_kws_frr_increase (absolute) and its false accepts per
    hour by gates.max_kws_fa_increase."""
    why = []
    frr, ffrr = row["frr"], float_row["frr"]
    if frr is not None and ffrr is not None and frr > ffrr + gates.max_kws_frr_increase + 1e-12:
        why.append(f"false reject rate {frr:.3f} > float {ffrr:.3f} + {gates.max_kws_frr_increase:g}")
    if row["fa_per_hour"] > float_row["fa_per_hour"] + gates.max_kws_fa_increase + 1e-12:
        why.append(f"false accepts {row['fa_per_hour']:.2f}/h > float {float_row['fa_per_hour']:.2f}/h + "
                   f"{gates.max_kws_fa_increase:g}")
    return not why, "; ".join(why)


def _row(name: str, runtime: str, probs, s: KeywordStream, labels, det: dict) -> dict:
    from edgernn.detection_eval import det_curve, evaluate_stream

    kw = {"smooth_s": det["smooth_s"], "refractory_s": det["refractory_s"]}
    r = evaluate_stream(probs, s.truth, labels, s.hop_s, thresholds=det["thresholds"], **kw)
    c = det_curve(probs, s.truth, labels, s.hop_s, **kw)
    o = r["overall"]
    return {"artifact": name, "runtime": runtime, "frr": o["frr"], "fa_per_hour": o["fa_per_hour"],
            "false_rejects": o["false_rejects"], "false_accepts": o["false_accepts"], "keywords": r["keywords"],
            "det": {k: [None if v is None or v != v else float(v) for v in np.asarray(c[k]).tolist()]
                    for k in ("threshold", "frr", "fa_per_hour")}}


def detection_report(run, step_paths: list, gates, threads: int = 1, minutes: float = TEST_MINUTES, seed: int = 0,
                     progress=None) -> dict:
    """Keyword spotting the way wake-word engines are judged, for an audio classifier: a continuous stream of
    test speakers (build_stream, `minutes` long) through the float model and through every step artifact (hop
    by hop, never reset), the detector of the artifact's manifest (thresholds chosen at export for a
    false-accept budget) turning posteriors into events: false rejects, false accepts per hour, per keyword,
    and the DET curve over one global threshold. Each artifact is gated against float (detection_gate)."""
    from edgernn.runtimes import load
    from edgernn.runtimes.detector import Detector
    from edgernn.runtimes.manifest import read_manifest

    fe = run.config.front_end()
    d = run.data()
    s = build_stream(d["X_test"], d["y_test"], run.labels, fe.sample_rate, minutes=minutes, seed=seed)
    dets = [read_manifest(p).get("detector") for p in step_paths]
    det = next((x for x in dets if x), None) or choose_detector(run)
    float_row = _row("torch float", "torch", float_posteriors(run, s.frames), s, run.labels, det)
    float_row.update(passed=True, why="")
    rows = [float_row]
    for path, pdet in zip(step_paths, dets):
        session = load(path, threads=threads)
        probs = Detector.softmax(artifact_stream(session, s.frames, progress=progress))
        row = _row(Path(path).name, session.runtime_name, probs, s, run.labels, pdet or det)
        row["passed"], row["why"] = detection_gate(row, float_row, gates)
        rows.append(row)
    return {"stream": s.describe(), "seconds": s.seconds, "keywords_in_stream": s.counts["keywords"],
            "detector": {k: det[k] for k in ("hop_s", "smooth_s", "refractory_s", "thresholds")},
            "chosen_for": det.get("chosen_for"),
            "gate": f"false reject rate <= float + {gates.max_kws_frr_increase:g}, false accepts/hour <= float + "
                    f"{gates.max_kws_fa_increase:g}", "rows": rows, "passed": all(r["passed"] for r in rows)}
