"""
Inspect a converted .tflite model for its manifest: the I/O tensors (names, shapes, dtypes, quantization,
roles) and every op sorted by how it computes (integer, hybrid, float, ...), WHILE-loop subgraphs included.
Runs in the TFLite worker; the LiteRT interpreter is imported inside interpreter().

    it = interpreter(fb)                                  # LiteRT, XNNPACK on (delegates=False: builtin ops)
    inputs, outputs = io_details(it, cfg, "step")         # manifest "inputs" / "outputs"
    ops = inspect_ops(fb)                                 # {"integer": [...], "matmuls": [...], ...}
"""

from __future__ import annotations

import numpy as np

from edgernn.export.tflite.flatbuffer import (
    constant_tensors,
    model,
    schema,
    tensor_type,
    variable_count,
    variable_names,
)

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
    const = constant_tensors(fb)
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
            "op_count": len(it._get_ops_details()), "variables": variable_count(fb),
            "variable_names": variable_names(fb), "matmuls": matmuls, "control": uniq(control),
            "loop_state": loop["state"]}


def _loop_subgraph_ops(fb: bytes) -> dict:
    """Ops of the WHILE cond/body subgraphs (which the interpreter's op list does not show) by how they
    compute, as inspect_ops sorts the main graph's; plus how each loop variable crosses iterations: a
    quantized value the body DEQUANTIZEs on its way out and QUANTIZEs on its way in with the same scale and
    zero point round-trips exactly ("exact"); other parameters requantize it every step ("requantized"); and
    the matrix products among them ("matmuls", as inspect_ops lists the main graph's): int8 output = integer,
    int8 constant weights with float output = hybrid, else float."""
    s = schema()
    m = model(fb)
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
            outs = [tensor_type(s, sg.Tensors(op.Outputs(j)).Type()) for j in range(op.OutputsLength())]
            in_types = [tensor_type(s, t.Type()) for t in ins]
            const_int = any(tensor_type(s, t.Type()) in INT_TYPES and m.Buffers(t.Buffer()).DataLength() > 0
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
