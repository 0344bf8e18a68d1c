"""
Run a converted .tflite model with the LiteRT interpreter and compare it with torch's reference outputs: the
worker's check before the parent keeps an artifact (whole windows, a step graph streamed frame by frame with
its states wired by the manifest, or a stateful graph fed one frame per invoke).

    report["check"] = check(spec, fb, data, inputs, outputs)   # {"nominal": {"max_abs_diff": ...}, "T20": ...}
    y = run_sequence(interpreter(fb), X)                        # X [N, T, C] -> [N, K], batch 1, state reset
"""

from __future__ import annotations

import numpy as np

from edgernn.export.tflite.ops import INT_TYPES, interpreter


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
    """The converted model against torch on the spec's check windows: "frames" for a step or stateful-step
    graph; "nominal" plus one entry per other length ("T20", ...) for a sequence graph whose time axis is
    dynamic (an error entry where a length cannot run)."""
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
