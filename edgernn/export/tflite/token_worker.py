"""
TFLite conversion worker for a token encoder-decoder: TensorFlow runs here, in its own process, so that a converter
crash or hang ends only this process (edgernn.export.tflite.tokens starts it and kills it after its timeout).

    python -m edgernn.export.tflite.token_worker SPEC.json

SPEC.json (written by tokens.export_token_tflite): cfg (TokenModelConfig dict), weights (.npz of the torch
state_dict as numpy), max_src, calib (source id lists), precision (float | int8), recipes (the int8 candidates in
order), dir (where encoder.tflite / decoder.tflite go) and report (this worker's JSON answer). Exit code 0 = built
(see the report), 1 = Python error (report["error"]), < 0 = crashed.

The graphs are plain TF ops in tf.functions with fixed input signatures (no Keras), the recurrences unrolled over
max_src steps; their signature keys are the tensor names edgernn.runtimes.token_litert looks for. For int8 the
candidates are converted in order, each decoded greedily on the calibration sources through the LiteRT engine and
compared with the float TF graph's greedy outputs; the first that agrees on >= AGREEMENT_MIN of them is kept.
build_step (the decoder step, also without a context), select_recipe and main serve the next-token worker too
(token_lm_worker.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

from edgernn.export.tflite.tokens import (  # noqa: E402
    AGREEMENT_MIN,
    ATTENTION_PAD,
    check_sources,
    engine_outputs,
    max_len,
    reference_outputs,
)
from edgernn.runtimes.vocab import BOS, EOS  # noqa: E402

FILLED_SHARE = 4  # one full-length calibration source per this many real ones
CALIB_STEPS_MAX = 1000  # decoder samples for int8 calibration (evenly picked from the greedy paths)

# ---------------------------------------------------------------- graphs


def _recurrence(tf, cfg: dict, w: dict) -> tuple:
    """(gates, cell, split_gru): the GRU/LSTM pieces of the graphs. Every unrolled step is kept to few ops (each op
    and tensor costs ~100 bytes of flatbuffer, ~200 quantized): the input products of all steps in one
    FULLY_CONNECTED, one sigmoid over the GRU's r|z (the LSTM's rows reordered to i, f, o | g)."""
    lstm = cfg["cell"] == "lstm"

    def gates(prefix: str, sfx: str = "") -> tuple:
        """(W_ih^T, b_ih + b_hh, W_hh^T, b_hn) of one torch GRU/LSTM direction. The recurrent product has no bias:
        int16x8 conversion gives the unrolled steps' FULLY_CONNECTEDs one shared int64 bias quantized with the
        first step's input scale (measured: 29% off at step 2 of an LSTM), so b_hh joins the input products; the
        GRU's b_hn, inside r * (W_hn h + b_hn), is added after the product (None for an LSTM). LSTM gates are
        reordered i, f, g, o -> i, f, o, g (one sigmoid and one tanh per step)."""
        wih, bih, whh, bhh = (np.asarray(w[f"{prefix}.{k}_l0{sfx}"], np.float32)
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


def build_functions(tf, cfg: dict, w: dict, max_src: int):
    """(encoder, decoder) tf.functions with fixed input signatures, from the torch weights (_recurrence)."""
    return build_encoder(tf, cfg, w, max_src), build_step(tf, cfg, w, max_src)


def build_encoder(tf, cfg: dict, w: dict, max_src: int):
    """The encoder as a tf.function: src [1, S] int32 (right-padded), mask [1, S] -> enc [1, S, Hd] (zero past the
    source), h [1, Hd] (, c): the final states, fwd ++ bwd (what a classifier's head reads)."""
    lstm, S, H = cfg["cell"] == "lstm", int(max_src), int(cfg["hidden"])
    const = lambda name: tf.constant(np.asarray(w[name], np.float32))  # noqa: E731
    gates, cell, split_gru = _recurrence(tf, cfg, w)
    src_emb = const("src_embed.weight")
    dirs = [gates("encoder", sfx) for sfx in ("", "_reverse")[: 2 if cfg["bidirectional"] else 1]]
    enc_sig = [tf.TensorSpec([1, S], tf.int32, name="src"), tf.TensorSpec([1, S], tf.float32, name="mask")]

    @tf.function(input_signature=enc_sig)
    def encoder(src, mask):
        """Padded steps leave the state as it was, as torch's packed sequence does, without a (1 - mask) * h term
        (always 0 in calibration on one side or the other: a degenerate int scale): the backward pass meets the
        padding before the source, while its state is still 0, so h = mask * h_new; the forward pass meets it
        after, where it cannot reach the source's outputs, and its final state is read at the last real token."""
        emb = tf.gather(src_emb, src[0])  # [S, E]
        masks = tf.split(tf.transpose(mask), S, axis=0)  # S x [1, 1]
        mask3 = tf.expand_dims(mask, -1)  # [1, S, 1]
        last = tf.expand_dims(mask - tf.pad(mask[:, 1:], [[0, 0], [0, 1]]), -1)  # 1 at the last real token
        outs, finals = [], []
        for d, (wih, bih, whh, bhn) in enumerate(dirs):
            pre = split_gru(tf.matmul(emb, wih) + bih, H)  # the input products of every step at once
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
    max_src (a next-token model: no encoder, no attention) the step reads the token and the state only."""
    lstm, Hd = cfg["cell"] == "lstm", int(cfg["dec_hidden"])
    S = int(max_src) if max_src is not None else None
    if S is None and cfg["attention"]:
        raise ValueError("a decoder step with attention needs max_src (the encoder outputs it attends to)")
    const = lambda name: tf.constant(np.asarray(w[name], np.float32))  # noqa: E731
    gates, cell, split_gru = _recurrence(tf, cfg, w)
    tgt_emb = const("tgt_embed.weight")
    dwih, dbih, dwhh, dbhn = gates("decoder")
    wout, bout = tf.constant(np.ascontiguousarray(np.asarray(w["out.weight"], np.float32).T)), const("out.bias")
    dec_sig = [tf.TensorSpec([1], tf.int32, name="token"), tf.TensorSpec([1, Hd], tf.float32, name="h")]
    if lstm:
        dec_sig.append(tf.TensorSpec([1, Hd], tf.float32, name="c"))
    if S is not None:
        dec_sig += [tf.TensorSpec([1, S, Hd], tf.float32, name="enc"), tf.TensorSpec([1, S], tf.float32, name="mask")]

    def step(token, h, c, enc, mask):
        x = tf.gather(tgt_emb, token)  # [1, E]
        h2, c2 = cell(split_gru(tf.matmul(x, dwih) + dbih, Hd), h, c, dwhh, dbhn, Hd)
        out = h2
        if cfg["attention"]:
            scores = tf.reshape(tf.matmul(enc, tf.reshape(h2, [1, Hd, 1])), [1, S])  # |score| < Hd: states in (-1, 1)
            # masked softmax whose tensors keep small ranges (a -1e9 in the scores would set their int8 scale):
            # the best real score moves to 0, padded positions sit ATTENTION_PAD below it (weight <= 2e-9 of it)
            best = tf.reduce_max(scores + (mask - 1.0) * (Hd + 1.0), axis=-1, keepdims=True)
            weights = tf.nn.softmax((scores - best) * mask + (mask - 1.0) * ATTENTION_PAD)
            ctx = tf.reshape(tf.matmul(tf.reshape(weights, [1, 1, S]), enc), [1, Hd])
            out = tf.concat([h2, ctx], axis=-1)
        res = {"logits": tf.matmul(out, wout) + bout, "h_out": h2}
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


# ---------------------------------------------------------------- the float TF graph as the int8 reference


class _TFEngine:
    """The tf.functions with the engine API of edgernn.runtimes.token_session (state = (h, (c,), enc, mask))."""

    def __init__(self, encoder, decoder, max_src: int, lstm: bool):
        self.enc_fn, self.dec_fn, self.max_src, self.lstm = encoder, decoder, max_src, lstm

    def encode(self, ids):
        src, mask = padded(ids, self.max_src)
        out = {k: v.numpy() for k, v in self.enc_fn(src, mask).items()}
        return (out["h"], out["c"], out["enc"], mask) if self.lstm else (out["h"], out["enc"], mask)

    def step(self, token, state):
        *st, enc, mask = state
        out = {k: v.numpy() for k, v in self.dec_fn(np.asarray([token], np.int32), *st, enc, mask).items()}
        new = (out["h_out"], out["c_out"]) if self.lstm else (out["h_out"],)
        return out["logits"][0], (*new, enc, mask)


def padded(ids: list[int], max_src: int) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's inputs for one source: ids right-padded with 0 to max_src [1, S] int32, mask [1, S] float32."""
    src, mask = np.zeros((1, max_src), np.int32), np.zeros((1, max_src), np.float32)
    src[0, :len(ids)], mask[0, :len(ids)] = ids, 1.0
    return src, mask


def filled(sources: list, max_src: int) -> list:
    """Calibration sources that fill every position: consecutive sources run together and cut at max_src, one
    per FILLED_SHARE of the sources. The unrolled encoder has its own tensors per step, so without them a step
    past the longest calibration source is calibrated on zeros only (a degenerate int scale: garbage there)."""
    out, cur = [], []
    for ids in sources * (1 + max_src):
        cur += ids
        if len(cur) >= max_src:
            out.append(cur[:max_src])
            cur = []
            if len(out) >= max(4, len(sources) // FILLED_SHARE):
                break
    return out


def greedy_all(engine, sources: list, record: list | None = None) -> list[list[int]]:
    """Greedy outputs (no <bos>/<eos>) of every source; with record, every decoder step's inputs as a dict."""
    hyps = []
    for ids in sources:
        state, token, out = engine.encode(ids), BOS, []
        for _ in range(max_len(len(ids))):
            if record is not None:
                *st, enc, mask = state
                names = ("h", "c") if len(st) == 2 else ("h",)
                record.append({"token": np.asarray([token], np.int32), **dict(zip(names, st)), "enc": enc,
                               "mask": mask})
            logits, state = engine.step(token, state)
            token = int(np.argmax(logits))
            if token == EOS:
                break
            out.append(token)
        hyps.append(out)
    return hyps


# ---------------------------------------------------------------- conversion


def convert(tf, fn, recipe: str, samples: list) -> bytes:
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], tf.Module())
    if recipe != "float":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if recipe in ("full-int8", "int16x8"):
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if recipe == "full-int8" else
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.representative_dataset = lambda: iter(samples)  # dicts by signature key; float I/O tensors kept
    return conv.convert()


