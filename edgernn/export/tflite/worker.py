"""
TFLite conversion worker: runs in its own process so that a converter segfault cannot kill the caller.

    python -m edgernn.export.tflite.worker SPEC.json

SPEC.json (written by edgernn.export.tflite.convert) names: the ModelConfig dict, mode, precision, int8_io,
seq_len, a weights .npz (torch state_dict as numpy), a data .npz (normalized calibration and check
inputs plus torch reference outputs), the output .tflite path and the report .json path. The worker
rebuilds the model in legacy Keras, converts it, inspects the flatbuffer (op types, tensor dtypes,
variable tensors, I/O names and quantization) and runs the result with the LiteRT interpreter on the
check inputs. It writes a JSON report; the parent decides whether the artifact passes and writes the
manifest. Exit code 0 = converted (see report), 1 = Python error (report["error"]), <0 = crashed.

Test hook: EDGERNN_TFLITE_WORKER_CRASH=1 makes the worker os.abort() right before converting.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow is imported anywhere
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

INT_TYPES = ("int8", "int16", "uint8")
# ops that carry the multiply-accumulate work (their compute kind labels the manifest's op families)
MATMUL_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN",
              "BIDIRECTIONAL_SEQUENCE_LSTM")


def interpreter(model_content: bytes, delegates: bool = True):
    """LiteRT interpreter (ai_edge_litert, else tf.lite). delegates=False disables XNNPACK so that
    op inspection sees the real builtin ops instead of DELEGATE nodes."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # pragma: no cover - fallback when ai-edge-litert is missing
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    kw = {} if delegates else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    it = Interpreter(model_content=model_content, num_threads=1, **kw)
    it.allocate_tensors()
    return it


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
    # calibration segfaults, so it is unrolled unless the parent asked for the loop (float / dynamic range
    # over long windows: constant size); integer GRU/RNN sequences use _loop_converter
    unroll = not spec.get("loop") and (cfg["cell"] != "lstm" or bool(spec.get("unroll_lstm")))
    return kb.build_sequence_model(cfg, weights, seq_len, unroll=unroll)


def _loop_converter(tf, spec: dict, weights: dict, seq_len):
    """Converter for the hand-written GRU/RNN WHILE loop (edgernn/export/tf_loop.py), via a SavedModel so
    that the file keeps the serving_default signature (x -> y) that calibration and the runtime use."""
    from pathlib import Path

    from edgernn.export.tflite.while_loop import build_loop_function

    fn = build_loop_function(spec["cfg"], weights, seq_len)
    module = tf.Module()
    module.fn = fn
    saved = Path(spec["out"]).parent / "loop_savedmodel"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": fn.get_concrete_function()})
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    # full integer: per-tensor (per-channel scales and zero points cost ~9 KB at h64: 34 vs 25 KB, and held
    # no better on the stress set); dynamic range keeps per-channel weights (per-tensor lost 2 of 200 stress copies)
    conv._experimental_disable_per_channel_quantization_for_dense_layers = spec["precision"] != "dynamic"
    return conv


def remove_float_cell_clip(fb: bytes) -> tuple[bytes, list]:
    """Set cell_clip to 0 (= no clipping) on every float UNIDIRECTIONAL_SEQUENCE_LSTM, patching the 4
    bytes in place. The Keras->TFLite LSTM fusion hard-codes cell_clip=10.0, which torch and Keras do
    not have: measured on a trained h16 LSTM, 5 of 64 windows run to 80 steps ended up to 0.72 away
    from torch (cell state past 10) while the unclipped graph matched to 5e-5. Returns the new bytes and
    the original clip values. Integer LSTMs keep their clip: their int16 cell-state scale is tied to it."""
    import struct

    m = _model(fb)
    s = _schema()
    buf = bytearray(fb)
    found = []
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            code = m.OperatorCodes(op.OpcodeIndex())
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != s.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM:
                continue
            if np.dtype(_tensor_type(s, sg.Tensors(op.Inputs(0)).Type())) != np.float32:
                continue
            table = op.BuiltinOptions()
            opts = s.UnidirectionalSequenceLSTMOptions()
            opts.Init(table.Bytes, table.Pos)
            off = opts._tab.Offset(6)  # cell_clip; 0 = absent = already no clipping
            if off and opts.CellClip() > 0:
                found.append(float(opts.CellClip()))
                struct.pack_into("<f", buf, opts._tab.Pos + off, 0.0)
    return bytes(buf), found


