"""
ONNX Runtime backend for on-device inference (.onnx and .ort artifacts).

Imports only the standard library, numpy and onnxruntime: device apps embed this file, so never
import torch here. Use it through edgernn.runtimes.load, which picks the backend from the manifest:

    s = load("artifacts/sequence-int8.onnx", threads=1)   # -> OrtSession
    s.predict(window)                                      # raw window, normalization applied

Session settings: intra_op_num_threads = threads, inter_op_num_threads = 1, sequential execution,
CPU execution provider only, and session.disable_quant_qdq = 1: edgernn's int8 ONNX files store
GRU/RNN weights int8 behind DequantizeLinear; with this option onnxruntime folds them into float
weights once at load (measured: demo GRU h32 int8 53.7 us/window) instead of dequantizing on every call
(80.6 us, 1.4x the float file's 57). edgernn writes no QDQ activation graphs, so nothing else changes.
"""

from __future__ import annotations

import numpy as np

from edgernn.errors import ArtifactError
from edgernn.runtimes.registry import missing_dependency
from edgernn.runtimes.session import Session
from edgernn.runtimes.tensor import Tensor

_DTYPES = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
           "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(double)": np.float64}


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise missing_dependency("onnxruntime", str(exc)) from exc
    return onnxruntime


class OrtSession(Session):
    runtime_name = "onnxruntime"

    def _open(self, threads: int) -> None:
        ort = _import_ort()
        self.runtime_version = ort.__version__
        self.runtime_package = "onnxruntime"
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        so.add_session_config_entry("session.disable_quant_qdq", "1")  # fold weight DequantizeLinear at load
        try:
            self._sess = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ArtifactError(f"onnxruntime {ort.__version__} cannot load {self.path.name} "
                                f"({str(exc).splitlines()[0][:200]}); re-run `edgernn export` or upgrade "
                                "onnxruntime") from exc
        self.inputs = self._match(self.manifest["inputs"], self._sess.get_inputs(), "input")
        self.outputs = self._match(self.manifest["outputs"], self._sess.get_outputs(), "output")
        self._in_names = [t.name for t in self.inputs]
        self._out_names = [t.name for t in self.outputs]
        # The public InferenceSession.run re-validates the feed names on every call (about 3 us, as much
        # as the model itself for small RNNs). Our feeds always have exactly the session's input names, so
        # call the C++ session directly when this onnxruntime build exposes it; else the public API.
        c = getattr(self._sess, "_sess", None)
        self._crun = c.run if c is not None and callable(getattr(c, "run", None)) else None
        if self._crun is None:
            self._crun = lambda names, feeds, _opts: self._sess.run(names, feeds)
        self._x_name = self._in_names[0] if len(self._in_names) == 1 else None
        # dynamic int8 picks the activation scale from the whole input tensor, so a window's output would
        # depend on the other windows of its batch: run batches one window at a time, as a device app does
        self.batch_one_window = self.manifest["precision"] != "float"

    def _match(self, specs: list, io, what: str) -> list:
        by_name = {t.name: t for t in io}
        missing = [s["name"] for s in specs if s["name"] not in by_name]
        if missing or (what == "input" and len(specs) != len(io)):
            raise ArtifactError(
                f"{self.path.name} {what}s {sorted(by_name)} do not match its manifest {[s['name'] for s in specs]}; "
                "the artifact and manifest are from different exports - re-run `edgernn export`")
        out = []
        for s in specs:
            q = s.get("quant") or {}
            dtype = _DTYPES.get(by_name[s["name"]].type, np.float32)
            out.append(Tensor(s, dtype, q.get("scale"), q.get("zero_point")))
        return out

    def _invoke(self, feeds: list) -> list:
        return self._crun(self._out_names, dict(zip(self._in_names, feeds)), None)

    def _invoke1(self, x):
        if self._x_name is None:
            return self._invoke([x])
        return self._crun(self._out_names, {self._x_name: x}, None)

    def close(self) -> None:
        self._sess = None
