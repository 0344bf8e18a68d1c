"""
TFLite conversion worker for a token classifier or tagger: TensorFlow runs here, in its own process
(edgernn.export.tflite.token_classifier starts it through edgernn.export.tflite.tokens.worker_run and kills it after
its timeout).

    python -m edgernn.export.tflite.token_classifier_worker SPEC.json

SPEC.json: cfg (TokenModelConfig dict with dec_hidden), weights (.npz of the torch state_dict), max_src, calib (the
run's calibration texts as id lists), precision, recipes, agreement_min, dir and report.

The graph: token_graphs.build_encoder (the encoder unrolled over max_src, padded steps masked) and the head - on
the final states (classify: logits [1, C]) or on every encoder output (tag: logits [1, max_src, C], rows past the
text meaningless). Signature keys src, mask -> logits. int8 candidates are calibrated on the encoder inputs of the
calibration texts (and texts run together to fill every position) and chosen by token_worker.select_recipe: the
first whose labels equal the float graph's on >= agreement_min of the calibration texts (tagger: of their tokens).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

from edgernn.export.tflite.token_graphs import build_encoder  # noqa: E402
from edgernn.export.tflite.token_worker import (  # noqa: E402
    filled,
    main,
    padded,
    select_recipe,
    selection_error,
)


def build_classifier(tf, cfg: dict, w: dict, max_src: int):
    encoder = build_encoder(tf, cfg, w, max_src)
    wout = tf.constant(np.ascontiguousarray(np.asarray(w["head.weight"], np.float32).T))
    bout = tf.constant(np.asarray(w["head.bias"], np.float32))
    tag = cfg["kind"] == "tag"
    sig = [tf.TensorSpec([1, max_src], tf.int32, name="src"), tf.TensorSpec([1, max_src], tf.float32, name="mask")]

    @tf.function(input_signature=sig)
    def classifier(src, mask):
        out = encoder(src, mask)
        if tag:
            logits = tf.reshape(tf.matmul(out["enc"][0], wout) + bout, [1, max_src, -1])
        else:
            logits = tf.matmul(out["h"], wout) + bout
        return {"logits": logits}

    return classifier


def labels_of(run, texts: list, max_src: int, tag: bool) -> np.ndarray:
    """The labels a graph gives: one per text (classify) or one per real token (tag), in order. run(src, mask)
    -> logits."""
    out = []
    for ids in texts:
        src, mask = padded(ids, max_src)
        z = np.asarray(run(src, mask))
        out.append(z[0, : len(ids)].argmax(-1) if tag else z.reshape(1, -1).argmax(-1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def build(spec: dict, report: dict) -> None:
    import tensorflow as tf

    cfg, max_src, calib = spec["cfg"], int(spec["max_src"]), spec["calib"]
    tag = cfg["kind"] == "tag"
    with np.load(spec["weights"]) as z:
        weights = {k: z[k] for k in z.files}
    t0 = time.perf_counter()
    fn = build_classifier(tf, cfg, weights, max_src)
    ref = labels_of(lambda s, m: fn(s, m)["logits"].numpy(), calib, max_src, tag)
    report["reference_seconds"] = round(time.perf_counter() - t0, 2)
    samples = [dict(zip(("src", "mask"), padded(ids, max_src))) for ids in calib + filled(calib, max_src)]
    part = "tagger" if tag else "classifier"
    agreement_min = float(spec["agreement_min"])

    def agreement(paths: dict) -> tuple:
        from edgernn.runtimes.token_litert import LiteRTClassifierEngine

        eng = LiteRTClassifierEngine(paths[part], {"tflite": {"max_src": max_src}, "task": cfg["kind"]})
        got = labels_of(lambda s, m: eng.graph({"src": s, "mask": m})["logits"], calib, max_src, tag)
        agree = float(np.mean(got == ref))
        unit = "tokens" if tag else "texts"
        return agree, (f"labels identical to the float graph's on {agree:.1%} of {len(ref)} calibration {unit} "
                       f"(< {agreement_min:.0%})"), {}

    candidates = ["float"] if spec["precision"] == "float" else list(spec["recipes"])
    selection, kept = select_recipe(tf, candidates, {part: fn}, {part: samples}, spec["dir"], agreement,
                                    agreement_min=agreement_min)
    report["selection"] = selection
    if kept is None:
        report["error"] = selection_error(selection, spec["precision"], "the float graph's labels")
        return
    recipe, paths = kept
    if spec["precision"] == "int8":
        report["calibration"] = {"texts": len(calib), "samples": len(samples)}
    report.update(ok=True, recipe=recipe, paths=paths, tensorflow=tf.__version__,
                  **{k: selection[-1][k] for k in ("compute", "compute_shares", "sizes", "ops")})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], build))
