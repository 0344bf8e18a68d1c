"""
Per-tensor quantization error of a TFLite artifact against its float twin, for `parity --explain`.

    rows = tensor_errors(int8_path, float_path, window_normalized, mode)   # worst first
    rows[0] -> {"tensor": "model/gru0/gru_cell/add_2", "op": "ADD", "rmse": 0.41, "relative": 0.08,
                "steps": 9.7, "dtype": "int8", "scale": 0.042}

Both artifacts are run with every intermediate tensor preserved (LiteRT's
experimental_preserve_all_tensors) on the same normalized window - one invoke for sequence artifacts,
frame by frame for step artifacts (explicit state fed back, or the interpreter's own variable state) -
and every tensor present in both graphs under the same name is compared after dequantization:
  rmse      root-mean-square |quantized - float| over the window (and all frames)
  relative  rmse / (max - min of the float tensor): comparable between tensors
  steps     rmse / the tensor's quantization scale (what TFLite's QuantizationDebugger calls rmse/scale:
            ~0.29 is plain rounding noise; much more means error arriving from upstream or clipping)
The graphs come from one Keras model, so names match for most activations; constants are skipped.
The error is cumulative (each graph runs on its own upstream values), so in a recurrence the worst
tensors are late ones; `onset` finds the first tensor in execution order whose error crosses a threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _interpreter(path: Path):
    """Builtin kernels only (no XNNPACK: a delegate hides the ops and their intermediate tensors)."""
    import warnings

    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # pragma: no cover
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": that is what this is
        it = Interpreter(model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def _tensor(d: dict):
    """The runtime's Tensor (edgernn.runtimes.tensor) for an interpreter tensor detail: its (de)quantization."""
    from .runtimes.tensor import Tensor

    scale, zp = d["quantization"]
    return Tensor({"name": d["name"]}, d["dtype"], scale, zp)


def _q(d: dict, x: np.ndarray) -> np.ndarray:
    return _tensor(d).quantize(np.asarray(x, np.float32))


def _dq(d: dict, v: np.ndarray) -> np.ndarray:
    return _tensor(d).dequantize(v)


class _Runner:
    """One artifact stepping through a window, collecting every non-constant float-valued tensor."""

    def __init__(self, path: Path, manifest: dict):
        self.it = _interpreter(path)
        self.manifest = manifest
        self.details = {d["name"]: d for d in self.it.get_tensor_details()}
        self.inputs = {d["name"]: d for d in self.it.get_input_details()}
        self.outputs = {d["name"]: d for d in self.it.get_output_details()}
        ops = self.it._get_ops_details()
        self.producer, self.order = {}, {}
        for k, op in enumerate(ops):
            for i in op["outputs"]:
                if i >= 0:
                    self.producer[i] = op["op_name"]
                    self.order[i] = k

    def _x(self, x: np.ndarray):
        name = next(t["name"] for t in self.manifest["inputs"] if t["role"] == "x")
        d = self.inputs[name]
        shape = list(d["shape"])
        if list(x.shape) != shape:
            self.it.resize_tensor_input(d["index"], list(x.shape), strict=False)
            self.it.allocate_tensors()
            self.inputs = {e["name"]: e for e in self.it.get_input_details()}
            self.outputs = {e["name"]: e for e in self.it.get_output_details()}
            d = self.inputs[name]
        self.it.set_tensor(d["index"], _q(d, x))

    def _dump(self) -> dict:
        out = {}
        for name, d in self.details.items():
            if d["index"] not in self.producer:
                continue  # a constant or a graph input
            try:
                v = self.it.get_tensor(d["index"])
            except ValueError:
                continue
            if v.dtype.kind not in "fi" or v.dtype == np.int32:
                continue
            out[name] = (_dq(d, v), d)
        return out

    def run(self, window: np.ndarray) -> list[dict]:
        """Tensor dumps, one per invoke (one for a sequence window, one per frame for a step artifact)."""
        m = self.manifest
        self.it.reset_all_variables()
        if m["mode"] == "sequence":
            self._x(window[None].astype(np.float32))
            self.it.invoke()
            return [self._dump()]
        states = {t["name"]: np.zeros(self.inputs[t["name"]]["shape"], np.float32)
                  for t in m["inputs"] if t["role"] == "state"}
        dumps = []
        for frame in window:
            x = frame[None, None] if m.get("stateful_interpreter") else frame[None]
            self._x(x.astype(np.float32))
            for name, v in states.items():
                d = self.inputs[name]
                self.it.set_tensor(d["index"], _q(d, v))
            self.it.invoke()
            dumps.append(self._dump())
            for t in m["outputs"]:
                if t["role"] == "state":
                    d = self.outputs[t["name"]]
                    states[t["next"]] = _dq(d, self.it.get_tensor(d["index"]))
        return dumps


def tensor_errors(int8_path: Path, float_path: Path, window: np.ndarray, top: int | None = None) -> list[dict]:
    """Per-tensor error of int8_path against float_path on one NORMALIZED window [T, C], worst first
    (by relative error). Tensors are matched by name; those missing from either graph are skipped."""
    from .runtimes.manifest import read_manifest

    q_run = _Runner(Path(int8_path), read_manifest(int8_path))
    f_run = _Runner(Path(float_path), read_manifest(float_path))
    q_dumps, f_dumps = q_run.run(window), f_run.run(window)
    acc: dict = {}
    for qd, fd in zip(q_dumps, f_dumps):
        for name, (qv, det) in qd.items():
            if name not in fd or fd[name][0].shape != qv.shape:
                continue
            fv = fd[name][0]
            a = acc.setdefault(name, {"sq": 0.0, "n": 0, "lo": np.inf, "hi": -np.inf, "det": det})
            a["sq"] += float(np.sum((qv - fv) ** 2))
            a["n"] += int(fv.size)
            a["lo"], a["hi"] = min(a["lo"], float(fv.min())), max(a["hi"], float(fv.max()))
    rows = []
    for name, a in acc.items():
        det = a["det"]
        rmse = (a["sq"] / max(1, a["n"])) ** 0.5
        rng = a["hi"] - a["lo"]
        scale = float(det["quantization"][0]) if np.dtype(det["dtype"]).kind == "i" else None
        rows.append({"tensor": name, "op": q_run.producer.get(det["index"], "?"),
                     "op_index": q_run.order.get(det["index"], -1),
                     "dtype": np.dtype(det["dtype"]).name, "scale": scale, "rmse": rmse,
                     "relative": rmse / rng if rng > 0 else 0.0,
                     "steps": rmse / scale if scale else None})
    rows.sort(key=lambda r: -r["relative"])
    return rows[:top] if top else rows


def onset(rows: list[dict], share: float = 0.5) -> dict | None:
    """The first tensor in execution order whose relative error reaches `share` of the worst one's."""
    if not rows:
        return None
    limit = share * max(r["relative"] for r in rows)
    early = [r for r in rows if r["relative"] >= limit and r["op_index"] >= 0]
    return min(early, key=lambda r: r["op_index"]) if early else None
