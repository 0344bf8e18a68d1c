"""
The soak: a step artifact fed test windows back to back as ONE stream, no reset, compared frame by frame
with the float PyTorch model. A device streams for hours; an int8 state that leaves its calibrated range
shows up only here.

    refs = StreamReference(run, X_test, stream_windows_for(20000, T))    # float side, shared by artifacts
    res = long_stream(run, session, X_test, n_windows, refs)             # per-block error, agreement, saturation

The error is reported per block of about BLOCK_FRAMES frames (whole windows) so drift is visible; the
same windows are also streamed one at a time from a reset, so each block has an error with the
carried-in state and one without. Judging the result is edgernn.gates.long_stream_gate.

A model can be unstable on continuous streams: trained on short windows, it may amplify rounding until two
correct implementations (torch, a C file, LiteRT) disagree. find_horizon() measures how many frames it can
stream from a reset before rounding-size perturbations of it grow past the float limit; such a model must be
reset that often on a device, and the soak then streams the way that device does (StreamReference with
reset_every, long_stream resetting the artifact at the same frames).
"""

from __future__ import annotations

import numpy as np

from edgernn.reference import torch_stream_outputs
from edgernn.rundir import Run

BLOCK_FRAMES = 1000  # the soak reports its error per block of about this many frames (whole windows)


