"""
TensorFlow Lite for Microcontrollers (TFLite Micro, PyPI tflite-micro) backend: the .tflite artifacts LiteRT runs,
run by the interpreter a microcontroller firmware links, here on the host. Imports only the standard library,
numpy and tflite_micro (docs/tflm.md).

    from edgernn.runtimes import load
    from edgernn.runtimes.tflm_backend import tflm_check
    tflm_check("artifacts/step-int8.tflite")   # {"runs": True, "reason": None, "arena_bytes": 7168}
    s = load("artifacts/step-int8.tflite", runtime="tflm")   # -> TFLMSession; the manifest's runtime is litert
    y = s.predict(window)                      # the same raw-window API as every Session
    st = s.stream(); y = st.step(frame)

TFLite Micro runs a subset of what LiteRT runs: float, full-int8 and int16x8 graphs of static shape. It refuses
dynamic-range artifacts (float activations x int8 weights: no hybrid kernels) and graphs whose tensor shapes
change at run time (the WHILE-loop int8 GRU sequence); load() raises an ArtifactError with TFLite Micro's own
reason. tflm_check() says whether an artifact runs and the smallest tensor arena it needs, in a child process:
TFLite Micro segfaults (rather than failing) on some arenas that are too small.

The interpreter is single-threaded (`threads` is ignored) and cannot resize an input: a sequence artifact runs
at the length it was exported with. The fused LSTM's dynamic time axis is stored as length 1 and its state is
kept in variable tensors, so such a window runs one frame per invoke after a reset - what a firmware does.
"""

from __future__ import annotations

import importlib.metadata as _md
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edgernn.errors import ArtifactError, RuntimeInputError
from edgernn.runtimes.files import captured_fd2
from edgernn.runtimes.registry import missing_dependency
from edgernn.runtimes.session import Session
from edgernn.runtimes.tensor import Tensor

# The arena a session gets. On the host it costs nothing until touched (measured: building an interpreter
# with 1, 64 or 256 MB took the same 5-9 ms and no extra RSS), and an arena too small may crash the process
# instead of raising, so a session never tries a small one; tflm_check() measures the real need.
ARENA = 64 << 20
# TFLite's TensorType enum -> numpy dtype, for the variable (state) tensors read by the saturation count
_TYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 7: np.int16, 9: np.int8}
_DYNAMIC_RANGE = "filter type: INT8"  # TFLite Micro's words for a float-input x int8-weight kernel


def _tflm():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:
        raise missing_dependency("tflm", str(exc).splitlines()[0] if str(exc) else "") from exc
    return runtime


def _version() -> str:
    try:
        return _md.version("tflite-micro")
    except _md.PackageNotFoundError:
        return "unknown"


class _Graph:
    """What the interpreter does not report, read from the flatbuffer: subgraph 0's input/output tensor names
    (TFLite Micro addresses them by position only, and names outputs StatefulPartitionedCall:N in an order
    unrelated to the manifest's), signature keys, variable tensors, and whether any shape is dynamic. Only what
    is asked for is read: walking all 2017 tensors of the demo's unrolled GRU takes 130 ms."""

    def __init__(self, data: bytes, name: str):
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

        try:
            self._m = m = fb.Model.GetRootAsModel(data, 0)
            self._g = g = m.Subgraphs(0)
            name_of = lambda i: g.Tensors(int(i)).Name().decode()
            self.inputs = [name_of(i) for i in g.InputsAsNumpy()]
            self.outputs = [name_of(i) for i in g.OutputsAsNumpy()]
            self.keys = {"input": {}, "output": {}}  # signature key (the Keras name: "x", "h0_next") -> tensor name
            if m.SignatureDefsLength() == 1:
                sig = m.SignatureDefs(0)
                for side, n, get in (("input", sig.InputsLength(), sig.Inputs),
                                     ("output", sig.OutputsLength(), sig.Outputs)):
                    for j in range(n):
                        self.keys[side][get(j).Name().decode()] = name_of(get(j).TensorIndex())
        except Exception as exc:  # a truncated or foreign file: the flatbuffer reader fails in Python, not C++
            raise ArtifactError(f"{name} is not a readable .tflite flatbuffer ({type(exc).__name__}: {exc}); "
                                "re-run `edgernn export`") from exc

    def tensors(self, wanted) -> dict:
        """Tensor name -> (index, flatbuffer Tensor) in subgraph 0, for the names in `wanted`."""
        g, out = self._g, {}
        for i in range(g.TensorsLength()):
            t = g.Tensors(i)
            if t.Name().decode() in wanted:
                out[t.Name().decode()] = (i, t)
        return out

    def dynamic(self) -> bool:
        """True when a tensor of any subgraph has a run-time dimension (shape_signature -1)."""
        m = self._m
        for s in range(m.SubgraphsLength()):
            g = m.Subgraphs(s)
            for i in range(g.TensorsLength()):
                t = g.Tensors(i)
                if not t.ShapeSignatureIsNone() and -1 in t.ShapeSignatureAsNumpy().tolist():
                    return True
        return False


