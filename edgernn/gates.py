"""
The one gate: what an exported artifact must do to pass, used by `edgernn parity` and by export's int8
recipe selection (edgernn.export.recipes), so an artifact chosen at export passes the gate parity applies.
The CLI's defaults come from Gates.

    gates = Gates()                                              # the thresholds (every CLI default)
    row = gate_artifact(run, path, X, y, lengths, ref, ref_metrics, gates)    # numbers + "passed"
    Holdout(run, gates).gate(run, path, "step")                # export time (edgernn.holdout): + a stress set

An artifact fails when:
  float artifacts        max |diff| > float_tol + float_rtol * (range of the float outputs)
                         (like numpy's allclose atol + rtol: float32 rounding grows with the outputs and
                         with T; defaults 1e-4 + 1e-4 x range, still ~100x below a wrong weight)
  int8 / dynamic         classify/tag: accuracy < min_accuracy_ratio * float accuracy (default 0.99) or
                         top-1 agreement with the float model < min_agreement (default 0.98: a gate on
                         accuracy alone is one-sided - an artifact of ANOTHER model can score as well);
                         forecasting: RMSE > max_rmse_ratio * float RMSE (default 1.02) or the RMS
                         difference from the float forecasts > sqrt(max_rmse_ratio^2 - 1) * float RMSE
                         (the deviation that, independent of the float error, would use up the ratio)
  long stream (step)     the soak (edgernn.soak). float: the float gate over the whole stream; quantized:
                         the error drifts (the stream's mean |diff| > max_stream_drift (default 2) x that of
                         the same windows streamed from a reset, + 0.1% of the output range) or
                         (classify/tag) top-1 agreement with the float stepper < min_stream_agreement
                         (default 0.95). When that fails, the drift is measured again without the FRAGILE
                         blocks, where the float model itself with int8-sized weight noise or an int8-rounded
                         input is grossly off
                         (StreamReference.fragile_blocks); there the error is held to max_stream_drift x
                         what that weight noise causes; agreement stays over the whole stream
  stress set (export)    edgernn.holdout: besides the gate above on HELD-OUT calibration windows, an int8 candidate
                         must agree with the float model on perturbed copies of the training windows
                         (amplitude x0.25/x0.5/x1.5 around the training mean, noise, a half-window roll),
                         with no gross error (> STRESS_GROSS of the output range) except where the float
                         model itself is that fragile under int8-sized weight noise or an int8-rounded input;
                         the agreement leaves out the copies where that noise flips the float model's answer.
Calibration never sees the held-out windows: run.data()["X_calib"] is split by calibration_split().
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgernn.data import real_steps
from edgernn.errors import ArtifactError, ConfigError
from edgernn.rundir import Run
from edgernn.runtimes.manifest import compute_label, integer_only, read_manifest
from edgernn.soak import StreamReference, block_frames, find_horizon, long_stream, stream_through, stream_windows_for
from edgernn.train import score_outputs

HOLDOUT_EVERY = 4  # every 4th calibration window is held out for the recipe gate

STRESS_AMPLITUDES = (0.25, 0.5, 1.5)  # stress copies of the training windows, scaled around the training mean

STRESS_NOISE = 0.1  # and with gaussian noise of this many training standard deviations

STRESS_BASE = 200  # training windows the stress set perturbs ...
STRESS_FRAMES = 40_000  # ... at most this many frames of them (but >= 20 windows): long windows would make the
# stress set, its float references under FRAGILE_DRAWS weight-noise copies and every candidate's pass over it
# grow with T (ACSF1, T=1460: 200 windows = 1.46 million frames per copy); T <= 200 keeps all 200


def stress_base(T: int) -> int:
    """How many training windows of T frames the stress set perturbs."""
    return min(STRESS_BASE, max(20, STRESS_FRAMES // max(1, T)))

# a stress window whose output is off by more than this share of the float output range is a gross error:
# rounding noise does not do that (dynamic and ONNX int8 stayed near 3% or less on the stress sets measured),
# a broken state or a clipped range does (full-int8 GRU h32: 52% on 2 of 200 copies, and it lost a test window)
STRESS_GROSS = 0.25

# ... unless the float model itself moves that much there: a stress copy is FRAGILE when one of
# FRAGILE_DRAWS copies of the float model, each weight matrix perturbed by uniform noise of half an int8 step
# (its row's max|w| / 127, what storing it in int8 does), is off by more than STRESS_GROSS of the range.
# Every int8 recipe stores int8 weights, so on such a copy a gross error is a lottery, not a broken artifact.
# Measured on basic-motions LSTM h64 (stress copies 142, 188, 100): 8, 3 and 4 of 20 draws were gross; the
# ONNX weights-int8 artifact was gross on 188 (4.8 > 3.05), TFLite dynamic on none (2.7) - chance, not quality
FRAGILE_DRAWS = 16
# the float model's own sensitivity on a long stream: it is streamed in float64 and as this many float32
# copies with every weight moved by up to IMPLEMENTATION_STEP (edgernn.reference.rounding_models); where they
# drift apart the model amplifies small differences (measured: ItalyPowerDemand GRU h32, up to 12.5 logits;
# the demo GRU/LSTM stay within 7e-5 for 20,000 frames) - no artifact can follow the torch stream there
ROUNDING_DRAWS = 4
IMPLEMENTATION_STEP = 1e-5  # relative weight noise of those copies: two correct float implementations differ by
#   about this much (on ItalyPowerDemand windows the C float header is 1.1e-5 and LiteRT 9.1e-6 off torch at
#   most, where weights moved by 2 float32 ulps were 100x closer and left the C header outside their spread)
# the streaming horizon: frames from a reset until those copies move the outputs by more than this share of
# their range (the float limit itself, ~1e-4 of the range, is crossed by brief transients: ItalyPowerDemand
# GRU h32 crossed it 42 frames after some resets, 1% after 274, 10% after 302; the demo models never do)
HORIZON_SHARE = 0.01

MIN_HOLDOUT = 4  # below 2 * this many calibration windows there is nothing to spare: gate on all of them


def run_artifact(session, X_raw: np.ndarray, mode: str, task: str) -> tuple[np.ndarray, float]:
    """Outputs of one artifact on raw windows: sequence -> predict(batch); step -> stream each window
    frame by frame (reset between windows), keeping the last output (classify/forecast) or all (tag)."""
    t0 = time.perf_counter()
    if mode == "sequence":
        out = np.asarray(session.predict(X_raw), dtype=np.float32)
    else:
        windows = [session.real_frames(window) for window in X_raw]  # masked padding: the real frames only
        ends = np.cumsum([len(w) for w in windows])
        flat, _ = stream_through(session, np.concatenate(windows), np.concatenate([[0], ends[:-1]]))
        out = np.stack([flat[e - len(w):e] if task == "tag" else flat[e - 1] for w, e in zip(windows, ends)])
    return out, time.perf_counter() - t0


def float_limit(ref: np.ndarray, float_tol: float, float_rtol: float) -> tuple[float, str]:
    """The float gate for outputs `ref`: (limit, text). atol + rtol x the range of the float outputs."""
    rng = float(np.max(ref) - np.min(ref)) if np.size(ref) else 0.0
    limit = float_tol + float_rtol * rng
    return limit, f"max|diff| <= {limit:.3g} ({float_tol:g} + {float_rtol:g} x output range {rng:.3g})"


def stream_reference(run: Run, X: np.ndarray, gates: "Gates") -> StreamReference:
    """The float side of the soak over gates.stream_frames frames of windows X, with the model's own
    streaming horizon measured first (soak.find_horizon: ROUNDING_DRAWS implementation-size copies,
    HORIZON_SHARE of the output range). A model that amplifies small differences is soaked the way a device
    must run it: reset every horizon frames (whole windows). The result's .stability says what was found
    (stream_stability below)."""
    T = X.shape[1]
    n = stream_windows_for(gates.stream_frames, T)
    ref = StreamReference(run, X, n)
    limit = HORIZON_SHARE * float(ref.ref.max() - ref.ref.min())
    div = ref.divergence(ROUNDING_DRAWS, IMPLEMENTATION_STEP)
    horizon = find_horizon(run, ref.frames, limit, ROUNDING_DRAWS, IMPLEMENTATION_STEP, T, first=div["frame_max"])
    stability = stream_stability(div, limit, block_frames(T), horizon, T)
    if stability["reset_every"]:
        ref = StreamReference(run, X, n, reset_every=stability["reset_every"])
    ref.stability = stability
    return ref


def stream_stability(div: dict, limit: float, size: int, horizon: int | None, T: int) -> dict:
    """What parity.json, the manifest and the report say of the model's own behaviour on a long stream:
    `div` = StreamReference.divergence() of the stream WITHOUT reset, `horizon` = soak.find_horizon() with
    `limit` = HORIZON_SHARE of the output range."""
    over = np.flatnonzero(div["frame_max"] > limit)
    flips = np.flatnonzero(div["flips"])
    reset_every = None if horizon is None else max(T, horizon // T * T)
    out = {"horizon_frames": horizon, "reset_every": reset_every, "measured_frames": int(len(div["frame_max"])),
           "limit": float(limit), "max_divergence": float(div["frame_max"].max()),
           "first_divergence": int(over[0]) if len(over) else None,
           "first_answer_change": int(flips[0]) if len(flips) else None, "block_frames": int(size),
           "unstable_blocks": [int(i) for i in np.flatnonzero(div["block_max"] > limit)],
           "block_max_divergence": [float(v) for v in div["block_max"]],
           "method": f"the float model in float64 and {ROUNDING_DRAWS} float32 copies with every weight moved by "
                     f"up to {IMPLEMENTATION_STEP:g} of itself, against the float32 model, streamed without "
                     "reset; the horizon is the shortest stretch from a reset after which one of them is off by "
                     f"more than {HORIZON_SHARE:.0%} of the output range"}
    if horizon is None:
        out["text"] = (f"stable: implementation-size perturbations of the float model stay within {limit:.3g} "
                       f"({HORIZON_SHARE:.0%} of the output range) over "
                       f"{out['measured_frames']} frames without reset (max {out['max_divergence']:.2g})")
    else:
        out["text"] = (f"UNSTABLE on continuous streams: implementation-size perturbations of the float model grow "
                       f"past {limit:.3g} ({HORIZON_SHARE:.0%} of the output range) after {horizon} frames from a "
                       f"reset (up to {out['max_divergence']:.3g} without reset, in "
                       f"{len(out['unstable_blocks'])} of {len(div['block_max'])} blocks): two "
                       f"correct implementations disagree after that. Reset the stream every {reset_every} frames "
                       f"(session.stream(reset_every={reset_every})) - the soak did - or retrain with "
                       "--stream-stable")
    return out


def long_stream_gate(res: dict, ref: np.ndarray, precision: str, task: str, float_tol: float,
                     float_rtol: float, min_stream_agreement: float, max_drift: float = 2.0,
                     fragile: tuple | None = None, unstable: tuple | None = None) -> dict:
    """Add "gate" and "passed" to a long_stream() result. Float: the float gate over the whole stream.
    Quantized: no drift - the stream's mean |diff| is at most max_drift x that of the same windows
    streamed from a reset (+ 0.1% of the output range) - and, for classify/tag, top-1 agreement with the
    float stepper >= min_stream_agreement.
    Where the float model itself moves, an artifact is held to a multiple of that movement instead:
    `fragile` = StreamReference.fragile_blocks(STRESS_GROSS, FRAGILE_DRAWS) (mask, per-block mean |diff| under
    int8-sized weight noise: quantized artifacts only) and `unstable` = (mask, per-block max, per-block mean
    |diff|) of StreamReference.divergence(ROUNDING_DRAWS, IMPLEMENTATION_STEP): blocks where
    implementation-size copies of the float model drift past the float limit. Float: in unstable blocks
    max|diff| <= max_drift x the copies' max + the limit.
    Quantized: in those blocks the mean |diff| <= max_drift x the larger floor (+ the slack), the drift is
    measured over the others; agreement stays over the whole stream."""
    extra = {}
    if unstable is not None:
        extra["unstable_blocks"] = [int(i) for i in np.flatnonzero(unstable[0])]
    if precision == "float":
        limit, text = float_limit(ref, float_tol, float_rtol)
        passed = res["max_abs_diff"] <= limit
        if unstable is not None and unstable[0].any():
            mask, umax = unstable[0], np.asarray(unstable[1])
            bmax = np.asarray(res["block_max_abs_diff"])
            worst = float(np.max(bmax[mask] / np.maximum(umax[mask], 1e-30)))
            passed = bool(np.all(bmax[~mask] <= limit) and np.all(bmax[mask] <= max_drift * umax[mask] + limit))
            text += (f" outside the {int(mask.sum())} of {len(mask)} blocks where the float model itself diverges "
                     f"under implementation-size perturbations; in those, at most {max_drift:g} x that divergence + "
                     f"{limit:.3g} (worst {worst:.2f} x)")
        return {**res, **extra, "gate": text, "passed": bool(passed)}
    slack = 0.001 * float(np.max(ref) - np.min(ref))
    stream_err, reset_err = res["mean_abs_diff"], res["mean_abs_diff_reset"]
    n = len(res["block_mean_abs_diff"])
    mask, floor, why = np.zeros(n, bool), np.zeros(n), []
    if fragile is not None:
        extra["fragile_blocks"] = [int(i) for i in np.flatnonzero(fragile[0])]
        if fragile[0].any():
            mask |= fragile[0]
            floor = np.maximum(floor, np.where(fragile[0], fragile[1], 0.0))
            why.append(f"moves more than {STRESS_GROSS:.0%} of its output range under int8-sized weight noise")
    if unstable is not None and unstable[0].any():
        # an int8 artifact differs from the model by int8-sized weight noise, not by implementation-size noise:
        # where the model diverges, it is held to what that weight noise does there (fragile[1], every block)
        mask |= unstable[0]
        if fragile is not None:
            floor = np.maximum(floor, np.where(unstable[0], fragile[1], 0.0))
        floor = np.maximum(floor, np.where(unstable[0], unstable[2], 0.0))
        why.append("diverges under implementation-size perturbations")
    where, floor_ok = "", True
    if mask.any():
        block_err = np.asarray(res["block_mean_abs_diff"])
        if fragile is not None and fragile[0].any():
            extra["fragile_floor"] = [float(fragile[1][i]) for i in extra["fragile_blocks"]]
        floor_ok = bool(np.all(block_err[mask] <= max_drift * floor[mask] + slack))
        sizes = np.full(n, res["block_frames"], float)
        sizes[-1] = res["frames"] - res["block_frames"] * (n - 1)
        kept = ~mask  # weighted over the kept blocks only: an inf error in a forgiven block must not make 0 * inf
        stream_err = reset_err = 0.0
        if kept.any():
            w = sizes[kept]
            stream_err = float(np.dot(w, block_err[kept]) / w.sum())
            reset_err = float(np.dot(w, np.asarray(res["block_mean_abs_diff_reset"])[kept]) / w.sum())
        worst = float(np.max(block_err[mask] / np.maximum(floor[mask], 1e-30)))
        where = (f" outside the {int(mask.sum())} of {n} blocks where the float model itself "
                 f"{' or '.join(why)}; in those, at most {max_drift:g} x the mean|diff| that causes "
                 f"(worst {worst:.2f} x)")
    drift = stream_err / reset_err if reset_err > 0 else None
    text = (f"no drift (mean|diff| {stream_err:.3g} <= {max_drift:g} x {reset_err:.3g} from a reset + "
            f"{slack:.2g}{where})")
    passed = stream_err <= max_drift * reset_err + slack and floor_ok
    if task != "forecast":
        text += f", agreement >= {min_stream_agreement:g} over {res['frames']} frames without reset"
        passed = passed and res["agreement"] >= min_stream_agreement
    return {**res, **extra, "drift_ratio": drift, "gate": text, "passed": bool(passed)}


def allowed_count(n: int, rate: float) -> int:
    """How many of n windows a rate lets go wrong: floor(rate * n), but at least one when the rate is not zero -
    a gate cannot ask for a finer rate than one window of the set it judges. One disagreement in 25 windows
    is 0.96 agreement, which a 0.98 limit would read as a failure, while at a true rate of 2% it happens in 40%
    of such sets (ACSF1: every ONNX int8 recipe was rejected that way and the float-weight fallback kept). A
    bad recipe still fails: on two windows, or on the export gate's stress set of hundreds of copies."""
    if n <= 0 or rate <= 0:
        return 0
    return max(1, int(math.floor(rate * n + 1e-9)))


