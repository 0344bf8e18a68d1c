"""
The runtime module a device app embeds: load an exported artifact and run it on raw sensor windows.

Imports only the standard library and numpy; the backend (onnxruntime or LiteRT) is imported on first
use, so `import edgernn.runtimes` never pulls torch or tensorflow (a test proves it).

    from edgernn.runtimes import load, available_runtimes
    s = load("artifacts/sequence-int8.tflite", threads=1)   # reads + verifies sequence-int8.tflite.json
    y = s.predict(window)        # raw window [T, C] (or batch [B, T, C]) -> float32 [K] (or [B, K])
    st = load("artifacts/step-float.onnx").stream()
    for frame in sensor:         # raw frame [C]
        y = st.step(frame)       # output after this frame; st.reset() starts a new sequence
    s.close()

predict() does what training did to the data: left-pads a short window with the manifest's pad_value
(raw units) to the artifact's fixed length, normalizes (x - mean) / std, quantizes for int8 inputs,
runs, dequantizes the outputs and (forecast) converts them back to raw units. On a step artifact,
predict() streams the window frame by frame from a zero state and returns the last output ([T, K] for
tag). Output shapes: classify/forecast [K] or [B, K]; tag [T, K] or [B, T, K] (a padded window's tag
output is cropped back to the window's own T steps).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, ConfigError, MissingDependencyError, RuntimeInputError
from .manifest import ManifestError, read_manifest

# runtime name -> "module:class", imported on first use
RUNTIMES = {
    "onnxruntime": "edgernn.runtimes.onnxruntime:OrtSession",
    "litert": "edgernn.runtimes.litert:LiteRTSession",
}
FORMAT_RUNTIME = {"onnx": "onnxruntime", "ort": "onnxruntime", "tflite": "litert"}
# runtime -> (pip extra, plain pip line for a device, importable module names that provide it)
INSTALL = {
    "onnxruntime": ("ort", "pip install onnxruntime", ("onnxruntime",)),
    "litert": ("litert", "pip install ai-edge-litert (or tflite-runtime)",
               ("ai_edge_litert", "tflite_runtime", "tensorflow")),
}

__all__ = ["load", "available_runtimes", "Session", "Stream", "RUNTIMES", "missing_dependency"]


def missing_dependency(runtime: str, detail: str = "") -> MissingDependencyError:
    """The error for a runtime whose package is not installed: names the pip extra and the plain pip line."""
    extra, pip_line, _ = INSTALL[runtime]
    why = f" ({detail})" if detail else ""
    return MissingDependencyError(
        f"the {runtime} runtime is not installed{why}; install it with: pip install 'edgernn[{extra}]' "
        f"(on a device without edgernn's extras: {pip_line})"
    )


def available_runtimes() -> list[str]:
    """Runtime names whose backend package is installed here (checked without importing it)."""
    out = []
    for name, (_, _, modules) in INSTALL.items():
        for mod in modules:
            try:
                if importlib.util.find_spec(mod) is not None:
                    out.append(name)
                    break
            except (ImportError, ValueError):
                continue
    return out


def _backend_class(runtime: str):
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    module, cls = RUNTIMES[runtime].split(":")
    return getattr(importlib.import_module(module), cls)


def load(path, threads: int = 1, runtime: str | None = None) -> "Session":
    """Open an artifact with its runtime. Reads `<path>.json`, verifies size + sha256, checks that the
    artifact is meant for `runtime` (default: the manifest's), and returns a Session."""
    if runtime is not None and runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    try:
        manifest = read_manifest(path)
    except ManifestError as exc:
        raise ArtifactError(str(exc)) from None
    name = Path(path).name
    built_for = manifest.get("runtime")
    if built_for not in RUNTIMES:
        raise ArtifactError(
            f"{name} was built for runtime {built_for!r}, which edgernn.runtimes cannot run; "
            f"supported: {', '.join(RUNTIMES)}"
        )
    expected = FORMAT_RUNTIME.get(manifest.get("format"))
    if expected is not None and expected != built_for:
        raise ArtifactError(
            f"{name}: manifest says format {manifest['format']!r} but runtime {built_for!r} "
            f"(a {manifest['format']} file runs on {expected}); re-run `edgernn export`"
        )
    if runtime is not None and runtime != built_for:
        fmt = {"onnxruntime": "onnx", "litert": "tflite"}[runtime]
        raise ArtifactError(
            f"{name} is a {manifest.get('format')} artifact built for {built_for}, not {runtime}: "
            f"load it with runtime={built_for!r} (or None), or export with --format {fmt} for {runtime}"
        )
    cls = _backend_class(built_for)
    return cls(manifest["_artifact_path"], manifest, int(threads))


_F32 = np.dtype(np.float32)
_isfinite = math.isfinite
_sum = np.add.reduce


class _Tensor:
    """One model input/output as the session sees it: manifest spec + the backend's dtype and quant."""

    __slots__ = ("name", "shape", "role", "next", "dtype", "scale", "zero_point", "qmin", "qmax", "index", "plain")

    def __init__(self, spec: dict, dtype, scale=None, zero_point=None, index=None):
        self.name = spec["name"]
        self.shape = spec.get("shape")
        self.role = spec.get("role", "x")
        self.next = spec.get("next")
        self.dtype = np.dtype(dtype)
        self.index = index
        quantized = self.dtype.kind in "iu"
        self.scale = float(scale) if quantized and scale else None
        self.zero_point = int(zero_point or 0) if quantized else None
        if quantized:
            info = np.iinfo(self.dtype)
            self.qmin, self.qmax = info.min, info.max
        else:
            self.qmin = self.qmax = None
        self.plain = self.dtype == _F32  # float32 in and out: nothing to convert

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """float32 -> the tensor's dtype: round(x / scale) + zero_point, clipped (identity for float32)."""
        if self.scale is None:
            return x if x.dtype == self.dtype else x.astype(self.dtype)
        q = np.round(x / np.float32(self.scale)) + np.float32(self.zero_point)
        np.clip(q, self.qmin, self.qmax, out=q)
        return q.astype(self.dtype)

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        """The tensor's dtype -> float32: (q - zero_point) * scale."""
        if self.scale is None:
            return y if y.dtype == _F32 else y.astype(_F32)
        return ((y.astype(_F32) - np.float32(self.zero_point)) * np.float32(self.scale)).astype(_F32)


class Session:
    """A loaded artifact. Backends implement _open() (setting self.inputs / self.outputs, lists of
    _Tensor in manifest order) and _invoke(); optionally _invoke1(), _reset() and close().
    Public: manifest, runtime_name, runtime_version, runtime_package, threads, channels,
    sequence_length, predict(), stream(), run_normalized(), close()."""

    runtime_name = ""
    _per_window = False  # run a batch one window at a time (see __init__)

    def __init__(self, path, manifest: dict, threads: int = 1):
        self.path = Path(path)
        self.manifest = manifest
        self.threads = int(threads)
        self.runtime_version = ""
        self.runtime_package = ""
        self.mode = manifest.get("mode", "sequence")
        self.task = manifest.get("task", "classify")
        pre = manifest["preprocessing"]
        try:
            mean = np.asarray(pre["mean"], dtype=np.float32)
            std = np.asarray(pre["std"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{self.path.name}.json has no usable preprocessing mean/std ({exc}); "
                                "re-run `edgernn export`") from None
        if mean.ndim != 1 or mean.shape != std.shape or not (std > 0).all():
            raise ArtifactError(f"{self.path.name}.json preprocessing mean/std are inconsistent "
                                f"(shapes {list(mean.shape)} / {list(std.shape)}, std must be > 0); "
                                "re-run `edgernn export`")
        self.channels = int(mean.shape[0])
        self._mean, self._std = mean[None], std[None]  # [1, C]: a frame [C] normalizes to [1, C]
        self._pad_value = float(pre.get("pad_value", 0.0))
        out_pre = pre.get("output") or None
        self._out_mean = np.asarray(out_pre["mean"], np.float32) if out_pre else None
        self._out_std = np.asarray(out_pre["std"], np.float32) if out_pre else None
        seq_len = manifest.get("sequence_length")
        self.sequence_length = int(seq_len) if seq_len else None
        self._stateful = bool(manifest.get("stateful_interpreter", False))
        self._open(threads)
        xs = [t for t in self.inputs if t.role == "x"] or self.inputs[:1]
        self._x = xs[0]
        self._x_pos = self.inputs.index(self._x)
        self._states = [t for t in self.inputs if t.role == "state"]
        ys = [t for t in self.outputs if t.role in ("y", "x")] or [t for t in self.outputs if not t.next][:1]
        self._y = ys[0] if ys else self.outputs[0]
        self._y_pos = self.outputs.index(self._y)
        by_name = {t.name: i for i, t in enumerate(self.inputs)}
        # (state output position, state input position it feeds on the next frame)
        self._feedback = [(i, by_name[t.next]) for i, t in enumerate(self.outputs) if t.next in by_name]
        if self.mode == "step" and (not self._states or len(self._feedback) != len(self._states)):
            raise ArtifactError(
                f"{self.path.name}.json lists {len(self._states)} state inputs but {len(self._feedback)} state "
                "outputs with a matching 'next'; re-run `edgernn export --streaming`")
        shape = self._x.shape or []
        self._fixed_batch = len(shape) >= 1 and shape[0] is not None  # e.g. TFLite: batch 1 only
        # onnxruntime dynamic int8 picks the activation scale from the whole input tensor, so a window's
        # output would depend on the other windows in its batch: run batches one window at a time, which
        # is also what a device app does
        self._per_window = self._per_window or (manifest.get("format") in ("onnx", "ort")
                                                and manifest.get("precision") != "float")
        # fast path of predict(): one float32 window of the right shape, plain float output
        self._fast = self.mode == "sequence" and not (self._fixed_batch and shape[0] != 1)
        self._y_plain = self._y.plain and self._out_mean is None

    # ---- backend interface -------------------------------------------------------------------------
    def _open(self, threads: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _invoke(self, feeds: list) -> list:  # pragma: no cover - abstract
        """Run once: feeds in self.inputs order (artifact dtypes) -> raw outputs in self.outputs order."""
        raise NotImplementedError

    def _invoke1(self, x: np.ndarray) -> list:
        """Run a single-input model (sequence artifacts); backends may override with a faster call."""
        return self._invoke([x])

    def _reset(self) -> None:
        """Clear runtime-internal state before an independent sequence (stateful interpreters)."""

    def close(self) -> None:
        """Release the runtime session (the object is unusable afterwards)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"<{type(self).__name__} {self.path.name} {self.manifest.get('format')} "
                f"{self.manifest.get('precision')} {self.mode} on {self.runtime_name} {self.runtime_version}>")

    # ---- input checks ------------------------------------------------------------------------------
    def _expect(self, what: str) -> str:
        c = self.channels
        if what == "frame":
            return f"[{c}] or [1, {c}]"
        t = self.sequence_length or "T"
        return f"[{t}, {c}] or [B, {t}, {c}]"

    def _as_float(self, data, what: str) -> np.ndarray:
        x = data if type(data) is np.ndarray else None
        if x is None:
            try:
                x = np.asarray(data)
            except (ValueError, TypeError) as exc:
                raise RuntimeInputError(f"{what} is not a numeric array ({str(exc).splitlines()[0]}); pass a "
                                        f"float array of shape {self._expect(what)}") from None
        if x.dtype.kind not in "fiu":
            raise RuntimeInputError(f"{what} has dtype {x.dtype}; expected numbers (float32 preferred) of shape "
                                    f"{self._expect(what)}")
        return x if x.dtype == _F32 else x.astype(_F32)

    def _nonfinite(self, x: np.ndarray, what: str) -> RuntimeInputError:
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        call = "step()" if what == "frame" else "predict()"
        if bad:
            return RuntimeInputError(f"{what} contains {bad} NaN/inf value(s) of {x.size}; clean or interpolate "
                                     f"the sensor data before {call}")
        return RuntimeInputError(f"{what} values are too large to normalize (max |x| {float(np.abs(x).max()):.3g}); "
                                 "check the sensor units")

    def _check_window(self, window):
        """-> (normalized float32 [B, T', C], batched, original T); pads to a fixed length."""
        x = self._as_float(window, "window")
        if x.ndim == 2:
            x3, batched = x[None], False
        elif x.ndim == 3:
            x3, batched = x, True
        else:
            raise RuntimeInputError(f"window has shape {list(x.shape)} ({x.ndim}-D); expected {self._expect('window')}")
        B, T, C = x3.shape
        if C != self.channels:
            raise RuntimeInputError(f"window has {C} channels (shape {list(x.shape)}); this model expects "
                                    f"{self.channels}: {self._expect('window')}")
        if T < 1 or B < 1:
            raise RuntimeInputError(f"window is empty (shape {list(x.shape)}); expected {self._expect('window')}")
        if not np.isfinite(x3).all():
            raise self._nonfinite(x3, "window")
        L = self.sequence_length
        if L is not None and self.mode == "sequence" and T != L:
            if T > L:
                raise RuntimeInputError(
                    f"window has {T} steps but this artifact is fixed at {L}; pass the last {L} steps "
                    f"(window[-{L}:]) or export a model with a dynamic time axis")
            pad = np.full((B, L - T, C), self._pad_value, dtype=np.float32)
            x3 = np.concatenate([pad, x3], axis=1)
        xn = (x3 - self._mean) / self._std
        if not _isfinite(_sum(xn, None)):
            raise self._nonfinite(xn, "window")
        return xn, batched, T

    def _denorm(self, y: np.ndarray) -> np.ndarray:
        if self._out_mean is None:
            return y
        return (y * self._out_std + self._out_mean).astype(np.float32)

    # ---- inference ---------------------------------------------------------------------------------
    def predict(self, window) -> np.ndarray:
        """Raw window [T, C] or batch [B, T, C] -> float32 output [K] / [B, K] (tag: [T, K] / [B, T, K])."""
        if self._fast and type(window) is np.ndarray and window.dtype == _F32 and window.ndim == 2:
            T, C = window.shape
            if C == self.channels and T > 0 and (self.sequence_length is None or T == self.sequence_length):
                # fast path (what a device app calls in its loop): same steps as below, fewer checks
                xn = window - self._mean
                xn /= self._std
                if not _isfinite(_sum(xn, None)):
                    raise self._nonfinite(window, "window")
                if self._stateful:
                    self._reset()
                x = self._x
                y = self._invoke1(xn[None] if x.plain else x.quantize(xn[None]))[self._y_pos]
                if not self._y_plain:
                    y = self._denorm(self._y.dequantize(y))
                return y[0]
        xn, batched, T = self._check_window(window)
        y = self._denorm(self._run(xn))
        if self.task == "tag" and y.ndim == 3 and y.shape[1] != T:
            y = y[:, -T:]  # drop the outputs of left padding
        return y if batched else y[0]

    def run_normalized(self, x) -> np.ndarray:
        """Low level: already-normalized float input [T, C] or [B, T, C] -> dequantized model output (no
        padding, no NaN check, no output de-normalization for forecast)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            return self._run(x[None])[0]
        if x.ndim != 3:
            raise RuntimeInputError(f"run_normalized expects [T, C] or [B, T, C], got shape {list(x.shape)}")
        return self._run(x)

    def _run(self, xn: np.ndarray) -> np.ndarray:
        """Normalized [B, T, C] -> dequantized output [B, ...]."""
        if self.mode == "step":
            return np.stack([self._step_window(w) for w in xn])
        if (self._fixed_batch or self._per_window) and xn.shape[0] != 1:
            return np.concatenate([self._run_one(xn[i:i + 1]) for i in range(xn.shape[0])])
        return self._run_one(xn)

    def _run_one(self, xn: np.ndarray) -> np.ndarray:
        if self._stateful:
            self._reset()
        out = self._invoke1(self._x.quantize(np.ascontiguousarray(xn)))
        return self._y.dequantize(out[self._y_pos])

    def _zero_states(self) -> list:
        return [np.zeros([1 if d is None else int(d) for d in (t.shape or [])], np.float32) for t in self._states]

    def _step_window(self, xn: np.ndarray) -> np.ndarray:
        """Stream one normalized window [T, C] from zero state: last output [K] (tag: [T, K])."""
        st = Stream(self)
        outs = [st._step_normalized(xn[t:t + 1]) for t in range(xn.shape[0])]
        return np.stack(outs) if self.task == "tag" else outs[-1]

    def stream(self) -> "Stream":
        """A stateful stepper over a step artifact: step(frame) -> output, reset()."""
        if self.mode != "step":
            raise RuntimeInputError(
                f"{self.path.name} is a {self.mode} artifact and cannot stream frame by frame; export with "
                "--streaming and load the step-*.onnx / step-*.tflite artifact (or call predict(window))")
        return Stream(self)


class Stream:
    """Frame-by-frame inference over a step artifact. State tensors (manifest role "state") start at
    zero, are kept in float32, and are (de)quantized per tensor when the artifact's state is int8.

        st = session.stream()
        y = st.step(frame)      # raw frame [C] or [1, C] -> float32 output [K]
        st.reset()              # next independent sequence
        st.state                # {state input name: float32 array}
    """

    def __init__(self, session: Session):
        s = self.session = session
        self._feeds = [None] * len(s.inputs)
        self._x = s._x
        self._x_pos = s._x_pos
        # (output position, input position, output tensor, input tensor) per recurrent state
        self._loop = [(o, i, s.outputs[o], s.inputs[i]) for o, i in s._feedback]
        self._fstate = [None] * len(self._loop)
        self._y = s._y
        self._y_pos = s._y_pos
        self.reset()

    @property
    def state(self) -> dict:
        return {t_in.name: v for (_, _, _, t_in), v in zip(self._loop, self._fstate)}

    def reset(self) -> None:
        """Start a new independent sequence: zero state."""
        s = self.session
        zeros = dict(zip((t.name for t in s._states), s._zero_states()))
        for k, (_, i, _, t_in) in enumerate(self._loop):
            z = zeros[t_in.name]
            self._fstate[k] = z
            self._feeds[i] = z if t_in.plain else t_in.quantize(z)
        if s._stateful:
            s._reset()

    def step(self, frame) -> np.ndarray:
        """Raw frame [C] or [1, C] -> float32 output [K] after this frame (state advanced)."""
        s = self.session
        if type(frame) is np.ndarray and frame.dtype == _F32 and frame.shape[-1:] == (s.channels,) \
                and (frame.ndim == 1 or frame.shape == (1, s.channels)):
            xn = frame - s._mean
        else:
            x = s._as_float(frame, "frame")
            if x.ndim not in (1, 2) or x.shape[-1] != s.channels or (x.ndim == 2 and x.shape[0] != 1):
                raise RuntimeInputError(f"frame has shape {list(x.shape)}; expected {s._expect('frame')}")
            xn = x - s._mean
        xn /= s._std
        if not _isfinite(_sum(xn, None)):
            raise s._nonfinite(np.asarray(frame, dtype=np.float32), "frame")
        y = self._step_normalized(xn)
        return y if s._out_mean is None else s._denorm(y)

    def _step_normalized(self, xn: np.ndarray) -> np.ndarray:
        """Normalized frame [1, C] -> dequantized output [K]; advances the state."""
        feeds = self._feeds
        x = self._x
        feeds[self._x_pos] = xn if x.plain else x.quantize(xn)
        outs = self.session._invoke(feeds)
        for k, (o, i, t_out, t_in) in enumerate(self._loop):
            v = outs[o]
            if not t_out.plain:
                v = t_out.dequantize(v)
            self._fstate[k] = v
            feeds[i] = v if t_in.plain else t_in.quantize(v)
        y = outs[self._y_pos]
        if not self._y.plain:
            y = self._y.dequantize(y)
        return y[0] if y.ndim >= 2 and y.shape[0] == 1 else y
