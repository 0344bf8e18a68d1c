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


The gate each artifact must pass, and its defaults, are edgernn.gates (shared with export's int8 recipe
selection); the soak is edgernn.soak.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgernn.errors import ArtifactError, ConfigError
from edgernn.gates import Gates, gate_artifact, stream_reference
from edgernn.reference import torch_outputs
from edgernn.rundir import Run, load_run
from edgernn.runtimes.files import atomic_write_json
from edgernn.runtimes.manifest import FORMAT_EXT, read_manifest
from edgernn.train import score_outputs


def find_artifacts(run: Run, artifacts_dir: Path | None = None) -> list[Path]:
    """Every artifact file (by format extension) in RUN/artifacts, each with its manifest. An artifact
    without a manifest is an error, not silently skipped: nothing says what it is or where it came from."""
    d = Path(artifacts_dir) if artifacts_dir else run.artifacts_dir
    if not d.is_dir():
        raise ConfigError(f"no artifacts in {d}; run `edgernn export {run.path}` first")
    exts = {"." + ext for ext in FORMAT_EXT.values()}
    files = sorted(p for p in d.iterdir() if p.suffix in exts and not p.name.startswith(".") and p.is_file())
    orphans = [p.name for p in files if not p.with_name(p.name + ".json").is_file()]
    if orphans:
        raise ArtifactError(f"{d}: {', '.join(orphans)} {'has' if len(orphans) == 1 else 'have'} no manifest "
                            f"(NAME.json beside it): re-export with `edgernn export {run.path}` or remove "
                            f"{'it' if len(orphans) == 1 else 'them'}")
    if not files:
        raise ConfigError(f"no artifacts in {d}; run `edgernn export {run.path}` first")
    return files


def check_parity(run_dir, artifacts: list | None = None, gates: Gates | None = None, threads: int = 1,
                 write: bool = True, progress: bool = False, outputs: dict | None = None,
                 stream_minutes: float = 60.0, session_for=None) -> dict:
    """Parity report for a run's artifacts (written to RUN_DIR/parity.json when write=True), gated by
    `gates` (default Gates()). `outputs` may map artifact name -> precomputed outputs (e.g. pulled back
    from a device; those artifacts get no long-stream check, which needs the runtime here). `session_for`
    (path, manifest) -> session runs each artifact there (an emulated MCU, soak included); the checks that
    only run here (the front end alone, the hour-long keyword stream) are then left out."""
    from edgernn.progress import progressbar

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
                stream_ref = stream_reference(run, X, gates)
            session = session_for(path, manifest) if session_for is not None else None
            row = gate_artifact(run, path, X, d["y_test"], lengths, ref, ref_metrics, gates, threads=threads,
                                outputs=given, stream_ref=stream_ref, manifest=manifest, session=session)
            if session is not None and hasattr(session, "summary"):
                row["device"] = session.summary()
            export_gate_note(row, manifest, len(X))
            rows.append(row)
    detection = frontend = None
    here = session_for is None
    if here and run.config.frontend is not None:  # the front end alone: each artifact's features vs training's
        from edgernn.frontend_parity import FRONTEND_TOL, frontend_rows

        fe_rows = frontend_rows(run, [p for p in paths if outputs is None or p.name not in outputs])
        frontend = {"tolerance": FRONTEND_TOL, "rows": fe_rows,
                    "text": f"features of each artifact's front end vs the training front end (numpy FFT) on "
                            f"{fe_rows[0]['windows'] if fe_rows else 0} test clips, in training standard "
                            f"deviations; gate max|diff| <= {FRONTEND_TOL:g}"}
        by_name = {r["artifact"]: r for r in rows}
        for fr in fe_rows:
            if not fr["passed"] and fr["artifact"] in by_name:
                by_name[fr["artifact"]]["passed"] = False
                by_name[fr["artifact"]].setdefault("failed_rules", []).append(
                    f"front end: max|feature diff| {fr['max_abs_diff']:.3g} > {FRONTEND_TOL:g}")
    if here and run.config.frontend is not None and run.task == "classify":  # keyword spotting on a continuous stream
        from edgernn.detection_stream import detection_report

        steps = [(p, r) for p, r in zip(paths, rows) if r.get("mode") == "step"
                 and (outputs is None or p.name not in outputs)]
        detection = detection_report(run, [p for p, _ in steps], gates, threads=threads, minutes=stream_minutes)
        for (_, r), d in zip(steps, detection["rows"][1:]):
            r["detection"] = {k: d[k] for k in ("frr", "fa_per_hour", "passed", "why")}
            if not d["passed"]:
                r["passed"] = False
                r.setdefault("failed_rules", []).append(f"keyword stream: {d['why']}")
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
    if frontend is not None and frontend["rows"]:
        report["frontend"] = frontend
        report["passed"] = all(r["passed"] for r in rows) and report["passed"]
        report["failed"] = [r["artifact"] for r in rows if not r["passed"]]
    if detection is not None:
        report["detection"] = detection
        report["passed"], report["failed"] = report["passed"] and detection["passed"], \
            [r["artifact"] for r in rows if not r["passed"]]
    if stream_ref is not None:  # the model's own streaming horizon, measured on the soak stream
        report["stream_stability"] = stream_ref.stability
    if run.task != "tag" and (lengths < X.shape[1]).any():
        report["variable_length"] = real_frames_check(run, X, ref)
    if write:
        atomic_write_json(run.path / "parity.json", report)
    return report