_LABEL = {"integer": "full-int8", "hybrid": "dynamic-int8", "weights": "weights-int8", "float": "float"}
_INT = (np.dtype(np.int8), np.dtype(np.int16))


def _op_records(fb: bytes) -> list[dict]:
    """Per op in execution order: name, how it computes (integer | hybrid | weights | float | other), the int
    width of its activations and its multiply-accumulates (or table entries, for a GATHER) on constant weights."""
    from edgernn.export.tflite.flatbuffer import constant_tensors
    from edgernn.export.tflite.ops import interpreter

    it = interpreter(fb, delegates=False)
    det = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    consumers: dict = {}
    for op in ops:
        for i in op["inputs"]:
            consumers.setdefault(i, []).append(op["op_name"])
    const, dequantized, recs = constant_tensors(fb), set(), []
    for op in ops:
        name, ins, outs = op["op_name"], [i for i in op["inputs"] if i >= 0], [i for i in op["outputs"] if i >= 0]
        out_dt = [np.dtype(det[i]["dtype"]) for i in outs]
        weights = [i for i in ins if i in const or i in dequantized]
        wint = any(np.dtype(det[i]["dtype"]) in _INT for i in ins if i in const)
        if name == "DEQUANTIZE" and any(i in const for i in ins):
            dequantized.update(outs)
            kind = "other"
        elif any(o in _INT for o in out_dt):
            kind = "integer"
            if name == "GATHER" and all(c == "DEQUANTIZE" for o in outs for c in consumers.get(o, [])):
                kind = "weights"  # int8 table rows dequantized at once: the arithmetic after it is float
        elif wint and all(o == np.float32 for o in out_dt):
            kind = "hybrid"
        elif any(i in dequantized for i in weights):
            kind = "weights"
        else:
            kind = "float"
        size = int(sum(np.prod(det[i]["shape"]) for i in weights))
        if name in ("FULLY_CONNECTED", "BATCH_MATMUL") and weights and outs:  # weights x rows of the input
            size *= max(1, int(np.prod(det[outs[0]]["shape"])) // max(1, int(det[weights[0]]["shape"][0])))
        recs.append({"op": name, "kind": kind, "bits": 16 if np.dtype(np.int16) in out_dt else 8, "macs": size})
    return recs


def compute_labels(enc: list, dec: list) -> tuple[dict, dict]:
    """({"embedding", "recurrent", "head"}, the share of each label per family) as the converted graphs compute:
    the GATHERs of the embedding tables; the recurrences' matrix products (the encoder's, the decoder's but its
    last); the output layer (the decoder's last FULLY_CONNECTED). A family's label is the one holding most of its
    multiply-accumulates (for the embedding: table entries); the attention's products of two activations are
    none of these (they follow the activations: int in full-int8 / int16x8, float otherwise). enc, dec: the
    graphs' _op_records."""
    mm = lambda recs: [r for r in recs if r["op"] in ("FULLY_CONNECTED", "BATCH_MATMUL") and r["macs"]]  # noqa
    families = {"embedding": [r for r in enc + dec if r["op"] == "GATHER"],
                "recurrent": mm(enc) + mm(dec)[:-1], "head": mm(dec)[-1:]}
    labels, shares = {}, {}
    for fam, recs in families.items():
        share: dict = {}
        for r in recs:
            label = _LABEL.get(r["kind"], "float")
            if label == "full-int8" and r["bits"] == 16:
                label = "int16x8"
            share[label] = share.get(label, 0) + max(1, r["macs"])
        total = sum(share.values()) or 1
        labels[fam] = max(share, key=share.get) if share else "float"
        shares[fam] = {k: round(v / total, 3) for k, v in sorted(share.items(), key=lambda kv: -kv[1])}
    return labels, shares


def op_summary(recs: list) -> dict:
    """Op types by how they compute (_op_records' kinds)."""
    kinds: dict = {}
    for r in recs:
        kinds.setdefault(r["kind"], set()).add(r["op"])
    return {"count": len(recs), **{k: sorted(v) for k, v in kinds.items()}}


# ---------------------------------------------------------------- main


def select_recipe(tf, candidates: list, fns: dict, samples: dict, out_dir: str, agreement,
                  agreement_min: float = AGREEMENT_MIN) -> tuple:
    """(selection, kept): convert the graphs `fns` (part -> tf.function, the one with the head last; samples: part
    -> representative dicts) with each recipe in turn to out_dir/PART-RECIPE.tflite and keep the first that is
    float or whose agreement(paths) -> (share, why if rejected, extra entry fields) reaches agreement_min.
    selection: per candidate tried, its recipe, accepted, sizes, compute, compute_shares, ops, agreement or why;
    kept: (recipe, paths) or None."""
    selection, kept = [], None
    for recipe in candidates:
        entry = {"recipe": recipe}
        selection.append(entry)
        t1 = time.perf_counter()
        paths = {p: os.path.join(out_dir, f"{p}-{recipe}.tflite") for p in fns}
        try:
            fbs = {p: convert(tf, fn, recipe, samples[p]) for p, fn in fns.items()}
        except Exception as exc:
            lines = [ln for ln in str(exc).splitlines() if ln.strip() and "error:" in ln] or \
                    [ln for ln in str(exc).splitlines() if ln.strip()]
            entry.update(accepted=False, why=f"the converter failed: {(lines[0] if lines else type(exc).__name__)}"
                         [:300])
            continue
        entry["convert_seconds"] = round(time.perf_counter() - t1, 2)
        for part, fb in fbs.items():
            with open(paths[part], "wb") as f:
                f.write(fb)
        recs = {p: _op_records(fb) for p, fb in fbs.items()}  # also: the graphs load without XNNPACK
        *context, head = recs.values()
        labels, shares = compute_labels([r for rs in context for r in rs], head)
        entry.update(sizes={p: len(fb) for p, fb in fbs.items()}, compute=labels, compute_shares=shares,
                     ops={p: op_summary(r) for p, r in recs.items()})
        if recipe == "float":
            entry["accepted"] = True
        else:
            agree, why, extra = agreement(paths)
            entry.update(agreement=round(agree, 4), **extra, accepted=agree >= agreement_min)
            if not entry["accepted"]:
                entry["why"] = why
        if entry["accepted"]:
            kept = (recipe, paths)
            break
    return selection, kept


def selection_error(selection: list, precision: str, kept_what: str) -> str:
    """The error of a selection that kept no candidate: the float conversion's, or every int8 candidate's."""
    if precision == "float":
        return selection[0]["why"]
    return f"no int8 recipe kept {kept_what}: " + "; ".join(f"{e['recipe']}: {e.get('why', '?')}" for e in selection)


def _engine(paths: dict, max_src: int):
    from edgernn.runtimes.token_litert import LiteRTSeq2SeqEngine

    m = {"tflite": {"max_src": max_src}}
    return LiteRTSeq2SeqEngine(paths["encoder"], paths["decoder"], m, m)


def _samples(records: list) -> list:
    if len(records) <= CALIB_STEPS_MAX:
        return records
    pick = np.linspace(0, len(records) - 1, CALIB_STEPS_MAX).round().astype(int)
    return [records[i] for i in pick]


def build(spec: dict, report: dict) -> None:
    import tensorflow as tf

    cfg, max_src, calib = spec["cfg"], int(spec["max_src"]), spec["calib"]
    with np.load(spec["weights"]) as z:
        weights = {k: z[k] for k in z.files}
    lstm = cfg["cell"] == "lstm"
    t0 = time.perf_counter()
    encoder, decoder = build_functions(tf, cfg, weights, max_src)
    tf_engine = _TFEngine(encoder, decoder, max_src, lstm)
    steps: list = []
    ref_hyps = greedy_all(tf_engine, calib, record=steps) if spec["precision"] == "int8" else None
    report["reference_seconds"] = round(time.perf_counter() - t0, 2)
    enc_samples = [dict(zip(("src", "mask"), padded(ids, max_src))) for ids in calib + filled(calib, max_src)]
    dec_samples = _samples(steps)
    candidates = ["float"] if spec["precision"] == "float" else list(spec["recipes"])

    def agreement(paths: dict) -> tuple:
        hyps = greedy_all(_engine(paths, max_src), calib)
        agree = float(np.mean([a == b for a, b in zip(hyps, ref_hyps)]))
        return agree, (f"greedy outputs identical to the float graph's on {agree:.1%} of {len(calib)} calibration "
                       f"sources (< {AGREEMENT_MIN:.0%})"), {}

    selection, kept = select_recipe(tf, candidates, {"encoder": encoder, "decoder": decoder},
                                    {"encoder": enc_samples, "decoder": dec_samples}, spec["dir"], agreement)
    report["selection"] = selection
    if kept is None:
        report["error"] = selection_error(selection, spec["precision"], "the float graph's greedy outputs")
        return
    recipe, paths = kept
    engine = _engine(paths, max_src)
    worst = 0.0
    for ids in check_sources(calib):
        ref, tokens = reference_outputs(cfg, weights, ids)
        got = engine_outputs(engine, ids, tokens)
        for a, b in zip(ref, got):
            if a.shape != b.shape or not np.all(np.isfinite(b)):
                report["error"] = (f"the {recipe} graphs give shape {list(b.shape)} (expected {list(a.shape)}) or "
                                   "non-finite outputs")
                return
            worst = max(worst, float(np.abs(a - b).max()))
    report.update(ok=True, recipe=recipe, paths=paths, max_diff=worst, tensorflow=tf.__version__,
                  **{k: selection[-1][k] for k in ("compute", "compute_shares", "sizes", "ops")})


def main(spec_path: str, build_fn=build) -> int:
    """Run build_fn(spec, report) and write the report (the token workers' common entry point)."""
    with open(spec_path) as f:
        spec = json.load(f)
    report = {"ok": False}
    try:
        build_fn(spec, report)
    except Exception as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        report["error"] = f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:600]
        report["traceback"] = traceback.format_exc()[-4000:]
    with open(spec["report"], "w") as f:
        json.dump(report, f)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
