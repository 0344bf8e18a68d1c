"""
Rebuild an edgernn torch model in legacy Keras (tf_keras) with the same weights, for TFLite conversion.

Runs inside the TFLite worker process only (it imports TensorFlow). TF_USE_LEGACY_KERAS=1 must be set
before TensorFlow is first imported: Keras 3 turns the LSTM into a WHILE loop whose int8 conversion
segfaults (docs/export.md, "TFLite needs legacy Keras").

    weights = dict(np.load("weights.npz"))            # torch state_dict as numpy arrays
    model = build_sequence_model(cfg, weights, seq_len=40, unroll_gru=True)   # [1, T, C] -> [1, K]
    step = build_step_model(cfg, weights)             # x[1, C], h0[1, H] (, c0) ... -> y, h0_next ...

Weight mapping (torch -> Keras):
  LSTM: gates i,f,g,o in both; kernel = W_ih.T, recurrent_kernel = W_hh.T, bias = b_ih + b_hh.
  GRU:  torch gates r,z,n -> Keras z,r,n; reset_after=True; bias = stack(b_ih, b_hh) ([2, 3H]).
  RNN:  SimpleRNN(tanh); kernel = W_ih.T, recurrent_kernel = W_hh.T, bias = b_ih + b_hh.
"""

from __future__ import annotations

import os

import numpy as np

from edgernn.export.tflite.frontend import features_size, front_end, sequence_features, step_features

os.environ["TF_USE_LEGACY_KERAS"] = "1"

# names of the Keras (and so TFLite signature) inputs/outputs; the step model uses h{l} / c{l}
X_NAME, Y_NAME = "x", "y"


def _keras():
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras

    return tf_keras


def _gru_reorder(w: np.ndarray, hidden: int) -> np.ndarray:
    """torch GRU rows r,z,n -> Keras z,r,n (axis 0 of a [3H, ...] array)."""
    r, z, n = w[:hidden], w[hidden:2 * hidden], w[2 * hidden:]
    return np.concatenate([z, r, n], axis=0)


def keras_rnn_weights(cell: str, w: dict, layer: int, reverse: bool, hidden: int) -> list[np.ndarray]:
    """Keras weight list [kernel, recurrent_kernel, bias] for one torch layer/direction."""
    sfx = f"l{layer}" + ("_reverse" if reverse else "")
    w_ih, w_hh = w[f"rnn.weight_ih_{sfx}"], w[f"rnn.weight_hh_{sfx}"]
    b_ih, b_hh = w[f"rnn.bias_ih_{sfx}"], w[f"rnn.bias_hh_{sfx}"]
    if cell == "gru":
        w_ih, w_hh = _gru_reorder(w_ih, hidden), _gru_reorder(w_hh, hidden)
        b_ih, b_hh = _gru_reorder(b_ih, hidden), _gru_reorder(b_hh, hidden)
        bias = np.stack([b_ih, b_hh])
    else:
        bias = b_ih + b_hh
    return [w_ih.T.astype(np.float32), w_hh.T.astype(np.float32), bias.astype(np.float32)]


def _rnn_layer(keras, cell: str, hidden: int, name: str, *, unroll: bool, return_state: bool = False,
               go_backwards: bool = False):
    common = dict(return_sequences=True, return_state=return_state, unroll=unroll, name=name,
                  go_backwards=go_backwards)
    if cell == "lstm":
        return keras.layers.LSTM(hidden, **common)
    if cell == "gru":
        return keras.layers.GRU(hidden, reset_after=True, **common)
    return keras.layers.SimpleRNN(hidden, activation="tanh", **common)


