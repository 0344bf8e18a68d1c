"""
Parity of token artifacts, judged the way their models are judged: an encoder-decoder by what it generates.

    result = token_parity("runs/g2p")          # writes runs/g2p/parity.json; result["artifacts"]: one row per pair

For each exported (format, precision) encoder + decoder pair, the held-out sources are decoded by the runtime
(edgernn.runtimes.token_session, the loops of edgernn.runtimes.generate, the manifest's decoding) and by the
float PyTorch model through the same loops. Per pair: phoneme (token) error rate and word error rate against
the dictionary's accepted answers, and exact agreement with the float model's outputs. The soak is a long
generation through the decoder step: `soak_tokens` steps fed the float model's own greedy tokens (never <eos>:
the state runs on as a long generation would), comparing the step's logits with the float model's step by step
(top-1 agreement, max |diff| of the logits).

Gate (TokenGates):
  float   agreement with the float model >= float_min_agreement (default 0.995: near-ties may flip a beam),
          soak max |diff| <= float_soak_tol (1e-3) and soak top-1 agreement >= 0.999
  int8    PER <= float PER + max_per_increase (default 0.005 = +0.5 points), WER <= float WER + max_wer_increase
          (0.02), soak top-1 agreement >= min_soak_agreement (0.95)
Next-token models are judged by edgernn.tokens.lm_parity (perplexity and top-1 agreement; the same soak).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgernn.errors import ConfigError
from edgernn.runtimes.files import atomic_write_json
from edgernn.runtimes.token_session import load_seq2seq
from edgernn.tokens.gates import (
    TokenGates,
    artifact_soak,
    float32_noise,
    float_soak_bound,
    reference_soak,
    soak_reasons,
    soak_summary,
)
from edgernn.tokens.metrics import error_rates
from edgernn.tokens.reference import decode_all, torch_decoder
from edgernn.tokens.run import load_token_run


def _pairs(artifacts: Path) -> list[tuple[str, str]]:
    """(format, precision) of every exported encoder-decoder: encoder + decoder files, or one C library."""
    found = []
    for h in sorted(artifacts.glob("seq2seq-*.h")):
        found.append(("c", h.stem.split("-", 1)[1]))
    for enc in sorted(artifacts.glob("encoder-*.*")):
        if enc.suffix == ".json":
            continue
        precision, fmt = enc.stem.split("-", 1)[1], enc.suffix[1:]
        if (artifacts / f"decoder-{precision}{enc.suffix}").is_file():
            found.append((fmt, precision))
    return found


def artifact_files(artifacts: Path, fmt: str, precision: str) -> list[Path]:
    from edgernn.runtimes.token_session import artifact_name

    parts = ("seq2seq",) if fmt == "c" else ("encoder", "decoder")
    return [artifacts / artifact_name(p, precision, fmt) for p in parts]


def soak_source(run) -> list[int]:
    """The source the soak generates from: the longest held-out source (the most encoder context)."""
    return run.src_vocab.encode(max(run.data()["src_test"], key=len))


def token_parity(run_dir: Path | str, gates: TokenGates | None = None, progress: bool = False,
                 write: bool = True) -> dict:
    from edgernn.progress import progressbar

    gates = gates or TokenGates()
    run = load_token_run(run_dir)
    if run.config.kind == "next-token":
        from edgernn.tokens.lm_parity import lm_parity

        return lm_parity(run_dir, gates, progress, write)
    pairs = _pairs(run.artifacts_dir)
    if not pairs:
        raise ConfigError(f"{run.artifacts_dir} has no encoder/decoder pair; run `edgernn export {run.path}` first")
    model = run.load_model()
    data = run.data()
    n = len(data["src_test"]) if not gates.sources else min(gates.sources, len(data["src_test"]))
    sources, refs = data["src_test"][:n], data["refs_test"][:n]
    dec = run.train_config.get("beam", 4)
    method, width = ("beam", int(dec)) if int(dec) > 1 else ("greedy", 1)
    t0 = time.perf_counter()
    with progressbar(length=n, label=f"float model: decode {n} held-out sources", enabled=progress) as bar:
        ref_hyps = decode_all(model, sources, run.src_vocab, run.tgt_vocab, method, width,
                              progress=lambda k: bar.update(k - bar.pos))
    per_f, wer_f = error_rates(ref_hyps, refs)
    ids = soak_source(run)
    soak_tokens, soak_ref = reference_soak(*torch_decoder(model, ids), gates.soak_tokens)
    noise = float32_noise(model, lambda m: torch_decoder(m, ids), soak_tokens, soak_ref)
    out = {"kind": "tokens", "task": "seq2seq", "run": run.path.name, "gates": asdict(gates),
           "decoding": {"method": method, "width": width}, "sources": n,
           "float": {"per": per_f, "wer": wer_f, "soak_float32_noise": noise,
                     "soak_tol": float_soak_bound(gates, noise), "seconds": round(time.perf_counter() - t0, 1)},
           "artifacts": []}
    for fmt, precision in pairs:
        t1 = time.perf_counter()
        sess = load_seq2seq(run.artifacts_dir, fmt, precision)
        hyps = []
        with progressbar(length=n, label=f"{fmt} {precision}: decode {n} held-out sources", enabled=progress) as bar:
            for src in sources:
                hyps.append(sess.generate(src, method=method, width=width))
                bar.update(1)
        per, wer = error_rates(hyps, refs)
        agree = float(np.mean([h == r for h, r in zip(hyps, ref_hyps)]))
        got = artifact_soak(sess.step, sess.encode(ids), soak_tokens)
        soak = soak_summary(got, soak_ref)
        reasons = []
        if precision == "float":
            if agree < gates.float_min_agreement:
                reasons.append(f"agreement with float {agree:.4f} < {gates.float_min_agreement}")
        else:
            if per > per_f + gates.max_per_increase:
                reasons.append(f"PER {per:.4f} > float {per_f:.4f} + {gates.max_per_increase}")
            if wer > wer_f + gates.max_wer_increase:
                reasons.append(f"WER {wer:.4f} > float {wer_f:.4f} + {gates.max_wer_increase}")
        reasons += soak_reasons(precision, soak, gates, noise)
        out["artifacts"].append({
            "format": fmt, "precision": precision,
            "files": [p.name for p in artifact_files(run.artifacts_dir, fmt, precision)],
            "runtime_version": sess.runtime_version,
            "per": per, "wer": wer, "agreement": agree, "per_delta": per - per_f, "wer_delta": wer - wer_f,
            "soak": soak, "passed": not reasons, "reasons": reasons,
            "bytes": sum(p.stat().st_size for p in artifact_files(run.artifacts_dir, fmt, precision)),
            "cortex_m4_flash_bytes": (sess.manifest.get("c", {}).get("targets", {}).get("cortex-m4", {})
                                      .get("flash_bytes")),
            "seconds": round(time.perf_counter() - t1, 1)})
    out["passed"] = all(a["passed"] for a in out["artifacts"])
    if write:
        atomic_write_json(run.path / "parity.json", out)
    return out


def format_token_parity(r: dict) -> str:
    if r.get("task") == "next-token":
        from edgernn.tokens.lm_parity import format_lm_parity

        return format_lm_parity(r)
    f = r["float"]
    lines = [f"{r['run']}: {r['sources']} held-out sources, {r['decoding']['method']}"
             f"{' ' + str(r['decoding']['width']) if r['decoding']['method'] == 'beam' else ''}; "
             f"float model PER {f['per']:.2%}  WER {f['wer']:.2%}",
             f"{'artifacts':<32} {'PER':>7} {'WER':>7} {'dPER':>7} {'agree':>7} {'soak agree':>10} "
             f"{'soak max|d|':>11} {'KB':>7}  verdict"]
    c_note = False
    for a in r["artifacts"]:
        s = a["soak"]
        verdict = "pass" if a["passed"] else "FAIL: " + "; ".join(a["reasons"])
        size, mark = a["bytes"], " "
        if a.get("cortex_m4_flash_bytes"):  # C: the compiled library, not its source text
            size, mark, c_note = a["cortex_m4_flash_bytes"], "*", True
        lines.append(f"{a['format'] + ' ' + a['precision']:<32} {a['per']:7.2%} {a['wer']:7.2%} "
                     f"{a['per_delta'] * 100:+6.2f}p {a['agreement']:7.2%} {s['agreement']:10.2%} "
                     f"{s['max_diff']:11.2e} {size / 1024:7.1f}{mark} {verdict}")
    lines.append(f"soak: {r['artifacts'][0]['soak']['tokens']:,} decoder steps of one long generation" if r["artifacts"]
                 else "no artifacts")
    if c_note:
        lines.append("* C: Cortex-M4 flash of the compiled library (arm-none-eabi-gcc -Os), not the .h source")
    return "\n".join(lines)
