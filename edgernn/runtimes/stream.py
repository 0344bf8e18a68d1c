"""
Stream: a step artifact run frame by frame, state fed back (or kept inside a stateful interpreter), with the
saturation count of quantized inputs and states. Standard library + numpy only.

    st = load("artifacts/step-int8.tflite").stream()   # Session.stream() builds one
    y = st.step(frame)                                 # raw frame [C] -> float32 [K]; st.reset() starts anew
    st.saturation                                      # frames whose quantized input / state hit its range end
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from edgernn.errors import RuntimeInputError
from edgernn.runtimes.tensor import F32

_isfinite = math.isfinite

# the bytes of an int range's two ends (little-endian): a substring search over q.tobytes() rules out a hit
# in ~0.3 us, 4x faster than q.min()/q.max() on a frame; only a (rare) match is confirmed with min/max
_ENDS = {np.dtype(np.int8): (b"\x80", b"\x7f"), np.dtype(np.int16): (b"\x00\x80", b"\xff\x7f")} \
    if sys.byteorder == "little" else {}


def _at_end(q: np.ndarray, t) -> bool:
    """True when the quantized array q has an element at its tensor's qmin or qmax."""
    ends = _ENDS.get(q.dtype)
    if ends is not None:
        b = q.tobytes()
        if ends[0] not in b and ends[1] not in b:
            return False
    return bool(q.min() == t.qmin or q.max() == t.qmax)


def _tanh_range(t) -> bool:
    """True when a quantized tensor's representable range is [-1, 1] (to 2%): a tanh-bounded state."""
    lo, hi = (t.qmin - t.zero_point) * t.scale, (t.qmax - t.zero_point) * t.scale
    return -1.02 <= lo <= -0.98 and 0.98 <= hi <= 1.02


class SaturationWarning(RuntimeWarning):
    """An int8/int16 stream input or state hit the end of its quantized range (clipped): the data left
    the range the artifact was calibrated on, and its outputs may drift from the float model's."""


