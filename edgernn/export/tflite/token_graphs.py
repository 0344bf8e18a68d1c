"""
The TensorFlow graphs of the token models' TFLite export, built from the torch weights with plain TF ops in
tf.functions with fixed input signatures (no Keras): the encoder (build_encoder: unrolled over max_src, padded steps
masked, stacked layers, uni- or bidirectional) and the decoder step (build_step: the encoder-decoder's one-layer
step with its context, or a next-token model's stacked step without one). Their signature keys are the tensor names
edgernn.runtimes.token_litert looks for. Used by the TFLite workers (token_worker, token_lm_worker,
token_classifier_worker), in their own TensorFlow process.

Stacked layers (TokenModelConfig.layers = N, torch's num_layers): layer l > 0 of the encoder reads layer l - 1's
per-step outputs (forward ++ backward), the input products of all its steps in one matmul, and masks its padded
steps as layer 0 does; the finals are the last layer's. A next-token step takes h [N, Hd] (, c): one row per layer
(lm_io's state shape), each layer's output the next one's input. One layer builds the same ops as before.
"""

from __future__ import annotations

import numpy as np

from edgernn.export.tflite.tokens import ATTENTION_PAD


def _recurrence(tf, cfg: dict, w: dict) -> tuple:
    """(gates, cell, split_gru): the GRU/LSTM pieces of the graphs. Every unrolled step is kept to few ops (each op
    and tensor costs ~100 bytes of flatbuffer, ~200 quantized): the input products of all steps in one
    FULLY_CONNECTED, one sigmoid over the GRU's r|z (the LSTM's rows reordered to i, f, o | g)."""
    lstm = cfg["cell"] == "lstm"

    def gates(prefix: str, sfx: str = "", layer: int = 0) -> tuple:
        """(W_ih^T, b_ih + b_hh, W_hh^T, b_hn) of one torch GRU/LSTM direction of one layer. The recurrent product
        has no bias: int16x8 conversion gives the unrolled steps' FULLY_CONNECTEDs one shared int64 bias quantized
        with the first step's input scale (measured: 29% off at step 2 of an LSTM), so b_hh joins the input
        products; the GRU's b_hn, inside r * (W_hn h + b_hn), is added after the product (None for an LSTM). LSTM
        gates are reordered i, f, g, o -> i, f, o, g (one sigmoid and one tanh per step)."""
        wih, bih, whh, bhh = (np.asarray(w[f"{prefix}.{k}_l{int(layer)}{sfx}"], np.float32)
                              for k in ("weight_ih", "bias_ih", "weight_hh", "bias_hh"))
        if lstm:
            wih, bih, whh, bhh = (np.concatenate([a[0], a[1], a[3], a[2]]) for a in
                                  (np.split(x, 4) for x in (wih, bih, whh, bhh)))
            return tf.constant(wih.T.copy()), tf.constant(bih + bhh), tf.constant(whh.T.copy()), None
        n_h = bhh.shape[0] // 3
        folded = bih + np.concatenate([bhh[:2 * n_h], np.zeros(n_h, np.float32)])
        return (tf.constant(wih.T.copy()), tf.constant(folded), tf.constant(whh.T.copy()),
                tf.constant(bhh[2 * n_h:].reshape(1, -1)))

    def cell(gi, h, c, whh, bhn, n_h: int):
        """One step from the input products gi (biases included; GRU: (r|z part, n part)); h, c [1, n_h], or
        None for the zero state of the encoder's first step (a constant zero tensor gets int scale 0, which int
        kernels abort on)."""
        if not lstm:  # PyTorch's GRU: r, z, n; h' = (1 - z) n + z h
            if h is None:
                r, z = tf.split(tf.sigmoid(gi[0]), 2, axis=-1)
                n = tf.tanh(gi[1] + r * bhn)
                return n - z * n, None
            gh_rz, gh_n = tf.split(tf.matmul(h, whh), [2 * n_h, n_h], axis=-1)
            r, z = tf.split(tf.sigmoid(gi[0] + gh_rz), 2, axis=-1)
            n = tf.tanh(gi[1] + r * (gh_n + bhn))
            return n + z * (h - n), None
        ifo, g = tf.split(gi + tf.matmul(h, whh) if h is not None else gi, [3 * n_h, n_h], axis=-1)
        i, f, o = tf.split(tf.sigmoid(ifo), 3, axis=-1)  # PyTorch's LSTM (i, f, g, o), reordered
        c2 = f * c + i * tf.tanh(g) if c is not None else i * tf.tanh(g)
        return o * tf.tanh(c2), c2

    def split_gru(gi, n_h: int):
        return tf.split(gi, [2 * n_h, n_h], axis=-1) if not lstm else gi

    return gates, cell, split_gru


