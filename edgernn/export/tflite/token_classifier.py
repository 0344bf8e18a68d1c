"""
TFLite (LiteRT) export of a token classifier or tagger: one graph - src [1, max_src] int32 (the text's ids,
right-padded with 0) and mask [1, max_src] float32 in; logits [1, C] (a tagger: [1, max_src, C], rows past the text
meaningless) out, by signature key - run by edgernn.runtimes.token_litert.LiteRTClassifierEngine.

    built = build_classifier_tflite(model, run, tmp, "int8", agreement_min=0.98)   # edgernn.tokens.classifier
    built["paths"]["classifier"]          # tmp/classifier.tflite (a tagger: "tagger")
    built["recipe"], built["compute"], built["tflite"]

The encoder is the encoder-decoder's (token_graphs.build_encoder: unrolled over max_src, the longest text of the
data; a padded step leaves the state as it was) with the classifier's head on its final states or on every output.
TensorFlow runs in a child process (token_classifier_worker.py, via tokens.worker_run), killed after `timeout`
seconds; a failure is an ExportError of one line and leaves no file. int8 tries full-int8, int16x8 and dynamic in
that order, calibrated on the encoder inputs of the run's calibration texts, and keeps the first whose labels
equal the float graph's on >= agreement_min of those texts (a tagger: tokens). The caller checks the kept graph
against the trained model before publishing it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError
from edgernn.export.tflite.tokens import INT8_RECIPES, _cfg_dict, worker_run

WORKER = "edgernn.export.tflite.token_classifier_worker"


def build_classifier_tflite(model, run, tmp: Path, precision: str, agreement_min: float = 0.98,
                            timeout: float = 600, recipes: tuple = INT8_RECIPES) -> dict:
    """Write tmp/PART.tflite (PART classifier or tagger) and return {"paths": {PART: it}, "compute", "recipe",
    "tflite": {"max_src", "selection", "compute_shares", "calibration", "agreement_min", "tensorflow"}}.
    model: the run's TokenModel (kind classify or tag, any layers); run: its TokenRun (calibration and test texts)."""
    cfg = _cfg_dict(model.cfg)
    if cfg["kind"] not in ("classify", "tag"):
        raise ConfigError(f"build_classifier_tflite exports classifiers and taggers, not a {cfg['kind']} model")
    if precision not in ("float", "int8"):
        raise ConfigError(f"token TFLite precisions are float and int8, not {precision!r}")
    bad = [r for r in recipes if r not in INT8_RECIPES]
    if bad or not recipes:
        raise ConfigError(f"the token TFLite int8 recipes are {', '.join(INT8_RECIPES)}, not {bad or 'none'}")
    data = run.data()
    max_src = max(int(run.dataset.get("max_src_len") or 0), max(len(s) for s in data["src_test"]))
    calib = [ids for ids in (run.src_vocab.encode(s) for s in data.get("src_calib") or []) if 1 <= len(ids) <= max_src]
    if not calib:
        raise ConfigError(f"{run.path} has no calibration texts (data.json src_calib); retrain the run")
    part = "tagger" if cfg["kind"] == "tag" else "classifier"
    weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    spec = {"cfg": cfg, "max_src": max_src, "calib": calib, "precision": precision, "recipes": list(recipes),
            "agreement_min": float(agreement_min)}
    target = Path(tmp) / f"{part}.tflite"
    try:
        with worker_run(spec, weights, timeout, f"{cfg['cell']} token {part} ({precision})", WORKER) as report:
            shutil.copyfile(report["paths"][part], target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    info = {"max_src": max_src, "selection": report["selection"], "compute_shares": report["compute_shares"],
            "tensorflow": report["tensorflow"]}
    if precision == "int8":
        info.update(calibration=report["calibration"], agreement_min=float(agreement_min))
    return {"paths": {part: target}, "compute": report["compute"], "recipe": report["recipe"], "tflite": info}
