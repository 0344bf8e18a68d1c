"""
LiteRT (TFLite) backend for on-device inference (.tflite artifacts).

Imports only the standard library, numpy and one interpreter package, tried in this order:
ai_edge_litert (pip install ai-edge-litert), tflite_runtime (pip install tflite-runtime), and only if
neither is installed tensorflow.lite. Use it through edgernn.runtimes.load:

    s = load("artifacts/sequence-int8.tflite", threads=1)   # -> LiteRTSession
    s.predict(window)          # raw window: normalized, quantized with the interpreter's own params

Artifacts with a fixed batch of 1 run a batch one window at a time. When the manifest says
"stateful_interpreter": true (the fused LSTM keeps state inside the interpreter), the interpreter's
variables are reset before every independent sequence.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as _md
import os

import numpy as np

from edgernn.errors import ArtifactError
from edgernn.runtimes.files import captured_fd2
from edgernn.runtimes.registry import missing_dependency
from edgernn.runtimes.session import Session
from edgernn.runtimes.tensor import Tensor


def _ai_edge_litert():
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter, "ai-edge-litert"


def _tflite_runtime():
    from tflite_runtime.interpreter import Interpreter

    return Interpreter, "tflite-runtime"


def _tensorflow():
    import tensorflow as tf

    return tf.lite.Interpreter, "tensorflow"


_CANDIDATES = (_ai_edge_litert, _tflite_runtime, _tensorflow)


def interpreter_class():
    """(Interpreter class, pip package name) from the first installed candidate."""
    errors = []
    for candidate in _CANDIDATES:
        try:
            return candidate()
        except ImportError as exc:
            errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    raise missing_dependency("litert", "; ".join(errors[:1]))


def _version(pkg: str) -> str:
    for name in (pkg, "tensorflow-cpu") if pkg == "tensorflow" else (pkg,):
        try:
            return _md.version(name)
        except _md.PackageNotFoundError:
            continue
    return "unknown"


@contextlib.contextmanager
def _without_info_lines():
    """The TFLite C++ runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on stderr
    (file descriptor 2, past Python) when an interpreter is made: it would break `-q` and pollute a device
    app's log. Capture fd 2 while the interpreter is built and pass on everything except INFO lines."""
    text: list = []
    try:
        with captured_fd2(text):
            yield
    finally:
        kept = [ln for ln in "".join(text).splitlines(keepends=True) if not ln.startswith("INFO: ")]
        if kept:
            os.write(2, "".join(kept).encode())