def real_frames_check(run, X: np.ndarray, ref: np.ndarray) -> dict:
    """Variable-length test windows: does the float model give a padded window and a stream of its real frames
    from a reset the same answer? With --mask-padding it answers for the real frames by construction (and every
    artifact was held to that above); without it, a device streaming real frames sees another model than the
    padded windows every artifact was checked on, and this says how often the answers differ."""
    import torch

    from edgernn.data.padding import infer_lengths
    from edgernn.models import forward_real

    L = infer_lengths(X, run.pad_value)
    model = run.load_model()
    with torch.no_grad():
        x = torch.from_numpy(run.normalize(X))
        real = forward_real(model, x, L).numpy()
        padded = model(x).numpy()
    agree = float(np.mean(real.argmax(-1) == padded.argmax(-1))) if run.task == "classify" else None
    out = {"masked": run.mask_padding, "median_length": float(np.median(L)), "max_length": int(L.max()),
           "min_length": int(L.min()), "padded_vs_real_frames_agreement": agree,
           "padded_vs_real_frames_max_abs_diff": float(np.abs(real - padded).max())}
    if run.mask_padding:
        out["text"] = (f"real lengths {out['min_length']}-{out['max_length']} (median {out['median_length']:g}); "
                       "trained with --mask-padding: every runtime runs a window's real frames alone, so a padded "
                       "window, its real frames and a stream of them from a reset give one answer (checked above)")
    else:
        out["text"] = (f"real lengths {out['min_length']}-{out['max_length']} (median {out['median_length']:g}); the "
                       f"float model on a padded window vs on its real frames from a reset: agreement "
                       f"{'-' if agree is None else f'{agree:.3f}'}, "
                       f"max|diff| {out['padded_vs_real_frames_max_abs_diff']:.3g}"
                       "; the artifacts above were checked on padded windows - a device streaming real frames "
                       "runs another model: retrain with --mask-padding")
    return out


def export_gate_note(row: dict, manifest: dict, n_test: int) -> None:
    """When export's int8 recipe gate (held-out calibration windows) and this gate (the test windows) disagree
    on an artifact, say so in its row ("export_gate"), with both verdicts: neither is silently contradicted."""
    sel = (manifest.get("quantization") or {}).get("selection") or {}
    g = sel.get("gate") or {}
    if "passed" not in g or bool(g["passed"]) == bool(row["passed"]):
        return
    row["export_gate"] = {"passed": bool(g["passed"]), "windows": g.get("windows"), "verdict": sel.get("verdict")}
    row["export_gate_note"] = (f"export's recipe gate {'passed' if g['passed'] else 'FAILED'} it on "
                               f"{g.get('windows')} held-out calibration windows ({sel.get('verdict')}); here it "
                               f"{'passes' if row['passed'] else 'FAILS'} on the {n_test} test windows")


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
        if not r["passed"] and r.get("failed_rules"):
            lines.append(f"  {r['artifact']} FAILS: {'; '.join(r['failed_rules'])}")
        if r.get("export_gate_note"):
            lines.append(f"  {r['artifact']}: {r['export_gate_note']}")
        if r.get("long_stream"):
            streams.append(r)
    if streams:
        ls0 = streams[0]["long_stream"]
        distinct = min(ls0["windows"], report["n_test"])
        cycled = (f"{ls0['windows']} windows: the {distinct} test windows cycled" if ls0["windows"] > distinct
                  else f"{ls0['windows']} test windows")
        resets = (f"with a reset every {ls0['reset_every']} frames (the model's streaming horizon, below)"
                  if ls0.get("reset_every") else "without reset")
        lines.append(f"soak: {ls0['frames']} frames ({cycled}) {resets} vs the float model; "
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
    st = report.get("stream_stability")
    if st:
        lines.append(f"streaming horizon of the float model: {st['text']}")
    vl = report.get("variable_length")
    if vl:
        lines.append(f"variable length: {vl['text']}")
    fr = report.get("frontend")
    if fr:
        lines.append(f"front end: {fr['text']}: " + ", ".join(
            f"{r['artifact']} {r['max_abs_diff']:.2g}{'' if r['passed'] else ' FAIL'}" for r in fr["rows"]))
    det = report.get("detection")
    if det:
        budget = (det.get("chosen_for") or {}).get("max_fa_per_hour")
        lines.append(f"keyword stream: {det['stream']}; detector thresholds chosen for <= {budget:g} false accepts/h "
                     f"on validation speakers; gate: {det['gate']}")
        lines.append(f"{'':<26} {'runtime':<11} {'FRR':>7} {'FA/h':>7}  {'gate':<4}")
        for r in det["rows"]:
            frr = "-" if r["frr"] is None else f"{r['frr']:.3f}"
            lines.append(f"{r['artifact']:<26} {r['runtime']:<11} {frr:>7} {r['fa_per_hour']:>7.2f}  "
                         f"{'PASS' if r['passed'] else 'FAIL'}" + (f"  {r['why']}" if r["why"] else ""))
    return "\n".join(lines)
