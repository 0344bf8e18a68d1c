"""
Tests for the streaming keyword Detector (edgernn.runtimes.detector) and the stream evaluation built on it
(edgernn.detection_eval): detection timing, refractory period, smoothing, the vectorized path being
identical to Detector.run, FA/hour arithmetic, threshold choice and input validation. Synthetic, seeded
posteriors only; runs in a few seconds.

    .venv/bin/pytest tests/test_detector.py
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgernn.detection_eval import (
    choose_thresholds,
    det_curve,
    evaluate_stream,
    match_events,
    plot_det,
    stream_events,
)
from edgernn.runtimes.detector import Detector, Event

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["_silence_", "_unknown_", "yes", "no", "up"]
HOP = 0.02  # 20 ms frames: smooth_s=0.2 -> n=10 frames, refractory_s=1.0 -> R=50 frames


def clean_stream(T: int, bumps: list[tuple], labels=LABELS) -> np.ndarray:
    """Noise-free posteriors: silence 0.96, every other label 0.01, except in the bumps (label, first frame,
    end frame[, level=0.9]) where the label has `level` and the other labels share the rest."""
    K = len(labels)
    p = np.full((T, K), 0.01)
    p[:, 0] = 1.0 - 0.01 * (K - 1)
    for lab, a, b, *level in bumps:
        level = level[0] if level else 0.9
        k = labels.index(lab)
        p[a:b] = (1.0 - level) / (K - 1)
        p[a:b, k] = level
    return p


def random_stream(T: int, seed: int, labels=LABELS, quantize: bool = False):
    """Noisy softmax posteriors with keyword (and _unknown_) bumps of random strength; returns (probs, truth)."""
    rng = np.random.default_rng(seed)
    K = len(labels)
    logits = rng.normal(0.0, 1.3, (T, K))
    logits[:, 0] += 2.0
    truth, t = [], 30
    while t < T - 60:
        k = int(rng.integers(1, K))
        n = int(rng.integers(10, 40))
        logits[t:t + n, k] += rng.uniform(1.0, 6.0)
        if labels[k] != "_unknown_":
            truth.append((labels[k], t * HOP, (t + n) * HOP))
        t += n + int(rng.integers(20, 200))
    probs = Detector.softmax(logits)
    if quantize:  # int8-like outputs: smoothed scores land exactly on thresholds often
        probs = np.round(probs * 256) / 256
    return probs, truth


# ---- detection on a clean stream ------------------------------------------------------------------------
def test_clean_stream_detects_each_keyword_once_at_the_right_time():
    bumps = [("yes", 100, 130), ("no", 300, 330), ("up", 500, 530), ("_unknown_", 700, 740)]
    probs = clean_stream(900, bumps)
    det = Detector(LABELS, HOP, thresholds=0.5, smooth_s=0.2, refractory_s=1.0)
    events = det.run(probs)
    # mean over 10 frames reaches 0.5 after 6 bump frames (0.9*6 + 0.01*4)/10 = 0.544 >= 0.5; 5 give 0.455
    assert [(e.label, e.frame) for e in events] == [("yes", 105), ("no", 305), ("up", 505)]
    for e in events:
        assert e.index == LABELS.index(e.label)
        assert e.time_s == pytest.approx((e.frame + 1) * HOP)  # end of the frame that fired
        assert e.score == pytest.approx((0.9 * 6 + 0.01 * 4) / 10)
    truth = [(lab, a * HOP, b * HOP) for lab, a, b in bumps if lab != "_unknown_"]
    counts = match_events(events, truth)
    assert counts == {kw: {"hits": 1, "misses": 0, "false_accepts": 0} for kw in ("yes", "no", "up")}
    r = evaluate_stream(probs, truth, LABELS, HOP, thresholds=0.5)
    assert r["overall"]["false_accepts"] == 0 and r["overall"]["frr"] == 0.0 and r["events"] == 3


def test_unknown_and_silence_never_fire():
    probs = clean_stream(600, [("_unknown_", 50, 400)])
    det = Detector(LABELS, HOP, thresholds=0.05, refractory_s=0.0)
    assert det.run(probs) == []  # silence is 0.96 all around, _unknown_ 0.9 for 7 s: neither may fire
    assert det.keywords == ["yes", "no", "up"]


# ---- refractory period ----------------------------------------------------------------------------------
def test_a_bump_fires_once_within_the_refractory_period():
    probs = clean_stream(400, [("yes", 100, 140)])  # above threshold for ~35 frames, R = 50
    assert len(Detector(LABELS, HOP, refractory_s=1.0).run(probs)) == 1
    assert len(Detector(LABELS, HOP, refractory_s=0.0).run(probs)) > 30  # without it: every frame


def test_a_bump_longer_than_the_refractory_period_fires_every_r_plus_1_frames():
    probs = clean_stream(400, [("yes", 100, 250)])
    frames = [e.frame for e in Detector(LABELS, HOP, refractory_s=1.0).run(probs)]
    assert frames == [105, 156, 207]  # frames f+1 .. f+50 are refractory


@pytest.mark.parametrize("gap, second", [(70, 175), (51, 156), (47, 156), (46, None), (30, None)])
def test_two_bumps_fire_twice_only_when_further_apart_than_the_refractory_period(gap, second):
    # 6-frame bumps: the average clears 0.5 on frames first+5 .. first+9 only
    probs = clean_stream(500, [("yes", 100, 106), ("no", 100 + gap, 106 + gap)])
    events = Detector(LABELS, HOP, refractory_s=1.0).run(probs)
    assert [(e.label, e.frame) for e in events] == [("yes", 105)] + ([("no", second)] if second else [])


# ---- smoothing ------------------------------------------------------------------------------------------
def test_one_frame_spike_is_averaged_away():
    probs = clean_stream(300, [("yes", 150, 151)])
    probs[150] = [0.0, 0.0, 1.0, 0.0, 0.0]  # 1.0 for one frame: (1.0 + 9 * 0.01) / 10 = 0.109 < 0.5
    assert Detector(LABELS, HOP, smooth_s=0.2).run(probs) == []
    assert [e.frame for e in Detector(LABELS, HOP, smooth_s=0.0).run(probs)] == [150]  # n = 1: no smoothing


def test_the_average_uses_the_frames_seen_so_far_after_reset():
    det = Detector(LABELS, HOP, smooth_s=0.2)
    yes = [0.05, 0.0, 0.9, 0.05, 0.0]
    ev = det.update(yes)  # 1 frame seen: its average is the frame itself
    assert ev is not None and ev.frame == 0 and ev.score == pytest.approx(0.9)
    assert det.update(yes) is None  # refractory
    det.reset()
    ev = det.update(yes)
    assert ev is not None and ev.frame == 0  # reset clears the refractory counter and the frame count
    np.testing.assert_allclose(det.smoothed(), yes)


def test_frame_counts_round_half_up():
    det = Detector(LABELS, 0.02, smooth_s=0.21, refractory_s=0.5)
    assert (det.n_smooth, det.n_refractory) == (11, 25)
    assert Detector(LABELS, 0.1, smooth_s=0.25, refractory_s=0.05).n_smooth == 3  # 2.5 -> 3 (not Python's 2)
    assert Detector(LABELS, 0.1, smooth_s=0.0).n_smooth == 1


# ---- the vectorized path is the Detector ----------------------------------------------------------------
@pytest.mark.parametrize("smooth_s, refractory_s, quantize", [(0.2, 1.0, False), (0.0, 0.0, False),
                                                              (0.5, 0.3, True), (0.2, 1.0, True)])
def test_vectorized_events_and_counts_equal_detector_run(smooth_s, refractory_s, quantize):
    probs, truth = random_stream(5000, seed=3, quantize=quantize)
    grid = [0.15, 0.3, 0.5, 0.625, 0.8]
    curve = det_curve(probs, truth, LABELS, HOP, grid=grid, smooth_s=smooth_s, refractory_s=refractory_s)
    for i, thr in enumerate(grid):
        events = Detector(LABELS, HOP, thr, smooth_s=smooth_s, refractory_s=refractory_s).run(probs)
        assert stream_events(probs, LABELS, HOP, thr, smooth_s=smooth_s, refractory_s=refractory_s) == events
        counts = match_events(events, truth)
        fa = sum(c["false_accepts"] for c in counts.values())
        misses = sum(c["misses"] for c in counts.values())
        assert (curve["false_accepts"][i], curve["false_rejects"][i]) == (fa, misses)
        r = evaluate_stream(probs, truth, LABELS, HOP, thr, smooth_s=smooth_s, refractory_s=refractory_s)
        assert (r["overall"]["false_accepts"], r["overall"]["false_rejects"]) == (fa, misses)
        assert curve["frr"][i] == pytest.approx(misses / len(truth))
    assert curve["false_accepts"][0] > 0 and curve["false_rejects"][-1] > 0  # the stream exercises both


def test_per_keyword_thresholds_equal_detector_run():
    probs, truth = random_stream(5000, seed=5)
    thr = {"yes": 0.3, "no": 0.7, "up": 0.45}
    events = Detector(LABELS, HOP, thr).run(probs)
    assert stream_events(probs, LABELS, HOP, thr) == events
    r = evaluate_stream(probs, truth, LABELS, HOP, thr)
    counts = match_events(events, truth)
    for kw in thr:
        assert r["keywords"][kw]["false_accepts"] == counts[kw]["false_accepts"]
        assert r["keywords"][kw]["hits"] == counts[kw]["hits"]


# ---- scoring --------------------------------------------------------------------------------------------
def ev(label, t):
    return Event(label, LABELS.index(label), round(t / HOP) - 1, t, 0.9)


def test_match_events_time_window_and_labels():
    truth = [("yes", 10.0, 10.5), ("no", 20.0, 20.4)]
    assert match_events([ev("yes", 11.0)], truth, 0.5)["yes"] == {"hits": 1, "misses": 0, "false_accepts": 0}
    assert match_events([ev("yes", 11.02)], truth, 0.5)["yes"] == {"hits": 0, "misses": 1, "false_accepts": 1}
    assert match_events([ev("yes", 9.98)], truth, 0.5)["yes"]["false_accepts"] == 1  # before the keyword
    assert match_events([ev("yes", 10.0)], truth, 0.0)["yes"]["hits"] == 1
    c = match_events([ev("yes", 10.2), ev("yes", 10.6)], truth)  # a second fire on one keyword
    assert c["yes"] == {"hits": 1, "misses": 0, "false_accepts": 1}
    c = match_events([ev("up", 20.2)], truth)  # wrong label during a keyword: false accept + miss
    assert c["up"] == {"hits": 0, "misses": 0, "false_accepts": 1}
    assert c["no"] == {"hits": 0, "misses": 1, "false_accepts": 0}
    c = match_events([ev("yes", 30.4), ev("yes", 30.1)], [("yes", 30.0, 30.2), ("yes", 30.3, 30.5)], 0.5)
    assert c["yes"] == {"hits": 2, "misses": 0, "false_accepts": 0}  # unordered events, overlapping windows
    c = match_events([ev("yes", 10.3), ev("yes", 10.8)], [("yes", 10.0, 10.9), ("yes", 10.2, 10.4)], 0.0)
    assert c["yes"] == {"hits": 2, "misses": 0, "false_accepts": 0}  # 10.3 goes to the window that ends first
    c = match_events([ev("yes", 10.3), ev("yes", 10.8)], [("yes", 10.0, 10.4), ("yes", 10.2, 10.9)], 0.0)
    assert c["yes"] == {"hits": 2, "misses": 0, "false_accepts": 0}
    c = match_events([ev("yes", 10.5), ev("yes", 10.6)], [("yes", 10.0, 10.9), ("yes", 10.2, 10.4)], 0.0)
    assert c["yes"] == {"hits": 1, "misses": 1, "false_accepts": 1}  # 10.5 is past the second one's end


def test_fa_per_hour_arithmetic_on_a_30_minute_stream():
    T = 90_000  # 30 min of 20 ms frames
    f = lambda s: int(round(s / HOP))  # noqa: E731
    bumps = [("yes", f(60.0), f(60.4)), ("yes", f(300.0), f(300.4)), ("up", f(900.0), f(900.4))]
    probs = clean_stream(T, bumps)
    truth = [("yes", 60.0, 60.4), ("no", 900.0, 900.4), ("no", 1200.0, 1200.4), ("_unknown_", 5.0, 6.0)]
    r = evaluate_stream(probs, truth, LABELS, HOP, thresholds=0.5)
    assert r["duration_s"] == pytest.approx(1800.0) and r["hours"] == pytest.approx(0.5)
    o = r["overall"]
    assert (o["n_truth"], o["hits"], o["false_rejects"], o["false_accepts"]) == (3, 1, 2, 2)
    assert o["fa_per_hour"] == pytest.approx(4.0) and o["frr"] == pytest.approx(2 / 3)
    k = r["keywords"]
    assert (k["yes"]["hits"], k["yes"]["false_accepts"], k["yes"]["fa_per_hour"]) == (1, 1, pytest.approx(2.0))
    assert (k["up"]["false_accepts"], k["up"]["frr"]) == (1, None)  # no truth item: FRR undefined
    assert (k["no"]["false_rejects"], k["no"]["frr"]) == (2, 1.0)
    c = det_curve(probs, truth, LABELS, HOP, grid=[0.5])
    assert c["fa_per_hour"][0] == pytest.approx(4.0) and c["frr"][0] == pytest.approx(2 / 3)
    json.dumps(r)  # a report can store it as is


@pytest.mark.parametrize("max_fa", [1.0, 20.0])
def test_choose_thresholds_meets_the_budget_on_its_stream(max_fa):
    probs, truth = random_stream(30_000, seed=7)  # 10 minutes
    grid = np.round(np.arange(0.05, 1.0, 0.05), 2)
    loose = det_curve(probs, truth, LABELS, HOP, grid=grid)
    assert loose["fa_per_hour"][0] > max_fa  # the budget binds
    thr = choose_thresholds(probs, truth, LABELS, HOP, max_fa_per_hour=max_fa, grid=grid)
    assert set(thr) == {"yes", "no", "up"} and all(t in grid for t in thr.values())
    r = evaluate_stream(probs, truth, LABELS, HOP, thr)
    assert r["overall"]["fa_per_hour"] <= max_fa
    assert r["overall"]["frr"] < 0.5


def test_choose_thresholds_raises_a_keyword_when_firing_together_exceeds_the_budget():
    # 0.05 h stream, max 60 FA/h: 3 false accepts in all, 1 per keyword. "no" (then "up") fires falsely and
    # its refractory period swallows a true "yes"; a weak false "yes" bump (peak 0.394) right after it
    # then fires. Alone, "yes" fires on the true keyword and its own refractory period swallows the
    # weak bump: 0 false accepts at 0.3. Together: 4 false accepts, so "yes" must move up to 0.5.
    bumps, truth = [], []
    for other, t0 in (("no", 1000), ("up", 3000)):
        bumps += [(other, t0, t0 + 12), ("yes", t0 + 30, t0 + 40), ("yes", t0 + 70, t0 + 76, 0.65)]
        truth.append(("yes", (t0 + 30) * HOP, (t0 + 40) * HOP))
    probs = clean_stream(9000, bumps)
    alone = {"yes": 0.3, "no": 1.0, "up": 1.0}
    assert match_events(Detector(LABELS, HOP, alone).run(probs), truth)["yes"]["false_accepts"] == 0
    assert evaluate_stream(probs, truth, LABELS, HOP, 0.3)["overall"]["false_accepts"] == 4
    thr = choose_thresholds(probs, truth, LABELS, HOP, max_fa_per_hour=60.0, grid=[0.3, 0.5])
    assert thr == {"yes": 0.5, "no": 0.3, "up": 0.3}
    assert evaluate_stream(probs, truth, LABELS, HOP, thr)["overall"]["fa_per_hour"] == pytest.approx(40.0)
    # no false accept allowed: the lowest grid value above the 0.9 peaks of "no" and "up"
    thr = choose_thresholds(probs, truth, LABELS, HOP, max_fa_per_hour=0.0, grid=[0.3, 0.5, 0.95, 0.99])
    assert thr == {"yes": 0.3, "no": 0.95, "up": 0.95}


def test_choose_thresholds_warns_when_the_budget_cannot_be_met():
    probs = clean_stream(3000, [("yes", 100, 140), ("yes", 1000, 1040)])  # two bumps, no truth
    with pytest.warns(RuntimeWarning, match="max_fa_per_hour"):
        thr = choose_thresholds(probs, [], LABELS, HOP, max_fa_per_hour=0.0, grid=[0.5, 0.8])
    assert thr["yes"] == 0.8


# ---- settings, validation, plotting ---------------------------------------------------------------------
def test_to_dict_from_dict_round_trip():
    det = Detector(LABELS, HOP, {"yes": 0.7}, smooth_s=0.3, refractory_s=0.8)
    d = json.loads(json.dumps(det.to_dict()))
    assert set(d) == {"hop_s", "smooth_s", "refractory_s", "thresholds", "never_fire"}
    assert d["thresholds"] == {"yes": 0.7, "no": 0.5, "up": 0.5}
    det2 = Detector.from_dict(d, LABELS)
    assert det2.to_dict() == det.to_dict()
    probs, _ = random_stream(2000, seed=1)
    assert det2.run(probs) == det.run(probs)


def test_softmax():
    p = Detector.softmax([[1000.0, 1000.0, 0.0], [0.0, 1.0, 2.0]])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=1e-12)


def test_input_validation():
    with pytest.raises(ValueError, match=r"unknown label 'maybe'.*\['yes', 'no', 'up'\]"):
        Detector(LABELS, HOP, {"maybe": 0.5})
    with pytest.raises(ValueError, match="never fires"):
        Detector(LABELS, HOP, {"_unknown_": 0.5})
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        Detector(LABELS, HOP, 1.5)
    with pytest.raises(ValueError, match="hop_s"):
        Detector(LABELS, 0.0)
    with pytest.raises(ValueError, match="no label may fire"):
        Detector(["_silence_", "unknown"], HOP)
    det = Detector(LABELS, HOP)
    with pytest.raises(ValueError, match="K=5"):
        det.update([0.5, 0.5])
    with pytest.raises(ValueError, match="K=5"):
        det.run(np.zeros((10, 4)))
    with pytest.raises(ValueError, match="NaN"):
        det.update([np.nan, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="K=5"):
        evaluate_stream(np.zeros((10, 3)), [], LABELS, HOP)
    with pytest.raises(ValueError, match="truth label 'maybe'"):
        evaluate_stream(clean_stream(10, []), [("maybe", 0.0, 0.1)], LABELS, HOP)
    with pytest.raises(ValueError, match="start_s <= end_s"):
        det_curve(clean_stream(10, []), [("yes", 0.2, 0.1)], LABELS, HOP)
    with pytest.raises(ValueError, match="unknown label"):
        evaluate_stream(clean_stream(10, []), [], LABELS, HOP, thresholds={"maybe": 0.5})


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions) of a source file, as top-level package names
    (edgernn.* kept whole)."""
    top, inner = set(), set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            names = {n if n.startswith("edgernn") else n.split(".")[0] for n in names}
            (top if node in tree.body else inner).update(names)
    return top, inner