# ops that hand their input's int values on unchanged, so their output must keep the input's scale
PASS_THROUGH_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "STRIDED_SLICE", "SLICE", "GATHER", "SPLIT", "SPLIT_V",
                    "UNPACK", "PACK", "TRANSPOSE")


def share_state_quantization(fb: bytes, inputs: list, outputs: list) -> tuple[bytes, list]:
    """Give each quantized state input the scale and zero point of the state output that feeds it, patching
    the flatbuffer in place, so a stream hands the int state from one frame to the next with no
    requantization. Calibration sets the two apart by rounding only (GRU h32: 0.0078417 in, 0.0078418 out),
    which maps every int8 code back to itself, but "close" is not "one quantization". With float I/O the
    quantized ends are the QUANTIZE after the input and the DEQUANTIZE before the output. A pass-through
    consumer (RESHAPE, SPLIT, ...) that copied the input's parameters gets the new ones too. Every
    kernel reads its tensors' parameters when the interpreter prepares, so nothing else changes.
    Returns the new bytes and, per state, {"input", "output", "dtype", "round_trip": "exact", "was": [scale,
    zero point]} ("float" for a float state, "requantized" where no shared quantization could be set)."""
    import struct

    s = _schema()
    m = _model(fb)
    sg = m.Subgraphs(0)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    index = {sg.Tensors(i).Name().decode(): i for i in range(sg.TensorsLength())}
    ops = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        code = m.OperatorCodes(op.OpcodeIndex())
        ops.append((names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), ""),
                    [op.Inputs(j) for j in range(op.InputsLength())], [op.Outputs(j) for j in range(op.OutputsLength())]))

    def params(i):
        q = sg.Tensors(i).Quantization()
        return None if q is None or q.ScaleLength() != 1 else (float(q.Scale(0)), int(q.ZeroPoint(0)))

    def quantized_end(i, op_name, side):  # the int tensor at a float I/O tensor's QUANTIZE / DEQUANTIZE
        if params(i) is not None:
            return i
        for name, ins, outs in ops:
            if name == op_name and (ins[:1] if side == "in" else outs[:1]) == [i]:
                return (outs if side == "in" else ins)[0]
        return None

    buf = bytearray(fb)

    def patch(i, scale, zp):
        q = sg.Tensors(i).Quantization()
        struct.pack_into("<f", buf, q._tab.Vector(q._tab.Offset(8)), scale)
        struct.pack_into("<q", buf, q._tab.Vector(q._tab.Offset(10)), zp)

    result = []
    by_name = {e["name"]: e for e in inputs}
    for e in outputs:
        if e["role"] != "state":
            continue
        a = quantized_end(index[by_name[e["next"]]["name"]], "QUANTIZE", "in")
        b = quantized_end(index[e["name"]], "DEQUANTIZE", "out")
        entry = {"input": e["next"], "output": e["name"], "round_trip": "requantized"}
        if a is None and b is None:  # a float state (float or dynamic-range graph): nothing to round
            result.append({**entry, "round_trip": "float"})
            continue
        if a is None or b is None or params(a) is None or params(b) is None or \
                sg.Tensors(a).Type() != sg.Tensors(b).Type():
            result.append(entry)
            continue
        entry["dtype"] = _tensor_type(s, sg.Tensors(a).Type())
        old, new = params(a), params(b)
        if old != new:
            entry["was"] = list(old)
            todo = [a]
            while todo:
                t = todo.pop()
                patch(t, *new)
                todo += [o for name, ins, outs in ops if name in PASS_THROUGH_OPS and t in ins
                         for o in outs if o >= 0 and params(o) == old]
        entry["round_trip"] = "exact"
        result.append(entry)
    return bytes(buf), result


