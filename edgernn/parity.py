"""
Parity: run every exported artifact with its real runtime on the held-out test set, from RAW inputs
(the runtime applies the manifest's normalization), and compare with the float PyTorch model.

    report = check_parity("runs/gru")              # all artifacts in runs/gru/artifacts
    report["artifacts"][0]["accuracy"], report["passed"]

Per artifact: accuracy (or RMSE for forecasting), change vs the float torch model, top-1 agreement,
max / mean |output difference| (int8 outputs dequantized), and for streaming (step) artifacts the
max difference between frame-by-frame outputs and the torch full-sequence output.

Gates (an artifact fails when):
  float artifacts        max |diff| > float_tol (default 1e-4)
  int8 / dynamic         accuracy < min_accuracy_ratio * float accuracy (default 0.99);
                         forecasting: RMSE > float RMSE / min_accuracy_ratio
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .errors import ArtifactError, ConfigError
from .export import FORMATS
from .reference import torch_outputs
from .rundir import Run, load_run
from .runtimes.files import atomic_write_json
from .runtimes.manifest import compute_label, read_manifest
from .train import score_outputs


def find_artifacts(run: Run, artifacts_dir: Path | None = None) -> list[Path]:
    d = Path(artifacts_dir) if artifacts_dir else run.artifacts_dir
    if not d.is_dir():
        raise ConfigError(f"no artifacts in {d}; run `edgernn export {run.path}` first")
    exts = {f.ext for f in FORMATS.values()}
    paths = sorted(p.with_name(p.name[: -len(".json")]) for p in d.glob("*.json")
                   if p.name.rsplit(".", 2)[-2] in exts)
    if not paths:
        raise ConfigError(f"no artifacts in {d}; run `edgernn export {run.path}` first")
    return paths


def _denorm(run: Run, out: np.ndarray) -> np.ndarray:
    pre = run.preprocessing().get("output")
    if not pre:
        return out
    return out * np.asarray(pre["std"], np.float32) + np.asarray(pre["mean"], np.float32)


def run_artifact(session, X_raw: np.ndarray, mode: str, task: str) -> tuple[np.ndarray, float]:
    """Outputs of one artifact on raw windows: sequence -> predict(batch); step -> stream each window
    frame by frame (reset between windows), keeping the last output (classify/forecast) or all (tag)."""
    t0 = time.perf_counter()
    if mode == "sequence":
        out = np.asarray(session.predict(X_raw), dtype=np.float32)
    else:
        stream = session.stream()
        outs = []
        for window in X_raw:
            stream.reset()
            frames = [np.asarray(stream.step(frame), dtype=np.float32).reshape(-1) for frame in window]
            outs.append(np.stack(frames) if task == "tag" else frames[-1])
        out = np.stack(outs)
    return out, time.perf_counter() - t0


def compare(run: Run, manifest: dict, out: np.ndarray, ref: np.ndarray, ref_metrics: dict,
            float_tol: float, min_ratio: float) -> dict:
    """Parity numbers and gate verdict for one artifact's outputs vs the torch reference (both in the
    model's output units, i.e. de-normalized for forecast)."""
    task = run.task
    d = run.data()
    y, lengths = d["y_test"], d.get("len_test", np.full(len(d["y_test"]), run.seq_len))
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
        row["agreement"] = None
    else:
        row["accuracy"] = metrics["accuracy"]
        row["accuracy_change"] = metrics["accuracy"] - ref_metrics["accuracy"]
        if task == "tag":
            T = out.shape[1]
            mask = np.arange(T)[None, :] >= (T - lengths)[:, None]
            row["agreement"] = float((out.argmax(-1)[mask] == ref.argmax(-1)[mask]).mean())
        else:
            row["agreement"] = float((out.argmax(-1) == ref.argmax(-1)).mean())
    precision = manifest["precision"]
    if precision == "float":
        row["gate"] = f"max|diff| <= {float_tol:g}"
        row["passed"] = bool(row["max_abs_diff"] <= float_tol)
    elif task == "forecast":
        limit = ref_metrics["rmse"] / min_ratio
        row["gate"] = f"rmse <= {limit:.4g} (float {ref_metrics['rmse']:.4g} / {min_ratio:g})"
        row["passed"] = bool(row["rmse"] <= limit)
    else:
        limit = ref_metrics["accuracy"] * min_ratio
        row["gate"] = f"accuracy >= {limit:.4f} ({min_ratio:g} x float {ref_metrics['accuracy']:.4f})"
        row["passed"] = bool(row["accuracy"] >= limit - 1e-12)
    return row


