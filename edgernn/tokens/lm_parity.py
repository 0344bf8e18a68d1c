"""
Parity of next-token (language model) artifacts, judged as language models are: perplexity and top-1 accuracy on
held-out texts, agreement with the float model's most likely next token, and a long generation as the soak.

    result = lm_parity("runs/words/gru")      # writes runs/words/gru/parity.json; one row per artifact

Every held-out text goes through each exported step artifact (edgernn.runtimes.token_lm, from the zero state,
<bos> t1 .. tn teacher-forced) and through the float PyTorch model; per artifact: perplexity and top-1 accuracy of
its predictions of t1 .. tn <eos>, the share of steps whose most likely token is the float model's (agreement),
and max |diff| of the logits. The soak: `soak_tokens` steps of one long generation (the float model's tokens drawn
from its top 5, seeded, with <eos> masked out so the state runs on - greedy text falls into a loop), logits compared
step by step (edgernn.tokens.gates).

Gate (edgernn.tokens.gates.TokenGates):
  float   agreement >= float_min_agreement (0.995), soak max |diff| <= float_soak_tol (1e-3), soak agreement
          >= 0.999
  int8    perplexity <= float perplexity x (1 + max_perplexity_increase) (default +2%), agreement >=
          min_top1_agreement (0.97), soak agreement >= min_soak_agreement (0.95)
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError
from edgernn.runtimes.files import atomic_write_json
from edgernn.runtimes.generate import log_softmax
from edgernn.runtimes.manifest import FORMAT_EXT
from edgernn.runtimes.token_lm import LM_PART, lm_artifact, load_lm
from edgernn.runtimes.vocab import BOS, EOS
from edgernn.tokens.gates import (
    TokenGates,
    artifact_soak,
    float32_noise,
    float_soak_bound,
    reference_soak,
    soak_reasons,
    soak_summary,
)
from edgernn.tokens.metrics import lm_scores
from edgernn.tokens.reference import torch_lm_step
from edgernn.tokens.run import load_token_run

EXT_FORMAT = {ext: fmt for fmt, ext in FORMAT_EXT.items()}


def lm_pairs(artifacts: Path) -> list[tuple[str, str]]:
    """(format, precision) of every exported next-token step artifact (lm-PRECISION.EXT)."""
    found = []
    for p in sorted(Path(artifacts).glob(f"{LM_PART}-*.*")):
        fmt = EXT_FORMAT.get(p.suffix[1:])
        if fmt is not None and p.suffix != ".json":
            found.append((fmt, p.stem.split("-", 1)[1]))
    return found


def _sequences(run, n: int) -> list[list[int]]:
    """<bos> t1 .. tn <eos> of the first n held-out texts."""
    return [[BOS] + run.src_vocab.encode(s) + [EOS] for s in run.data()["src_test"][:n]]


def _teacher_forced(step, first, sequences: list[list[int]], progress=None) -> np.ndarray:
    """Logits [steps, V] of every prediction (t1 .. tn <eos> of each sequence), in order."""
    out = []
    for k, seq in enumerate(sequences):
        state = first
        for t in seq[:-1]:
            logits, state = step(t, state)
            out.append(np.asarray(logits, np.float32).reshape(-1))
        if progress is not None:
            progress(k + 1)
    return np.stack(out)


def _score(logits: np.ndarray, targets: np.ndarray) -> dict:
    lp = np.stack([log_softmax(z) for z in logits])
    nll = -float(lp[np.arange(len(targets)), targets].sum())
    return lm_scores(nll, int((logits.argmax(1) == targets).sum()), len(targets))


def lm_parity(run_dir: Path | str, gates: TokenGates | None = None, progress: bool = False,
              write: bool = True) -> dict:
    from edgernn.progress import progressbar

    gates = gates or TokenGates()
    run = load_token_run(run_dir)
    pairs = lm_pairs(run.artifacts_dir)
    if not pairs:
        raise ConfigError(f"{run.artifacts_dir} has no next-token step artifact; run `edgernn export {run.path}` "
                          "first")
    model = run.load_model()
    total = len(run.data()["src_test"])
    n = total if not gates.sources else min(gates.sources, total)
    seqs = _sequences(run, n)
    targets = np.array([t for s in seqs for t in s[1:]], dtype=np.int64)
    t0 = time.perf_counter()
    step, first = torch_lm_step(model)
    with progressbar(length=n, label=f"float model: {n} held-out texts", enabled=progress) as bar:
        ref = _teacher_forced(step, first, seqs, progress=lambda k: bar.update(k - bar.pos))
    float_scores = _score(ref, targets)
    soak_tokens, soak_ref = reference_soak(step, first, gates.soak_tokens, sample_seed=0)
    noise = float32_noise(model, torch_lm_step, soak_tokens, soak_ref)
    out = {"kind": "tokens", "task": "next-token", "run": run.path.name, "gates": asdict(gates), "sources": n,
           "float": {**float_scores, "soak_float32_noise": noise, "soak_tol": float_soak_bound(gates, noise),
                     "seconds": round(time.perf_counter() - t0, 1)}, "artifacts": []}
    for fmt, precision in pairs:
        t1 = time.perf_counter()
        lm = load_lm(run.artifacts_dir, fmt, precision)
        zero = lm.engine.zero_state()
        with progressbar(length=n, label=f"{fmt} {precision}: {n} held-out texts", enabled=progress) as bar:
            got = _teacher_forced(lm.step, zero, seqs, progress=lambda k: bar.update(k - bar.pos))
        scores = _score(got, targets)
        agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
        soak_got = artifact_soak(lm.step, zero, soak_tokens)
        soak = soak_summary(soak_got, soak_ref)
        reasons = []
        fp = float_scores["perplexity"]
        if precision == "float":
            if agree < gates.float_min_agreement:
                reasons.append(f"top-1 agreement with float {agree:.4f} < {gates.float_min_agreement}")
        else:
            if scores["perplexity"] > fp * (1 + gates.max_perplexity_increase):
                reasons.append(f"perplexity {scores['perplexity']:.3f} > float {fp:.3f} x "
                               f"{1 + gates.max_perplexity_increase:g}")
            if agree < gates.min_top1_agreement:
                reasons.append(f"top-1 agreement with float {agree:.4f} < {gates.min_top1_agreement}")
        reasons += soak_reasons(precision, soak, gates, noise)
        path = lm_artifact(run.artifacts_dir, fmt, precision)
        c = lm.manifest.get("c", {})
        out["artifacts"].append({
            "format": fmt, "precision": precision, "files": [path.name], "runtime_version": lm.runtime_version,
            **scores, "perplexity_ratio": scores["perplexity"] / fp, "agreement": agree,
            "max_diff": float(np.abs(got - ref).max()), "soak": soak, "passed": not reasons, "reasons": reasons,
            "bytes": path.stat().st_size,
            "cortex_m4_flash_bytes": c.get("targets", {}).get("cortex-m4", {}).get("flash_bytes"),
            "recipe": lm.manifest["quantization"]["recipe"], "seconds": round(time.perf_counter() - t1, 1)})
    out["passed"] = all(a["passed"] for a in out["artifacts"])
    if write:
        atomic_write_json(run.path / "parity.json", out)
    return out


def format_lm_parity(r: dict) -> str:
    f = r["float"]
    lines = [f"{r['run']}: {r['sources']} held-out texts, {f['tokens']:,} next-token predictions; float model "
             f"perplexity {f['perplexity']:.3f}, top-1 {f['top1']:.2%}",
             f"{'artifact':<14} {'ppl':>7} {'x float':>8} {'top-1':>7} {'agree':>7} {'soak agree':>10} "
             f"{'soak max|d|':>11} {'KB':>7}  verdict"]
    c_note = False
    for a in r["artifacts"]:
        s = a["soak"]
        verdict = "pass" if a["passed"] else "FAIL: " + "; ".join(a["reasons"])
        size, mark = a["bytes"], " "
        if a.get("cortex_m4_flash_bytes"):
            size, mark, c_note = a["cortex_m4_flash_bytes"], "*", True
        lines.append(f"{a['format'] + ' ' + a['precision']:<14} {a['perplexity']:7.3f} {a['perplexity_ratio']:8.4f} "
                     f"{a['top1']:7.2%} {a['agreement']:7.2%} {s['agreement']:10.2%} {s['max_diff']:11.2e} "
                     f"{size / 1024:7.1f}{mark} {verdict}")
    if r["artifacts"]:
        lines.append(f"soak: {r['artifacts'][0]['soak']['tokens']:,} steps of one long generation (top-5 sampled, "
                     "seeded)")
    if c_note:
        lines.append("* C: Cortex-M4 flash of the compiled library (arm-none-eabi-gcc -Os), not the .h source")
    return "\n".join(lines)