def _tensor_type(s, code: int) -> str:
    names = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    return {"FLOAT32": "float32", "INT8": "int8", "INT16": "int16", "UINT8": "uint8", "INT32": "int32",
            "INT64": "int64", "BOOL": "bool"}.get(
        names.get(code, ""), "object")


def calibration_samples(spec: dict, data: dict) -> list:
    """Representative dataset: one sample per window (sequence) or per (frame, states) pair (step), as
    dicts keyed by signature input name (the converted graph orders its inputs by name, not as built)."""
    from edgernn.export.tflite.keras_build import X_NAME, state_names

    X = data["calib_x"]
    if spec["mode"] == "sequence" or spec.get("stateful_step"):
        return [{X_NAME: X[i:i + 1]} for i in range(len(X))]
    names, states = state_names(spec["cfg"]), data["calib_states"]  # states [N, S, H] in state_names order
    return [{X_NAME: X[i:i + 1], **{n: states[i, s][None] for s, n in enumerate(names)}} for i in range(len(X))]


# ---------------------------------------------------------------- inspection

def _dtype(d) -> str:
    return np.dtype(d).name


def _shape(detail) -> list:
    sig = detail.get("shape_signature")
    sig = detail["shape"] if sig is None or len(sig) == 0 else sig
    return [None if int(v) < 0 else int(v) for v in sig]


def _quant(detail):
    if _dtype(detail["dtype"]) not in INT_TYPES:
        return None
    scale, zp = detail["quantization"]
    return {"scale": float(scale), "zero_point": int(zp)}


def io_details(it, cfg: dict, mode: str) -> tuple[list, list]:
    """Manifest inputs/outputs in get_input_details()/get_output_details() order, with the logical
    signature key of each tensor (x, h0, c0 / y, h0_next, ...)."""
    sig = it._get_full_signature_list()["serving_default"]
    in_key = {idx: k for k, idx in sig["inputs"].items()}
    out_key = {idx: k for k, idx in sig["outputs"].items()}
    inputs, outputs = [], []
    for d in it.get_input_details():
        key = in_key[d["index"]]
        inputs.append({"name": d["name"], "shape": _shape(d), "dtype": _dtype(d["dtype"]),
                       "role": "x" if key == "x" else "state", "quant": _quant(d), "signature_key": key})
    names = {e["signature_key"]: e["name"] for e in inputs}
    for d in it.get_output_details():
        key = out_key[d["index"]]
        e = {"name": d["name"], "shape": _shape(d), "dtype": _dtype(d["dtype"]),
             "role": "y" if key == "y" else "state", "quant": _quant(d), "signature_key": key}
        if key != "y":
            e["next"] = names[key[: -len("_next")]]
        outputs.append(e)
    return inputs, outputs


