"""
Parity: run every exported artifact with its real runtime on the held-out test set, from RAW inputs
(the runtime applies the manifest's normalization), and compare with the float PyTorch model.

    report = check_parity("runs/gru")              # all artifacts in runs/gru/artifacts
    report["artifacts"][0]["accuracy"], report["passed"]

Per artifact: accuracy (or RMSE for forecasting), change vs the float torch model, top-1 agreement,
max / mean |output difference| (int8 outputs dequantized), and for streaming (step) artifacts the
max difference between frame-by-frame outputs and the torch full-sequence output, plus a LONG-STREAM
(soak) check: test windows back to back as one stream of stream_frames frames (default 20,000) with no
reset, compared frame by frame with the float torch model, error reported per block of ~1,000 frames
so drift is visible (a device streams for hours; an int8 state that leaves its calibrated range shows
up only there).

Gates (an artifact fails when):
  float artifacts        max |diff| > float_tol + float_rtol * (range of the float outputs)
                         (like numpy's allclose atol + rtol: float32 rounding grows with the outputs and
                         with T; defaults 1e-4 + 1e-4 x range, still ~100x below a wrong weight)
  int8 / dynamic         classify/tag: accuracy < min_accuracy_ratio * float accuracy (default 0.99) or
                         top-1 agreement with the float model < min_agreement (default 0.98: a gate on
                         accuracy alone is one-sided - an artifact of ANOTHER model can score as well);
                         forecasting: RMSE > max_rmse_ratio * float RMSE (default 1.02) or the RMS
                         difference from the float forecasts > sqrt(max_rmse_ratio^2 - 1) * float RMSE
                         (the deviation that, independent of the float error, would use up the ratio)
  long stream (step)     float: the float gate over the whole stream; quantized: the error drifts (the
                         stream's mean |diff| > max_stream_drift (default 2) x that of the same windows
                         streamed from a reset, + 0.1% of the output range) or (classify/tag) top-1
                         agreement with the float stepper < min_stream_agreement (default 0.95). When
                         that fails, the drift is measured again without the FRAGILE blocks, where
                         the float model itself with int8-sized weight noise is grossly off
                         (StreamReference.fragile_blocks); there the error is held to max_stream_drift
                         x what that weight noise causes; agreement stays over the whole stream
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .data import real_steps
from .errors import ArtifactError, ConfigError
from .export import FORMATS
from .reference import torch_outputs, torch_stream_outputs
from .rundir import Run, load_run
from .runtimes.files import atomic_write_json
from .runtimes.manifest import compute_label, read_manifest
from .train import score_outputs


def find_artifacts(run: Run, artifacts_dir: Path | None = None) -> list[Path]:
    """Every artifact file (by format extension) in RUN/artifacts, each with its manifest. An artifact
    without a manifest is an error, not silently skipped: nothing says what it is or where it came from."""
    d = Path(artifacts_dir) if artifacts_dir else run.artifacts_dir
    if not d.is_dir():
        raise ConfigError(f"no artifacts in {d}; run `edgernn export {run.path}` first")
    exts = {"." + f.ext for f in FORMATS.values()}
    files = sorted(p for p in d.iterdir() if p.suffix in exts and not p.name.startswith(".") and p.is_file())
    orphans = [p.name for p in files if not p.with_name(p.name + ".json").is_file()]
    if orphans:
        raise ArtifactError(f"{d}: {', '.join(orphans)} {'has' if len(orphans) == 1 else 'have'} no manifest "
                            f"(NAME.json beside it): re-export with `edgernn export {run.path}` or remove "
                            f"{'it' if len(orphans) == 1 else 'them'}")
    if not files:
        raise ConfigError(f"no artifacts in {d}; run `edgernn export {run.path}` first")
    return files


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


BLOCK_FRAMES = 1000  # the soak reports its error per block of about this many frames (whole windows)


def stream_windows_for(frames: int, T: int) -> int:
    """How many test windows of T frames make a stream of at least `frames` frames."""
    return max(1, -(-int(frames) // int(T)))


def long_stream(run: Run, session, X_raw: np.ndarray, n_windows: int, refs: "StreamReference | None" = None) -> dict:
    """Stream n_windows consecutive test windows (cycled if the test set is smaller) through a step
    artifact as ONE stream, no reset, and compare every frame's output with the float torch model.
    The same windows are also streamed one at a time from a reset, so each block has an error with the
    carried-in state and one without: their ratio is the drift, free of how hard the windows themselves
    are. Blocks are whole windows, about BLOCK_FRAMES frames each. `refs` = StreamReference(...) may be
    passed to avoid recomputing. Also returns the runtime's saturation count (Stream.saturation)."""
    refs = refs if refs is not None else StreamReference(run, X_raw, n_windows)
    frames, ref, ref_reset = refs.frames, refs.ref, refs.ref_reset
    T = X_raw.shape[1]
    stream = session.stream(warn=False)  # saturation is counted and shown in the table, not warned
    out = np.stack([np.asarray(stream.step(f), dtype=np.float32).reshape(-1) for f in frames])
    saturation = stream.saturation
    out_reset = []
    for b in range(0, len(frames), T):
        stream.reset()
        out_reset += [np.asarray(stream.step(f), dtype=np.float32).reshape(-1) for f in frames[b:b + T]]
    out_reset = np.stack(out_reset)
    diff, diff_reset = np.abs(out - ref), np.abs(out_reset - ref_reset)
    size, blocks = block_frames(T), soak_blocks(len(frames), T)
    res = {"windows": int(n_windows), "frames": int(len(frames)), "block_frames": int(size),
           "block_max_abs_diff": [float(diff[b].max()) for b in blocks],
           "block_mean_abs_diff": [float(diff[b].mean()) for b in blocks],
           "block_mean_abs_diff_reset": [float(diff_reset[b].mean()) for b in blocks],
           "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
           "mean_abs_diff_reset": float(diff_reset.mean()), "saturation": saturation}
    if run.task != "forecast":
        agree = out.argmax(-1) == ref.argmax(-1)
        res["block_agreement"] = [float(agree[b].mean()) for b in blocks]
        res["agreement"] = float(agree.mean())
    return res


