"""
Read and patch a converted .tflite flatbuffer in place (the worker's surgery after conversion, and the schema
helpers the op inspection reads subgraphs with). No TensorFlow: the LiteRT schema module only.

    fb, clips = remove_float_cell_clip(fb)                       # torch has no cell clip: take the converter's off
    fb, state_io = share_state_quantization(fb, inputs, outputs)  # one scale per state input/output pair
    m = model(fb); s = schema()                                  # the flatbuffer Model and its schema module
"""

from __future__ import annotations

import struct

import numpy as np

# ops that hand their input's int values on unchanged, so their output must keep the input's scale
PASS_THROUGH_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "STRIDED_SLICE", "SLICE", "GATHER", "SPLIT", "SPLIT_V",
                    "UNPACK", "PACK", "TRANSPOSE")


def schema():
    """The generated flatbuffer schema module (ai_edge_litert's, else TensorFlow's)."""
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:  # pragma: no cover
        from tensorflow.lite.python import schema_py_generated as s
    return s


def model(fb: bytes):
    return schema().Model.GetRootAsModel(fb, 0)


def tensor_type(s, code: int) -> str:
    """numpy-style name of a schema TensorType code ("object" for the types edgernn never produces)."""
    names = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    return {"FLOAT32": "float32", "INT8": "int8", "INT16": "int16", "UINT8": "uint8", "INT32": "int32",
            "INT64": "int64", "BOOL": "bool"}.get(
        names.get(code, ""), "object")


def constant_tensors(fb: bytes) -> set:
    """Indices of the main subgraph's tensors that have data in the file (weights, biases, constants)."""
    m = model(fb)
    sg = m.Subgraphs(0)
    return {i for i in range(sg.TensorsLength()) if m.Buffers(sg.Tensors(i).Buffer()).DataLength() > 0}


def variable_names(fb: bytes) -> list[str]:
    """Names of the variable tensors (state a stateful interpreter keeps between invokes), main subgraph."""
    m = model(fb)
    g = m.Subgraphs(0)
    return [g.Tensors(i).Name().decode() for i in range(g.TensorsLength()) if g.Tensors(i).IsVariable()]


def variable_count(fb: bytes) -> int:
    m = model(fb)
    return sum(1 for g in range(m.SubgraphsLength()) for i in range(m.Subgraphs(g).TensorsLength())
               if m.Subgraphs(g).Tensors(i).IsVariable())


def remove_float_cell_clip(fb: bytes) -> tuple[bytes, list]:
    """Set cell_clip to 0 (= no clipping) on every float UNIDIRECTIONAL_SEQUENCE_LSTM, patching the 4
    bytes in place. The Keras->TFLite LSTM fusion hard-codes cell_clip=10.0, which torch and Keras do
    not have: measured on a trained h16 LSTM, 5 of 64 windows run to 80 steps ended up to 0.72 away
    from torch (cell state past 10) while the unclipped graph matched to 5e-5. Returns the new bytes and
    the original clip values. Integer LSTMs keep their clip: their int16 cell-state scale is tied to it."""
    m = model(fb)
    s = schema()
    buf = bytearray(fb)
    found = []
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            code = m.OperatorCodes(op.OpcodeIndex())
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != s.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM:
                continue
            if np.dtype(tensor_type(s, sg.Tensors(op.Inputs(0)).Type())) != np.float32:
                continue
            table = op.BuiltinOptions()
            opts = s.UnidirectionalSequenceLSTMOptions()
            opts.Init(table.Bytes, table.Pos)
            off = opts._tab.Offset(6)  # cell_clip; 0 = absent = already no clipping
            if off and opts.CellClip() > 0:
                found.append(float(opts.CellClip()))
                struct.pack_into("<f", buf, opts._tab.Pos + off, 0.0)
    return bytes(buf), found


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
    s = schema()
    m = model(fb)
    sg = m.Subgraphs(0)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    index = {sg.Tensors(i).Name().decode(): i for i in range(sg.TensorsLength())}
    ops = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        code = m.OperatorCodes(op.OpcodeIndex())
        ops.append((names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), ""),
                    [op.Inputs(j) for j in range(op.InputsLength())],
                    [op.Outputs(j) for j in range(op.OutputsLength())]))

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
        entry["dtype"] = tensor_type(s, sg.Tensors(a).Type())
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