class Stream:
    """Frame-by-frame inference over a step artifact. State tensors (manifest role "state") start at
    zero, are kept in float32, and are (de)quantized per tensor when the artifact's state is int8.

        st = session.stream()
        y = st.step(frame)      # raw frame [C] or [1, C] -> float32 output [K]
        st.reset()              # next independent sequence
        st.state                # {state input name: float32 array}
        st.saturation           # {"frames": 20000, "input": 3, "state": 0}: frames whose quantized input /
                                # recurrent state hit the int8 (int16) range ends; None = not quantized
        session.stream(reset_every=session.reset_every)   # reset before every N-th frame (unstable models)

    The first saturated frame of a stream also raises one SaturationWarning (Python's warnings: filter
    or log it as your app prefers). Counts run over the stream's life; reset() does not clear them.
    """

    def __init__(self, session, warn: bool = True, reset_every: int | None = None):
        s = self.session = session
        self.reset_every = reset_every
        self._since_reset = 0
        self._fitted = False
        self._feeds = [None] * len(s.inputs)
        # (output position, input position, output tensor, input tensor) per recurrent state
        self._loop = [(o, i, s.outputs[o], s.inputs[i]) for o, i in s._feedback]
        self._fstate = [None] * len(self._loop)
        # a state whose output and input share one quantization (edgernn's int8 step artifacts) is fed back
        # as the int values the output holds: no float round trip
        self._shared = [not t_out.plain and t_out.dtype == t_in.dtype and t_out.scale == t_in.scale
                        and t_out.zero_point == t_in.zero_point for _, _, t_out, t_in in self._loop]
        xs = s._x.shape or []
        self._x_shape = (1, 1, s.channels) if len(xs) == 3 else None  # a sequence graph fed one frame at a time
        # saturation counters: only quantized tensors can clip (float I/O cannot). A frame counts when its
        # quantized input, or a quantized state, sits at an end of its int range - unless that range is the
        # [-1, 1] of a tanh-bounded hidden state (GRU h, LSTM h), whose ends are the activation's own, not a
        # calibrated, limit: only states with a calibrated range (an LSTM cell state) can leave it. State kept
        # inside the interpreter (TFLite variable tensors) is read back for the count.
        self._q_x = not s._x.plain and s._x.scale is not None
        self._q_states = {o for o, _, t, _ in self._loop if not t.plain and t.scale is not None and not _tanh_range(t)}
        self._q_internal = [t for t in s._internal_states() if t.scale is not None and not _tanh_range(t)]
        counted = self._q_states or self._q_internal
        self._sat = {"frames": 0, "input": 0 if self._q_x else None, "state": 0 if counted else None}
        self._warned = not warn  # warn=False: never warn (the count still runs)
        self.reset()

    @property
    def saturation(self) -> dict:
        return dict(self._sat)

    def _saturated(self, kind: str) -> None:
        self._sat[kind] += 1
        if not self._warned:
            self._warned = True
            # no frame number in the text: Python shows a warning once per text and place, not once per stream
            warnings.warn(f"{self.session.path.name}: the quantized {kind} hit the end of its int range (clipped): "
                          "the stream left the range the artifact was calibrated on; see Stream.saturation",
                          SaturationWarning, stacklevel=3)

    @property
    def state(self) -> dict:
        return {t_in.name: v for (_, _, _, t_in), v in zip(self._loop, self._fstate)}

    def reset(self) -> None:
        """Start a new independent sequence: zero state."""
        s = self.session
        self._since_reset = 0
        zeros = dict(zip((t.name for t in s._states), s._zero_states()))
        for k, (_, i, _, t_in) in enumerate(self._loop):
            z = zeros[t_in.name]
            self._fstate[k] = z
            self._feeds[i] = t_in.quantize(z)
        if s._stateful:
            s._reset()

    def step(self, frame) -> np.ndarray:
        """Raw frame [C] or [1, C] -> float32 output [K] after this frame (state advanced)."""
        s = self.session
        _, xn = check_frame(s, frame)
        if self.reset_every is not None and self._since_reset >= self.reset_every:
            self.reset()
        self._since_reset += 1
        y = self._step_normalized(xn)
        return y if s._out_mean is None else s._denorm(y)

    def _step_normalized(self, xn: np.ndarray) -> np.ndarray:
        """Normalized frame [1, C] -> dequantized output [K]; advances the state."""
        s = self.session
        feeds = self._feeds
        x = s._x
        if self._x_shape is not None:
            xn = xn.reshape(self._x_shape)
        self._sat["frames"] += 1
        if x.plain:
            feeds[s._x_pos] = xn
        else:
            q = feeds[s._x_pos] = x.quantize(xn)
            if self._q_x and _at_end(q, x):
                self._saturated("input")
        if self._fitted:
            outs = s._invoke_fixed(feeds)
        else:  # the first frame fits the backend's input shapes; later frames and states keep them
            outs = s._invoke(feeds)
            self._fitted = True
        clipped = False
        for k, (o, i, t_out, t_in) in enumerate(self._loop):
            if t_out.plain:
                v = outs[o]
            else:
                q = outs[o]
                if o in self._q_states and not clipped:
                    clipped = _at_end(q, t_out)
                v = t_out.dequantize(q)
            self._fstate[k] = v
            feeds[i] = outs[o] if self._shared[k] else v if t_in.plain else t_in.quantize(v)
        for t in self._q_internal:
            if not clipped:
                clipped = _at_end(s._read_internal(t), t)
        if clipped:
            self._saturated("state")
        y = outs[s._y_pos]
        if not s._y.plain:
            y = s._y.dequantize(y)
        return y[0] if y.ndim >= 2 and y.shape[0] == 1 else y


def check_frame(session, frame) -> tuple[np.ndarray, np.ndarray]:
    """(raw float32 frame, its normalized copy [1, C]) after every frame check: shape [C] or [1, C], finite,
    not too large to normalize (see _normalize_window). Stream.step feeds the normalized copy; the C backend
    the raw frame (its C code normalizes)."""
    x = frame if type(frame) is np.ndarray and frame.dtype == F32 else session._as_float(frame, "frame")
    if x.shape not in ((session.channels,), (1, session.channels)):
        raise RuntimeInputError(f"frame has shape {list(x.shape)}; expected {session._expect('frame')}")
    # [1, C] - [1, C]: equal shapes are ~2x faster than broadcasting a [C] frame (same values)
    xn = (x[None] if x.ndim == 1 else x) - session._mean
    xn /= session._std
    flat = xn.reshape(-1)
    if not _isfinite(flat.dot(flat)):
        raise session._nonfinite(x, "frame")
    return x, xn
