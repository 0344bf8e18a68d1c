"""
TFLite (LiteRT) export: float, full-integer int8 and dynamic-range, full-sequence or streaming (step).

    from edgernn.rundir import load_run
    from edgernn.export.tflite.convert import export_tflite
    path = export_tflite(load_run("runs/gru"), Path("runs/gru/artifacts"), "int8", "step", ExportOptions())
    # -> runs/gru/artifacts/step-int8.tflite + step-int8.tflite.json (docs/manifest.md)

This file is the parent side: arguments, the worker process and its fallbacks, the float gate. The spec and
data the worker gets are written by spec.py, the precision's converter setting and manifest description come
from quantize.py (for int8, through the recipe registry: edgernn.export.recipes.builder(recipe, "tflite")), the
other manifest fields from manifest_fields.py.

Route (measured; docs/export.md): the torch model is rebuilt in legacy Keras with the same weights
(keras_build.py) and converted with tf.lite.TFLiteConverter.from_keras_model, in a
subprocess (worker.py) so that a converter segfault becomes an ExportError.
  - LSTM, sequence: one fused UNIDIRECTIONAL_SEQUENCE_LSTM per layer/direction. The op keeps its state in
    variable tensors, so the manifest says "stateful_interpreter": true (reset_all_variables() before
    each window). The time axis is left dynamic when a run at other lengths matches torch.
  - GRU / RNN, sequence, float and dynamic range: unrolled over run.seq_len steps (fastest; fixed length)
    up to UNROLL_MAX_STEPS, the hand-written WHILE loop (while_loop.py) beyond (constant size and cost per
    step, any T; Keras' loop cost 19-20 us per step at T=1460).
  - GRU / RNN, sequence, full int8 and int16x8: the same WHILE loop, which the int8 calibrator does not
    crash on: constant size, any T.
  - step: one frame + explicit per-layer states (h0.., c0.. for LSTM) -> output + next states, built
    from one-step unrolled layers: plain ops, no variables, quantizes fully to int8 or 16x8 (each state
    input then shares the scale of the state output feeding it). Exception: the full-int8 LSTM step is the
    fused LSTM streamed one frame per invoke (spec.stateful_step).
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

from edgernn.errors import ConfigError, ExportError
from edgernn.export import recipes
from edgernn.export.formats import INT8_IO, ExportOptions, check_combination, check_prerequisites
from edgernn.export.manifest import publish
from edgernn.export.tflite import pool, quantize
from edgernn.export.tflite.manifest_fields import manifest_fields
from edgernn.export.tflite.spec import UNROLL_MAX_STEPS, write_spec
from edgernn.interrupts import die_with_parent

FLOAT_TOL = 1e-4
_NOISE = ("W0000", "I0000", "WARNING: All log messages", "INFO: Created TensorFlow Lite", "warnings.warn(",
          "Statistics for quantized inputs were expected", "fully_quantize:", "tf.lite.Interpreter is deprecated",
          "TF 2.20. Please use the LiteRT", "migration guide", "for details.")


def export_tflite(run, out_dir: Path, precision: str = "float", mode: str = "sequence",
                  options: ExportOptions | None = None, timeout: float | None = None) -> Path:
    """Write out_dir/f"{mode}-{precision}.tflite" + manifest; return the artifact path.
    precision: "float" | "int8" (full-integer, calibrated on run.normalize(run.data()["X_calib"]))
             | "dynamic" (dynamic-range: int8 weights, float activations).
    mode: "sequence" | "step". int8_io: "int8" (int8 input/output tensors) | "float" (float I/O around
    int8 internals) - only meaningful for precision int8."""
    options = options or ExportOptions()
    timeout = options.timeout if timeout is None else timeout
    int8_io = options.int8_io
    _validate_args(run, precision, mode, int8_io)
    build = _build(precision, options)
    kind = build.kind
    if kind == "int16x8" and mode == "sequence":  # known not to build: say so at once, not after the converter
        raise ConfigError("TFLite int16x8 builds step artifacts only: the fused sequence LSTM "
                          "(UNIDIRECTIONAL_SEQUENCE_LSTM) has no 16x8 kernel and a GRU/RNN WHILE loop cannot be "
                          "calibrated in 16x8 (\"Empty min/max\" for its loop variables)")
    check_prerequisites(["tflite"])
    out_dir = _prepare_out_dir(Path(out_dir))
    cfg = run.config
    what = f"{cfg.cell} {precision}{f' ({options.recipe})' if options.recipe else ''} {mode}"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgernn-tflite-") as tmp:
        tmp = Path(tmp)
        # int8, whichever recipe builds it, is for small files: a GRU/RNN sequence is a loop at any T
        compact = precision == "int8"
        spec = write_spec(run, tmp, kind, mode, int8_io, compact)
        # --integer-only is for TFLite Micro and NPUs, which fix every shape when they allocate: a GRU/RNN loop
        # gets a fixed window length there (the dynamic one fails TFLite Micro's STRIDED_SLICE prepare)
        spec["static_shapes"] = bool(options.integer_only) and compact
        report = _convert(spec, tmp, kind, mode, cfg.cell, what, started + timeout)
        _gate(report, kind, mode, what)
        artifact = out_dir / f"{mode}-{precision}.tflite"
        fields = manifest_fields(run, report, build, mode, time.perf_counter() - started)
        fields["precision"] = precision
        fields["tflm"] = tflm_fields(tmp / "model.tflite")
        return publish(tmp / "model.tflite", artifact, fields)


def tflm_fields(path: Path) -> dict:
    """Whether TensorFlow Lite for Microcontrollers runs the artifact (its reason if not) and the arena it
    needs - what a microcontroller target ships on (edgernn.runtimes.tflm_backend.tflm_check); without the
    tflite-micro package, says it was not checked."""
    from edgernn.errors import MissingDependencyError
    from edgernn.runtimes.tflm_backend import tflm_check

    try:
        res = tflm_check(path, timeout=60.0)
    except MissingDependencyError as exc:
        return {"checked": False, "why": str(exc)}
    from importlib.metadata import version

    return {"checked": True, **res, "tflite_micro": version("tflite-micro")}


def _build(precision: str, options: ExportOptions):
    """How this precision is built (edgernn.export.tflite.quantize.Build): float, dynamic, or for int8 the
    recipe's builder from edgernn.export.recipes (full-int8 unless options.recipe pins another)."""
    recipe = options.recipe
    if precision != "int8":
        if recipe:
            raise ConfigError(f"--recipe {recipe} applies to --precision int8 only")
        return quantize.FLOAT if precision == "float" else quantize.dynamic(options)
    if recipe is not None and recipe not in recipes.recipes_for("tflite"):
        raise ConfigError(f"the TFLite int8 recipes are {', '.join(recipes.recipes_for('tflite'))}, not {recipe!r}")
    return recipes.builder(recipe or "full-int8", "tflite")(options)