def stream_windows_for(frames: int, T: int) -> int:
    """How many test windows of T frames make a stream of at least `frames` frames."""
    return max(1, -(-int(frames) // int(T)))


def stream_through(session, frames: np.ndarray, starts) -> tuple[np.ndarray, dict]:
    """(outputs [N, K] of frames [N, C] streamed through a step artifact, reset before each index in
    starts; its saturation counts). A session that streams a whole batch itself (an emulated MCU runs the
    stream in one firmware run: stream_outputs(frames, starts)) is handed the batch; else frame by frame."""
    batch = getattr(session, "stream_outputs", None)
    if batch is not None:
        return batch(frames, starts)
    stream = session.stream(warn=False)  # saturation is counted and shown in the table, not warned
    starts, out = set(int(i) for i in starts), []
    for i, f in enumerate(frames):
        if i in starts:
            stream.reset()
        out.append(np.asarray(stream.step(f), dtype=np.float32).reshape(-1))
    return np.stack(out), stream.saturation


def long_stream(run: Run, session, X_raw: np.ndarray, n_windows: int, refs: "StreamReference | None" = None) -> dict:
    """Stream n_windows consecutive test windows (cycled if the test set is smaller) through a step
    artifact as ONE stream, no reset, and compare every frame's output with the float torch model.
    The same windows are also streamed one at a time from a reset, so each block has an error with the
    carried-in state and one without: their ratio is the drift, free of how hard the windows themselves
    are. Blocks are whole windows, about BLOCK_FRAMES frames each. `refs` = StreamReference(...) may be
    passed to avoid recomputing. Also returns the runtime's saturation count (Stream.saturation)."""
    refs = refs if refs is not None else StreamReference(run, X_raw, n_windows)
    frames, ref, ref_reset = refs.frames, refs.ref, refs.ref_reset
    T = X_raw.shape[1]
    # one segment unless the model's horizon asks for resets
    out, saturation = stream_through(session, frames, [seg.start for seg in refs.segments])
    out_reset, _ = stream_through(session, frames, range(0, len(frames), T))
    size, blocks = block_frames(T), soak_blocks(len(frames), T)
    with np.errstate(over="ignore", invalid="ignore"):  # a broken artifact's stream may overflow: inf says it
        diff, diff_reset = np.abs(out - ref), np.abs(out_reset - ref_reset)
        res = _block_stats(diff, diff_reset, blocks)
    res = {"windows": int(n_windows), "frames": int(len(frames)), "block_frames": int(size),
           **res, "saturation": saturation, "reset_every": refs.reset_every}
    if run.task != "forecast":
        agree = out.argmax(-1) == ref.argmax(-1)
        res["block_agreement"] = [float(agree[b].mean()) for b in blocks]
        res["agreement"] = float(agree.mean())
    return res


def _block_stats(diff: np.ndarray, diff_reset: np.ndarray, blocks: list) -> dict:
    return {"block_max_abs_diff": [float(diff[b].max()) for b in blocks],
            "block_mean_abs_diff": [float(diff[b].mean()) for b in blocks],
            "block_mean_abs_diff_reset": [float(diff_reset[b].mean()) for b in blocks],
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "mean_abs_diff_reset": float(diff_reset.mean())}


def block_frames(T: int) -> int:
    """Frames per soak block: whole windows of T frames, about BLOCK_FRAMES."""
    return T * max(1, round(BLOCK_FRAMES / T))


def soak_blocks(n_frames: int, T: int) -> list[slice]:
    """The soak's blocks of block_frames(T) frames over a stream of n_frames (the last may be shorter)."""
    size = block_frames(T)
    return [slice(b, b + size) for b in range(0, n_frames, size)]


class StreamReference:
    """The float side of the soak, computed once per run and shared by its step artifacts: the raw
    frames [n*T, C] of n_windows test windows (cycled), the float outputs of them as ONE stream, and the
    float outputs window by window from a zero state, in the model's output units. fragile_blocks() is
    computed on demand."""

    def __init__(self, run: Run, X_raw: np.ndarray, n_windows: int, reset_every: int | None = None):
        idx = np.arange(n_windows) % len(X_raw)
        self.run, self.T = run, X_raw.shape[1]
        self.frames = np.concatenate([X_raw[i] for i in idx]).astype(np.float32)
        self.reset_every = reset_every  # None: one stream; else a reset every this many frames (whole windows)
        self.segments = segments(len(self.frames), reset_every)
        self.ref = segmented_outputs(run, self.frames, self.segments)
        self.ref_reset = np.concatenate([torch_stream_outputs(run, X_raw[i]) for i in idx])
        self._fragile = {}  # (gross, draws) -> fragile_blocks()
        self._divergence = {}  # (draws, step) -> divergence()

    def fragile_blocks(self, gross: float, draws: int,
                       calib: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """([blocks] bool, [blocks] float): the soak blocks where the float model ITSELF is off by more than
        `gross` of the stream's output range once int8-sized noise is put on its weights or its input frames are
        rounded to an int8 grid (`draws` seeded copies of each; calib: the raw windows that set the grid, see
        edgernn.reference.input_grid_copies; the gate passes edgernn.gates.STRESS_GROSS and FRAGILE_DRAWS, as for
        its stress set), and per block the largest mean |diff| those copies reach - the noise floor. Measured on
        japanese-vowels LSTM h64: the stream runs into one stretch (blocks 8 and 19 of 21, the same windows) where
        weight noise alone moves the logits by up to 7.2 (range 14) and by 0.20 on average (0.006-0.05 elsewhere):
        every int8 weight store drifts there."""
        if (gross, draws) not in self._fragile:
            from edgernn.reference import input_grid_copies, weight_noise_models

            blocks = soak_blocks(len(self.frames), self.T)
            limit = gross * float(self.ref.max() - self.ref.min())
            fragile, floor = np.zeros(len(blocks), bool), np.zeros(len(blocks))
            outputs = [segmented_outputs(self.run, self.frames, self.segments, model)
                       for model in weight_noise_models(self.run, draws)]
            # and the frames rounded to int8 input grids (reference.input_grid_copies; calib sets the grid)
            outputs += [segmented_outputs(self.run, frames, self.segments)
                        for frames in input_grid_copies(self.run, self.frames, draws, calib)]
            for out in outputs:
                diff = np.abs(out - self.ref)
                fragile |= np.array([diff[b].max() > limit for b in blocks])
                floor = np.maximum(floor, [diff[b].mean() for b in blocks])
            self._fragile[gross, draws] = fragile, floor
        return self._fragile[gross, draws]

    def divergence(self, draws: int, step: float) -> dict:
        """How far the float model ITSELF drifts on this stream under rounding-size perturbations
        (edgernn.reference.rounding_models: float64, and `draws` float32 copies with weights moved by `step`):
        per frame the largest |output difference| from the float32 reference ("frame_max", [frames]); per
        block its max ("block_max") and the largest mean over a copy ("block_mean"); and per frame whether a
        copy's top-1 answer differs ("flips", classify/tag). A stable model stays near 1e-6 for the whole
        stream; a model that amplifies rounding grows until two correct implementations disagree."""
        if (draws, step) not in self._divergence:
            from edgernn.reference import rounding_models

            blocks = soak_blocks(len(self.frames), self.T)
            frame_max = np.zeros(len(self.frames))
            block_mean = np.zeros(len(blocks))
            flips = np.zeros(len(self.frames), bool)
            for model in rounding_models(self.run, draws, step):
                out = segmented_outputs(self.run, self.frames, self.segments, model)
                diff = np.abs(out - self.ref)
                frame_max = np.maximum(frame_max, diff.reshape(len(diff), -1).max(-1))
                block_mean = np.maximum(block_mean, [diff[b].mean() for b in blocks])
                if self.run.task != "forecast":
                    flips |= out.argmax(-1) != self.ref.argmax(-1)
            self._divergence[draws, step] = {"frame_max": frame_max, "block_mean": block_mean, "flips": flips,
                                       "block_max": np.array([frame_max[b].max() for b in blocks])}
        return self._divergence[draws, step]


def segments(n_frames: int, reset_every: int | None) -> list[slice]:
    """The stretches of a stream of n_frames between resets (one stretch when reset_every is None)."""
    step = n_frames if not reset_every else int(reset_every)
    return [slice(b, b + step) for b in range(0, n_frames, step)]


def segmented_outputs(run: Run, frames: np.ndarray, segs: list, model=None) -> np.ndarray:
    """Float outputs of a stream that is reset at the start of every segment."""
    return np.concatenate([torch_stream_outputs(run, frames[seg], model=model) for seg in segs])


def find_horizon(run: Run, frames: np.ndarray, limit: float, draws: int, step: float, T: int,
                 first: np.ndarray | None = None) -> int | None:
    """Frames the float model can stream from a reset before a rounding-size copy of it
    (edgernn.reference.rounding_models) is off by more than `limit`: None when it never is on these frames
    streamed without reset. Conservative: the stream is cut into stretches of the horizon found so far, each
    streamed from a reset, until none crosses the limit (a stretch that starts elsewhere may diverge sooner).
    `first` = the per-frame divergence of the whole stream from one reset, when already computed."""
    from edgernn.reference import rounding_models

    horizon = None
    length = len(frames)
    while True:
        segs = segments(len(frames), length)
        if first is not None and length == len(frames):
            frame_max = first
        else:
            ref = segmented_outputs(run, frames, segs)
            frame_max = np.zeros(len(frames))
            for model in rounding_models(run, draws, step):
                d = np.abs(segmented_outputs(run, frames, segs, model) - ref)
                frame_max = np.maximum(frame_max, d.reshape(len(d), -1).max(-1))
        onsets = [int(np.argmax(frame_max[seg] > limit)) for seg in segs if np.any(frame_max[seg] > limit)]
        if not onsets:
            return horizon
        horizon = length = max(1, min(onsets))

