"""
What the TFLite worker is asked to build: the spec (model config, mode, converter setting, file paths) and the
data it converts and checks with: torch weights, normalized calibration windows (or, for a step graph,
(frame, state) pairs from the torch stepper) and torch's reference outputs on the check windows.

    spec = write_spec(run, tmp, "int8", "step", "int8", compact=True)   # tmp/weights.npz, tmp/data.npz
    spec["report"]                                                      # where the worker writes its JSON
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgernn.errors import ExportError

# float and dynamic-range GRU/RNN sequence graphs are unrolled (fast, but ~2.7 KB per step at h32, and the
# converter's time and memory grow with T: 11.6 min and 7.3 GB at T=1344). Beyond this many steps they use
# the WHILE loop of while_loop.py instead (constant size and cost per step, any T: 21 KB vs 268 KB at T=100 for
# GRU h32; float 1.1-1.2 us per step at T=100, about what the unrolled graph costs, 127 us per 100-step window).
# Integer GRU/RNN sequences are always that loop (an unrolled int8 GRU h32 was ~8 KB per step: 803 KB at T=100).
UNROLL_MAX_STEPS = 128
MAX_CALIB = 200  # calibration windows (sequence) / (frame, state) pairs = 2x this (step)
# a step artifact's states are calibrated on the windows streamed from a zero state AND on passes that go on
# from where the previous window ended (window i after window i-1, as on a device that never resets): the soak
# streams 20,000 frames without reset, and states deep in a stream can leave the from-reset ranges
STREAM_PASSES = 3
N_CHECK = 64  # normalized calibration windows run through every artifact before it is kept (8 missed
# a fused-LSTM kernel deviation of 1.3e-4 that X_test then showed) ...
CHECK_FRAMES = 20_000  # ... at most this many frames of them, but >= 8 windows: a step artifact's check streams
# every frame through the interpreter (ACSF1, T=1460: 64 windows were 93,000 invokes, 2.9 s of each conversion)


def check_windows(T: int) -> int:
    return min(N_CHECK, max(8, CHECK_FRAMES // max(1, T)))


def stateful_step(cfg, precision: str, mode: str) -> bool:
    """int8 LSTM streaming uses TFLite's own integer LSTM kernel with its state in variable tensors
    (int8 hidden state, int16 cell state, no requantization between frames). Measured on the demo LSTM
    h32: over 20 windows streamed without reset it agreed 99.9% with float (max |diff| 0.56); the
    explicit int8 state I/O it replaces requantized h and c to 8 bits every frame and lost 20 points
    of accuracy (max |diff| 6.7). int16x8 cannot quantize the fused op, so its LSTM step is the explicit cell
    graph with int16 h and c I/O (jv h64: passed the gate and the 20,000-frame soak where the fused full-int8
    step lost the stress set and the dynamic-range one drifted)."""
    return (mode == "step" and precision == "int8" and cfg.cell == "lstm" and not cfg.bidirectional
            and cfg.frontend is None)  # an audio step also carries the front end's tail: explicit state I/O


def write_spec(run, tmp: Path, precision: str, mode: str, int8_io: str, compact: bool) -> dict:
    """Write tmp/weights.npz and tmp/data.npz for one conversion; return the spec (the parent adds the
    per-attempt keys: dynamic_time, loop, int_loop, unroll_lstm). precision = the worker's kind."""
    import torch  # presence checked by check_prerequisites

    model = run.load_model()
    np.savez(tmp / "weights.npz", **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    from edgernn.gates import calibration_windows

    X = run.normalize(calibration_windows(run))  # held-out windows are left for the recipe gate
    if len(X) == 0:
        raise ExportError(f"{run.path}/data.npz has no X_calib windows to calibrate and check the export; "
                          "re-run `edgernn train`")
    calib, check = X[:MAX_CALIB], X[:check_windows(X.shape[1])]
    data = {"check_x": check}
    with torch.no_grad():
        if stateful_step(run.config, precision, mode):
            data["check_ref_frames"] = _prefix_outputs(model, check, run.task)
            data["calib_x"] = calib
        elif mode == "sequence":
            data["check_ref"] = model(torch.from_numpy(check)).numpy()
            data["calib_x"] = calib
            if run.config.cell == "lstm" or run.seq_len > UNROLL_MAX_STEPS or compact or run.mask_padding:
                # references at other lengths, to verify a dynamic time axis (fused LSTM, or a WHILE loop)
                for x in _other_lengths(run, X, check):
                    data[f"check_x_T{x.shape[1]}"] = np.ascontiguousarray(x)
                    data[f"check_ref_T{x.shape[1]}"] = model(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        else:
            data["check_ref_frames"] = _prefix_outputs(model, check, run.task)
            data["calib_x"], data["calib_states"], *tail = _step_calibration(model, calib, 2 * MAX_CALIB)
            if tail:  # audio: the front end's tail, a state of its own size
                data["calib_tail"] = tail[0]
    np.savez(tmp / "data.npz", **data)
    stateful = stateful_step(run.config, precision, mode)
    return {"cfg": run.config.to_dict(), "mode": mode, "precision": precision, "int8_io": int8_io,
            "stateful_step": stateful, "dynamic_time": stateful, "compact": compact,
            # masked padding: windows run at their real length, so the graph needs a dynamic time axis
            "masked": run.mask_padding,
            "seq_len": run.seq_len, "weights": str(tmp / "weights.npz"), "data": str(tmp / "data.npz"),
            "out": str(tmp / "model.tflite"), "report": str(tmp / "report.json")}


def _other_lengths(run, X: np.ndarray, check: np.ndarray) -> list:
    """Normalized windows at lengths other than T that a dynamic time axis is verified on: half and twice the
    window; for a --mask-padding run, which runs every window at its real length, real frames only: windows at
    the median and the longest real length, cut from calibration windows at least that long (a padded or
    doubled window is a sequence that model never sees: PLAID's dynamic-range loop lost top-1 agreement there
    and the export fixed its length, so every real window was padded back to 1,344 frames)."""
    t = X.shape[1]
    if not run.mask_padding:
        return [check[:, t // 2:], np.concatenate([check, check[::-1]], axis=1)]
    from edgernn.data.padding import infer_lengths
    from edgernn.gates import calibration_windows

    L = infer_lengths(calibration_windows(run), run.pad_value)
    out = []
    for n in sorted({int(np.median(L)), int(L.max())} - {t}):
        pick = X[L >= n][: len(check), t - n:]
        if len(pick):
            out.append(pick)
    return out or [check[:, t // 2:]]


def _prefix_outputs(model, X: np.ndarray, task: str) -> np.ndarray:
    """Torch output at every frame: [N, T, K], what a stream must reproduce. Frame t's reference is
    model(x[:, :t+1]); a stream is unidirectional, so that is the head applied to the recurrent output at t
    of ONE run over the whole window (O(T); the prefix-by-prefix loop it replaces was O(T^2): 1.07 million
    recurrent steps per window at T=1460)."""
    import torch

    x = torch.from_numpy(X)
    if task == "tag":
        return model(x).numpy()
    if model.frontend is not None:
        x = model.frontend(x)
    seq, _ = model.rnn(x)  # streams are never bidirectional (refused before any step export)
    return model.head(seq).numpy()


def _step_calibration(model, X: np.ndarray, n: int):
    """(frame, states) pairs from the torch stepper over windows X (STREAM_PASSES passes, each window after
    the first pass starting from the previous window's last state), so state ranges are calibrated
    too: returns frames [n, C] and states [n, S, H] in keras_build.state_names order (+ an audio model's
    front-end tails [n, tail])."""
    import torch

    from edgernn.models import StepModel

    step = StepModel(model)
    cfg = model.cfg
    fe = cfg.front_end()
    tail_n = fe.tail if fe is not None else 0
    frames, states, tails = [], [], []
    with torch.no_grad():
        h = torch.zeros(model.state_shape(batch=len(X)))
        c = torch.zeros_like(h) if cfg.cell == "lstm" else None
        tail = torch.zeros(len(X), tail_n)
        for t in range(X.shape[1] * STREAM_PASSES):
            if t and t % X.shape[1] == 0:  # the next pass: window i goes on from window i-1's last state
                h, tail = h.roll(1, dims=1), tail.roll(1, dims=0)
                c = c.roll(1, dims=1) if c is not None else None
            t = t % X.shape[1]
            frames.append(X[:, t])
            tails.append(tail.numpy().copy())
            states.append(torch.cat([h, c]) if c is not None else h.clone())  # [S, N, H]
            args = ([tail] if tail_n else []) + [h] + ([c] if c is not None else [])
            res = list(step(torch.from_numpy(X[:, t]), *args))
            if tail_n:
                tail = res.pop(1)
            h = res[1]
            c = res[2] if c is not None else None
    frames = np.concatenate(frames)  # [T*N, C], time-major
    states = np.concatenate([s.permute(1, 0, 2).numpy() for s in states])  # [T*N, S, H]
    idx = np.random.default_rng(0).permutation(len(frames))[:n]
    out = frames[idx].astype(np.float32), states[idx].astype(np.float32)
    return out + ((np.concatenate(tails)[idx].astype(np.float32),) if tail_n else ())