def _convert(spec: dict, tmp: Path, precision: str, mode: str, cell: str, what: str, deadline: float) -> dict:
    """Run the worker, with the LSTM fallbacks: a sequence LSTM is first converted to the fused op with a
    dynamic time axis, kept only if other lengths match torch (else fixed to run.seq_len). The worker
    removes the converter's hard-coded cell_clip=10 from float fused LSTMs (it cost up to 1.1 on the
    logits of trained models); should a float fused LSTM still miss the 1e-4 gate, the LSTM is unrolled
    into plain ops instead (exact, fixed length, larger file) and the manifest says why."""
    if mode == "sequence" and cell != "lstm" and spec["compact"]:
        return _compact_loop(spec, tmp, precision, what, deadline)
    if mode == "sequence" and cell != "lstm" and (spec["seq_len"] > UNROLL_MAX_STEPS or spec.get("masked")):
        report = _run_worker(spec, tmp, dict(dynamic_time=True, int_loop=True), what, deadline)
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
    """An int8 GRU/RNN sequence (any recipe): the WHILE loop of while_loop.py. Its time axis stays dynamic when other
    lengths agree with torch about as well as the calibrated length does, else it is fixed at run.seq_len
    (still the loop: the same constant size); with --integer-only (spec["static_shapes"]) it is fixed at once."""
    if spec.get("static_shapes"):  # --integer-only: static shapes for TFLite Micro / NPUs, no dynamic attempt
        report = _run_worker(spec, tmp, dict(dynamic_time=False, int_loop=True), what, deadline)
        report["fixed_length"] = (f"the window length is fixed at T={spec['seq_len']} (--integer-only: TFLite Micro "
                                  "and NPUs need every shape static)")
    else:
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
                          "retry with a larger --timeout")
    shared = pool.active()
    try:
        if shared is not None:  # an export's shared worker process (pool.py): TensorFlow already imported
            code, stderr = shared.run(spec_path, env, timeout)
        else:
            proc = subprocess.run([sys.executable, "-m", "edgernn.export.tflite.worker", str(spec_path)],
                                  capture_output=True, text=True, timeout=timeout, env=env, cwd=str(tmp),
                                  preexec_fn=die_with_parent)
            code, stderr = proc.returncode, proc.stderr
    except (subprocess.TimeoutExpired, TimeoutError):
        raise ExportError(f"TFLite conversion of {what} did not finish within its time budget ({timeout:.0f} s "
                          "left) and was stopped; retry with a larger --timeout or a smaller model") from None
    tail = _tail(stderr)
    if code is not None and code < 0:
        sig = -code
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown"
        raise ExportError(
            f"TFLite converter crashed (signal {sig} {name}) converting {what}; nothing was written. "
            f"{_crash_hint(spec)}" + (f" Last converter output: {tail}" if tail else ""),
            detail="TFLite worker stderr (tail):\n" + (stderr or "")[-4000:])
    try:
        report = json.loads(Path(spec["report"]).read_text())
    except (OSError, json.JSONDecodeError):
        raise ExportError(f"TFLite worker for {what} exited with code {code} without a report"
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


# ---------------------------------------------------------------- verdict

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