def compare(run: Run, manifest: dict, out: np.ndarray, ref: np.ndarray, ref_metrics: dict, gates: "Gates",
            y: np.ndarray | None = None, lengths: np.ndarray | None = None) -> dict:
    """Parity numbers and gate verdict for one artifact's outputs vs the torch reference (both in the
    model's output units, i.e. de-normalized for forecast), scored against labels y (default: the
    run's test labels)."""
    task = run.task
    if y is None:
        d = run.data()
        y, lengths = d["y_test"], d.get("len_test")
    lengths = np.full(len(y), run.seq_len) if lengths is None else lengths
    if out.shape != ref.shape:
        raise ArtifactError(f"{manifest['artifact']} returned outputs of shape {out.shape}, expected {ref.shape}")
    diff = np.abs(out - ref)
    row = {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }
    metrics = score_outputs(out, y, lengths, task, denormalized=True)
    if task == "forecast":
        row["rmse"] = metrics["rmse"]
        row["rmse_change"] = metrics["rmse"] - ref_metrics["rmse"]
        row["rmse_ratio"] = metrics["rmse"] / ref_metrics["rmse"] if ref_metrics["rmse"] > 0 else None
        row["rms_diff"] = float(np.sqrt(np.mean((out - ref) ** 2)))
        row["agreement"] = None
    else:
        row["accuracy"] = metrics["accuracy"]
        row["accuracy_change"] = metrics["accuracy"] - ref_metrics["accuracy"]
        if task == "tag":
            mask = real_steps(lengths, out.shape[1])
            row["agreement"] = float((out.argmax(-1)[mask] == ref.argmax(-1)[mask]).mean())
        else:
            row["agreement"] = float((out.argmax(-1) == ref.argmax(-1)).mean())
    precision = manifest["precision"]
    if precision == "float":
        limit, row["gate"] = float_limit(ref, gates.float_tol, gates.float_rtol)
        row["passed"] = bool(row["max_abs_diff"] <= limit)
        failed = [] if row["passed"] else [f"max|diff| {row['max_abs_diff']:.3g} > {limit:.3g}"]
    elif task == "forecast":
        ratio, frmse = gates.max_rmse_ratio, ref_metrics["rmse"]
        limit, dev = frmse * ratio, frmse * float(np.sqrt(ratio ** 2 - 1))
        row["gate"] = (f"rmse <= {limit:.4g} ({ratio:g} x float {frmse:.4g}) and rms diff from float <= {dev:.4g} "
                       f"(sqrt({ratio:g}^2 - 1) x float rmse)")
        row["passed"] = bool(row["rmse"] <= limit * (1 + 1e-9) and row["rms_diff"] <= dev * (1 + 1e-9))
        failed = ([f"rmse {row['rmse']:.4g} > {limit:.4g} ({ratio:g} x float {frmse:.4g})"]
                  if row["rmse"] > limit * (1 + 1e-9) else [])
        failed += ([f"rms diff from float {row['rms_diff']:.4g} > {dev:.4g}"] if row["rms_diff"] > dev * (1 + 1e-9)
                   else [])
    else:
        facc = ref_metrics["accuracy"]
        limit = facc * gates.min_accuracy_ratio
        acc_ok, agree_ok = row["accuracy"] >= limit - 1e-12, row["agreement"] >= gates.min_agreement - 1e-12
        row["gate"] = (f"accuracy >= {limit:.4f} ({gates.min_accuracy_ratio:g} x float {facc:.4f})"
                       f" and agreement with float >= {gates.min_agreement:g}")
        if task == "classify":  # windows are independent: a count of them is judged, not a rate
            n = len(y)
            lost, flips = round((facc - row["accuracy"]) * n), round((1 - row["agreement"]) * n)
            may_lose = allowed_count(n, (1 - gates.min_accuracy_ratio) * facc)
            may_flip = allowed_count(n, 1 - gates.min_agreement)
            acc_ok, agree_ok = acc_ok or lost <= may_lose, agree_ok or flips <= may_flip
            row["gate"] += (f" (on these {n} windows: at most {may_lose} lost and {may_flip} disagreeing; one "
                            "window is the finest rate a set can show)")
        row["passed"] = bool(acc_ok and agree_ok)
        counts = task == "classify"
        failed = [] if acc_ok else [f"accuracy {row['accuracy']:.4f} < {limit:.4f} ({gates.min_accuracy_ratio:g} "
                                    f"x float {facc:.4f})" + (f": {lost} of {n} windows lost, at most {may_lose} "
                                                              "allowed" if counts else "")]
        failed += [] if agree_ok else [f"agreement with float {row['agreement']:.4f} < {gates.min_agreement:g}"
                                       + (f": {flips} of {n} windows disagree, at most {may_flip} allowed"
                                          if counts else "")]
    row["failed_rules"] = failed
    return row


