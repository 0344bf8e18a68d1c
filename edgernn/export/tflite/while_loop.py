"""
GRU / RNN sequence graphs as a hand-written WHILE loop: a constant file size at any window length (an unrolled
int8 GRU h32 grows ~8 KB per step), one graph for every T, and a constant cost per step at any T.

    fn = build_loop_function(cfg, weights)     # tf.function: x [1, T, C] (normalized, T dynamic) -> {"y": ...}
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)

Runs inside the TFLite worker process only (it imports TensorFlow). A unidirectional model is ONE loop over
the frames: per frame, every layer's input projection (x W_ih^T + b_ih), recurrence (h W_hh^T + b_hh and the
gates; torch's equations and gate order r, z, n) and, for tag, the head. A bidirectional model runs one loop
per layer and direction (the backward direction needs the whole layer below).

Why it converts where Keras' loop does not (measured, TF 2.21): TFLite's calibrator segfaults on a WHILE
whose body hands a loop variable back unchanged (tensorflow#75140: the WHILE kernel frees that output and
the calibrator reads it). Keras' loop, and a plain loop that captures its input, both have such
pass-through variables. Here none does: the body reads row 0 of the input frames and rotates them by one
(xs[1:] ++ xs[:1]); per-frame outputs (tag) are appended to a rotating [T, K] buffer, which holds y_0 ..
y_{T-1} in order after T steps. Weights are constants of the body, not loop variables.

Cost per step: the WHILE kernel copies every loop variable on every iteration, so what rotates must be small.
Rotating the raw frames [T, C] (C = input channels) instead of their projection [T, 3H] took the float GRU
h32 loop from 3.9 to 1.2 us per step at T=100 and from 49.9 to 1.5 us at T=1460 (the projected frames were
copied whole on every step: O(T) per step, O(T^2) per window).
"""

from __future__ import annotations

import numpy as np

from edgernn.export.tflite.frontend import features_size, front_end, sequence_features

X_NAME, Y_NAME = "x", "y"  # the same signature names as the Keras-built graphs (keras_build)


def _gru_step(tf, H: int, w_hh: np.ndarray, b_hh: np.ndarray):
    def step(xt, h):  # xt [1, 3H] = x W_ih^T + b_ih, torch gate order r, z, n
        hp = tf.matmul(h, tf.constant(w_hh.T)) + tf.constant(b_hh)
        xr, xz, xn = tf.split(xt, 3, axis=1)
        hr, hz, hn = tf.split(hp, 3, axis=1)
        r = tf.sigmoid(xr + hr)
        z = tf.sigmoid(xz + hz)
        n = tf.tanh(xn + r * hn)
        return (1.0 - z) * n + z * h  # torch's form (n + z * (h - n) rounds differently: 1.9e-4 at T=160)

    return step


def _rnn_step(tf, H: int, w_hh: np.ndarray, b_hh: np.ndarray):
    def step(xt, h):
        return tf.tanh(xt + tf.matmul(h, tf.constant(w_hh.T)) + tf.constant(b_hh))

    return step


def _direction(tf, cell: str, x, w: dict, sfx: str, H: int, sequence: bool):
    """One layer, one direction over x [T, C] (bidirectional models): the last h [1, H], and (sequence) every h
    [T, H]. Projects every frame at once and rotates the projection (O(T * 3H) copied per step)."""
    w_ih, w_hh = w[f"rnn.weight_ih_{sfx}"].astype(np.float32), w[f"rnn.weight_hh_{sfx}"].astype(np.float32)
    b_ih, b_hh = w[f"rnn.bias_ih_{sfx}"].astype(np.float32), w[f"rnn.bias_hh_{sfx}"].astype(np.float32)
    xp = tf.matmul(x, tf.constant(w_ih.T)) + tf.constant(b_ih)  # every frame at once: [T, G*H]
    G = w_ih.shape[0]
    make = _gru_step if cell == "gru" else _rnn_step

    def body(t, h, xs, *hs):
        h = make(tf, H, w_hh, b_hh)(tf.slice(xs, [0, 0], [1, G]), h)  # weights: constants of the body
        xs = tf.concat([xs[1:], xs[:1]], 0)
        return (t + 1, h, xs) + ((tf.concat([hs[0][1:], h], 0),) if sequence else ())

    init = [tf.constant(0), tf.zeros([1, H]), xp]
    shapes = [tf.TensorShape([]), tf.TensorShape([1, H]), tf.TensorShape([None, G])]
    if sequence:
        init.append(tf.zeros(tf.stack([tf.shape(xp)[0], H])))
        shapes.append(tf.TensorShape([None, H]))
    out = tf.while_loop(lambda t, h, xs, *hs: t < tf.shape(xs)[0], body, init, shape_invariants=shapes)
    h, hs = out[1], (out[3] if sequence else None)
    return h, hs


def _split_gru_step(tf, w_ih, w_hh, b_ih, b_hh):
    """The GRU frame with one matrix per gate (r, z, n; input and recurrent): in full int8 each gate's weights and
    pre-activation get their own scale instead of sharing the [3H] projection's. Measured on the demo GRU
    (basic-motions h32): the shared projection's range (-10.9 .. 8.8 for all three gates, 0.077 per step) left
    one gross error on the stress set and no integer-only sequence; per gate it passes every gate."""
    wi, wh, bi, bh = np.split(w_ih, 3), np.split(w_hh, 3), np.split(b_ih, 3), np.split(b_hh, 3)

    def lin(v, k, x_side):
        w_, b_ = (wi[k], bi[k]) if x_side else (wh[k], bh[k])
        return tf.matmul(v, tf.constant(w_.T)) + tf.constant(b_)

    def step(x, h):
        r = tf.sigmoid(lin(x, 0, True) + lin(h, 0, False))
        z = tf.sigmoid(lin(x, 1, True) + lin(h, 1, False))
        n = tf.tanh(lin(x, 2, True) + r * lin(h, 2, False))
        return (1.0 - z) * n + z * h  # torch's form, as _gru_step

    return step