def check_parity(run_dir, artifacts: list | None = None, min_accuracy_ratio: float = 0.99,
                 float_tol: float = 1e-4, threads: int = 1, write: bool = True, progress: bool = False,
                 outputs: dict | None = None) -> dict:
    """Parity report for a run's artifacts (written to RUN_DIR/parity.json when write=True).
    `outputs` may map artifact name -> precomputed outputs (e.g. pulled back from a device)."""
    from .progress import progressbar
    from .runtimes import load

    if not 0.0 < min_accuracy_ratio <= 1.0:
        raise ConfigError(f"--min-accuracy-ratio must be in (0, 1], got {min_accuracy_ratio}")
    run = load_run(run_dir)
    paths = [Path(p) for p in artifacts] if artifacts else find_artifacts(run)
    d = run.data()
    X = d["X_test"]
    ref = _denorm(run, torch_outputs(run, X))
    ref_metrics = score_outputs(ref, d["y_test"], d.get("len_test", np.full(len(X), run.seq_len)), run.task,
                                denormalized=True)
    rows = []
    with progressbar(paths, label=f"parity {run.path.name}", enabled=progress,
                     show=lambda p: p.name if p else "") as bar:
        for path in bar:
            manifest = read_manifest(path)
            if outputs is not None and path.name in outputs:
                out, secs = np.asarray(outputs[path.name], np.float32), 0.0
            else:
                session = load(path, threads=threads)
                out, secs = run_artifact(session, X, manifest["mode"], run.task)
            row = {"artifact": path.name, "format": manifest["format"], "precision": manifest["precision"],
                   "mode": manifest["mode"], "runtime": manifest["runtime"],
                   "size_bytes": manifest["size_bytes"],
                   "compute": manifest["quantization"]["compute"],
                   "compute_label": compute_label(manifest["quantization"]),
                   "int8_ops": manifest["quantization"]["int8_ops"],
                   "float_ops": manifest["quantization"]["float_ops"],
                   "seconds": round(secs, 3)}
            row.update(compare(run, manifest, out, ref, ref_metrics, float_tol, min_accuracy_ratio))
            if manifest["mode"] == "step":
                # streaming vs full-sequence: the same numbers, named for what they mean
                row["stream_vs_full_max_diff"] = row["max_abs_diff"]
            rows.append(row)
    report = {
        "run": str(run.path),
        "task": run.task,
        "n_test": int(len(X)),
        "reference": {"runtime": "torch float", **ref_metrics},
        "gates": {"float_tol": float_tol, "min_accuracy_ratio": min_accuracy_ratio},
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
    for r in report["artifacts"]:
        change = r.get(f"{metric}_change")
        agree = "-" if r.get("agreement") is None else f"{r['agreement']:.3f}"
        lines.append(
            f"{r['artifact']:<26} {r['runtime']:<11} {r[metric]:>8.4f} {change:>+8.4f} {agree:>6} "
            f"{r['max_abs_diff']:>10.2e} {r['mean_abs_diff']:>10.2e} {r['size_bytes'] / 1024:>7.1f}  "
            f"{'PASS' if r['passed'] else 'FAIL'}")
    return "\n".join(lines)
