"""
TFLite conversion worker for a token encoder-decoder: TensorFlow runs here, in its own process, so that a converter
crash or hang ends only this process (edgernn.export.tflite.tokens starts it and kills it after its timeout).

    python -m edgernn.export.tflite.token_worker SPEC.json

SPEC.json (written by tokens.export_token_tflite): cfg (TokenModelConfig dict), weights (.npz of the torch
state_dict as numpy), max_src, calib (source id lists), precision (float | int8), recipes (the int8 candidates in
order), dir (where encoder.tflite / decoder.tflite go) and report (this worker's JSON answer). Exit code 0 = built
(see the report), 1 = Python error (report["error"]), < 0 = crashed.

The graphs (token_graphs.py) are plain TF ops in tf.functions with fixed input signatures (no Keras), the
recurrences unrolled over max_src steps, stacked layers included; their signature keys are the tensor names
edgernn.runtimes.token_litert looks for. For int8 the candidates are converted in order, each decoded greedily on
the calibration sources through the LiteRT engine and compared with the float TF graph's greedy outputs; the first
that agrees on >= AGREEMENT_MIN of them is kept.
select_recipe and main serve the next-token and classifier workers too (token_lm_worker.py,
token_classifier_worker.py).
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

from edgernn.export.tflite.token_graphs import build_encoder, build_functions, build_step  # noqa: E402, F401
from edgernn.export.tflite.tokens import (  # noqa: E402
    AGREEMENT_MIN,
    check_sources,
    engine_outputs,
    max_len,
    reference_outputs,
)
from edgernn.runtimes.vocab import BOS, EOS  # noqa: E402

FILLED_SHARE = 4  # one full-length calibration source per this many real ones
CALIB_STEPS_MAX = 1000  # decoder samples for int8 calibration (evenly picked from the greedy paths)

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