def _cell_step(tf, cell: str, w: dict, sfx: str, H: int, split_gates: bool = False):
    """One layer, one direction, one frame: (x [1, C], h [1, H]) -> h [1, H]; split_gates: a GRU's gates as
    separate matrices (_split_gru_step, full int8)."""
    w_ih, w_hh = w[f"rnn.weight_ih_{sfx}"].astype(np.float32), w[f"rnn.weight_hh_{sfx}"].astype(np.float32)
    b_ih, b_hh = w[f"rnn.bias_ih_{sfx}"].astype(np.float32), w[f"rnn.bias_hh_{sfx}"].astype(np.float32)
    if split_gates and cell == "gru":
        return _split_gru_step(tf, w_ih, w_hh, b_ih, b_hh)
    recur = (_gru_step if cell == "gru" else _rnn_step)(tf, H, w_hh, b_hh)

    def step(x, h):
        return recur(tf.matmul(x, tf.constant(w_ih.T)) + tf.constant(b_ih), h)

    return step


def _unidirectional(tf, cfg: dict, w: dict, x, head, split_gates: bool = False):
    """Every layer in one loop over x [T, C]: the last top-layer h [1, H], or (tag) head(h_t) for every t
    [T, K]."""
    cell, H, layers, tag = cfg["cell"], int(cfg["hidden"]), int(cfg["layers"]), cfg["head"] == "tag"
    steps = [_cell_step(tf, cell, w, f"l{layer}", H, split_gates) for layer in range(layers)]
    C = features_size(cfg)  # an audio model's loop runs over the front end's features
    K = int(w["head.weight"].shape[0])

    def body(t, xs, *vs):
        hs, inp = [], tf.slice(xs, [0, 0], [1, C])
        for layer, step in enumerate(steps):
            inp = step(inp, vs[layer])
            hs.append(inp)
        out = (t + 1, tf.concat([xs[1:], xs[:1]], 0), *hs)
        return out + ((tf.concat([vs[layers][1:], head(inp)], 0),) if tag else ())

    # a fixed window length keeps every loop variable's shape static (T = x.shape[0]): TFLite Micro and NPUs
    # fix every shape when they allocate, and refuse the dynamic [None, C] window a free length needs
    T = x.shape[0]
    init = [tf.constant(0), x] + [tf.zeros([1, H]) for _ in steps]
    shapes = [tf.TensorShape([]), tf.TensorShape([T, C])] + [tf.TensorShape([1, H]) for _ in steps]
    if tag:
        init.append(tf.zeros(tf.stack([tf.shape(x)[0], K])) if T is None else tf.zeros([T, K]))
        shapes.append(tf.TensorShape([T, K]))
    out = tf.while_loop(lambda t, xs, *vs: t < tf.shape(xs)[0], body, init, shape_invariants=shapes)
    return out[-1] if tag else head(out[1 + layers])


def build_loop_function(cfg: dict, w: dict, seq_len: int | None = None, split_gates: bool = False):
    """A tf.function x [1, T, C] -> {"y": logits [1, K] (classify / forecast) or [1, T, K] (tag)}, computing
    what the torch GRU/RNN model computes (multi-layer, bidirectional). seq_len None: T is dynamic. split_gates
    (full int8): a unidirectional GRU's gates as separate matrices, each with its own int8 scales."""
    import tensorflow as tf

    cell, H, layers = cfg["cell"], int(cfg["hidden"]), int(cfg["layers"])
    if cell not in ("gru", "rnn"):
        raise ValueError(f"the WHILE-loop graph is for GRU and RNN cells, not {cell}")
    bi, tag = bool(cfg["bidirectional"]), cfg["head"] == "tag"
    w_head, b_head = w["head.weight"].astype(np.float32), w["head.bias"].astype(np.float32)

    def head(h):
        return tf.matmul(h, tf.constant(w_head.T)) + tf.constant(b_head)

    @tf.function(input_signature=[tf.TensorSpec([1, seq_len, int(cfg["input_size"])], tf.float32, name=X_NAME)])
    def fn(x):
        fe = front_end(cfg)
        if fe is not None:  # audio: every hop through the front end at once, the loop over the features
            x = sequence_features(tf, fe, x)
        if not bi:
            y = _unidirectional(tf, cfg, w, x[0], head, split_gates)
            return {Y_NAME: y[None] if tag else y}
        seq = x[0]
        for layer in range(layers):
            sequence = tag or layer < layers - 1  # the last layer of a classifier needs only its last h
            h_f, hs_f = _direction(tf, cell, seq, w, f"l{layer}", H, sequence)
            h_b, hs_b = _direction(tf, cell, tf.reverse(seq, [0]), w, f"l{layer}_reverse", H, sequence)
            # backward outputs come out in reversed time order; its last h is the state at frame 0
            seq = tf.concat([hs_f, tf.reverse(hs_b, [0])], 1) if sequence else None
            feat = tf.concat([h_f, h_b], 1)
        if tag:
            return {Y_NAME: head(seq)[None]}
        return {Y_NAME: head(feat)}

    return fn