def _reason(text: str, fallback: str, graph: _Graph) -> str:
    """TFLite Micro's messages (else `fallback`, the Python exception's) as one line, with what they mean for an
    edgernn artifact."""
    lines = [ln.strip().rstrip(".") for ln in text.splitlines()
             if ln.strip() and not ln.startswith("[RecordingMicroAllocator]")]
    lines = list(dict.fromkeys(lines)) or [fallback.strip().splitlines()[0] if fallback.strip() else "no reason given"]
    msg = "; ".join(lines[:3]) + (f" (+{len(lines) - 3} more messages)" if len(lines) > 3 else "")
    if _DYNAMIC_RANGE in text:
        hint = ("dynamic-range artifacts need float activations with int8 weights, hybrid kernels TFLite Micro "
                "does not have: export --precision int8 (full-int8 or int16x8) or float for a microcontroller")
    elif "Failed to allocate" in text or "too small" in text:
        hint = f"it needs more than the {ARENA >> 20} MB tensor arena it was given: too large for a microcontroller"
    elif graph.dynamic():
        hint = ("the graph has tensors whose shape changes at run time (shape_signature -1, e.g. the int8 GRU "
                "sequence's WHILE loop carrying a shrinking window), and TFLite Micro fixes every shape when it "
                "allocates: run the step artifact")
    else:
        hint = ""
    return msg + (f" ({hint})" if hint else "")