def build_sequence_model(cfg: dict, w: dict, seq_len: int | None, unroll: bool):
    """Full-sequence model: x [1, T, C] (normalized) -> logits [1, K] (classify/forecast) or [1, T, K] (tag).
    seq_len None keeps the time axis dynamic (only sensible without unroll)."""
    keras = _keras()
    cell, hidden, layers = cfg["cell"], int(cfg["hidden"]), int(cfg["layers"])
    bi = bool(cfg["bidirectional"])
    x = keras.Input(shape=(seq_len, int(cfg["input_size"])), batch_size=1, name=X_NAME)
    h = x
    fe = front_end(cfg)
    if fe is not None:  # audio: raw PCM hops through the front end first
        import tensorflow as tf

        h = keras.layers.Lambda(lambda t: sequence_features(tf, fe, t), name="frontend")(x)
    assigned = []
    for layer in range(layers):
        rnn = _rnn_layer(keras, cell, hidden, f"{cell}{layer}", unroll=unroll)
        if bi:
            back = _rnn_layer(keras, cell, hidden, f"{cell}{layer}_reverse", unroll=unroll, go_backwards=True)
            wrap = keras.layers.Bidirectional(rnn, backward_layer=back, merge_mode="concat", name=f"bi{layer}")
            h = wrap(h)
            assigned.append((wrap.forward_layer, layer, False))
            assigned.append((wrap.backward_layer, layer, True))
        else:
            h = rnn(h)
            assigned.append((rnn, layer, False))
    head = keras.layers.Dense(int(cfg["num_outputs"]), name="head")
    if cfg["head"] == "tag":
        y = head(h)
    else:
        if bi:
            fwd = keras.layers.Lambda(lambda t: t[:, -1, :hidden], name="fwd_last")(h)
            bwd = keras.layers.Lambda(lambda t: t[:, 0, hidden:], name="bwd_first")(h)
            feat = keras.layers.Concatenate(name="feat")([fwd, bwd])
        else:
            feat = keras.layers.Lambda(lambda t: t[:, -1, :], name="last")(h)
        y = head(feat)
    y = keras.layers.Activation("linear", name=Y_NAME)(y)
    model = keras.Model(x, y)
    for lyr, layer, rev in assigned:
        lyr.set_weights(keras_rnn_weights(cell, w, layer, rev, hidden))
    head.set_weights([w["head.weight"].T.astype(np.float32), w["head.bias"].astype(np.float32)])
    return model


def state_names(cfg: dict) -> list[str]:
    """Step-model state input names in order: h0, h1, ... then (LSTM) c0, c1, ..."""
    names = [f"h{layer}" for layer in range(int(cfg["layers"]))]
    if cfg["cell"] == "lstm":
        names += [f"c{layer}" for layer in range(int(cfg["layers"]))]
    return names


def build_step_model(cfg: dict, w: dict):
    """Streaming model from one-step unrolled layers (plain ops, no loop, no variables):
    inputs x [1, C], h0..h{L-1} [1, H] (and c0.. for LSTM) -> outputs y [1, K], h0_next.. (c0_next..)."""
    keras = _keras()
    cell, hidden, layers = cfg["cell"], int(cfg["hidden"]), int(cfg["layers"])
    x = keras.Input(shape=(int(cfg["input_size"]),), batch_size=1, name=X_NAME)
    hs = [keras.Input(shape=(hidden,), batch_size=1, name=f"h{layer}") for layer in range(layers)]
    cs = [keras.Input(shape=(hidden,), batch_size=1, name=f"c{layer}") for layer in range(layers)] \
        if cell == "lstm" else []
    fe, tails, new_tail = front_end(cfg), [], []
    feats = x
    if fe is not None:  # audio: one hop (+ the tail of the previous one) through the front end
        import tensorflow as tf

        if fe.tail:
            tails = [keras.Input(shape=(fe.tail,), batch_size=1, name="tail")]
            feats, nt = keras.layers.Lambda(lambda ts: step_features(tf, fe, ts[0], ts[1]), name="frontend")(
                [x, tails[0]])
            new_tail = [keras.layers.Activation("linear", name="tail_next")(nt)]
        else:
            feats = keras.layers.Lambda(lambda t: step_features(tf, fe, t, None)[0], name="frontend")(x)
    seq = keras.layers.Reshape((1, features_size(cfg)), name="frame")(feats)
    new_h, new_c, rnns = [], [], []
    for layer in range(layers):
        rnn = _rnn_layer(keras, cell, hidden, f"{cell}{layer}", unroll=True, return_state=True)
        init = [hs[layer], cs[layer]] if cell == "lstm" else [hs[layer]]
        res = rnn(seq, initial_state=init)
        seq = res[0]
        new_h.append(res[1])
        if cell == "lstm":
            new_c.append(res[2])
        rnns.append(rnn)
    out = keras.layers.Reshape((hidden,), name="out")(seq)
    head = keras.layers.Dense(int(cfg["num_outputs"]), name="head")
    y = keras.layers.Activation("linear", name=Y_NAME)(head(out))
    outs = [y]
    outs += [keras.layers.Activation("linear", name=f"h{i}_next")(t) for i, t in enumerate(new_h)]
    outs += [keras.layers.Activation("linear", name=f"c{i}_next")(t) for i, t in enumerate(new_c)]
    model = keras.Model([x] + tails + hs + cs, outs + new_tail)
    for layer, rnn in enumerate(rnns):
        rnn.set_weights(keras_rnn_weights(cell, w, layer, False, hidden))
    head.set_weights([w["head.weight"].T.astype(np.float32), w["head.bias"].astype(np.float32)])
    return model