def inspect_ops(fb: bytes) -> dict:
    """Op types by how they compute: integer (int8/int16 activations), hybrid (float activations, int8
    weights), weight-only DEQUANTIZE of constants, shape (int32 index arithmetic only), float; plus the
    number of variable tensors (state kept inside the interpreter)."""
    it = interpreter(fb, delegates=False)
    details = {t["index"]: t for t in it.get_tensor_details()}
    const = _constant_tensors(fb)
    integer, hybrid, flt, weight_deq, boundary, shape, control = [], [], [], [], [], [], []
    dequantized = set()  # outputs of DEQUANTIZE ops applied to constant (weight) tensors
    matmuls = []  # per matrix-product op, in execution order: how it computes and how many weights it has
    for op in it._get_ops_details():
        name = op["op_name"]
        outs = [_dtype(details[i]["dtype"]) for i in op["outputs"] if i >= 0]
        ins = [(i, _dtype(details[i]["dtype"])) for i in op["inputs"] if i >= 0]
        if name == "QUANTIZE" and any(dt == "float32" for _, dt in ins):
            kind = "boundary"  # float input -> int8 (float I/O variant)
        elif name == "DEQUANTIZE":
            kind = "weight_dequantize" if any(i in const for i, _ in ins) else "boundary"
            if kind == "weight_dequantize":
                dequantized.update(i for i in op["outputs"] if i >= 0)
        elif outs and all(o in INT_TYPES + ("int32",) for o in outs) and any(o in INT_TYPES for o in outs):
            kind = "integer"
        elif name == "SHAPE" or (outs and all(o in ("int32", "int64", "bool") for o in outs)
                                 and all(dt in ("int32", "int64", "bool") for _, dt in ins)):
            kind = "shape"  # index/shape arithmetic (dynamic-length reshapes), no activations
        elif any(dt in INT_TYPES for i, dt in ins if i in const) and all(o == "float32" for o in outs):
            kind = "hybrid"
        else:
            kind = "float"
        if name == "WHILE":
            kind = "control"  # runs the body subgraphs, classified below; computes nothing itself
        {"boundary": boundary, "weight_dequantize": weight_deq, "integer": integer, "shape": shape,
         "hybrid": hybrid, "float": flt, "control": control}[kind].append(name)
        if name in MATMUL_OPS:
            weights = [i for i, _ in ins if i in const or i in dequantized]
            if kind == "float" and any(i in dequantized for i in weights):
                kind = "weights"
            matmuls.append({"op": name, "kind": kind, "subgraph": 0,
                            "weights": int(sum(np.prod(details[i]["shape"]) for i in weights))})
    loop = _loop_subgraph_ops(fb)
    matmuls += loop["matmuls"]
    for kind, names in (("integer", integer), ("hybrid", hybrid), ("float", flt), ("shape", shape),
                        ("boundary", boundary)):
        names += loop[kind]
    uniq = lambda xs: sorted(set(xs))  # noqa: E731
    return {"integer": uniq(integer), "hybrid": uniq(hybrid), "float": uniq(flt), "shape": uniq(shape),
            "weight_dequantize":
            len(weight_deq), "boundary": uniq(boundary), "all": uniq(op["op_name"] for op in it._get_ops_details()),
            "op_count": len(it._get_ops_details()), "variables": _variable_count(fb),
            "variable_names": _variable_names(fb), "matmuls": matmuls, "control": uniq(control),
            "loop_state": loop["state"]}


