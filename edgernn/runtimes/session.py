"""
Session: run a loaded artifact on raw sensor windows (frame by frame: its Stream, edgernn.runtimes.stream).
Standard library + numpy only; a backend subclass (ort_backend, litert_backend) supplies the runtime calls.

    s = load("artifacts/sequence-int8.tflite")   # edgernn.runtimes.load returns a Session subclass
    y = s.predict(window)        # raw window [T, C] (or batch [B, T, C]) -> float32 [K] (or [B, K])
    st = load("artifacts/step-float.onnx").stream()
    y = st.step(frame)           # raw frame [C]; st.reset() starts a new sequence

predict() does what training did to the data: left-pads a short window with the manifest's pad_value
(raw units) to the artifact's fixed length, normalizes (x - mean) / std, quantizes for int8 inputs,
runs, dequantizes the outputs and (forecast) converts them back to raw units. On a step artifact,
predict() streams the window frame by frame from a zero state and returns the last output ([T, K] for
tag). Outputs are the model's raw outputs (logits for classify/tag: apply a softmax for probabilities).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgernn.errors import ArtifactError, RuntimeInputError
from edgernn.runtimes.tensor import F32

_isfinite = math.isfinite


class Session:
    """A loaded artifact. Backends implement _open() (setting self.inputs / self.outputs, lists of
    Tensor in manifest order) and _invoke(); optionally _invoke1(), _reset() and close(), and set
    `batch_one_window` when a batch must run one window at a time.
    Public: manifest, runtime_name, runtime_version, runtime_package, threads, channels,
    sequence_length, predict(), stream(), run_normalized(), close()."""

    runtime_name = ""
    # run a batch one window at a time (a fixed batch-1 graph, or a backend whose result for a window
    # would otherwise depend on the other windows of its batch); backends set it in _open()
    batch_one_window = False

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
                                "re-run `edgernn export`") from exc
        if mean.ndim != 1 or mean.shape != std.shape or not (std > 0).all():
            raise ArtifactError(f"{self.path.name}.json preprocessing mean/std are inconsistent "
                                f"(shapes {list(mean.shape)} / {list(std.shape)}, std must be > 0); "
                                "re-run `edgernn export`")
        self.channels = int(mean.shape[0])
        self._mean, self._std = mean[None], std[None]  # [1, C]: a frame [C] normalizes to [1, C]
        # mean/std repeated to [1, T, C] per window length T: numpy's elementwise ops on equal shapes run
        # ~3x faster than a [1, C] broadcast over [1, T, C] (measured: 1.1 vs 3.3 us for T=100, C=6) and
        # give the same values; a few us per predict() is 5-10% of a small RNN's window
        self._tiled: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pad_value = float(pre.get("pad_value", 0.0))
        self._masked = bool(pre.get("mask_padding", False))  # trained on real frames only: run them alone
        # audio: the artifact's front end takes raw PCM hops; int16 samples are scaled to [-1, 1) (x / 32768)
        self.frontend = pre.get("frontend") or None
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
        # a step artifact feeds its state back through state tensors, or keeps it inside a stateful
        # interpreter (TFLite's fused integer LSTM: variable tensors, reset by _reset())
        if self.mode == "step" and not self._stateful and \
                (not self._states or len(self._feedback) != len(self._states)):
            raise ArtifactError(
                f"{self.path.name}.json lists {len(self._states)} state inputs but {len(self._feedback)} state "
                "outputs with a matching 'next'; re-run `edgernn export --streaming`")
        shape = self._x.shape or []
        if len(shape) >= 1 and shape[0] is not None:  # e.g. TFLite: batch 1 only
            self.batch_one_window = True
        # float32 in and out, no output de-normalization: the hot loop skips every conversion call
        self._plain = self._x.plain and self._y.plain and self._out_mean is None

    # ---- backend interface -------------------------------------------------------------------------
    def _open(self, threads: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _invoke(self, feeds: list) -> list:  # pragma: no cover - abstract
        """Run once: feeds in self.inputs order (artifact dtypes) -> raw outputs in self.outputs order."""
        raise NotImplementedError

    def _invoke_fixed(self, feeds: list) -> list:
        """_invoke for feeds of the shapes the last _invoke saw; backends may skip their shape checks."""
        return self._invoke(feeds)

    def _invoke1(self, x: np.ndarray) -> list:
        """Run a single-input model (sequence artifacts); backends may override with a faster call."""
        return self._invoke([x])

    def _reset(self) -> None:
        """Clear runtime-internal state before an independent sequence (stateful interpreters)."""

    def _internal_states(self) -> list:
        """Tensors of state a stateful interpreter keeps inside (TFLite variable tensors), for the
        saturation count; [] when the state is fed back through inputs/outputs."""
        return []

    def _read_internal(self, t) -> np.ndarray:  # pragma: no cover - only with _internal_states()
        raise NotImplementedError

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
        if type(data) is np.ndarray and data.dtype == F32:
            return data
        try:
            x = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise RuntimeInputError(f"{what} is not a numeric array ({str(exc).splitlines()[0]}); pass a "
                                    f"float array of shape {self._expect(what)}") from exc
        if x.dtype.kind not in "fiu":
            raise RuntimeInputError(f"{what} has dtype {x.dtype}; expected numbers (float32 preferred) of shape "
                                    f"{self._expect(what)}")
        if self.frontend is not None and x.dtype == np.int16:  # PCM samples straight from a microphone buffer
            return x.astype(F32) * np.float32(1.0 / 32768.0)
        return x.astype(F32)

    def _nonfinite(self, x: np.ndarray, what: str) -> RuntimeInputError:
        x = np.asarray(x, dtype=np.float32)
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        call = "step()" if what == "frame" else "predict()"
        if bad:
            return RuntimeInputError(f"{what} contains {bad} NaN/inf value(s) of {x.size}; clean or interpolate "
                                     f"the sensor data before {call}")
        return RuntimeInputError(f"{what} values are too large to normalize (max |x| {float(np.abs(x).max()):.3g}, "
                                 "over ~1e19 standard deviations from the training data); check the sensor units")

    def _normalize_window(self, window):
        """Raw window -> (normalized float32 [B, T', C], batched, original T); pads to a fixed length."""
        _, xn, batched, T = self._prepare_window(window)
        return xn, batched, T

    def _prepare_window(self, window):
        """Raw window -> (raw float32 [B, T', C] padded to a fixed length, its normalized copy, batched,
        original T), after every input check."""
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
        L = self.sequence_length
        if L is not None and self.mode == "sequence" and T != L:
            if T > L:
                raise RuntimeInputError(
                    f"window has {T} steps but this artifact is fixed at {L}; pass the last {L} steps "
                    f"(window[-{L}:]) or export a model with a dynamic time axis")
            pad = np.full((B, L - T, C), self._pad_value, dtype=np.float32)
            x3 = np.concatenate([pad, x3], axis=1)
        mean, std = self._tiled.get(x3.shape[1]) or self._tile(x3.shape[1])
        xn = x3 - mean
        xn /= std
        flat = xn.reshape(-1)  # xn is a fresh C-contiguous array: a view
        # one reduction, the sum of squares, catches NaN, inf and values too large for the model (a normalized
        # |x| beyond ~1e19 overflows float32 when squared); a plain sum would let +1e38 and -1e38 cancel out
        if not _isfinite(flat.dot(flat)):  # the method: ~0.2 us less per call than np.dot
            raise self._nonfinite(x3, "window")
        return x3, xn, batched, T

    def _tile(self, T: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self._tiled) > 8:  # variable-length input: keep a few lengths, not one per length seen
            self._tiled.clear()
        pair = self._tiled[T] = (np.repeat(self._mean, T, axis=0)[None], np.repeat(self._std, T, axis=0)[None])
        return pair

    def _denorm(self, y: np.ndarray) -> np.ndarray:
        if self._out_mean is None:
            return y
        return (y * self._out_std + self._out_mean).astype(np.float32)

    # ---- inference ---------------------------------------------------------------------------------
    def predict(self, window) -> np.ndarray:
        """Raw window [T, C] or batch [B, T, C] -> float32 output [K] / [B, K] (tag: [T, K] / [B, T, K]).
        A model trained with masked padding (manifest preprocessing.mask_padding) runs each window's real
        frames alone: its leading frames equal to pad_value in every channel are dropped first."""
        if self._masked:
            return self._predict_real(window)
        return self._predict_padded(window)

    def real_frames(self, window) -> np.ndarray:
        """What a stream from a reset should be fed of a raw window [T, C]: the window itself, or with masked
        padding its real frames (leading frames equal to pad_value in every channel dropped; at least one)."""
        if not self._masked:
            return window
        return window[len(window) - int(self._real_lengths(np.asarray(window)[None])[0]):]

    def _real_lengths(self, x3: np.ndarray) -> np.ndarray:
        """[B] real frames of raw windows [B, T, C] (at least one): T minus the leading frames equal to pad_value
        in every channel - data loading's rule (edgernn.data.padding.infer_lengths), kept here numpy-only."""
        real = np.any(x3 != np.float32(self._pad_value), axis=2)
        return np.where(real.any(axis=1), x3.shape[1] - real.argmax(axis=1), 1)

    def _predict_real(self, window) -> np.ndarray:
        x = self._as_float(window, "window")
        if x.ndim not in (2, 3) or x.shape[-2] < 1:
            return self._predict_padded(x)  # its input checks say what is wrong
        x3 = x if x.ndim == 3 else x[None]
        T = x3.shape[1]
        lengths = self._real_lengths(x3)
        out = None
        for L in np.unique(lengths):  # one call per real length (a batch of equal lengths runs together)
            idx = np.flatnonzero(lengths == L)
            y = self._predict_padded(np.ascontiguousarray(x3[idx, T - L:]))
            if out is None:
                out = np.empty((len(x3),) + y.shape[1:], np.float32)
            out[idx] = y
        return out if x.ndim == 3 else out[0]

    def _predict_padded(self, window) -> np.ndarray:
        _, xn, batched, T = self._prepare_window(window)
        y = self._run(xn)
        if self._out_mean is not None:
            y = self._denorm(y)
        if self.task == "tag" and y.ndim == 3 and y.shape[1] != T:
            y = y[:, -T:]  # drop the outputs of left padding
        return y if batched else y[0]

    def run_normalized(self, x) -> np.ndarray:
        """Low level: already-normalized float input [T, C] or [B, T, C] -> dequantized model output (no
        padding, no NaN check, no output de-normalization for forecast)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 2:
            return self._run(x[None])[0]
        if x.ndim != 3:
            raise RuntimeInputError(f"run_normalized expects [T, C] or [B, T, C], got shape {list(x.shape)}")
        return self._run(x)

    def _run(self, xn: np.ndarray) -> np.ndarray:
        """Normalized [B, T, C] -> dequantized output [B, ...]."""
        if self.mode == "step":
            return np.stack([self._step_window(w) for w in xn])
        if self.batch_one_window and xn.shape[0] != 1:
            return np.concatenate([self._run_one(xn[i:i + 1]) for i in range(xn.shape[0])])
        return self._run_one(xn)

    def _run_one(self, xn: np.ndarray) -> np.ndarray:
        """Normalized, C-contiguous [B, T, C] -> dequantized output."""
        if self._stateful:
            self._reset()
        if self._plain:
            return self._invoke1(xn)[self._y_pos]
        return self._y.dequantize(self._invoke1(self._x.quantize(xn))[self._y_pos])

    def _zero_states(self) -> list:
        return [np.zeros([1 if d is None else int(d) for d in (t.shape or [])], np.float32) for t in self._states]

    def _step_window(self, xn: np.ndarray) -> np.ndarray:
        """Stream one normalized window [T, C] from zero state: last output [K] (tag: [T, K])."""
        from edgernn.runtimes.stream import Stream

        st = Stream(self)
        outs = [st._step_normalized(xn[t:t + 1]) for t in range(xn.shape[0])]
        return np.stack(outs) if self.task == "tag" else outs[-1]

    @property
    def reset_every(self) -> int | None:
        """Frames this model should stream before a reset (the manifest's stream.reset_every, measured at export:
        beyond its streaming horizon two correct implementations of an unstable model disagree); None =
        stable for as long as it was measured (stream.measured_frames)."""
        return (self.manifest.get("stream") or {}).get("reset_every")

    def detector(self, **overrides):
        """The keyword detector of an audio classifier (manifest "detector", edgernn.runtimes.detector), with
        thresholds chosen at export for a false-accept budget; overrides: smooth_s, refractory_s, thresholds."""
        from edgernn.runtimes.detector import Detector

        if not self.manifest.get("detector"):
            raise ArtifactError(f"{self.path.name}.json has no keyword detector (audio classifiers have one)")
        return Detector.from_dict({**self.manifest["detector"], **overrides}, list(self.manifest["labels"]))

    def stream(self, warn: bool = True, reset_every: int | None = None):
        """A stateful stepper over a step artifact: step(frame) -> output, reset(). warn=False: count
        saturation (Stream.saturation) without a SaturationWarning (for tools that report the count).
        reset_every=N resets the state before every N-th frame (N = session.reset_every for a model that is
        unstable on long streams)."""
        if self.mode != "step":
            raise RuntimeInputError(
                f"{self.path.name} is a {self.mode} artifact and cannot stream frame by frame; export with "
                "--streaming and load the step-*.onnx / step-*.tflite artifact (or call predict(window))")
        if reset_every is not None and (isinstance(reset_every, bool) or not isinstance(reset_every, int)
                                        or reset_every < 1):
            raise RuntimeInputError(f"reset_every must be a whole number of frames >= 1, got {reset_every!r}")
        from edgernn.runtimes.stream import Stream

        return Stream(self, warn=warn, reset_every=reset_every)