@dataclass(frozen=True)
class Gates:
    """The parity gate's thresholds (module docstring); one set, used by `parity` and by export's
    int8 recipe selection (edgernn.export.recipes), so an artifact chosen at export passes the same gate."""
    min_accuracy_ratio: float = 0.99
    min_agreement: float = 0.98
    max_rmse_ratio: float = 1.02
    float_tol: float = 1e-4
    float_rtol: float = 1e-4
    min_stream_agreement: float = 0.95
    stream_frames: int = 20000
    max_stream_drift: float = 2.0
    max_kws_frr_increase: float = 0.02  # audio classifiers: an artifact's keyword false reject rate over float's
    max_kws_fa_increase: float = 1.0  # ... and its false accepts per hour over float's (edgernn.detection_stream)

    def __post_init__(self):
        checks = [("--min-accuracy-ratio", self.min_accuracy_ratio, 0.0 < self.min_accuracy_ratio <= 1.0, "in (0, 1]"),
                  ("--min-agreement", self.min_agreement, 0.0 <= self.min_agreement <= 1.0, "in [0, 1]"),
                  ("--max-rmse-ratio", self.max_rmse_ratio, self.max_rmse_ratio >= 1.0, ">= 1"),
                  ("--float-tol", self.float_tol, self.float_tol >= 0, ">= 0"),
                  ("--float-rtol", self.float_rtol, self.float_rtol >= 0, ">= 0"),
                  ("--min-stream-agreement", self.min_stream_agreement, 0.0 <= self.min_stream_agreement <= 1.0,
                   "in [0, 1]"),
                  ("--stream-frames", self.stream_frames, self.stream_frames >= 1, ">= 1"),
                  ("--max-stream-drift", self.max_stream_drift, self.max_stream_drift >= 1, ">= 1"),
                  ("--max-kws-frr-increase", self.max_kws_frr_increase, 0 <= self.max_kws_frr_increase <= 1,
                   "in [0, 1]"),
                  ("--max-kws-fa-increase", self.max_kws_fa_increase, self.max_kws_fa_increase >= 0, ">= 0")]
        for name, value, ok, want in checks:
            if not ok:
                raise ConfigError(f"{name} must be {want}, got {value}")