def _loop_subgraph_ops(fb: bytes) -> dict:
    """Ops of the WHILE cond/body subgraphs (which the interpreter's op list does not show) by how they
    compute, as inspect_ops sorts the main graph's; plus how each loop variable crosses iterations: a
    quantized value the body DEQUANTIZEs on its way out and QUANTIZEs on its way in with the same scale and
    zero point round-trips exactly ("exact"); other parameters requantize it every step ("requantized"); and
    the matrix products among them ("matmuls", as inspect_ops lists the main graph's): int8 output = integer,
    int8 constant weights with float output = hybrid, else float."""
    s = _schema()
    m = _model(fb)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    out = {"integer": [], "hybrid": [], "float": [], "shape": [], "boundary": [], "state": [], "matmuls": []}

    def qparams(t):
        q = t.Quantization()
        return None if q is None or q.ScaleLength() == 0 else (float(q.Scale(0)), int(q.ZeroPoint(0)))

    for g in range(1, m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        quant_in, dequant_out = {}, {}  # subgraph input index -> params of its QUANTIZE; output -> DEQUANTIZE's
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            code = m.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
            ins = [sg.Tensors(op.Inputs(j)) for j in range(op.InputsLength()) if op.Inputs(j) >= 0]
            outs = [_tensor_type(s, sg.Tensors(op.Outputs(j)).Type()) for j in range(op.OutputsLength())]
            in_types = [_tensor_type(s, t.Type()) for t in ins]
            const_int = any(_tensor_type(s, t.Type()) in INT_TYPES and m.Buffers(t.Buffer()).DataLength() > 0
                            for t in ins)
            if name == "QUANTIZE":
                kind = "boundary"
                quant_in[op.Inputs(0)] = qparams(sg.Tensors(op.Outputs(0)))
            elif name == "DEQUANTIZE":
                kind = "boundary"
                dequant_out[op.Outputs(0)] = qparams(sg.Tensors(op.Inputs(0)))
            elif outs and all(o in INT_TYPES + ("int32",) for o in outs) and any(o in INT_TYPES for o in outs):
                kind = "integer"
            elif name == "SHAPE" or (outs and all(o in ("int32", "int64", "bool") for o in outs)
                                     and all(t in ("int32", "int64", "bool") for t in in_types)):
                kind = "shape"
            elif const_int and all(o == "float32" for o in outs):
                kind = "hybrid"
            else:
                kind = "float"
            out[kind].append(name)
            if name in MATMUL_OPS:
                const = [t for t in ins if m.Buffers(t.Buffer()).DataLength() > 0]
                mm = "integer" if outs[0] in INT_TYPES else "hybrid" if const_int else "float"
                weights = sum(int(np.prod(t.ShapeAsNumpy())) for t in const if t.ShapeLength() > 1)
                out["matmuls"].append({"op": name, "kind": mm, "subgraph": g, "weights": weights})
        if sg.InputsLength() == sg.OutputsLength():  # a body: input i and output i are loop variable i
            for i in range(sg.InputsLength()):
                a, b = quant_in.get(sg.Inputs(i)), dequant_out.get(sg.Outputs(i))
                if a is not None and b is not None:
                    out["state"].append("exact" if a == b else "requantized")
    return out


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:  # pragma: no cover
        from tensorflow.lite.python import schema_py_generated as s
    return s


def _model(fb: bytes):
    return _schema().Model.GetRootAsModel(fb, 0)


def _constant_tensors(fb: bytes) -> set:
    m = _model(fb)
    sg = m.Subgraphs(0)
    return {i for i in range(sg.TensorsLength()) if m.Buffers(sg.Tensors(i).Buffer()).DataLength() > 0}


def _variable_names(fb: bytes) -> list[str]:
    """Names of the variable tensors (state a stateful interpreter keeps between invokes), main subgraph."""
    m = _model(fb)
    g = m.Subgraphs(0)
    return [g.Tensors(i).Name().decode() for i in range(g.TensorsLength()) if g.Tensors(i).IsVariable()]


def _variable_count(fb: bytes) -> int:
    m = _model(fb)
    return sum(1 for g in range(m.SubgraphsLength()) for i in range(m.Subgraphs(g).TensorsLength())
               if m.Subgraphs(g).Tensors(i).IsVariable())


# ---------------------------------------------------------------- running

def _q(detail, x: np.ndarray) -> np.ndarray:
    dt = np.dtype(detail["dtype"])
    if dt.name in INT_TYPES:
        scale, zp = detail["quantization"]
        info = np.iinfo(dt)
        return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dt)
    return x.astype(dt)


def _dq(detail, y: np.ndarray) -> np.ndarray:
    if np.dtype(detail["dtype"]).name in INT_TYPES:
        scale, zp = detail["quantization"]
        return ((y.astype(np.float32) - zp) * scale).astype(np.float32)
    return y.astype(np.float32)


def run_sequence(it, X: np.ndarray) -> np.ndarray:
    """Outputs for windows X [N, T, C] one at a time (batch 1), resetting interpreter state between
    windows; resizes the input if T differs from the allocated shape."""
    din = it.get_input_details()[0]
    if list(din["shape"]) != [1, *X.shape[1:]]:
        it.resize_tensor_input(din["index"], [1, *X.shape[1:]], strict=True)
        it.allocate_tensors()
        din = it.get_input_details()[0]
    dout = it.get_output_details()[0]
    outs = []
    for x in X:
        it.reset_all_variables()
        it.set_tensor(din["index"], _q(din, x[None]))
        it.invoke()
        outs.append(_dq(dout, it.get_tensor(dout["index"]))[0])
    return np.stack(outs)


