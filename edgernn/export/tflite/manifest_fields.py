"""
The TFLite manifest's fields (docs/manifest.md) from the worker's report: I/O tensors, sequence length and
why, state layout, graph summary, the export check; "quantization" comes from the Build (quantize.py).

    fields = manifest_fields(run, report, build, "step", seconds)   # then edgernn.export.manifest.publish
"""

from __future__ import annotations

from edgernn.export.manifest import base_fields
from edgernn.export.tflite.spec import UNROLL_MAX_STEPS


def manifest_fields(run, report: dict, build, mode: str, seconds: float) -> dict:
    """The TFLite manifest's fields (docs/manifest.md) for the artifact the worker built and reported;
    build = the edgernn.export.tflite.quantize.Build it was converted with."""
    cfg = run.config
    x = next(e for e in report["inputs"] if e["role"] == "x")
    seq_len = None if mode == "step" else x["shape"][1]
    if mode == "step" and len(x["shape"]) == 3:  # stateful step: one frame per invoke, as [1, 1, C]
        x["shape"] = [1, 1, cfg.input_size]
    fields = base_fields(run, "tflite", build.kind, mode)
    fields.update({
        "quantization": build.describe(report),
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
    if report.get("fixed_length"):
        return (f"fixed at {seq_len}: the {cfg.cell.upper()} runs as a WHILE loop (constant file size); "
                f"{report['fixed_length']}")
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