def soak_failure(ls: dict, precision: str, gates: "Gates") -> str:
    """Which soak rule a failed long_stream_gate() result broke, with its numbers, in one phrase."""
    if precision == "float":
        return f"soak: {ls['gate']} is broken (max|diff| {ls['max_abs_diff']:.3g})"
    why = []
    if ls.get("agreement") is not None and ls["agreement"] < gates.min_stream_agreement:
        why.append(f"soak agreement {ls['agreement']:.4f} < {gates.min_stream_agreement:g}")
    if ls.get("drift_ratio") is not None and ls["drift_ratio"] > gates.max_stream_drift:
        why.append(f"soak drift {ls['drift_ratio']:.2f} x the error from a reset > {gates.max_stream_drift:g}")
    return "; ".join(why) or f"soak: {ls['gate']}"


def unstable_blocks(stream_ref: StreamReference, gates: "Gates", precision: str) -> tuple:
    """(mask, per-block max, per-block mean |diff|) of the float model's own divergence on the soak stream:
    the blocks where implementation-size copies of it are off by more than the float gate's limit (a float
    artifact is judged at that scale) or, for a quantized one (whose own error is far larger), by more than
    HORIZON_SHARE of the output range - where the model itself is unstable, not merely sensitive."""
    div = stream_ref.divergence(ROUNDING_DRAWS, IMPLEMENTATION_STEP)
    if precision == "float":
        limit, _ = float_limit(stream_ref.ref, gates.float_tol, gates.float_rtol)
    else:
        limit = HORIZON_SHARE * float(stream_ref.ref.max() - stream_ref.ref.min())
    return div["block_max"] > limit, div["block_max"], div["block_mean"]