def block_frames(T: int) -> int:
    """Frames per soak block: whole windows of T frames, about BLOCK_FRAMES."""
    return T * max(1, round(BLOCK_FRAMES / T))


def soak_blocks(n_frames: int, T: int) -> list[slice]:
    """The soak's blocks of block_frames(T) frames over a stream of n_frames (the last may be shorter)."""
    size = block_frames(T)
    return [slice(b, b + size) for b in range(0, n_frames, size)]


class StreamReference:
    """The float side of the soak, computed once per run and shared by its step artifacts: the raw
    frames [n*T, C] of n_windows test windows (cycled), the float outputs of them as ONE stream, and the
    float outputs window by window from a zero state, in the model's output units. fragile_blocks() is
    computed on demand."""

    def __init__(self, run: Run, X_raw: np.ndarray, n_windows: int):
        idx = np.arange(n_windows) % len(X_raw)
        self.run, self.T = run, X_raw.shape[1]
        self.frames = np.concatenate([X_raw[i] for i in idx]).astype(np.float32)
        self.ref = torch_stream_outputs(run, self.frames)
        self.ref_reset = np.concatenate([torch_stream_outputs(run, X_raw[i]) for i in idx])
        self._fragile = None

    def fragile_blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """([blocks] bool, [blocks] float): the soak blocks where the float model ITSELF is off by more than
        STRESS_GROSS of the stream's output range once int8-sized noise is put on its weights (FRAGILE_DRAWS
        seeded copies, as the recipe gate's stress set), and per block the largest mean |diff| those copies
        reach - the weight-noise floor. Measured on japanese-vowels LSTM h64: the stream runs into one stretch
        (blocks 8 and 19 of 21, the same windows) where weight noise alone moves the logits by up to 7.2 (range
        14) and by 0.20 on average (0.006-0.05 elsewhere): every int8 weight store drifts there."""
        if self._fragile is None:
            from .export.recipes import FRAGILE_DRAWS, STRESS_GROSS
            from .reference import weight_noise_models

            blocks = soak_blocks(len(self.frames), self.T)
            limit = STRESS_GROSS * float(self.ref.max() - self.ref.min())
            fragile, floor = np.zeros(len(blocks), bool), np.zeros(len(blocks))
            for model in weight_noise_models(self.run, FRAGILE_DRAWS):
                diff = np.abs(torch_stream_outputs(self.run, self.frames, model=model) - self.ref)
                fragile |= np.array([diff[b].max() > limit for b in blocks])
                floor = np.maximum(floor, [diff[b].mean() for b in blocks])
            self._fragile = fragile, floor
        return self._fragile


