"""
The one gate: what an exported artifact must do to pass, used by `edgernn parity` and by export's int8
recipe selection (edgernn.export.recipes), so an artifact chosen at export passes the gate parity applies.
The CLI's defaults come from Gates.

    gates = Gates()                                              # the thresholds (every CLI default)
    row = gate_artifact(run, path, X, y, lengths, ref, ref_metrics, gates)    # numbers + "passed"
    holdout = Holdout(run, gates); holdout.gate(run, path, "step")  # export time: held-out + stress set

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
                         blocks, where the float model itself with int8-sized weight noise is grossly off
                         (StreamReference.fragile_blocks); there the error is held to max_stream_drift x
                         what that weight noise causes; agreement stays over the whole stream
  stress set (export)    Holdout: besides the gate above on HELD-OUT calibration windows, an int8 candidate
                         must agree with the float model on perturbed copies of the training windows
                         (amplitude x0.25/x0.5/x1.5 around the training mean, noise, a half-window roll),
                         with no gross error (> STRESS_GROSS of the output range) except where the float
                         model itself is that fragile under int8-sized weight noise.
Calibration never sees the held-out windows: run.data()["X_calib"] is split by calibration_split().
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgernn.data import real_steps
from edgernn.errors import ArtifactError, ConfigError
from edgernn.rundir import Run
from edgernn.runtimes.manifest import compute_label, read_manifest
from edgernn.soak import StreamReference, long_stream, stream_windows_for
from edgernn.train import score_outputs

HOLDOUT_EVERY = 4  # every 4th calibration window is held out for the recipe gate

STRESS_AMPLITUDES = (0.25, 0.5, 1.5)  # stress copies of the training windows, scaled around the training mean

STRESS_NOISE = 0.1  # and with gaussian noise of this many training standard deviations

STRESS_BASE = 200  # training windows the stress set perturbs

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

MIN_HOLDOUT = 4  # below 2 * this many calibration windows there is nothing to spare: gate on all of them


def run_artifact(session, X_raw: np.ndarray, mode: str, task: str) -> tuple[np.ndarray, float]:
    """Outputs of one artifact on raw windows: sequence -> predict(batch); step -> stream each window
    frame by frame (reset between windows), keeping the last output (classify/forecast) or all (tag)."""
    t0 = time.perf_counter()
    if mode == "sequence":
        out = np.asarray(session.predict(X_raw), dtype=np.float32)
    else:
        stream = session.stream(warn=False)  # the soak reports saturation (long_stream); no warning here
        outs = []
        for window in X_raw:
            stream.reset()
            frames = [np.asarray(stream.step(frame), dtype=np.float32).reshape(-1) for frame in window]
            outs.append(np.stack(frames) if task == "tag" else frames[-1])
        out = np.stack(outs)
    return out, time.perf_counter() - t0


def float_limit(ref: np.ndarray, float_tol: float, float_rtol: float) -> tuple[float, str]:
    """The float gate for outputs `ref`: (limit, text). atol + rtol x the range of the float outputs."""
    rng = float(np.max(ref) - np.min(ref)) if np.size(ref) else 0.0
    limit = float_tol + float_rtol * rng
    return limit, f"max|diff| <= {limit:.3g} ({float_tol:g} + {float_rtol:g} x output range {rng:.3g})"


def long_stream_gate(res: dict, ref: np.ndarray, precision: str, task: str, float_tol: float,
                     float_rtol: float, min_stream_agreement: float, max_drift: float = 2.0,
                     fragile: tuple | None = None) -> dict:
    """Add "gate" and "passed" to a long_stream() result. Float: the float gate over the whole stream.
    Quantized: no drift - the stream's mean |diff| is at most max_drift x that of the same windows
    streamed from a reset (+ 0.1% of the output range) - and, for classify/tag, top-1 agreement with the
    float stepper >= min_stream_agreement. `fragile` = StreamReference.fragile_blocks(STRESS_GROSS, FRAGILE_DRAWS):
    in those blocks the mean |diff| is held to max_drift x the weight-noise floor instead (+ the same slack), the drift
    is measured over the others; agreement stays over the whole stream."""
    if precision == "float":
        limit, text = float_limit(ref, float_tol, float_rtol)
        return {**res, "gate": text, "passed": bool(res["max_abs_diff"] <= limit)}
    slack = 0.001 * float(np.max(ref) - np.min(ref))
    stream_err, reset_err = res["mean_abs_diff"], res["mean_abs_diff_reset"]
    extra, where, floor_ok = {}, "", True
    if fragile is not None:
        mask, floor = fragile
        extra["fragile_blocks"] = [int(i) for i in np.flatnonzero(mask)]
    if fragile is not None and mask.any():
        n = len(res["block_mean_abs_diff"])
        block_err = np.asarray(res["block_mean_abs_diff"])
        extra["fragile_floor"] = [float(floor[i]) for i in extra["fragile_blocks"]]
        floor_ok = bool(np.all(block_err[mask] <= max_drift * floor[mask] + slack))
        sizes = np.full(n, res["block_frames"], float)
        sizes[-1] = res["frames"] - res["block_frames"] * (n - 1)
        kept = ~mask  # weighted over the kept blocks only: an inf error in a fragile block must not make 0 * inf
        stream_err = reset_err = 0.0
        if kept.any():
            w = sizes[kept]
            stream_err = float(np.dot(w, block_err[kept]) / w.sum())
            reset_err = float(np.dot(w, np.asarray(res["block_mean_abs_diff_reset"])[kept]) / w.sum())
        worst = float(np.max(block_err[mask] / floor[mask]))
        where = (f" outside the {int(mask.sum())} of {n} blocks where the float model itself moves more than "
                 f"{STRESS_GROSS:.0%} of its output range under int8-sized weight noise; in those, at most "
                 f"{max_drift:g} x the mean|diff| that noise causes (worst {worst:.2f} x)")
    drift = stream_err / reset_err if reset_err > 0 else None
    text = (f"no drift (mean|diff| {stream_err:.3g} <= {max_drift:g} x {reset_err:.3g} from a reset + "
            f"{slack:.2g}{where})")
    passed = stream_err <= max_drift * reset_err + slack and floor_ok
    if task != "forecast":
        text += f", agreement >= {min_stream_agreement:g} over {res['frames']} frames without reset"
        passed = passed and res["agreement"] >= min_stream_agreement
    return {**res, **extra, "drift_ratio": drift, "gate": text, "passed": bool(passed)}


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
    elif task == "forecast":
        ratio, frmse = gates.max_rmse_ratio, ref_metrics["rmse"]
        limit, dev = frmse * ratio, frmse * float(np.sqrt(ratio ** 2 - 1))
        row["gate"] = (f"rmse <= {limit:.4g} ({ratio:g} x float {frmse:.4g}) and rms diff from float <= {dev:.4g} "
                       f"(sqrt({ratio:g}^2 - 1) x float rmse)")
        row["passed"] = bool(row["rmse"] <= limit * (1 + 1e-9) and row["rms_diff"] <= dev * (1 + 1e-9))
    else:
        limit = ref_metrics["accuracy"] * gates.min_accuracy_ratio
        row["gate"] = (f"accuracy >= {limit:.4f} ({gates.min_accuracy_ratio:g} x float {ref_metrics['accuracy']:.4f})"
                       f" and agreement with float >= {gates.min_agreement:g}")
        row["passed"] = bool(row["accuracy"] >= limit - 1e-12 and row["agreement"] >= gates.min_agreement - 1e-12)
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

    def __post_init__(self):
        checks = [("--min-accuracy-ratio", self.min_accuracy_ratio, 0.0 < self.min_accuracy_ratio <= 1.0, "in (0, 1]"),
                  ("--min-agreement", self.min_agreement, 0.0 <= self.min_agreement <= 1.0, "in [0, 1]"),
                  ("--max-rmse-ratio", self.max_rmse_ratio, self.max_rmse_ratio >= 1.0, ">= 1"),
                  ("--float-tol", self.float_tol, self.float_tol >= 0, ">= 0"),
                  ("--float-rtol", self.float_rtol, self.float_rtol >= 0, ">= 0"),
                  ("--min-stream-agreement", self.min_stream_agreement, 0.0 <= self.min_stream_agreement <= 1.0,
                   "in [0, 1]"),
                  ("--stream-frames", self.stream_frames, self.stream_frames >= 1, ">= 1"),
                  ("--max-stream-drift", self.max_stream_drift, self.max_stream_drift >= 1, ">= 1")]
        for name, value, ok, want in checks:
            if not ok:
                raise ConfigError(f"{name} must be {want}, got {value}")


def gate_artifact(run: Run, path: Path, X: np.ndarray, y: np.ndarray, lengths: np.ndarray, ref: np.ndarray,
                  ref_metrics: dict, gates: Gates, threads: int = 1, outputs: np.ndarray | None = None,
                  stream_ref: StreamReference | None = None, manifest: dict | None = None) -> dict:
    """One artifact through the parity gate on raw windows X (labels y): its row of numbers and "passed".
    ref / ref_metrics: the float torch outputs on X and their scores. A step artifact also gets the
    soak over gates.stream_frames frames (whole windows of X, cycled; stream_ref = StreamReference(...)
    may be shared between artifacts). `outputs` = precomputed outputs (e.g. from a device): no long stream."""
    from edgernn.runtimes import load

    manifest = manifest or read_manifest(path)
    run.check_artifact(path, manifest)
    if outputs is not None:
        out, secs, session = np.asarray(outputs, np.float32), 0.0, None
    else:
        session = load(path, threads=threads)
        out, secs = run_artifact(session, X, manifest["mode"], run.task)
    q = manifest["quantization"]
    row = {"artifact": Path(path).name, "format": manifest["format"], "precision": manifest["precision"],
           "mode": manifest["mode"], "runtime": manifest["runtime"], "size_bytes": manifest["size_bytes"],
           "sha256": manifest["sha256"], "recipe": q.get("recipe"), "compute": q["compute"],
           "compute_label": compute_label(q),
           "int8_ops": q["int8_ops"], "float_ops": q["float_ops"], "seconds": round(secs, 3)}
    row.update(compare(run, manifest, out, ref, ref_metrics, gates, y=y, lengths=lengths))
    if manifest["mode"] == "step":
        # step artifacts stream each window frame by frame: their outputs ARE stream-vs-full
        row["stream_vs_full_max_diff"] = row["max_abs_diff"]
        if session is not None:
            n_windows = stream_windows_for(gates.stream_frames, X.shape[1])
            if stream_ref is None:
                stream_ref = StreamReference(run, X, n_windows)
            ls = long_stream(run, session, X, n_windows, stream_ref)
            args = (ls, stream_ref.ref, manifest["precision"], run.task, gates.float_tol, gates.float_rtol,
                    gates.min_stream_agreement, gates.max_stream_drift)
            row["long_stream"] = long_stream_gate(*args)
            if not row["long_stream"]["passed"] and manifest["precision"] != "float":
                # where int8-sized weight noise alone moves the float model grossly, the error is held to
                # what that noise causes rather than to the error from a reset
                fragile = stream_ref.fragile_blocks(STRESS_GROSS, FRAGILE_DRAWS)
                row["long_stream"] = long_stream_gate(*args, fragile=fragile)
            row["passed"] = row["passed"] and row["long_stream"]["passed"]
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


class Holdout:
    """Held-out windows with their float references, computed once per export_run."""

    def __init__(self, run, gates):
        from edgernn.reference import torch_outputs

        d = run.data()
        calib, hold = calibration_split(run)
        self.shared = len(calib) == len(hold)
        self.X = d["X_calib"][hold]
        self.y = d["y_calib"][hold]
        self.lengths = d["len_calib"][hold] if "len_calib" in d else np.full(len(hold), run.seq_len)
        self.ref = torch_outputs(run, self.X)
        self.ref_metrics = score_outputs(self.ref, self.y, self.lengths, run.task, denormalized=True)
        self.gates = gates
        self._stream_ref = None
        # the stress set: the saved training windows (up to STRESS_BASE) perturbed the way field data
        # differs from training data (quieter / louder signals, sensor noise, another phase of the pattern):
        # no perturbed copy was seen by calibration. Labels may not survive a perturbation, so an artifact
        # must AGREE with the float model there (top-1, classify/tag). Measured on the demo GRU h32: full-int8
        # step agreed 100% on the 10 held-out windows and on 50 perturbed copies of them, yet lost a test
        # window; on 200 copies of all 40 training windows it agreed 95-97.5% while dynamic agreed 100%.
        if run.task != "forecast":
            pre = run.preprocessing()
            mean, std = (np.asarray(pre[k], np.float32) for k in ("mean", "std"))
            rng = np.random.default_rng(0)
            X = d["X_calib"][:STRESS_BASE].astype(np.float32)
            variants = [mean + (X - mean) * a for a in STRESS_AMPLITUDES]
            variants.append(X + STRESS_NOISE * std * rng.standard_normal(X.shape).astype(np.float32))
            variants.append(np.roll(X, X.shape[1] // 2, axis=1))
            self.X_stress = np.concatenate(variants).astype(np.float32)
            self.ref_stress = torch_outputs(run, self.X_stress)
            self.stress_limit = STRESS_GROSS * float(self.ref_stress.max() - self.ref_stress.min())
            self.fragile = fragile_copies(run, self.X_stress, self.ref_stress, self.stress_limit)

    def stream_ref(self, run):
        if self._stream_ref is None:
            n = stream_windows_for(self.gates.stream_frames, self.X.shape[1])
            self._stream_ref = StreamReference(run, self.X, n)
        return self._stream_ref

    def gate(self, run, path: Path, mode: str) -> dict:
        row = gate_artifact(run, path, self.X, self.y, self.lengths, self.ref, self.ref_metrics, self.gates,
                            stream_ref=self.stream_ref(run) if mode == "step" else None)
        out = {"windows": int(len(self.X)), "held_out": not self.shared, "passed": row["passed"],
               "gate": row["gate"], "max_abs_diff": row["max_abs_diff"]}
        for key in ("accuracy", "rmse", "agreement"):
            if row.get(key) is not None:
                out[key] = row[key]
        if row.get("long_stream"):
            ls = row["long_stream"]
            out["long_stream"] = {k: ls[k] for k in ("passed", "gate", "agreement", "drift_ratio",
                                                           "fragile_blocks") if k in ls}
        if run.task != "forecast":
            from edgernn.runtimes import load

            got, _ = run_artifact(load(path), self.X_stress, mode, run.task)
            agree = float(np.mean(got.argmax(-1) == self.ref_stress.argmax(-1)))
            need = self.gates.min_accuracy_ratio
            err = np.abs(got - self.ref_stress).reshape(len(got), -1).max(-1)
            over = err > self.stress_limit
            gross = int(np.sum(over & ~self.fragile))
            out["stress"] = {"windows": int(len(self.X_stress)), "agreement": agree,
                             "max_abs_diff": float(err.max()), "gross_errors": gross,
                             "fragile_copies": int(self.fragile.sum()),
                             "gross_on_fragile": int(np.sum(over & self.fragile)),
                             "gate": f"agreement with float >= {need:g} and no output off by more than "
                                     f"{STRESS_GROSS:.0%} of the float output range ({self.stress_limit:.3g}) on "
                                     f"{len(self.X_stress)} perturbed copies (amplitude "
                                     f"x{', x'.join(f'{a:g}' for a in STRESS_AMPLITUDES)}, noise "
                                     f"{STRESS_NOISE:g} std, half-window roll), except the "
                                     f"{int(self.fragile.sum())} where the float model itself moves that much "
                                     "under int8-sized weight noise",
                             "passed": agree >= need - 1e-12 and gross == 0}
            out["passed"] = out["passed"] and out["stress"]["passed"]
        return out


def fragile_copies(run, X: np.ndarray, ref: np.ndarray, limit: float, draws: int | None = None) -> np.ndarray:
    """[N] bool: windows where some float model with int8-sized weight noise (see FRAGILE_DRAWS) is off
    from `ref` by more than `limit`. Seeded: the same run gives the same mask."""
    from edgernn.reference import torch_outputs, weight_noise_models

    fragile = np.zeros(len(X), bool)
    for model in weight_noise_models(run, FRAGILE_DRAWS if draws is None else draws):
        out = torch_outputs(run, X, model=model)
        fragile |= np.abs(out - ref).reshape(len(X), -1).max(-1) > limit
    return fragile


def verdict(g: dict) -> str:
    parts = []
    if "accuracy" in g:
        parts.append(f"accuracy {g['accuracy']:.3f}")
    if "rmse" in g:
        parts.append(f"rmse {g['rmse']:.4g}")
    parts.append(f"gate {g['gate']}")
    ls = g.get("long_stream")
    if ls and not ls["passed"]:
        parts.append(f"long stream failed ({ls['gate']})")
    st = g.get("stress")
    if st:
        parts.append(f"stress agreement {st['agreement']:.3f}, {st['gross_errors']} gross errors on {st['windows']} "
                     "perturbed copies"
                     + (f" ({st['gross_on_fragile']} more where the float model is fragile)"
                        if st.get("gross_on_fragile") else "")
                     + ("" if st["passed"] else f" (FAILED: {st['gate']}, max|diff| {st['max_abs_diff']:.3g})"))
    return f"{'passed' if g['passed'] else 'failed'} on {g['windows']} held-out windows: " + ", ".join(parts)