def _layers(cfg: dict) -> int:
    return int(cfg.get("layers", 1) or 1)


def build_functions(tf, cfg: dict, w: dict, max_src: int):
    """(encoder, decoder) tf.functions with fixed input signatures, from the torch weights (_recurrence)."""
    return build_encoder(tf, cfg, w, max_src), build_step(tf, cfg, w, max_src)


def build_encoder(tf, cfg: dict, w: dict, max_src: int):
    """The encoder as a tf.function: src [1, S] int32 (right-padded), mask [1, S] -> enc [1, S, Hd] (zero past the
    source), h [1, Hd] (, c): the last layer's final states, fwd ++ bwd (what a classifier's head reads)."""
    lstm, S, H = cfg["cell"] == "lstm", int(max_src), int(cfg["hidden"])
    const = lambda name: tf.constant(np.asarray(w[name], np.float32))  # noqa: E731
    gates, cell, split_gru = _recurrence(tf, cfg, w)
    src_emb = const("src_embed.weight")
    sfxs = ("", "_reverse")[: 2 if cfg["bidirectional"] else 1]
    layers = [[gates("encoder", sfx, layer) for sfx in sfxs] for layer in range(_layers(cfg))]
    enc_sig = [tf.TensorSpec([1, S], tf.int32, name="src"), tf.TensorSpec([1, S], tf.float32, name="mask")]

    @tf.function(input_signature=enc_sig)
    def encoder(src, mask):
        """Padded steps leave the state as it was, as torch's packed sequence does, without a (1 - mask) * h term
        (always 0 in calibration on one side or the other: a degenerate int scale): the backward pass meets the
        padding before the source, while its state is still 0, so h = mask * h_new; the forward pass meets it
        after, where it cannot reach the source's outputs, and its final state is read at the last real token.
        So a stacked layer's inputs past the source (the forward outputs there) reach none of its outputs on the
        source either."""
        x = tf.gather(src_emb, src[0])  # [S, E]: layer 0's inputs (layer l's: layer l - 1's outputs [S, D*H])
        masks = tf.split(tf.transpose(mask), S, axis=0)  # S x [1, 1]
        mask3 = tf.expand_dims(mask, -1)  # [1, S, 1]
        last = tf.expand_dims(mask - tf.pad(mask[:, 1:], [[0, 0], [0, 1]]), -1)  # 1 at the last real token
        for layer, dirs in enumerate(layers):
            if layer:
                x = tf.reshape(tf.concat(outs, axis=-1), [S, -1])  # noqa: F821 (the previous layer's)
            outs, finals = [], []
            for d, (wih, bih, whh, bhn) in enumerate(dirs):
                pre = split_gru(tf.matmul(x, wih) + bih, H)  # the input products of every step at once
                gis = list(zip(*[tf.split(p, S, axis=0) for p in pre])) if not lstm else tf.split(pre, S, axis=0)
                h = c = None  # zero
                hs, cs = [None] * S, [None] * S
                for t in (range(S) if d == 0 else range(S - 1, -1, -1)):
                    h, c = cell(gis[t], h, c, whh, bhn, H)
                    if d == 1:
                        h, c = masks[t] * h, (masks[t] * c if lstm else None)
                    hs[t], cs[t] = h, c
                seq = tf.stack(hs, axis=1)  # [1, S, H]
                if d == 0:
                    h = tf.reduce_sum(seq * last, axis=1)
                    c = tf.reduce_sum(tf.stack(cs, axis=1) * last, axis=1) if lstm else None
                outs.append(seq)
                finals.append((h, c))
        # zeros past the source, as pad_packed_sequence gives
        res = {"enc": tf.concat(outs, axis=-1) * mask3, "h": tf.concat([f[0] for f in finals], axis=-1)}
        if lstm:
            res["c"] = tf.concat([f[1] for f in finals], axis=-1)
        return res

    return encoder