class LiteRTSession(Session):
    runtime_name = "litert"

    def _open(self, threads: int) -> None:
        Interpreter, pkg = interpreter_class()
        self.runtime_package = pkg
        self.runtime_version = _version(pkg)
        try:
            with _without_info_lines():
                self._it = Interpreter(model_path=str(self.path), num_threads=threads)
                self._it.allocate_tensors()
        except Exception as exc:
            raise ArtifactError(f"{pkg} {self.runtime_version} cannot load {self.path.name} "
                                f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); "
                                "re-run `edgernn export` or upgrade the runtime") from exc
        self.inputs = self._match(self.manifest["inputs"], self._it.get_input_details(), "input")
        self.outputs = self._match(self.manifest["outputs"], self._it.get_output_details(), "output")
        self._in_idx = [t.index for t in self.inputs]
        self._out_idx = [t.index for t in self.outputs]
        self._shapes = {d["index"]: tuple(int(v) for v in d["shape"]) for d in self._it.get_input_details()}
        # the state a stateful interpreter keeps in variable tensors (the manifest names them): read for the
        # stream's saturation count only
        names = set(self.manifest.get("state_variables") or [])
        self._variables = [Tensor({"name": d["name"], "role": "state"}, d["dtype"], *d["quantization"],
                                  index=d["index"]) for d in self._it.get_tensor_details() if d["name"] in names]
        # The public set_tensor/invoke/get_tensor are thin Python wrappers around the C++ interpreter, and
        # invoke() first checks that no tensor() views into its memory are alive (this class never makes
        # any). Call the C++ object directly when this build has it: about 1 us less per call. Never keep
        # a reference to it (or its bound methods): that would make the public invoke()/allocate_tensors()
        # refuse to run.
        core = getattr(self._it, "_interpreter", None)
        self._direct = core is not None and all(callable(getattr(core, n, None))
                                                for n in ("SetTensor", "Invoke", "GetTensor"))
        del core
        self._x1 = self._in_idx[0] if len(self._in_idx) == 1 else None

    def _signature_index(self, what: str) -> dict:
        """Signature key (the Keras input/output name, e.g. "x", "h0_next") -> tensor index. TFLite names
        outputs StatefulPartitionedCall:N in an order unrelated to the model's, so keys are the reliable
        way to pair them."""
        try:
            sigs = self._it.get_signature_list()
            if len(sigs) != 1:
                return {}
            runner = self._it.get_signature_runner(next(iter(sigs)))
            det = runner.get_input_details() if what == "input" else runner.get_output_details()
            return {k: int(v["index"]) for k, v in det.items()}
        except Exception:  # older interpreters without signature support: fall back to tensor names
            return {}

    def _match(self, specs: list, details: list, what: str) -> list:
        """Pair manifest tensors with interpreter tensors: by tensor name, else by signature key, else
        by a unique tensor name containing the manifest name (serving_default_x:0); never by position
        when there is more than one tensor."""
        if len(specs) != len(details):
            raise ArtifactError(f"{self.path.name} has {len(details)} {what}s but its manifest lists {len(specs)}; "
                                "re-run `edgernn export`")
        by_name = {d["name"]: d for d in details}
        by_index = {int(d["index"]): d for d in details}
        sig = self._signature_index(what)
        out, used = [], set()
        for s in specs:
            name = s["name"]
            d = by_name.get(name)
            if d is None and name in sig:
                d = by_index.get(sig[name])
            if d is None:
                hits = [x for x in details if f"_{name}:" in x["name"] or x["name"].startswith(f"{name}:")]
                d = hits[0] if len(hits) == 1 else None
            if d is None and len(details) == 1:
                d = details[0]
            if d is None or int(d["index"]) in used:
                raise ArtifactError(f"{self.path.name}: cannot match manifest {what} {name!r} to the interpreter's "
                                    f"{sorted(by_name)} (signature {sorted(sig)}); re-run `edgernn export`")
            used.add(int(d["index"]))
            scale, zp = d.get("quantization", (0.0, 0))
            out.append(Tensor(s, d["dtype"], scale if scale else None, zp, index=int(d["index"])))
        return out

    def _invoke(self, feeds: list) -> list:
        shapes = self._shapes
        for idx, arr in zip(self._in_idx, feeds):
            if arr.shape != shapes[idx]:
                self._resize(idx, arr.shape)
        if self._direct:
            core = self._it._interpreter
            for idx, arr in zip(self._in_idx, feeds):
                core.SetTensor(idx, arr)
            core.Invoke()
            return [core.GetTensor(i, 0) for i in self._out_idx]
        it = self._it
        for idx, arr in zip(self._in_idx, feeds):
            it.set_tensor(idx, arr)
        it.invoke()
        return [it.get_tensor(i) for i in self._out_idx]

    def _invoke_fixed(self, feeds: list) -> list:
        """_invoke for feeds whose shapes an earlier _invoke already fitted (a stream's frames and states):
        no per-input shape check, about 0.5 us of a 4 us step."""
        if not self._direct:
            return self._invoke(feeds)
        core = self._it._interpreter
        for idx, arr in zip(self._in_idx, feeds):
            core.SetTensor(idx, arr)
        core.Invoke()
        return [core.GetTensor(i, 0) for i in self._out_idx]

    def _invoke1(self, x):
        idx = self._x1
        if idx is None or not self._direct:
            return self._invoke([x])
        if x.shape != self._shapes[idx]:
            self._resize(idx, x.shape)
        core = self._it._interpreter
        core.SetTensor(idx, x)
        core.Invoke()
        return [core.GetTensor(i, 0) for i in self._out_idx]

    def _resize(self, idx: int, shape) -> None:
        try:
            self._it.resize_tensor_input(idx, list(shape), strict=True)
            self._it.allocate_tensors()
        except Exception:
            from edgernn.errors import RuntimeInputError

            raise RuntimeInputError(f"{self.path.name} takes a fixed input of shape {list(self._shapes[idx])}, "
                                    f"got {list(shape)}") from None
        self._shapes[idx] = tuple(shape)

    def _reset(self) -> None:
        self._it.reset_all_variables()

    def _internal_states(self) -> list:
        return self._variables

    def _read_internal(self, t) -> np.ndarray:
        if self._direct:
            return self._it._interpreter.GetTensor(t.index, 0)
        return self._it.get_tensor(t.index)

    def close(self) -> None:
        self._it = None