def run_step(it, X: np.ndarray, inputs: list, outputs: list) -> np.ndarray:
    """Stream windows X [N, T, C] frame by frame through a step artifact: states start at zero and each
    state output is fed (requantized if its scale differs) into the input named by its "next"."""
    din = {d["name"]: d for d in it.get_input_details()}
    dout = {d["name"]: d for d in it.get_output_details()}
    x_name = next(e["name"] for e in inputs if e["role"] == "x")
    y_name = next(e["name"] for e in outputs if e["role"] == "y")
    res = []
    for window in X:
        state = {e["name"]: np.zeros(din[e["name"]]["shape"], np.float32) for e in inputs if e["role"] == "state"}
        frames = []
        for frame in window:
            it.set_tensor(din[x_name]["index"], _q(din[x_name], frame[None]))
            for name, val in state.items():
                it.set_tensor(din[name]["index"], _q(din[name], val))
            it.invoke()
            frames.append(_dq(dout[y_name], it.get_tensor(dout[y_name]["index"]))[0])
            for e in outputs:
                if e["role"] == "state":
                    state[e["next"]] = _dq(dout[e["name"]], it.get_tensor(dout[e["name"]]["index"]))
        res.append(np.stack(frames))
    return np.stack(res)


def _compare(out: np.ndarray, ref: np.ndarray) -> dict:
    d = {"max_abs_diff": float(np.abs(out - ref).max()), "mean_abs_diff": float(np.abs(out - ref).mean())}
    if out.shape[-1] > 1:
        d["top1_agreement"] = float((out.argmax(-1) == ref.argmax(-1)).mean())
    return d


def run_stateful_stream(it, X: np.ndarray) -> np.ndarray:
    """Stream windows X [N, T, C] one frame per invoke ([1, 1, C]) through a graph that keeps its state
    in variable tensors: reset_all_variables() before each window, never between frames."""
    din = it.get_input_details()[0]
    if list(din["shape"]) != [1, 1, X.shape[2]]:
        it.resize_tensor_input(din["index"], [1, 1, X.shape[2]], strict=True)
        it.allocate_tensors()
        din = it.get_input_details()[0]
    dout = it.get_output_details()[0]
    res = []
    for window in X:
        it.reset_all_variables()
        frames = []
        for frame in window:
            it.set_tensor(din["index"], _q(din, frame[None, None]))
            it.invoke()
            frames.append(_dq(dout, it.get_tensor(dout["index"]))[0])
        res.append(np.stack(frames))
    return np.stack(res)


def check(spec: dict, fb: bytes, data: dict, inputs: list, outputs: list) -> dict:
    it = interpreter(fb)
    if spec.get("stateful_step"):
        return {"frames": _compare(run_stateful_stream(it, data["check_x"]), data["check_ref_frames"])}
    if spec["mode"] == "step":
        return {"frames": _compare(run_step(it, data["check_x"], inputs, outputs), data["check_ref_frames"])}
    res = {"nominal": _compare(run_sequence(it, data["check_x"]), data["check_ref"])}
    if int(it.get_input_details()[0]["shape_signature"][1]) >= 0:
        return res  # fixed-length graph: other lengths cannot run
    for key in sorted(k for k in data if k.startswith("check_x_T")):
        t = key[len("check_x_T"):]
        try:
            res[f"T{t}"] = _compare(run_sequence(it, data[key]), data[f"check_ref_T{t}"])
        except Exception as exc:  # a fixed-length graph refuses the resize: that is the answer
            msg = str(exc).split(". ")[0] if str(exc) else ""
            res[f"T{t}"] = {"error": f"{type(exc).__name__}: {msg}"[:200]}
    return res


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