def test_imports_stay_embeddable():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    top, inner = _imports(ROOT / "edgernn/runtimes/detector.py")
    assert top - stdlib == {"numpy"} and not inner
    top, inner = _imports(ROOT / "edgernn/detection_eval.py")
    assert top - stdlib == {"numpy", "edgernn.runtimes.detector"}
    assert inner - stdlib == {"matplotlib"}  # inside plot_det only


def test_plot_det_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    probs, truth = random_stream(5000, seed=2)
    c = det_curve(probs, truth, LABELS, HOP)
    out = plot_det({"float": c}, tmp_path / "det.png", max_fa_per_hour=10.0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["det.png"]  # no temp file left behind


def test_detection_gate_holds_an_artifact_to_the_float_models_false_rejects_and_accepts():
    from edgernn.detection_stream import detection_gate
    from edgernn.gates import Gates

    g = Gates()
    flt = {"frr": 0.10, "fa_per_hour": 2.0}
    assert detection_gate({"frr": 0.12, "fa_per_hour": 3.0}, flt, g) == (True, "")
    ok, why = detection_gate({"frr": 0.125, "fa_per_hour": 2.0}, flt, g)
    assert not ok and "false reject rate 0.125 > float 0.100 + 0.02" in why
    ok, why = detection_gate({"frr": 0.05, "fa_per_hour": 3.5}, flt, g)
    assert not ok and "false accepts 3.50/h > float 2.00/h + 1" in why


def test_stream_is_seeded_and_its_truth_marks_every_keyword_clip():
    from edgernn.detection_stream import build_stream

    rng = np.random.default_rng(0)
    labels = ["_silence_", "_unknown_", "no", "yes"]
    X = (rng.normal(0, 0.01, (40, 5, 16))).astype(np.float32)
    y = np.arange(40) % 4
    X[y == 3, 2] += 0.5  # a loud "yes" in the middle of each yes clip
    a = build_stream(X, y, labels, sample_rate=800, minutes=2, seed=3)
    b = build_stream(X, y, labels, sample_rate=800, minutes=2, seed=3)
    c = build_stream(X, y, labels, sample_rate=800, minutes=2, seed=4)
    assert np.array_equal(a.frames, b.frames) and a.truth == b.truth and a.truth != c.truth
    assert a.frames.shape == (2 * 60 * 800 // 16, 16) and a.seconds == 120
    assert {lab for lab, _, _ in a.truth} == {"no", "yes"} and sum(a.counts["keywords"].values()) == len(a.truth)
    flat = a.frames.reshape(-1)
    for lab, s, e in a.truth:  # each "yes" clip's loud hop lies inside its truth span
        if lab == "yes":
            seg = flat[round(s * 800):round(e * 800)]
            assert len(seg) == 80 and np.abs(seg).max() > 0.4
