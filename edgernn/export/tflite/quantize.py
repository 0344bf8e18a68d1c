"""
The TFLite precisions as the exporter builds them: what the converter worker is asked for (its "kind") and
how the manifest describes the result ("quantization", from the ops the worker found). The int8 recipes of
edgernn.export.recipes name full_int8, int16x8 and dynamic here (RECIPES[name].builders["tflite"]); each takes
the ExportOptions and returns a Build; FLOAT is `--precision float`, dynamic(options) also `--precision dynamic`.

    build = recipes.builder("int16x8", "tflite")(options)   # -> Build(kind="int16x8", ...)
    spec["precision"] = build.kind                          # the worker's converter setting
    fields["quantization"] = build.describe(report)         # from the worker's report (its "ops")
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable


@dataclass(frozen=True)
class Build:
    """One TFLite precision: kind = the worker's converter setting (float | int8 = full integer | int16x8 |
    dynamic); describe(report) = the manifest's "quantization" for what the worker built."""
    kind: str
    describe: Callable[[dict], dict]


def full_int8(options) -> Build:
    """int8 activations and weights, calibrated; int8 or float I/O tensors (options.int8_io)."""
    return Build("int8", partial(_integer, kind="int8", int8_io=options.int8_io))


def int16x8(options) -> Build:
    """int16 activations, int8 weights, calibrated; float I/O tensors."""
    return Build("int16x8", partial(_integer, kind="int16x8", int8_io="float"))


def dynamic(options) -> Build:
    """Dynamic range: int8 weights, float activations (also `--precision dynamic`)."""
    return Build("dynamic", _dynamic)


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


def _compute(ops: dict) -> dict:
    """{"recurrent", "head"}: how each family of matrix products computes. The head is the last matrix
    product of the main graph in execution order; everything else is the recurrence (the fused LSTM op, an
    unrolled GRU's input and recurrent FULLY_CONNECTEDs, or the products inside a WHILE-loop body)."""
    mm = ops["matmuls"]
    main = [i for i, m in enumerate(mm) if m.get("subgraph", 0) == 0]
    head = main[-1:] if main else []
    return {"recurrent": _family_compute([m for i, m in enumerate(mm) if i not in head]),
            "head": _family_compute([mm[i] for i in head])}


def _float(report: dict) -> dict:
    return {"recipe": "none", "compute": {"recurrent": "float", "head": "float"}, "int8_ops": [],
            "float_ops": report["ops"]["all"], "note": "float32 weights and activations"}


FLOAT = Build("float", _float)  # `--precision float`: nothing quantized


def _integer(report: dict, kind: str, int8_io: str) -> dict:
    """full-int8 (kind "int8") or int16x8: integer kernels, checked op by op (never called full-int8 while
    a float kernel is left)."""
    ops = report["ops"]
    integer, hybrid, flt = ops["integer"], ops["hybrid"], ops["float"]
    compute = _compute(ops)
    fully = not flt and not hybrid and not ops["weight_dequantize"]
    if not fully:  # never call a graph with float kernels full-int8
        compute = {k: ("dynamic-int8" if hybrid else "float") if v == "full-int8" else v for k, v in compute.items()}
    if kind == "int16x8":
        compute = {k: "int16x8" if v == "full-int8" else v for k, v in compute.items()}
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
            hq = "int16" if kind == "int16x8" else "int8"
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
    q = {"recipe": "int16x8" if kind == "int16x8" else "full-int8", "compute": compute,
         "int8_ops": integer, "float_ops": flt, "note": note}
    if state_io:
        q["state_round_trip"] = "exact" if exact else "requantized"
    return q


def _dynamic(report: dict) -> dict:
    """Dynamic range: hybrid kernels where the converter placed them, int8 weights dequantized elsewhere."""
    ops = report["ops"]
    hybrid, flt = ops["hybrid"], ops["float"]
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
    return {"recipe": "dynamic", "compute": _compute(ops), "int8_ops": hybrid, "float_ops": flt,
            "note": note, "weight_only_dequantize_ops": ops["weight_dequantize"]}
