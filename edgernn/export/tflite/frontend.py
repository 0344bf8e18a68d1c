"""
The audio front end in TensorFlow ops for the TFLite graphs (edgernn.frontends.logmel, the same matrices as
the torch module): raw PCM hops in, normalized log-mel / MFCC features out. Runs inside the TFLite worker.

    feats = sequence_features(tf, fe, x)          # x [B, T, hop] -> [B, T, F]
    feats, tail = step_features(tf, fe, x, tail)  # x [B, hop], tail [B, tail] -> [B, F], [B, tail]

Products with the constant DFT / mel / DCT matrices are written as reshape -> matmul -> reshape, which the
converter turns into FULLY_CONNECTED ops; the log is TFLite's LOG. Every TFLite quantization stores those
matrices in int8 (dynamic range too: writing the product with the constant on the left, as a BATCH_MATMUL,
changed nothing - measured), and an int8 DFT ruins the log spectrum's weak bands: on the tone set every
quantized TFLite audio artifact failed the gate (accuracy 0.71 vs float 0.96), so TFLite audio ships float.
"""

from __future__ import annotations

import numpy as np


def front_end(cfg: dict):
    """The FrontEnd of a model config dict (None for feature models)."""
    if not cfg.get("frontend"):
        return None
    from edgernn.frontends import FrontEnd

    return FrontEnd.from_dict(cfg["frontend"])


def features_size(cfg: dict) -> int:
    """What the first recurrent layer reads: the front end's features, else the input channels."""
    fe = front_end(cfg)
    return fe.size if fe is not None else int(cfg["input_size"])


def _dense(tf, x, w: np.ndarray):
    shape = tf.shape(x)
    flat = tf.reshape(x, [-1, w.shape[0]])
    out = tf.matmul(flat, tf.constant(w.astype(np.float32)))
    return tf.reshape(out, tf.concat([shape[:-1], [w.shape[1]]], 0))


def _from_frames(tf, fe, frames):
    cos, sin = fe.dft_matrices()
    re, im = _dense(tf, frames, cos), _dense(tf, frames, sin)
    f = tf.math.log(_dense(tf, re * re + im * im, fe.mel_matrix()) + np.float32(fe.log_eps))
    if fe.mfcc:
        f = _dense(tf, f, fe.dct_matrix())
    mean = np.asarray(fe.mean or [0.0] * fe.size, np.float64)
    std = np.asarray(fe.std or [1.0] * fe.size, np.float64)
    return f * tf.constant((1.0 / std).astype(np.float32)) + tf.constant((-mean / std).astype(np.float32))


def sequence_features(tf, fe, x):
    """[B, T, hop] PCM -> [B, T, F]: frame t = the previous hop's last `tail` samples + hop t (zeros first)."""
    if fe.tail:
        prev = tf.concat([tf.zeros_like(x[:, :1]), x[:, :-1]], axis=1)[:, :, fe.hop - fe.tail:]
        x = tf.concat([prev, x], axis=2)
    return _from_frames(tf, fe, x)


def step_features(tf, fe, x, tail):
    """One hop [B, hop] (+ tail [B, tail]) -> (features [B, F], new tail [B, tail] or None)."""
    frame = tf.concat([tail, x], axis=1) if fe.tail else x
    return _from_frames(tf, fe, frame), (frame[:, fe.hop:] if fe.tail else None)