def gate_artifact(run: Run, path: Path, X: np.ndarray, y: np.ndarray, lengths: np.ndarray, ref: np.ndarray,
                  ref_metrics: dict, gates: Gates, threads: int = 1, outputs: np.ndarray | None = None,
                  stream_ref: StreamReference | None = None, manifest: dict | None = None,
                  stop_at_first_failure: bool = False, session=None) -> dict:
    """One artifact through the parity gate on raw windows X (labels y): its row of numbers and "passed".
    ref / ref_metrics: the float torch outputs on X and their scores. A step artifact also gets the
    soak over gates.stream_frames frames (whole windows of X, cycled; stream_ref = StreamReference(...)
    may be shared between artifacts). `outputs` = precomputed outputs (e.g. from a device): no long stream.
    stop_at_first_failure (export's recipe gate): no soak once the windows have failed; row["not_run"] says so.
    `session`: run the artifact there instead of loading it here (an emulated MCU: edgernn.devices.mcu)."""
    from edgernn.runtimes import load

    manifest = manifest or read_manifest(path)
    run.check_artifact(path, manifest)
    if outputs is not None:
        out, secs, session = np.asarray(outputs, np.float32), 0.0, None
    else:
        session = session if session is not None else load(path, threads=threads)
        out, secs = run_artifact(session, X, manifest["mode"], run.task)
    q = manifest["quantization"]
    row = {"artifact": Path(path).name, "format": manifest["format"], "precision": manifest["precision"],
           "mode": manifest["mode"], "runtime": manifest["runtime"], "size_bytes": manifest["size_bytes"],
           "sha256": manifest["sha256"], "recipe": q.get("recipe"), "compute": q["compute"],
           "compute_label": compute_label(q),
           "int8_ops": q["int8_ops"], "float_ops": q["float_ops"], "integer_only": integer_only(manifest),
           "seconds": round(secs, 3)}
    row.update(compare(run, manifest, out, ref, ref_metrics, gates, y=y, lengths=lengths))
    if manifest["mode"] == "step":
        # step artifacts stream each window frame by frame: their outputs ARE stream-vs-full
        row["stream_vs_full_max_diff"] = row["max_abs_diff"]
        if stop_at_first_failure and not row["passed"]:
            row["not_run"] = "the long stream (the windows already failed)"
        elif session is not None:
            if stream_ref is None:
                stream_ref = stream_reference(run, X, gates)
            ls = long_stream(run, session, X, stream_windows_for(gates.stream_frames, X.shape[1]), stream_ref)
            args = (ls, stream_ref.ref, manifest["precision"], run.task, gates.float_tol, gates.float_rtol,
                    gates.min_stream_agreement, gates.max_stream_drift)
            row["long_stream"] = long_stream_gate(*args)
            if not row["long_stream"]["passed"]:
                # where the float model itself moves - implementation-size perturbations grow (any artifact), or
                # int8-sized weight noise moves it grossly (quantized ones) - the error is held to what that
                # movement is rather than to the float limit or the error from a reset
                fragile = None
                if manifest["precision"] != "float":
                    fragile = stream_ref.fragile_blocks(STRESS_GROSS, FRAGILE_DRAWS, calibration_windows(run))
                unstable = unstable_blocks(stream_ref, gates, manifest["precision"])
                row["long_stream"] = long_stream_gate(*args, fragile=fragile, unstable=unstable)
            row["passed"] = row["passed"] and row["long_stream"]["passed"]
            if not row["long_stream"]["passed"]:
                row["failed_rules"].append(soak_failure(row["long_stream"], manifest["precision"], gates))
    return row


def calibration_split(run) -> tuple[np.ndarray, np.ndarray]:
    """Indices into run.data()["X_calib"]: (calibrate, held out). With fewer than 2 * MIN_HOLDOUT
    windows both are all windows (the manifest then says the gate saw the calibration windows)."""
    n = len(run.data()["X_calib"])
    idx = np.arange(n)
    if n < 2 * MIN_HOLDOUT:
        return idx, idx
    hold = idx[HOLDOUT_EVERY - 1::HOLDOUT_EVERY]
    return np.setdiff1d(idx, hold), hold


def calibration_windows(run) -> np.ndarray:
    """The raw windows int8 calibration may use (held-out windows excluded)."""
    return run.data()["X_calib"][calibration_split(run)[0]]


