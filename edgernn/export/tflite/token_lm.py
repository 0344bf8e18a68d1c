"""
TFLite (LiteRT) export of a next-token (language) model: one graph, the step - token [1] int32, h [layers, Hd] (, c)
in; logits [1, V], h_out (, c_out) out, addressed by signature key - run from a zero first state by
edgernn.runtimes.token_litert.LiteRTLMEngine.

    built = build_lm_tflite(model, run, tmp, "int8")      # what edgernn.tokens.export_lm calls
    built["paths"]["lm"]                                  # tmp/lm.tflite
    built["recipe"], built["compute"], built["tflite"]    # selection, compute_shares, calibration, tensorflow

TensorFlow runs in a child process (token_lm_worker.py, started by edgernn.export.tflite.tokens.worker_run like the
encoder-decoder's worker), killed after `timeout` seconds; any failure is an ExportError of one line and leaves
no file (the graph is built in a scratch directory and copied to tmp only once it is good). The step is the
encoder-decoder's decoder step without a context (token_graphs.build_step), stacked as the model is.

precision "float": one conversion, checked against a float64 numpy rendering of the model on the held-out
sequences within FLOAT_TOL x the largest logit. precision "int8": the candidates full-int8 (int8 activations,
calibrated on teacher-forced steps along the run's calibration texts: <bos> t1 .. tn fed from the zero state, the
float graph's states as the step's inputs; up to token_worker.CALIB_STEPS_MAX of them), int16x8 and dynamic are
tried in that order; the first whose top-1 next token equals the float graph's on >= AGREEMENT_MIN of those
teacher-forced steps (each candidate carrying its own state) is kept, and "selection" says for each candidate its
agreement there and on the held-out sequences ("agreement_heldout") or why it was rejected.

Measured (TF 2.21, words runs: 256 calibration words = ~2,180 teacher-forced steps; held-out: 100 words = ~830
steps), agreement with the float graph on calibration / held-out steps:
    GRU  h16 e8, 1 epoch (perplexity 26):    full-int8 0.981 / 0.980, int16x8 0.9995 / 0.998, dynamic 1.0 / 1.0
    LSTM h16 e8, 1 epoch (perplexity 29):    full-int8 0.980 / 0.973, int16x8 0.997 / 0.996, dynamic 1.0 / 0.999
    GRU  h32 e16, 6 epochs (perplexity 14):  full-int8 0.989 / 0.995, int16x8 0.997 / 0.999, dynamic 0.995 / 0.998
    GRU  h64 e16, 6 epochs, 10k words (10.5): full-int8 0.981 / 0.970, int16x8 0.994 / 0.995, dynamic 0.992 / 0.988
    LSTM h64 e16, 6 epochs, 10k words (10.7): full-int8 0.970 / 0.965, int16x8 0.999 / 1.0, dynamic 0.997 / 0.998
so full-int8 is kept on all of them, the LSTM h64 by a hair. The threshold is the encoder-decoder's AGREEMENT_MIN
but per step, a weaker test than its whole greedy outputs: at 0.97 per step, roughly one 8-character greedy
completion in five may come out differently from the float model's (0.97^8 = 0.78).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError, ExportError
from edgernn.export.tflite.tokens import AGREEMENT_MIN, FLOAT_TOL, INT8_RECIPES, _cfg_dict, worker_run
from edgernn.runtimes.vocab import BOS

WORKER = "edgernn.export.tflite.token_lm_worker"
LM_PART = "lm"


def build_lm_tflite(model, run, tmp: Path, precision: str, timeout: float = 600,
                    recipes: tuple = INT8_RECIPES, checks: list | None = None) -> dict:
    """Write tmp/lm.tflite and return {"paths": {"lm": it}, "compute", "recipe", "tflite": {"selection",
    "compute_shares", "calibration", "max_diff" (vs the float64 reference), "agreement_min", "tensorflow"}}.
    model: the run's next-token TokenModel; run: its TokenRun (calibration texts, held-out texts, vocabulary);
    checks: the held-out <bos> t1 .. tn id lists the graphs are compared on (edgernn.tokens.export_lm passes its
    check_sequences; default: every 25th held-out text)."""

    cfg = _cfg_dict(model.cfg)
    if precision not in ("float", "int8"):
        raise ConfigError(f"token TFLite precisions are float and int8, not {precision!r}")
    if cfg.get("kind") != "next-token":
        raise ConfigError(f"build_lm_tflite exports next-token models, not a {cfg.get('kind')} model")
    bad = [r for r in recipes if r not in INT8_RECIPES]
    if bad or not recipes:
        raise ConfigError(f"the token TFLite int8 recipes are {', '.join(INT8_RECIPES)}, not {bad or 'none'}")
    texts = [run.src_vocab.encode(s) for s in run.data().get("src_calib") or []]
    calib = [[BOS] + ids for ids in texts if ids]
    if not calib:
        raise ConfigError(f"{run.path} has no calibration texts (data.json src_calib); retrain the run")
    weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    if checks is None:
        checks = [[BOS] + run.src_vocab.encode(t) for t in run.data()["src_test"][::25]]
    spec = {"cfg": cfg, "calib": calib, "check": checks, "precision": precision,
            "recipes": list(recipes)}
    what = f"{cfg['cell']} next-token step ({precision})"
    target = Path(tmp) / "lm.tflite"
    try:
        with worker_run(spec, weights, timeout, what, WORKER) as report:
            tol = FLOAT_TOL * report["scale"]
            if precision == "float" and not report["max_diff"] <= tol:
                raise ExportError(f"the float TFLite {what} differs from the model by {report['max_diff']:.2e} > "
                                  f"{tol:.1e}; nothing was written - this is an exporter bug, please report it")
            shutil.copyfile(report["paths"][LM_PART], target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    info = {"selection": report["selection"], "compute_shares": report["compute_shares"],
            "max_diff": report["max_diff"], "tensorflow": report["tensorflow"]}
    if precision == "int8":
        info.update(calibration=report["calibration"], agreement_min=AGREEMENT_MIN)
    return {"paths": {LM_PART: target}, "compute": report["compute"], "recipe": report["recipe"], "tflite": info}
