"""
TFLite conversion worker: runs in its own process so that a converter segfault cannot kill the caller.

    python -m edgernn.export.tflite.worker SPEC.json
    python -m edgernn.export.tflite.worker --serve      # one SPEC.json path per stdin line (pool.py)

SPEC.json (written by edgernn.export.tflite.spec) names: the ModelConfig dict, mode, precision, int8_io,
seq_len, a weights .npz (torch state_dict as numpy), a data .npz (normalized calibration and check
inputs plus torch reference outputs), the output .tflite path and the report .json path. The worker
rebuilds the model in legacy Keras and converts it (this file), patches the flatbuffer (flatbuffer.py),
inspects it (ops.py: op types, tensor dtypes, variable tensors, I/O names and quantization) and runs the
result with the LiteRT interpreter on the check inputs (check.py). It writes a JSON report; the parent
decides whether the artifact passes and writes the manifest. Exit code 0 = converted (see report),
1 = Python error (report["error"]), <0 = crashed.

Test hook: EDGERNN_TFLITE_WORKER_CRASH=1 makes the worker os.abort() right before converting.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

# before TensorFlow is imported anywhere (the modules below import it only inside their functions)
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

from edgernn.export.tflite.check import check  # noqa: E402
from edgernn.export.tflite.flatbuffer import remove_float_cell_clip, share_state_quantization  # noqa: E402
from edgernn.export.tflite.ops import inspect_ops, interpreter, io_details  # noqa: E402

# ---------------------------------------------------------------- conversion

def convert(spec: dict, weights: dict, data: dict, seq_len) -> bytes:
    import tensorflow as tf

    from edgernn.export.tflite import keras_build as kb

    cfg, precision = spec["cfg"], spec["precision"]
    if spec.get("int_loop"):
        conv = _loop_converter(tf, spec, weights, seq_len)
    else:
        conv = tf.lite.TFLiteConverter.from_keras_model(_keras_model(kb, spec, weights, seq_len))
        if spec["mode"] == "step" and precision in ("int8", "int16x8") and cfg["cell"] != "lstm":
            # GRU/RNN step: per-tensor weights: a per-channel scale costs 12 bytes per output row (float scale +
            # int64 zero point) for every weight and bias tensor: GRU h64 int16x8 step 36.1 KB per-channel vs
            # 23.7 KB (float ONNX 56.9 KB). Full int8 too: per-channel it was 50.3% of float ONNX on jv h64 (32.3
            # KB); per-tensor it fails the stress set there (0.989) and the order takes int16x8 (24.7 KB, soak
            # 0.999), on jv h32 per-tensor full int8 passes at 11.2 KB (per-channel 15.8 KB). The LSTM step keeps
            # per-channel: jv h64 int16x8 per-tensor 26.5 KB lost the stress set (0.983), per-channel 36.7 KB
            # (44% of float ONNX) passes
            conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    if precision in ("int8", "int16x8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if precision == "int8" else
                                          tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        calib = calibration_samples(spec, data)
        conv.representative_dataset = lambda: iter(calib)
        if precision == "int8" and spec["int8_io"] == "int8":
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    elif precision == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if cfg["cell"] == "lstm" and spec["mode"] != "step":
            # measured (TF 2.21): the MLIR dynamic-range quantizer leaves the fused LSTM's weights float;
            # the legacy one stores them int8 (DEQUANTIZE at load). The step (explicit cell graph) keeps the
            # MLIR one: per-channel weights, where the legacy one gives one scale per matrix - jv LSTM h64 step
            # 32.5 vs 27.2 KB, soak mean|diff| 0.028 vs 0.082 (agreement 0.990 vs 0.970, which failed the gate)
            conv.experimental_new_dynamic_range_quantizer = False
    if os.environ.get("EDGERNN_TFLITE_WORKER_CRASH") == "1":
        os.abort()
    return conv.convert()


def _keras_model(kb, spec: dict, weights: dict, seq_len):
    cfg = spec["cfg"]
    if spec.get("stateful_step"):
        # the fused LSTM over a dynamic time axis, calibrated on whole windows; streamed one frame per
        # invoke, its variable tensors carry the state (int8 h, int16 c) from frame to frame
        return kb.build_sequence_model(cfg, weights, None, unroll=False)
    if spec["mode"] == "step":
        return kb.build_step_model(cfg, weights)
    # the fused LSTM keeps a dynamic loop inside one op; a Keras GRU/RNN loop becomes a WHILE whose int8
    # calibration segfaults (and costs 19-20 us per step at T=1460), so a Keras GRU/RNN is unrolled; every
    # GRU/RNN loop is _loop_converter's (spec["int_loop"])
    unroll = cfg["cell"] != "lstm" or bool(spec.get("unroll_lstm"))
    return kb.build_sequence_model(cfg, weights, seq_len, unroll=unroll)


def _loop_converter(tf, spec: dict, weights: dict, seq_len):
    """Converter for the hand-written GRU/RNN WHILE loop (while_loop.py), via a SavedModel so
    that the file keeps the serving_default signature (x -> y) that calibration and the runtime use."""
    from pathlib import Path

    from edgernn.export.tflite.while_loop import build_loop_function

    fn = build_loop_function(spec["cfg"], weights, seq_len, split_gates=spec["precision"] == "int8")
    module = tf.Module()
    module.fn = fn
    saved = Path(spec["out"]).parent / "loop_savedmodel"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": fn.get_concrete_function()})
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    # full integer: per-tensor (per-channel scales and zero points cost ~9 KB at h64: 34 vs 25 KB, and held
    # no better on the stress set); dynamic range keeps per-channel weights (per-tensor lost 2 of 200 stress copies)
    conv._experimental_disable_per_channel_quantization_for_dense_layers = spec["precision"] != "dynamic"
    return conv


def calibration_samples(spec: dict, data: dict) -> list:
    """Representative dataset: one sample per window (sequence) or per (frame, states) pair (step), as
    dicts keyed by signature input name (the converted graph orders its inputs by name, not as built)."""
    from edgernn.export.tflite.keras_build import X_NAME, state_names

    X = data["calib_x"]
    if spec["mode"] == "sequence" or spec.get("stateful_step"):
        return [{X_NAME: X[i:i + 1]} for i in range(len(X))]
    names, states = state_names(spec["cfg"]), data["calib_states"]  # states [N, S, H] in state_names order
    tail = data.get("calib_tail")  # audio: the front end's tail [N, tail]
    return [{X_NAME: X[i:i + 1], **{n: states[i, s][None] for s, n in enumerate(names)},
             **({"tail": tail[i:i + 1]} if tail is not None else {})} for i in range(len(X))]


# ---------------------------------------------------------------- main

def main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    report = {"ok": False, "mode": spec["mode"]}
    try:
        with np.load(spec["weights"]) as z:
            weights = {k: z[k] for k in z.files}
        with np.load(spec["data"]) as z:
            data = {k: z[k] for k in z.files}
        seq_len = None if spec.get("dynamic_time") else int(spec["seq_len"])
        t0 = time.perf_counter()
        fb = convert(spec, weights, data, seq_len)
        report["convert_seconds"] = round(time.perf_counter() - t0, 2)
        fb, report["cell_clip_removed"] = remove_float_cell_clip(fb)
        probe = interpreter(fb)
        inputs, outputs = io_details(probe, spec["cfg"], spec["mode"])
        if any(e["role"] == "state" for e in outputs):
            fb, report["state_io"] = share_state_quantization(fb, inputs, outputs)
            if any("was" in e for e in report["state_io"]):
                inputs, outputs = io_details(interpreter(fb), spec["cfg"], spec["mode"])
        report.update(inputs=inputs, outputs=outputs, ops=inspect_ops(fb), size_bytes=len(fb))
        report["check"] = check(spec, fb, data, inputs, outputs)
        report["check_windows"] = int(len(data["check_x"]))
        with open(spec["out"], "wb") as f:
            f.write(fb)
        report["ok"] = True
    except Exception as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        report["error"] = f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:600]
        report["traceback"] = traceback.format_exc()[-4000:]
    with open(spec["report"], "w") as f:
        json.dump(report, f)
    return 0 if report["ok"] else 1


def serve() -> int:
    """Pool mode (`--serve`, edgernn.export.tflite.pool): convert one spec per line of stdin (its path), then
    write SPEC.done beside it; EOF ends the process. TensorFlow is imported once for every conversion of an
    export (3.7 s each time otherwise). A crash still ends only this process: the parent starts another."""
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        main(path)
        if "tensorflow" in sys.modules:  # forget the graphs of the last conversion
            import tensorflow as tf

            tf.keras.backend.clear_session()
        with open(path + ".done", "w") as f:
            f.write("done")
    return 0


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["--serve"] else main(sys.argv[1]))