class TFLMSession(Session):
    runtime_name = "tflm"

    def _open(self, threads: int) -> None:  # threads: the interpreter is single-threaded
        rt = _tflm()
        self.runtime_package = "tflite-micro"
        self.runtime_version = _version()
        name = self.path.name
        # the interpreter reads the flatbuffer in place: keep the bytes alive as long as it is
        self._data = self.path.read_bytes()
        graph = _Graph(self._data, name)
        variables = self.manifest.get("state_variables") or []
        # GetTensor (reading the variable tensors for the stream's saturation count) works only in the
        # preserve-all-tensors configuration; the default one plans tensors into shared memory
        config = rt.InterpreterConfig.kPreserveAllTensors if variables else rt.InterpreterConfig.kAllocationRecording
        text, err = [], None
        # TFLite Micro says why it refuses a model with MicroPrintf, on fd 2 from C++ (measured: nothing on fd 1)
        with captured_fd2(text):
            try:
                it = rt.Interpreter.from_bytes(self._data, arena_size=ARENA, intrepreter_config=config)
                # one inference on zeros: a kernel that refuses at Invoke says why now, not on the first window
                for pos in range(len(graph.inputs)):
                    d = it.get_input_details(pos)
                    it.set_input(np.zeros(d["shape"], d["dtype"]), pos)
                it.invoke()
                it.reset()
            except Exception as exc:
                err = exc
        said = "".join(text)
        if err is not None:
            why = _reason(said, str(err) or type(err).__name__, graph)
            raise ArtifactError(f"{name} does not run on TFLite Micro: {why}") from err
        if said.strip():  # it ran but printed something: pass it on, never swallow it
            os.write(2, said.encode())
        self._it = it
        self._core = it._interpreter  # the C++ wrapper: skips the public methods' argument checks per call
        self.inputs = self._match(self.manifest["inputs"], graph, "input")
        self.outputs = self._match(self.manifest["outputs"], graph, "output")
        self._in_pos = [t.index for t in self.inputs]
        self._out_pos = [t.index for t in self.outputs]
        self._x_shape = tuple(int(v) for v in it.get_input_details(self.inputs[0].index)["shape"]) \
            if len(self.inputs) == 1 else None
        self._variables = []
        for vname, (idx, t) in graph.tensors(set(variables)).items():
            q = t.Quantization()
            scale = q.ScaleAsNumpy() if q is not None and not q.ScaleIsNone() else [0.0]
            zp = q.ZeroPointAsNumpy() if q is not None and not q.ZeroPointIsNone() else [0]
            self._variables.append(Tensor({"name": vname, "role": "state"}, _TYPES.get(t.Type(), np.float32),
                                          float(scale[0]) or None, int(zp[0]), index=idx))

    def _match(self, specs: list, graph: _Graph, what: str) -> list:
        """Pair manifest tensors with the graph's positions: by tensor name, else signature key, else a unique
        tensor name containing the manifest name; never by position when there is more than one tensor."""
        names = graph.inputs if what == "input" else graph.outputs
        if len(specs) != len(names):
            raise ArtifactError(f"{self.path.name} has {len(names)} {what}s but its manifest lists {len(specs)}; "
                                "re-run `edgernn export`")
        details = self._it.get_input_details if what == "input" else self._it.get_output_details
        keys = graph.keys[what]
        out, used = [], set()
        for s in specs:
            n = s["name"]
            found = n if n in names else keys.get(s.get("signature_key") or n)
            if found not in names:
                hits = [x for x in names if f"_{n}:" in x or x.startswith(f"{n}:")]
                found = hits[0] if len(hits) == 1 else names[0] if len(names) == 1 else None
            pos = names.index(found) if found in names else None
            if pos is None or pos in used:
                raise ArtifactError(f"{self.path.name}: cannot match manifest {what} {n!r} to the graph's {names} "
                                    f"(signature {sorted(keys)}); re-run `edgernn export`")
            used.add(pos)
            q = details(pos)["quantization_parameters"]
            scales, zps = list(q["scales"]), list(q["zero_points"])
            if len(scales) > 1:
                raise ArtifactError(f"{self.path.name}: {what} {n!r} is quantized per channel ({len(scales)} scales); "
                                    "edgernn artifacts quantize their inputs and outputs per tensor")
            out.append(Tensor(s, details(pos)["dtype"], scales[0] if scales else None, zps[0] if zps else 0,
                              index=pos))
        return out

    def _invoke(self, feeds: list) -> list:
        core = self._core
        try:
            for pos, arr in zip(self._in_pos, feeds):
                core.SetInputTensor(arr, pos)
        except ValueError as exc:  # it checks dtype and shape itself; it cannot resize
            raise RuntimeInputError(f"{self.path.name} on TFLite Micro: {str(exc).splitlines()[0]} "
                                    "(TFLite Micro cannot resize an input)") from exc
        core.Invoke()
        return [core.GetOutputTensor(p) for p in self._out_pos]

    def _invoke1(self, x: np.ndarray) -> list:
        shape = self._x_shape
        if shape is None or x.shape == shape or not (self._stateful and len(shape) == 3 and shape[1] == 1):
            return self._invoke([x])
        # a stateful (fused LSTM) sequence artifact with a dynamic time axis: TFLite Micro allocated it at
        # length 1 and keeps the LSTM state in variable tensors between invokes, so the window runs frame by
        # frame (the caller reset the state); the last frame's output is the window's, a tagger's are stacked
        core, pos = self._core, self._in_pos[0]
        steps = []
        for t in range(x.shape[1]):
            try:
                core.SetInputTensor(np.ascontiguousarray(x[:, t:t + 1]), pos)
            except ValueError as exc:
                raise RuntimeInputError(f"{self.path.name} on TFLite Micro: {str(exc).splitlines()[0]}") from exc
            core.Invoke()
            steps.append([core.GetOutputTensor(p) for p in self._out_pos])
        return [np.concatenate(ys, axis=1) if ys[0].ndim == 3 else ys[-1] for ys in zip(*steps)]

    def _reset(self) -> None:
        self._core.Reset()

    def _internal_states(self) -> list:
        return self._variables

    def _read_internal(self, t) -> np.ndarray:
        return self._core.GetTensor(t.index, 0)["tensor_data"]

    def close(self) -> None:
        self._it = self._core = None


# ---- tflm_check: does it run, and in how small an arena -------------------------------------------------
# The child: reads arena sizes on stdin, builds the interpreter with each, runs one inference on zeros and
# answers one JSON line. TFLite Micro's messages go to its stderr (a file the parent reads); its stdout is
# pointed there too, so only the answers use the pipe. Standard library + numpy + tflite_micro only.
_CHILD = r"""
import json, os, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
answers = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
data = open(sys.argv[1], "rb").read()
for line in sys.stdin:
    ok, error = False, ""
    try:
        it = runtime.Interpreter.from_bytes(data, arena_size=int(line))
        for pos in range(int(sys.argv[2])):
            d = it.get_input_details(pos)
            it.set_input(np.zeros(d["shape"], d["dtype"]), pos)
        it.invoke()
        ok = True
        it.print_allocations()
    except Exception as exc:
        error = str(exc)
    it = None
    sys.stdout.flush()
    answers.write(json.dumps({"ok": ok, "error": error}) + "\n")
    answers.flush()
"""