def build_step(tf, cfg: dict, w: dict, max_src: int | None = None):
    """The decoder step as a tf.function with a fixed input signature: token [1] int32, h [1, Hd] (, c) and, with
    max_src, the encoder outputs enc [1, S, Hd] and mask [1, S] -> logits [1, V], h_out (, c_out). Without
    max_src (a next-token model: no encoder, no attention) the step reads the token and the state only, h (, c)
    [layers, Hd]: one row per stacked layer (the encoder-decoder's decoder has one layer)."""
    lstm, Hd = cfg["cell"] == "lstm", int(cfg["dec_hidden"])
    S = int(max_src) if max_src is not None else None
    if S is None and cfg["attention"]:
        raise ValueError("a decoder step with attention needs max_src (the encoder outputs it attends to)")
    L = _layers(cfg) if S is None else 1
    const = lambda name: tf.constant(np.asarray(w[name], np.float32))  # noqa: E731
    gates, cell, split_gru = _recurrence(tf, cfg, w)
    tgt_emb = const("tgt_embed.weight")
    dec = [gates("decoder", "", layer) for layer in range(L)]
    wout, bout = tf.constant(np.ascontiguousarray(np.asarray(w["out.weight"], np.float32).T)), const("out.bias")
    dec_sig = [tf.TensorSpec([1], tf.int32, name="token"), tf.TensorSpec([L, Hd], tf.float32, name="h")]
    if lstm:
        dec_sig.append(tf.TensorSpec([L, Hd], tf.float32, name="c"))
    if S is not None:
        dec_sig += [tf.TensorSpec([1, S, Hd], tf.float32, name="enc"), tf.TensorSpec([1, S], tf.float32, name="mask")]

    def step(token, h, c, enc, mask):
        x = tf.gather(tgt_emb, token)  # [1, E]
        if L == 1:
            (dwih, dbih, dwhh, dbhn), = dec
            h2, c2 = cell(split_gru(tf.matmul(x, dwih) + dbih, Hd), h, c, dwhh, dbhn, Hd)
        else:  # layer l's output is layer l + 1's input
            hs, cs = tf.split(h, L, axis=0), (tf.split(c, L, axis=0) if lstm else [None] * L)
            h2s, c2s = [], []
            for (dwih, dbih, dwhh, dbhn), h_l, c_l in zip(dec, hs, cs):
                x, c_new = cell(split_gru(tf.matmul(x, dwih) + dbih, Hd), h_l, c_l, dwhh, dbhn, Hd)
                h2s.append(x)
                c2s.append(c_new)
            h2, c2 = x, (tf.concat(c2s, axis=0) if lstm else None)
        out = h2
        if cfg["attention"]:
            scores = tf.reshape(tf.matmul(enc, tf.reshape(h2, [1, Hd, 1])), [1, S])  # |score| < Hd: states in (-1, 1)
            # masked softmax whose tensors keep small ranges (a -1e9 in the scores would set their int8 scale):
            # the best real score moves to 0, padded positions sit ATTENTION_PAD below it (weight <= 2e-9 of it)
            best = tf.reduce_max(scores + (mask - 1.0) * (Hd + 1.0), axis=-1, keepdims=True)
            weights = tf.nn.softmax((scores - best) * mask + (mask - 1.0) * ATTENTION_PAD)
            ctx = tf.reshape(tf.matmul(tf.reshape(weights, [1, 1, S]), enc), [1, Hd])
            out = tf.concat([h2, ctx], axis=-1)
        res = {"logits": tf.matmul(out, wout) + bout, "h_out": h2 if L == 1 else tf.concat(h2s, axis=0)}
        if lstm:
            res["c_out"] = c2
        return res

    if S is None:
        if lstm:
            return tf.function(lambda token, h, c: step(token, h, c, None, None), input_signature=dec_sig)
        return tf.function(lambda token, h: step(token, h, None, None, None), input_signature=dec_sig)
    if lstm:
        return tf.function(lambda token, h, c, enc, mask: step(token, h, c, enc, mask), input_signature=dec_sig)
    return tf.function(lambda token, h, enc, mask: step(token, h, None, enc, mask), input_signature=dec_sig)
