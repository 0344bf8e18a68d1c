"""
TFLite conversion worker for a next-token (language) model's step: TensorFlow runs here, in its own process, so
that a converter crash or hang ends only this process (edgernn.export.tflite.token_lm starts it through
edgernn.export.tflite.tokens.worker_run and kills it after its timeout).

    python -m edgernn.export.tflite.token_lm_worker SPEC.json

SPEC.json: cfg (TokenModelConfig dict with dec_hidden), weights (.npz of the torch state_dict as numpy), calib and
check (teacher-forced input sequences <bos> t1 .. tn as id lists: the run's calibration texts, held-out texts),
precision (float | int8), recipes (the int8 candidates in order), dir and report (this worker's JSON answer).

The step is edgernn.export.tflite.token_graphs.build_step without encoder outputs (signature keys token, h (, c)
[layers, Hd] -> logits, h_out (, c_out)); the candidates are converted and chosen by token_worker.select_recipe:
each runs teacher-forced through the LiteRT engine on the calibration sequences, carrying its own state, and its
top-1 next token is compared with the float TF graph's at every step; the first that agrees on >= AGREEMENT_MIN is
kept.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

from edgernn.export.tflite.token_graphs import build_step  # noqa: E402
from edgernn.export.tflite.token_worker import (  # noqa: E402
    _samples,
    main,
    select_recipe,
    selection_error,
)
from edgernn.export.tflite.tokens import AGREEMENT_MIN, _cell  # noqa: E402


def _states(cfg: dict) -> tuple:
    return ("h", "c") if cfg["cell"] == "lstm" else ("h",)


def _shape(cfg: dict) -> list[int]:
    """A state's shape: one row per stacked layer (edgernn.tokens.export_lm.lm_io)."""
    return [int(cfg.get("layers", 1) or 1), int(cfg["dec_hidden"])]


class _TFStep:
    """The float tf.function with the engine API of edgernn.runtimes.token_lm (state = (h,) or (h, c))."""

    def __init__(self, fn, cfg: dict):
        self.fn, self.names = fn, _states(cfg)
        self.first = tuple(np.zeros(_shape(cfg), np.float32) for _ in self.names)

    def zero_state(self):
        return self.first

    def step(self, token: int, state):
        out = self.fn(np.asarray([token], np.int32), *state)
        return out["logits"].numpy()[0], tuple(out[f"{n}_out"].numpy() for n in self.names)


def teacher_forced(engine, sequences: list, record: list | None = None) -> np.ndarray:
    """The engine's top-1 next token at every step of every sequence, fed the sequence's tokens from the zero
    state; with record, every step's inputs as a dict by signature key (the int8 calibration samples)."""
    top = []
    for seq in sequences:
        state = engine.zero_state()
        for t in seq:
            if record is not None:
                record.append({"token": np.asarray([t], np.int32), **dict(zip(("h", "c"), state))})
            logits, state = engine.step(t, state)
            top.append(int(np.argmax(logits)))
    return np.asarray(top, np.int64)


def reference_steps(cfg: dict, w: dict, seq: list[int]) -> list:
    """The model on one teacher-forced sequence in float64 numpy: per step logits [V], h (, c) [layers * Hd] (the
    layers' rows one after the other, as the engines' state_arrays give them)."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    n_layers, hd = _shape(cfg)
    ps = [[w[f"decoder.{k}_l{layer}"] for k in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")]
          for layer in range(n_layers)]
    hs, cs = [np.zeros(hd) for _ in ps], [np.zeros(hd) for _ in ps]
    res = []
    for t in seq:
        x = w["tgt_embed.weight"][t]
        for layer, p in enumerate(ps):  # layer l's output is layer l + 1's input
            hs[layer], cs[layer] = _cell(cfg["cell"], x, hs[layer], cs[layer], *p)
            x = hs[layer]
        res += [w["out.weight"] @ x + w["out.bias"], np.concatenate(hs)]
        res += [np.concatenate(cs)] if cfg["cell"] == "lstm" else []
    return res


def _engine(path: str, cfg: dict):
    from edgernn.runtimes.token_litert import LiteRTLMEngine

    return LiteRTLMEngine(path, {"inputs": [{"name": n, "shape": _shape(cfg), "role": "state"} for n in _states(cfg)]})


def build(spec: dict, report: dict) -> None:
    import tensorflow as tf

    cfg, calib, check, precision = spec["cfg"], spec["calib"], spec["check"], spec["precision"]
    with np.load(spec["weights"]) as z:
        weights = {k: z[k] for k in z.files}
    t0 = time.perf_counter()
    step = build_step(tf, cfg, weights)
    records: list = []
    if precision == "int8":
        ref_calib = teacher_forced(_TFStep(step, cfg), calib, record=records)
        ref_check = teacher_forced(_TFStep(step, cfg), check)
    report["reference_seconds"] = round(time.perf_counter() - t0, 2)
    samples = _samples(records)
    if precision == "int8":
        report["calibration"] = {"sequences": len(calib), "steps": len(records), "samples": len(samples)}

    def agreement(paths: dict) -> tuple:
        engine = _engine(paths["lm"], cfg)
        agree = float(np.mean(teacher_forced(engine, calib) == ref_calib))
        held = float(np.mean(teacher_forced(engine, check) == ref_check))
        why = (f"top-1 next tokens identical to the float graph's on {agree:.1%} of {len(ref_calib)} teacher-forced "
               f"calibration steps (< {AGREEMENT_MIN:.0%})")
        return agree, why, {"agreement_heldout": round(held, 4)}

    candidates = ["float"] if precision == "float" else list(spec["recipes"])
    selection, kept = select_recipe(tf, candidates, {"lm": step}, {"lm": samples}, spec["dir"], agreement)
    report["selection"] = selection
    if kept is None:
        report["error"] = selection_error(selection, precision, "the float graph's top-1 next tokens")
        return
    recipe, paths = kept
    engine = _engine(paths["lm"], cfg)
    worst, scale = 0.0, 1.0
    for seq in check:
        ref, got, state = reference_steps(cfg, weights, seq), [], engine.zero_state()
        for t in seq:
            logits, state = engine.step(t, state)
            got += [np.asarray(logits, np.float64)] + [np.asarray(s, np.float64) for s in engine.state_arrays(state)]
        for a, b in zip(ref, got):
            if a.shape != b.shape or not np.all(np.isfinite(b)):
                report["error"] = (f"the {recipe} step gives shape {list(b.shape)} (expected {list(a.shape)}) or "
                                   "non-finite outputs")
                return
            worst = max(worst, float(np.abs(a - b).max()))
        scale = max([scale] + [float(np.abs(a).max()) for a in ref[:: len(_states(cfg)) + 1]])
    report.update(ok=True, recipe=recipe, paths=paths, max_diff=worst, scale=scale, tensorflow=tf.__version__,
                  **{k: selection[-1][k] for k in ("compute", "compute_shares", "sizes", "ops")})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], build))