class _Prober:
    """probe(arena) -> (ok, text TFLite Micro printed, the Python error, its RecordingMicroAllocator total or
    None), through a child process that is restarted when TFLite Micro kills it (a crash counts as "does not
    fit")."""

    def __init__(self, path: Path, n_inputs: int, deadline: float):
        self.path, self.n_inputs, self.deadline = path, n_inputs, deadline
        self.proc = None
        self.log = tempfile.TemporaryFile()

    def _start(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(self.path), str(self.n_inputs)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.lines = queue.Queue()
        proc, lines = self.proc, self.lines
        threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] + [lines.put(None)], daemon=True).start()

    def __call__(self, arena: int):
        if self.proc is None:
            self._start()
        start = os.fstat(self.log.fileno()).st_size
        try:
            self.proc.stdin.write(f"{arena}\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=min(max(0.1, self.deadline - time.monotonic()), 86400.0))
        except BrokenPipeError:
            line = None
        except queue.Empty:
            self.close()
            raise TimeoutError from None
        error = ""
        if line is None:  # the child died: TFLite Micro crashed (a segfault on a too-small arena, measured)
            rc = self.proc.wait()
            self.proc = None
            error = f"TFLite Micro crashed the process (exit {rc})"
        size = os.fstat(self.log.fileno()).st_size
        text = os.pread(self.log.fileno(), size - start, start).decode("utf-8", "replace")
        ans = json.loads(line) if line else {"ok": False, "error": error}
        recorded = None
        for ln in text.splitlines():
            if "Arena allocation total" in ln:
                recorded = int(ln.split("total")[1].split()[0])
        if error:  # said after whatever TFLite Micro printed before it crashed
            text += f"\n{error}"
        return ans["ok"], text, ans["error"], recorded

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        self.log.close()


def _smallest(ok, start: int, top: int) -> int:
    """The smallest k in [1, top] with ok(k), given ok(top) and ok monotone: gallop from `start` (TFLite Micro's
    own count, close to the answer) to bracket it, then bisect."""
    if ok(start):
        lo, hi, step = 0, start, 1
        while hi - step >= 1:
            if not ok(hi - step):
                lo = hi - step
                break
            hi, step = hi - step, step * 2
    else:
        lo, hi, step = start, top, 1
        while lo + step < top:
            if ok(lo + step):
                hi = lo + step
                break
            lo, step = lo + step, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def tflm_check(path, timeout: float = 120.0) -> dict:
    """Whether TFLite Micro allocates `path` (a .tflite) and runs one inference on zero inputs, and the smallest
    tensor arena that does, in whole KB, measured on this host:
    {"runs": bool, "reason": str | None (TFLite Micro's, one line), "arena_bytes": int | None}.
    Runs in a child process (TFLite Micro segfaults on some too-small arenas). The arena is found by search, not
    taken from TFLite Micro's RecordingMicroAllocator total, which measured from 8 bytes over to 30% under the
    smallest arena that works (demo GRU float sequence: 254 KB recorded, 361 KB needed: planning takes temporary
    space the recorder does not count); it is only where the search starts. If the time runs out during the
    search, arena_bytes is the smallest size that worked so far (an upper bound). A file that is not a readable
    .tflite raises ArtifactError."""
    _tflm()
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"artifact {path} does not exist")
    graph = _Graph(path.read_bytes(), path.name)
    deadline = time.monotonic() + timeout
    probe = _Prober(path, len(graph.inputs), deadline)
    try:
        try:
            ok, text, error, recorded = probe(ARENA)
        except TimeoutError:
            return {"runs": False, "reason": f"no answer from TFLite Micro within {timeout:g} s", "arena_bytes": None}
        if not ok:
            return {"runs": False, "reason": _reason(text, error, graph), "arena_bytes": None}
        best = [ARENA >> 10]

        def fits(kb: int) -> bool:
            if kb >= best[0]:
                return True
            if time.monotonic() > deadline:
                raise TimeoutError
            if probe(kb << 10)[0]:
                best[0] = kb
                return True
            return False

        try:
            _smallest(fits, max(1, -(-(recorded or ARENA) // 1024)), ARENA >> 10)
        except TimeoutError:
            pass
        return {"runs": True, "reason": None, "arena_bytes": best[0] << 10}
    finally:
        probe.close()