def long_stream_gate(res: dict, ref: np.ndarray, precision: str, task: str, float_tol: float,
                     float_rtol: float, min_stream_agreement: float, max_drift: float = 2.0,
                     fragile: tuple | None = None) -> dict:
    """Add "gate" and "passed" to a long_stream() result. Float: the float gate over the whole stream.
    Quantized: no drift - the stream's mean |diff| is at most max_drift x that of the same windows
    streamed from a reset (+ 0.1% of the output range) - and, for classify/tag, top-1 agreement with the
    float stepper >= min_stream_agreement. `fragile` = StreamReference.fragile_blocks(): in those blocks
    the mean |diff| is held to max_drift x the weight-noise floor instead (+ the same slack), the drift
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
        from .export.recipes import STRESS_GROSS

        n = len(res["block_mean_abs_diff"])
        block_err = np.asarray(res["block_mean_abs_diff"])
        extra["fragile_floor"] = [float(floor[i]) for i in extra["fragile_blocks"]]
        floor_ok = bool(np.all(block_err[mask] <= max_drift * floor[mask] + slack))
        sizes = np.full(n, res["block_frames"], float)
        sizes[-1] = res["frames"] - res["block_frames"] * (n - 1)
        keep = sizes * ~mask
        stream_err = reset_err = 0.0
        if keep.sum() > 0:
            stream_err = float(np.dot(keep, block_err) / keep.sum())
            reset_err = float(np.dot(keep, res["block_mean_abs_diff_reset"]) / keep.sum())
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
    from .runtimes import load

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
                row["long_stream"] = long_stream_gate(*args, fragile=stream_ref.fragile_blocks())
            row["passed"] = row["passed"] and row["long_stream"]["passed"]
    return row


def check_parity(run_dir, artifacts: list | None = None, gates: Gates | None = None, threads: int = 1,
                 write: bool = True, progress: bool = False, outputs: dict | None = None) -> dict:
    """Parity report for a run's artifacts (written to RUN_DIR/parity.json when write=True), gated by
    `gates` (default Gates()). `outputs` may map artifact name -> precomputed outputs (e.g. pulled back
    from a device; those artifacts get no long-stream check, which needs the runtime here)."""
    from .progress import progressbar

    gates = gates or Gates()
    run = load_run(run_dir)
    paths = [Path(p) for p in artifacts] if artifacts else find_artifacts(run)
    d = run.data()
    X = d["X_test"]
    lengths = d.get("len_test", np.full(len(X), run.seq_len))
    ref = torch_outputs(run, X)
    ref_metrics = score_outputs(ref, d["y_test"], lengths, run.task, denormalized=True)
    rows = []
    stream_ref = None  # float outputs of the long stream, computed once for every step artifact
    with progressbar(paths, label=f"parity {run.path.name}", enabled=progress,
                     show=lambda p: p.name if p else "") as bar:
        for path in bar:
            manifest = read_manifest(path)
            given = None if outputs is None else outputs.get(path.name)
            if manifest["mode"] == "step" and given is None and stream_ref is None:
                stream_ref = StreamReference(run, X, stream_windows_for(gates.stream_frames, X.shape[1]))
            row = gate_artifact(run, path, X, d["y_test"], lengths, ref, ref_metrics, gates, threads=threads,
                                outputs=given, stream_ref=stream_ref, manifest=manifest)
            rows.append(row)
    report = {
        "run": str(run.path),
        "model": run.identity,
        "task": run.task,
        "n_test": int(len(X)),
        "reference": {"runtime": "torch float", **ref_metrics},
        "gates": asdict(gates),
        "artifacts": rows,
        "passed": all(r["passed"] for r in rows),
        "failed": [r["artifact"] for r in rows if not r["passed"]],
    }
    if write:
        atomic_write_json(run.path / "parity.json", report)
    return report


def format_table(report: dict) -> str:
    """A fixed-width table for people."""
    task = report["task"]
    ref = report["reference"]
    metric = "rmse" if task == "forecast" else "accuracy"
    lines = [f"parity on {report['n_test']} held-out windows; torch float {metric} {ref[metric]:.4f}",
             f"{'artifact':<26} {'runtime':<11} {metric:>8} {'change':>8} {'agree':>6} {'max|diff|':>10} "
             f"{'mean|diff|':>10} {'KB':>7}  {'gate':<4}"]
    streams = []
    for r in report["artifacts"]:
        change = r.get(f"{metric}_change")
        agree = "-" if r.get("agreement") is None else f"{r['agreement']:.3f}"
        lines.append(
            f"{r['artifact']:<26} {r['runtime']:<11} {r[metric]:>8.4f} {change:>+8.4f} {agree:>6} "
            f"{r['max_abs_diff']:>10.2e} {r['mean_abs_diff']:>10.2e} {r['size_bytes'] / 1024:>7.1f}  "
            f"{'PASS' if r['passed'] else 'FAIL'}")
        if r.get("long_stream"):
            streams.append(r)
    if streams:
        ls0 = streams[0]["long_stream"]
        lines.append(f"soak: {ls0['frames']} frames ({ls0['windows']} test windows) without reset vs the float model; "
                     f"max|diff| per {ls0['block_frames']} frames (first .. last), agreement, saturated frames "
                     "(quantized input/state at its range end)")
        for r in streams:
            ls = r["long_stream"]
            blocks = ls["block_max_abs_diff"]
            picked = blocks if len(blocks) <= 10 else blocks[:5] + [None] + blocks[-5:]
            shown = " ".join("..." if v is None else f"{v:.2g}" for v in picked)
            agree = "-" if ls.get("agreement") is None else f"{ls['agreement']:.3f}"
            sat = ls.get("saturation") or {}
            sat_text = "/".join("-" if sat.get(k) is None else str(sat[k]) for k in ("input", "state"))
            lines.append(f"{r['artifact']:<26} {shown:<64} {agree:>6} {sat_text:>9}  "
                         f"{'PASS' if ls['passed'] else 'FAIL'}")
    return "\n".join(lines)
