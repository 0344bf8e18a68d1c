"""
TFLite (LiteRT) export: float, full-integer int8 and dynamic-range, full-sequence or streaming (step).

    from edgernn.rundir import load_run
    from edgernn.export.tflite import export_tflite
    path = export_tflite(load_run("runs/gru"), Path("runs/gru/artifacts"), precision="int8", mode="step")
    # -> runs/gru/artifacts/step-int8.tflite + step-int8.tflite.json (docs/manifest.md)

Route (measured, see TOOLCHAIN.md): the torch model is rebuilt in legacy Keras with the same weights
(edgernn/export/keras_build.py) and converted with tf.lite.TFLiteConverter.from_keras_model, in a
subprocess (edgernn/export/_tflite_worker.py) so that a converter segfault becomes an ExportError.
  - LSTM, sequence: one fused UNIDIRECTIONAL_SEQUENCE_LSTM per layer/direction. The op keeps its state in
    variable tensors, so the manifest says "stateful_interpreter": true (reset_all_variables() before
    each window). The time axis is left dynamic when a run at other lengths matches torch.
  - GRU / RNN, sequence: unrolled over run.seq_len steps (a WHILE loop segfaults in int8 conversion), so
    the artifact has a fixed length.
  - step: one frame + explicit per-layer states (h0.., c0.. for LSTM) -> output + next states, built
    from one-step unrolled layers: plain ops, no variables, quantizes fully to int8.
int8 is calibrated on normalized training windows (run.data()["X_calib"], up to 200); step artifacts on
(frame, state) pairs taken from the torch model running over those windows.
Every artifact is run by the LiteRT interpreter before it is kept: float must match torch within 1e-4.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ExportError
from .manifest import write_manifest

PRECISIONS = ("float", "int8", "dynamic")
MODES = ("sequence", "step")
INT8_IO = ("int8", "float")
FLOAT_TOL = 1e-4
MAX_CALIB = 200  # calibration windows (sequence) / (frame, state) pairs = 2x this (step)
N_CHECK = 64  # normalized calibration windows run through every artifact before it is kept (8 missed
# a fused-LSTM kernel deviation of 1.3e-4 that X_test then showed)
_NOISE = ("W0000", "I0000", "WARNING: All log messages", "INFO: Created TensorFlow Lite", "warnings.warn(",
          "Statistics for quantized inputs were expected", "fully_quantize:")


def export_tflite(run, out_dir: Path, precision: str = "float", mode: str = "sequence",
                  int8_io: str = "int8", timeout: float = 600) -> Path:
    """Write out_dir/f"{mode}-{precision}.tflite" + manifest; return the artifact path.
    precision: "float" | "int8" (full-integer, calibrated on run.normalize(run.data()["X_calib"]))
             | "dynamic" (dynamic-range: int8 weights, float activations).
    mode: "sequence" | "step". int8_io: "int8" (int8 input/output tensors) | "float" (float I/O around
    int8 internals) - only meaningful for precision int8."""
    _validate_args(run, precision, mode, int8_io)
    _check_dependencies()
    out_dir = _prepare_out_dir(Path(out_dir))
    cfg = run.config
    what = f"{cfg.cell} {precision} {mode}"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgernn-tflite-") as tmp:
        tmp = Path(tmp)
        spec = _write_spec(run, tmp, precision, mode, int8_io)
        report = _convert(spec, tmp, precision, mode, cfg.cell, what, started + timeout)
        _gate(report, precision, mode, what)
        artifact = out_dir / f"{mode}-{precision}.tflite"
        fields = _manifest_fields(run, report, precision, mode, int8_io, time.perf_counter() - started)
        _install(tmp / "model.tflite", artifact, fields)
    return artifact


def _convert(spec: dict, tmp: Path, precision: str, mode: str, cell: str, what: str, deadline: float) -> dict:
    """Run the worker, with the LSTM fallbacks: a sequence LSTM is first converted to the fused op with a
    dynamic time axis, kept only if other lengths match torch (else fixed to run.seq_len). The worker
    removes the converter's hard-coded cell_clip=10 from float fused LSTMs (it cost up to 1.1 on the
    logits of trained models); should a float fused LSTM still miss the 1e-4 gate, the LSTM is unrolled
    into plain ops instead (exact, fixed length, larger file) and the manifest says why."""
    if not (mode == "sequence" and cell == "lstm"):
        return _run_worker(spec, tmp, {}, what, deadline)
    first = _run_worker(spec, tmp, dict(dynamic_time=True), what, deadline)
    fused_diff = first["check"]["nominal"]["max_abs_diff"]
    if precision == "float" and fused_diff > FLOAT_TOL:
        report = _run_worker(spec, tmp, dict(unroll_lstm=True), what, deadline)
        report["fallback"] = (f"the fused UNIDIRECTIONAL_SEQUENCE_LSTM float kernel differed from torch by "
                              f"{fused_diff:.3g} (> {FLOAT_TOL:g}), so the LSTM is unrolled over {spec['seq_len']} "
                              "steps into plain ops (exact, but a fixed length and a larger file)")
        report["rejected_attempt"] = {"graph": "fused LSTM, dynamic time axis", **first["check"]}
        return report
    if _dynamic_time_verified(first, precision):
        return first
    report = _run_worker(spec, tmp, dict(dynamic_time=False), what, deadline)
    report["rejected_attempt"] = {"graph": "fused LSTM, dynamic time axis", **first["check"]}
    return report


# ---------------------------------------------------------------- arguments, paths

def _validate_args(run, precision: str, mode: str, int8_io: str) -> None:
    for value, valid, what in ((precision, PRECISIONS, "precision"), (mode, MODES, "mode"),
                               (int8_io, INT8_IO, "int8 I/O")):
        if value not in valid:
            raise ConfigError(f"unknown TFLite {what} {value!r}; choose from: {', '.join(valid)}")
    if mode == "step" and run.config.bidirectional:
        from ..models import StepModel

        StepModel(run.load_model())  # raises the shared ConfigError message for bidirectional models


def _check_dependencies() -> None:
    """The converter needs tensorflow + tf_keras (legacy Keras) and the checks need a LiteRT interpreter;
    look for them without importing TensorFlow into the caller."""
    import importlib.util

    from ..errors import MissingDependencyError, require

    require("torch", "train")
    missing = [m for m in ("tensorflow", "tf_keras") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"TFLite export needs {' and '.join(missing)} (the converter; tf_keras is legacy Keras 2, required "
            "because Keras 3 breaks int8 LSTM conversion); install them with: pip install 'edgernn[tflite]'")


def _prepare_out_dir(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ExportError(f"cannot write TFLite artifacts to {out_dir}: {exc.strerror or exc}; "
                          "choose a writable directory with --out") from None
    return out_dir


def _install(src: Path, artifact: Path, fields: dict) -> None:
    """Copy the checked artifact into place atomically, then write its manifest; on any failure
    neither a partial artifact nor a stale manifest is left behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{artifact.name}.", suffix=".tmp", dir=artifact.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(src.read_bytes())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an artifact is meant to be copied and shared
        os.replace(tmp, artifact)
        write_manifest(artifact, fields)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        artifact.unlink(missing_ok=True)
        raise ExportError(f"could not write {artifact} or its manifest: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- inputs for the worker

def _write_spec(run, tmp: Path, precision: str, mode: str, int8_io: str) -> dict:
    import torch  # presence checked by _check_dependencies

    model = run.load_model()
    np.savez(tmp / "weights.npz", **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    X = run.normalize(run.data()["X_calib"])
    if len(X) == 0:
        raise ExportError(f"{run.path}/data.npz has no X_calib windows to calibrate and check the export; "
                          "re-run `edgernn train`")
    calib, check = X[:MAX_CALIB], X[:N_CHECK]
    data = {"check_x": check}
    with torch.no_grad():
        if mode == "sequence":
            data["check_ref"] = model(torch.from_numpy(check)).numpy()
            data["calib_x"] = calib
            if run.config.cell == "lstm":  # references at other lengths, to verify a dynamic time axis
                t = X.shape[1]
                for x in (check[:, t // 2:], np.concatenate([check, check[::-1]], axis=1)):
                    data[f"check_x_T{x.shape[1]}"] = np.ascontiguousarray(x)
                    data[f"check_ref_T{x.shape[1]}"] = model(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        else:
            data["check_ref_frames"] = _prefix_outputs(model, check, run.task)
            data["calib_x"], data["calib_states"] = _step_calibration(model, calib, 2 * MAX_CALIB)
    np.savez(tmp / "data.npz", **data)
    return {"cfg": run.config.to_dict(), "mode": mode, "precision": precision, "int8_io": int8_io,
            "seq_len": run.seq_len, "weights": str(tmp / "weights.npz"), "data": str(tmp / "data.npz"),
            "out": str(tmp / "model.tflite"), "report": str(tmp / "report.json")}


def _prefix_outputs(model, X: np.ndarray, task: str) -> np.ndarray:
    """Torch full-sequence output at every frame: [N, T, K]. For tag the full run already is per
    frame; otherwise frame t's reference is model(x[:, :t+1]) - what a stream must reproduce."""
    import torch

    x = torch.from_numpy(X)
    if task == "tag":
        return model(x).numpy()
    return np.stack([model(x[:, : t + 1]).numpy() for t in range(X.shape[1])], axis=1)


def _step_calibration(model, X: np.ndarray, n: int):
    """(frame, states) pairs from the torch stepper over windows X, so state ranges are calibrated
    too: returns frames [n, C] and states [n, S, H] in keras_build.state_names order."""
    import torch

    from ..models import StepModel

    step = StepModel(model)
    cfg = model.cfg
    frames, states = [], []
    with torch.no_grad():
        h = torch.zeros(model.state_shape(batch=len(X)))
        c = torch.zeros_like(h) if cfg.cell == "lstm" else None
        for t in range(X.shape[1]):
            frames.append(X[:, t])
            states.append(torch.cat([h, c]) if c is not None else h.clone())  # [S, N, H]
            res = step(torch.from_numpy(X[:, t]), h, c) if c is not None else step(torch.from_numpy(X[:, t]), h)
            h = res[1]
            c = res[2] if c is not None else None
    frames = np.concatenate(frames)  # [T*N, C], time-major
    states = np.concatenate([s.permute(1, 0, 2).numpy() for s in states])  # [T*N, S, H]
    idx = np.random.default_rng(0).permutation(len(frames))[:n]
    return frames[idx].astype(np.float32), states[idx].astype(np.float32)


# ---------------------------------------------------------------- worker process

def _run_worker(spec: dict, tmp: Path, extra: dict, what: str, deadline: float) -> dict:
    """Run one conversion in a fresh interpreter process; returns its report or raises ExportError."""
    timeout = deadline - time.perf_counter()
    spec = {**spec, **extra}
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec))
    Path(spec["report"]).unlink(missing_ok=True)
    Path(spec["out"]).unlink(missing_ok=True)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if timeout <= 0:
        raise ExportError(f"TFLite export of {what} ran out of its time budget before converting; "
                          "retry with a larger timeout")
    try:
        proc = subprocess.run([sys.executable, "-m", "edgernn.export._tflite_worker", str(spec_path)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=str(tmp))
    except subprocess.TimeoutExpired:
        raise ExportError(f"TFLite conversion of {what} did not finish within its time budget ({timeout:.0f} s "
                          "left) and was stopped; retry with a larger timeout or a smaller model") from None
    tail = _tail(proc.stderr)
    if proc.returncode < 0:
        sig = -proc.returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown"
        raise ExportError(
            f"TFLite converter crashed (signal {sig} {name}) converting {what}; nothing was written. "
            f"{_crash_hint(spec)}" + (f" Last converter output: {tail}" if tail else ""))
    try:
        report = json.loads(Path(spec["report"]).read_text())
    except (OSError, json.JSONDecodeError):
        raise ExportError(f"TFLite worker for {what} exited with code {proc.returncode} without a report"
                          + (f"; last output: {tail}" if tail else "")) from None
    if not report.get("ok"):
        raise ExportError(f"TFLite conversion of {what} failed: {report.get('error', 'unknown error')}"
                          + (f" (converter output: {tail})" if tail else ""))
    return report


def _tail(stderr: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in (stderr or "").splitlines()
             if ln.strip() and not any(n in ln for n in _NOISE)]
    return " | ".join(lines[-n:])[:800]


def _crash_hint(spec: dict) -> str:
    cfg = spec["cfg"]
    if spec["precision"] == "int8":
        return (f"Full-int8 conversion of this {cfg['cell']} graph is what crashed; try --precision dynamic or "
                "float, or the onnx format.")
    return "Try another precision or the onnx format, and report the versions in the manifest."


# ---------------------------------------------------------------- verdict and manifest

def _dynamic_time_verified(report: dict, precision: str) -> bool:
    """A dynamic time axis is kept only if every other length ran and matched torch about as well as
    the nominal length did. Float: within 10 * FLOAT_TOL, since torch float32 itself drifts from float64
    by up to ~3e-5 on 80-step windows (measured). Quantized: max diff within 3x (+1e-3) of the nominal
    length's and top-1 agreement at most 0.05 lower. int8 is calibrated on run.seq_len windows; at 2x
    that length the error measured 12x larger on the h16 test fixture (fixed) but 3x on an h64 model."""
    chk = report["check"]
    nominal = chk["nominal"]
    others = [v for k, v in chk.items() if k != "nominal"]
    if not others or any("error" in v for v in others):
        return False
    for v in others:
        if precision == "float":
            if v["max_abs_diff"] > 10 * FLOAT_TOL or v.get("top1_agreement", 1.0) < 1.0:
                return False
        elif v["max_abs_diff"] > 3 * nominal["max_abs_diff"] + 1e-3 or \
                v.get("top1_agreement", 1.0) < nominal.get("top1_agreement", 1.0) - 0.05:
            return False
    return any(e["role"] == "x" and e["shape"][1] is None for e in report["inputs"])


def _gate(report: dict, precision: str, mode: str, what: str) -> None:
    chk = report["check"]["frames" if mode == "step" else "nominal"]
    if precision == "float" and not chk["max_abs_diff"] <= FLOAT_TOL:
        where = "frame-by-frame stream vs torch full-sequence outputs" if mode == "step" else "outputs vs torch"
        raise ExportError(
            f"TFLite {what} does not match PyTorch: max |diff| {chk['max_abs_diff']:.3g} > {FLOAT_TOL:g} "
            f"({where}, {report['check_windows']} normalized calibration windows); nothing was written. "
            "This is an exporter bug: report it with the run's config.json")


def _quantization(report: dict, precision: str, int8_io: str, cell: str) -> dict:
    ops = report["ops"]
    integer, hybrid, flt = ops["integer"], ops["hybrid"], ops["float"]
    if precision == "float":
        return {"scheme": "none", "int8_ops": [], "float_ops": ops["all"], "fully_int8": False,
                "note": "float32 weights and activations"}
    if precision == "int8":
        fully = not flt and not hybrid and not ops["weight_dequantize"]
        note = (f"full-integer post-training quantization calibrated on training windows; "
                f"{'int8' if int8_io == 'int8' else 'float32'} input/output tensors")
        if ops["boundary"]:
            note += f" ({' and '.join(ops['boundary'])} at the graph boundary convert them; listed in neither op list)"
        if "UNIDIRECTIONAL_SEQUENCE_LSTM" in integer:
            note += "; the fused LSTM keeps its cell state in int16"
        if ops.get("shape"):
            note += (f"; {', '.join(ops['shape'])} only do int32 shape arithmetic for the dynamic length and "
                     "are listed in neither op list")
        note += "; verified by inspecting every op's tensor dtypes" if fully else \
            f"; NOT fully int8: {', '.join(flt + hybrid)} still compute in float"
        return {"scheme": f"full-integer int8 ({int8_io} I/O)", "int8_ops": integer, "float_ops": flt,
                "fully_int8": fully, "note": note}
    # dynamic range
    if hybrid:
        note = (f"int8 weights; {', '.join(hybrid)} quantize activations on the fly and multiply in int8 "
                "(hybrid kernels); other ops and all activations are float")
    elif ops["weight_dequantize"]:
        note = (f"weight-only: {ops['weight_dequantize']} weight tensors are stored int8 and dequantized to "
                f"float (DEQUANTIZE ops) before the float kernels run; compute is float")
    else:
        note = ("nothing was quantized: the converter quantizes only weight tensors with >= 1024 elements and "
                "this model has none (hidden too small); the file is the float model")
    return {"scheme": "dynamic-range", "int8_ops": hybrid, "float_ops": flt, "fully_int8": False, "note": note,
            "weight_only_dequantize_ops": ops["weight_dequantize"]}


def _manifest_fields(run, report: dict, precision: str, mode: str, int8_io: str, seconds: float) -> dict:
    cfg = run.config
    x = next(e for e in report["inputs"] if e["role"] == "x")
    seq_len = None if mode == "step" else x["shape"][1]
    fields = {
        "format": "tflite",
        "runtime": "litert",
        "precision": precision,
        "mode": mode,
        "task": run.task,
        "model": cfg.to_dict(),
        "quantization": _quantization(report, precision, int8_io if precision == "int8" else "float", cfg.cell),
        "inputs": report["inputs"],
        "outputs": report["outputs"],
        "sequence_length": seq_len,
        "preprocessing": run.preprocessing(),
        "labels": list(run.labels),
        "source": {"run": Path(run.path).name},
        "stateful_interpreter": report["ops"]["variables"] > 0,
        "export_check": _check_summary(report, mode),
        "graph": _graph(report),
        "convert_seconds": round(seconds, 2),
    }
    if mode == "sequence":
        fields["sequence_length_note"] = _length_note(cfg, seq_len, report)
    if mode == "step":
        fields["state_layout"] = _state_layout(cfg, report)
    return fields


def _graph(report: dict) -> dict:
    g = {"ops": report["ops"]["op_count"], "op_types": report["ops"]["all"],
         "variable_tensors": report["ops"]["variables"]}
    if report.get("cell_clip_removed"):
        g["note"] = (f"cell_clip {report['cell_clip_removed'][0]:g} that the converter sets on the fused LSTM "
                     f"was removed ({len(report['cell_clip_removed'])} ops): torch has no clipping")
    return g


def _check_summary(report: dict, mode: str) -> dict:
    chk = report["check"]
    key = "frames" if mode == "step" else "nominal"
    out = {"windows": report["check_windows"], "reference": "float PyTorch on normalized calibration windows",
           **chk[key]}
    if mode == "step":
        out["reference"] += " (each frame vs the full-sequence output on the prefix)"
    others = {k: v for k, v in chk.items() if k not in ("nominal", "frames")}
    if others:
        out["other_lengths"] = others
    if report.get("rejected_attempt"):
        out["rejected_attempt"] = report["rejected_attempt"]
    return out


def _length_note(cfg, seq_len, report: dict) -> str:
    if seq_len is None:
        lengths = ", ".join(k[1:] for k in report["check"] if k.startswith("T"))
        return (f"time axis is dynamic: verified against torch at T={lengths} besides the training length; "
                "resize the input (resize_tensor_input) to the window length")
    if report.get("fallback"):
        return f"fixed at {seq_len}: {report['fallback']}"
    if cfg.cell == "lstm":
        return f"fixed at {seq_len}: the dynamic-length graph did not verify at other lengths"
    return (f"fixed at {seq_len}: the {cfg.cell.upper()} is unrolled over {seq_len} steps (its WHILE-loop form "
            "crashes the int8 converter); left-pad shorter windows")


def _state_layout(cfg, report: dict) -> str:
    L = cfg.layers
    parts = [f"h{i}" for i in range(L)] + ([f"c{i}" for i in range(L)] if cfg.cell == "lstm" else [])
    q = any(e["quant"] for e in report["inputs"] if e["role"] == "state")
    text = (f"inputs: x [1, {cfg.input_size}] (one normalized frame) and states {', '.join(parts)}: "
            f"h<l> = hidden state of layer l" + (", c<l> = LSTM cell state of layer l" if cfg.cell == "lstm" else "")
            + f", each [1, {cfg.hidden}] (signature_key gives the name). Start every stream from zeros; after "
            "each step feed every state output into the input named by its 'next'.")
    if q:
        text += (" States are int8: the zero state is the input's zero_point, and an output's scale/zero_point "
                 "differ from its 'next' input's, so requantize: q_in = round((q_out - zp_out) * s_out / s_in) "
                 "+ zp_in (clip to int8).")
    return text
