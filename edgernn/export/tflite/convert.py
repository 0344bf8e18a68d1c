"""
TFLite (LiteRT) export: float, full-integer int8 and dynamic-range, full-sequence or streaming (step).

    from edgernn.rundir import load_run
    from edgernn.export.tflite.convert import export_tflite
    path = export_tflite(load_run("runs/gru"), Path("runs/gru/artifacts"), "int8", "step", ExportOptions())
    # -> runs/gru/artifacts/step-int8.tflite + step-int8.tflite.json (docs/manifest.md)

Route (measured, see TOOLCHAIN.md): the torch model is rebuilt in legacy Keras with the same weights
(edgernn/export/keras_build.py) and converted with tf.lite.TFLiteConverter.from_keras_model, in a
subprocess (edgernn/export/tflite/worker.py) so that a converter segfault becomes an ExportError.
  - LSTM, sequence: one fused UNIDIRECTIONAL_SEQUENCE_LSTM per layer/direction. The op keeps its state in
    variable tensors, so the manifest says "stateful_interpreter": true (reset_all_variables() before
    each window). The time axis is left dynamic when a run at other lengths matches torch.
  - GRU / RNN, sequence, float and dynamic range: unrolled over run.seq_len steps (fastest; fixed length)
    up to UNROLL_MAX_STEPS, Keras' WHILE loop beyond (constant size, any T).
  - GRU / RNN, sequence, full int8 and int16x8: a hand-written WHILE loop (edgernn/export/tf_loop.py) that
    the int8 calibrator does not crash on: constant size, any T.
  - step: one frame + explicit per-layer states (h0.., c0.. for LSTM) -> output + next states, built
    from one-step unrolled layers: plain ops, no variables, quantizes fully to int8 or 16x8 (each state
    input then shares the scale of the state output feeding it). Exception: the full-int8 LSTM step is the
    fused LSTM streamed one frame per invoke (stateful_step below).
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

from edgernn.errors import ConfigError, ExportError
from edgernn.export.formats import INT8_IO, ExportOptions, check_combination, check_prerequisites
from edgernn.export.manifest import base_fields, publish
from edgernn.interrupts import die_with_parent

FLOAT_TOL = 1e-4
# float and dynamic-range GRU/RNN sequence graphs are unrolled (fast, but ~2.7 KB per step at h32, and the
# converter's time and memory grow with T: 11.6 min and 7.3 GB at T=1344). Beyond this many steps they use
# the WHILE loop instead (constant size, any T; measured 25 KB vs 268 KB at T=100 for GRU h32, ~5 us per
# step slower). Integer GRU/RNN sequences are always the loop of tf_loop.py (an unrolled int8 GRU h32 was
# ~8 KB per step: 803 KB at T=100).
UNROLL_MAX_STEPS = 128
MAX_CALIB = 200  # calibration windows (sequence) / (frame, state) pairs = 2x this (step)
N_CHECK = 64  # normalized calibration windows run through every artifact before it is kept (8 missed
# a fused-LSTM kernel deviation of 1.3e-4 that X_test then showed)
_NOISE = ("W0000", "I0000", "WARNING: All log messages", "INFO: Created TensorFlow Lite", "warnings.warn(",
          "Statistics for quantized inputs were expected", "fully_quantize:", "tf.lite.Interpreter is deprecated",
          "TF 2.20. Please use the LiteRT", "migration guide", "for details.")


def export_tflite(run, out_dir: Path, precision: str = "float", mode: str = "sequence",
                  options: ExportOptions | None = None, timeout: float = 600) -> Path:
    """Write out_dir/f"{mode}-{precision}.tflite" + manifest; return the artifact path.
    precision: "float" | "int8" (full-integer, calibrated on run.normalize(run.data()["X_calib"]))
             | "dynamic" (dynamic-range: int8 weights, float activations).
    mode: "sequence" | "step". int8_io: "int8" (int8 input/output tensors) | "float" (float I/O around
    int8 internals) - only meaningful for precision int8."""
    options = options or ExportOptions()
    int8_io = options.int8_io
    _validate_args(run, precision, mode, int8_io)
    kind = _kind(precision, options.recipe)
    check_prerequisites(["tflite"])
    out_dir = _prepare_out_dir(Path(out_dir))
    cfg = run.config
    what = f"{cfg.cell} {precision}{f' ({options.recipe})' if options.recipe else ''} {mode}"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgernn-tflite-") as tmp:
        tmp = Path(tmp)
        # int8, whichever recipe builds it, is for small files: a GRU/RNN sequence is a loop at any T
        compact = precision == "int8"
        spec = _write_spec(run, tmp, kind, mode, int8_io, compact)
        report = _convert(spec, tmp, kind, mode, cfg.cell, what, started + timeout)
        _gate(report, kind, mode, what)
        artifact = out_dir / f"{mode}-{precision}.tflite"
        fields = _manifest_fields(run, report, kind, mode, int8_io, time.perf_counter() - started)
        fields["precision"] = precision
        return publish(tmp / "model.tflite", artifact, fields)


# how each int8 recipe (edgernn.export.recipes) is built: the converter setting ("kind") it maps to
_RECIPE_KIND = {"full-int8": "int8", "int16x8": "int16x8", "dynamic": "dynamic"}


def _kind(precision: str, recipe: str | None) -> str:
    """The converter setting for a precision and recipe: float | int8 (full integer) | int16x8 | dynamic."""
    if precision != "int8":
        if recipe:
            raise ConfigError(f"--recipe {recipe} applies to --precision int8 only")
        return precision
    if recipe is None:
        return "int8"
    if recipe not in _RECIPE_KIND:
        raise ConfigError(f"the TFLite int8 recipes are {', '.join(_RECIPE_KIND)}, not {recipe!r}")
    return _RECIPE_KIND[recipe]


def _convert(spec: dict, tmp: Path, precision: str, mode: str, cell: str, what: str, deadline: float) -> dict:
    """Run the worker, with the LSTM fallbacks: a sequence LSTM is first converted to the fused op with a
    dynamic time axis, kept only if other lengths match torch (else fixed to run.seq_len). The worker
    removes the converter's hard-coded cell_clip=10 from float fused LSTMs (it cost up to 1.1 on the
    logits of trained models); should a float fused LSTM still miss the 1e-4 gate, the LSTM is unrolled
    into plain ops instead (exact, fixed length, larger file) and the manifest says why."""
    if mode == "sequence" and cell != "lstm" and spec["compact"]:
        return _compact_loop(spec, tmp, precision, what, deadline)
    if mode == "sequence" and cell != "lstm" and spec["seq_len"] > UNROLL_MAX_STEPS:
        report = _run_worker(spec, tmp, dict(dynamic_time=True, loop=True), what, deadline)
        # the loop has no per-length calibration (float, or int8 weights only): float must match at every
        # length; dynamic range must keep its top-1 agreement there (its max |diff| grows with T, as torch's)
        nominal = report["check"]["nominal"].get("top1_agreement", 1.0)
        others = [v for k, v in report["check"].items() if k != "nominal"]
        ok = _dynamic_time_verified(report, precision) if precision == "float" else bool(others) and all(
            "error" not in v and v.get("top1_agreement", 1.0) >= nominal - 0.05 for v in others)
        if not ok:
            raise ExportError(f"the WHILE-loop {cell.upper()} ({what}) did not match torch at other lengths "
                              f"({report['check']}); nothing was written")
        report["loop"] = True
        return report
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


def _compact_loop(spec: dict, tmp: Path, precision: str, what: str, deadline: float) -> dict:
    """An int8 GRU/RNN sequence (any recipe): the WHILE loop of tf_loop.py. Its time axis stays dynamic when other
    lengths agree with torch about as well as the calibrated length does, else it is fixed at run.seq_len
    (still the loop: the same constant size)."""
    report = _run_worker(spec, tmp, dict(dynamic_time=True, int_loop=True), what, deadline)
    if not _dynamic_time_verified(report, precision):
        fixed = _run_worker(spec, tmp, dict(dynamic_time=False, int_loop=True), what, deadline)
        fixed["rejected_attempt"] = {"graph": "WHILE loop, dynamic time axis", **report["check"]}
        report = fixed
    report["loop"] = report["compact"] = True
    return report


# ---------------------------------------------------------------- arguments, paths

def _validate_args(run, precision: str, mode: str, int8_io: str) -> None:
    check_combination("tflite", precision, mode)
    if int8_io not in INT8_IO:
        raise ConfigError(f"unknown TFLite int8 I/O {int8_io!r}; choose from: {', '.join(INT8_IO)}")
    if mode == "step" and run.config.bidirectional:
        from edgernn.models import StepModel

        StepModel(run.load_model())  # raises the shared ConfigError message for bidirectional models


def _prepare_out_dir(out_dir: Path) -> Path:
    from edgernn.runtimes.files import writable_dir_problem

    problem = writable_dir_problem(out_dir)
    if problem:
        raise ExportError(f"cannot write TFLite artifacts to {out_dir}: {problem}; "
                          "choose a writable directory with --out")
    return out_dir


def stateful_step(cfg, precision: str, mode: str) -> bool:
    """int8 LSTM streaming uses TFLite's own integer LSTM kernel with its state in variable tensors
    (int8 hidden state, int16 cell state, no requantization between frames). Measured on the demo LSTM
    h32: over 20 windows streamed without reset it agreed 99.9% with float (max |diff| 0.56); the
    explicit int8 state I/O it replaces requantized h and c to 8 bits every frame and lost 20 points
    of accuracy (max |diff| 6.7). int16x8 cannot quantize the fused op, so its LSTM step is the explicit cell
    graph with int16 h and c I/O (jv h64: passed the gate and the 20,000-frame soak where the fused full-int8
    step lost the stress set and the dynamic-range one drifted)."""
    return mode == "step" and precision == "int8" and cfg.cell == "lstm" and not cfg.bidirectional


def _write_spec(run, tmp: Path, precision: str, mode: str, int8_io: str, compact: bool) -> dict:
    import torch  # presence checked by _check_dependencies

    model = run.load_model()
    np.savez(tmp / "weights.npz", **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    from edgernn.gates import calibration_windows

    X = run.normalize(calibration_windows(run))  # held-out windows are left for the recipe gate
    if len(X) == 0:
        raise ExportError(f"{run.path}/data.npz has no X_calib windows to calibrate and check the export; "
                          "re-run `edgernn train`")
    calib, check = X[:MAX_CALIB], X[:N_CHECK]
    data = {"check_x": check}
    with torch.no_grad():
        if stateful_step(run.config, precision, mode):
            data["check_ref_frames"] = _prefix_outputs(model, check, run.task)
            data["calib_x"] = calib
        elif mode == "sequence":
            data["check_ref"] = model(torch.from_numpy(check)).numpy()
            data["calib_x"] = calib
            if run.config.cell == "lstm" or run.seq_len > UNROLL_MAX_STEPS or compact:
                # references at other lengths, to verify a dynamic time axis (fused LSTM, or a WHILE loop)
                t = X.shape[1]
                for x in (check[:, t // 2:], np.concatenate([check, check[::-1]], axis=1)):
                    data[f"check_x_T{x.shape[1]}"] = np.ascontiguousarray(x)
                    data[f"check_ref_T{x.shape[1]}"] = model(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        else:
            data["check_ref_frames"] = _prefix_outputs(model, check, run.task)
            data["calib_x"], data["calib_states"] = _step_calibration(model, calib, 2 * MAX_CALIB)
    np.savez(tmp / "data.npz", **data)
    stateful = stateful_step(run.config, precision, mode)
    return {"cfg": run.config.to_dict(), "mode": mode, "precision": precision, "int8_io": int8_io,
            "stateful_step": stateful, "dynamic_time": stateful, "compact": compact,
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

    from edgernn.models import StepModel

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
    root = str(Path(__file__).resolve().parents[3])  # the directory that holds edgernn/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if timeout <= 0:
        raise ExportError(f"TFLite export of {what} ran out of its time budget before converting; "
                          "retry with a larger timeout")
    try:
        proc = subprocess.run([sys.executable, "-m", "edgernn.export.tflite.worker", str(spec_path)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=str(tmp),
                              preexec_fn=die_with_parent)
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
            f"{_crash_hint(spec)}" + (f" Last converter output: {tail}" if tail else ""),
            detail="TFLite worker stderr (tail):\n" + (proc.stderr or "")[-4000:])
    try:
        report = json.loads(Path(spec["report"]).read_text())
    except (OSError, json.JSONDecodeError):
        raise ExportError(f"TFLite worker for {what} exited with code {proc.returncode} without a report"
                          + (f"; last output: {tail}" if tail else "")) from None
    if not report.get("ok"):
        raise ExportError(f"TFLite conversion of {what} failed: {report.get('error', 'unknown error')}"
                          + (f" (converter output: {tail})" if tail else ""),
                          detail="TFLite worker traceback (tail):\n" + report.get("traceback", "(none saved)"))
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


_KIND_LABEL = {"integer": "full-int8", "hybrid": "dynamic-int8", "weights": "weights-int8", "float": "float"}


def _family_compute(matmuls: list) -> str:
    """The label of a family of matrix-product ops (from the worker's inspect_ops): the kind that holds
    most of the family's weights, since that is where the multiply-accumulates are."""
    if not matmuls:
        return "float"
    share: dict = {}
    for m in matmuls:
        share[m["kind"]] = share.get(m["kind"], 0) + max(1, m["weights"])
    return _KIND_LABEL.get(max(share, key=share.get), "float")


def _quantization(report: dict, precision: str, int8_io: str, cell: str) -> dict:
    ops = report["ops"]
    integer, hybrid, flt = ops["integer"], ops["hybrid"], ops["float"]
    if precision == "float":
        return {"recipe": "none", "compute": {"recurrent": "float", "head": "float"}, "int8_ops": [],
                "float_ops": ops["all"], "note": "float32 weights and activations"}
    # the head is the last matrix product of the main graph in execution order; everything else is the
    # recurrence (the fused LSTM op, an unrolled GRU's input and recurrent FULLY_CONNECTEDs, or the
    # products inside a WHILE-loop body)
    mm = ops["matmuls"]
    main = [i for i, m in enumerate(mm) if m.get("subgraph", 0) == 0]
    head = main[-1:] if main else []
    compute = {"recurrent": _family_compute([m for i, m in enumerate(mm) if i not in head]),
               "head": _family_compute([mm[i] for i in head])}
    fully = not flt and not hybrid and not ops["weight_dequantize"]
    if precision in ("int8", "int16x8") and not fully:  # never call a graph with float kernels full-int8
        compute = {k: ("dynamic-int8" if hybrid else "float") if v == "full-int8" else v for k, v in compute.items()}
    if precision == "int16x8":
        compute = {k: "int16x8" if v == "full-int8" else v for k, v in compute.items()}
    if precision in ("int8", "int16x8"):
        if precision == "int16x8":
            note = ("16x8 post-training quantization (int16 activations, int8 weights) calibrated on training "
                    "windows; float32 input/output tensors")
        else:
            note = (f"full-integer post-training quantization calibrated on training windows; "
                    f"{'int8' if int8_io == 'int8' else 'float32'} input/output tensors")
        if ops["boundary"]:
            note += f" ({' and '.join(ops['boundary'])} at the graph boundary convert them; listed in neither op list)"
        if "UNIDIRECTIONAL_SEQUENCE_LSTM" in integer:
            note += "; the fused LSTM keeps its cell state in int16"
            if report["ops"]["variables"] and not any(e["role"] == "state" for e in report["inputs"]) \
                    and report.get("mode") == "step":
                hq = "int16" if precision == "int16x8" else "int8"
                note += (f" and, streamed one frame per invoke, carries h ({hq}) and c (int16) in its variable "
                         "tensors from frame to frame with no requantization")
        state = ops.get("loop_state") or []
        if state:
            exact = all(v == "exact" for v in state)
            note += ("; the WHILE loop (GRU/RNN, any T) computes in int8 and hands its state and inputs from one "
                     "step to the next as float: DEQUANTIZE then QUANTIZE with " +
                     ("the same scale and zero point, an exact round trip (no requantization)" if exact else
                      "DIFFERENT scales: the state is requantized every step"))
        state_io = [e for e in report.get("state_io") or [] if e["round_trip"] != "float"]
        if state_io:
            exact = all(e["round_trip"] == "exact" for e in state_io)
            note += ("; each state output and the state input it feeds share one scale and zero point "
                     f"({state_io[0]['dtype']}), so a stream hands the state on with no requantization" if exact else
                     "; state outputs and inputs have DIFFERENT scales: a stream requantizes the state every frame")
        if ops.get("shape"):
            note += (f"; {', '.join(ops['shape'])} only do int32 index arithmetic (lengths, loop counters) "
                     "and are listed in neither op list")
        note += "; verified by inspecting every op's tensor dtypes" if fully else \
            f"; NOT fully int8: {', '.join(flt + hybrid)} still compute in float"
        q = {"recipe": "int16x8" if precision == "int16x8" else "full-int8", "compute": compute,
             "int8_ops": integer, "float_ops": flt, "note": note}
        if state_io:
            q["state_round_trip"] = "exact" if exact else "requantized"
        return q
    # dynamic range
    if hybrid:
        note = (f"int8 weights; {', '.join(hybrid)} quantize activations on the fly and multiply in int8 "
                "(hybrid kernels, dynamic-int8); other ops and all activations are float")
    else:
        note = ""
    if ops["weight_dequantize"]:
        note += ("; " if note else "") + (
            f"weights-int8: {ops['weight_dequantize']} weight tensors are stored int8 and dequantized to float "
            "(DEQUANTIZE ops) before float kernels run")
    if not note:
        note = ("nothing was quantized: the converter quantizes only weight tensors with >= 1024 elements and "
                "this model has none (hidden too small); the file is the float model")
    return {"recipe": "dynamic", "compute": compute, "int8_ops": hybrid, "float_ops": flt,
            "note": note, "weight_only_dequantize_ops": ops["weight_dequantize"]}


def _manifest_fields(run, report: dict, precision: str, mode: str, int8_io: str, seconds: float) -> dict:
    cfg = run.config
    x = next(e for e in report["inputs"] if e["role"] == "x")
    seq_len = None if mode == "step" else x["shape"][1]
    if mode == "step" and len(x["shape"]) == 3:  # stateful step: one frame per invoke, as [1, 1, C]
        x["shape"] = [1, 1, cfg.input_size]
    fields = base_fields(run, "tflite", precision, mode)
    fields.update({
        "quantization": _quantization(report, precision, int8_io if precision == "int8" else "float", cfg.cell),
        "inputs": report["inputs"],
        "outputs": report["outputs"],
        "sequence_length": seq_len,
        "stateful_interpreter": report["ops"]["variables"] > 0,
        "state_variables": report["ops"].get("variable_names", []),
        "export_check": _check_summary(report, mode),
        "graph": _graph(report),
        "convert_seconds": round(seconds, 2),
    })
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
    if report.get("loop") and seq_len is None:
        why = ("an int8 GRU/RNN is always the loop" if report.get("compact") else
               f"windows over {UNROLL_MAX_STEPS} steps are not unrolled")
        return (f"time axis is dynamic: the {cfg.cell.upper()} runs as a WHILE loop ({why}: constant file size, any "
                f"T); verified against torch at T={', '.join(k[1:] for k in report['check'] if k.startswith('T'))} "
                "besides the training length; resize the input (resize_tensor_input) to the window length")
    if seq_len is None:
        lengths = ", ".join(k[1:] for k in report["check"] if k.startswith("T"))
        return (f"time axis is dynamic: verified against torch at T={lengths} besides the training length; "
                "resize the input (resize_tensor_input) to the window length")
    if report.get("fallback"):
        return f"fixed at {seq_len}: {report['fallback']}"
    if report.get("loop"):
        return (f"fixed at {seq_len}: the {cfg.cell.upper()} runs as a WHILE loop (constant file size), but at other "
                "lengths it did not agree with torch as well as at the calibrated one; left-pad shorter windows")
    if cfg.cell == "lstm":
        return f"fixed at {seq_len}: the dynamic-length graph did not verify at other lengths"
    return (f"fixed at {seq_len}: the {cfg.cell.upper()} is unrolled over {seq_len} steps (the fastest form on a CPU; "
            f"windows over {UNROLL_MAX_STEPS} steps use a WHILE loop); left-pad shorter windows")


def _state_layout(cfg, report: dict) -> str:
    if not any(e["role"] == "state" for e in report["inputs"]):
        return (f"no state tensors: the fused LSTM keeps its state in the interpreter's variable tensors "
                f"({report['ops']['variables']}; int8 hidden state, int16 cell state, no requantization between "
                f"frames). Feed one normalized frame per invoke as x [1, 1, {cfg.input_size}]; call "
                "reset_all_variables() to start a new stream (edgernn's Stream.reset() does). One stream per "
                "interpreter.")
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
