"""
The report of token runs: what each model scores, what each artifact keeps of it, what it costs, and which
artifact to ship where.

    md, data = token_report(["runs/g2p/gru"], out_dir="runs/g2p")   # report.md + report.json

Per run: the float model (PER / WER, or accuracy beside its baselines; parameters, size, training time), the
parity table (every format and precision: PER, WER, change, agreement, soak), the bench table (per token, per word,
tokens per second, Cortex-M4 flash) and the decision: on the desktop the fastest artifact that passed its gate (by
the step in C or in the runtime, as measured); on a microcontroller the passing C library with the least flash.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgernn.runtimes.files import atomic_write_json, atomic_write_text
from edgernn.tokens.run import load_token_run


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def decide(parity: dict | None, bench: dict | None) -> list[dict]:
    """Ship choices from parity (who passed) and bench (what it costs)."""
    if not parity or not bench:
        return []
    passed = {(a["format"], a["precision"]) for a in parity["artifacts"] if a["passed"]}
    rows = [b for b in bench["artifacts"] if (b["format"], b["precision"]) in passed]
    out = []
    if rows:
        def cost(b):
            return b["c_step_ns"]["p50"] / 1000 if "c_step_ns" in b else b["step"]["p50_us"]

        best = min(rows, key=cost)
        out.append({"target": "desktop / phone app", "artifact": f"{best['format']} {best['precision']}",
                    "why": f"fastest that passed: {cost(best):.2f} us per token"
                           f"{' (C library, timed inside C)' if 'c_step_ns' in best else ''}"})
        cs = [b for b in rows if (b.get("cortex_m4") or {}).get("flash_bytes")]
        if cs:
            small = min(cs, key=lambda b: b["cortex_m4"]["flash_bytes"])
            m4 = small["cortex_m4"]
            out.append({"target": "microcontroller (Cortex-M4)", "artifact": f"c {small['precision']}",
                        "why": f"least flash of the C libraries that passed: {m4['flash_bytes'] / 1024:.0f} KB + "
                               f"{m4['context_bytes'] / 1024:.1f} KB context RAM"})
    return out


def _run_section(run_dir: Path) -> tuple[list[str], dict]:
    run = load_token_run(run_dir)
    m, parity = run.metrics, _load(run_dir / "parity.json")
    bench = _load(run_dir / "bench-local.json")
    t = m.get("test", {})
    cfg = run.config
    what = (f"Model: embedding {cfg.embed} -> {cfg.cell.upper()} hidden {cfg.hidden} -> logits over "
            f"{cfg.tgt_vocab} tokens" if cfg.kind == "next-token" else
            f"Model: embedding {cfg.embed} -> {cfg.cell.upper()} encoder hidden {cfg.hidden}")
    lines = [f"## {run_dir.name}: {run.dataset.get('name', '?')} ({m.get('task', cfg.kind)})", "",
             what
             + f"{' x2 (bidirectional)' if cfg.bidirectional else ''}"
             + (f" -> {cfg.cell.upper()} decoder hidden {cfg.dec_hidden}"
                f"{' + dot-product attention' if cfg.attention else ''}" if cfg.kind == "seq2seq" else "")
             + f"; {m.get('parameters', 0):,} parameters ({m.get('float_bytes', 0) / 1024:.0f} KB float), "
               f"{m.get('epochs_run', '?')} epochs, {m.get('train_time_s', 0) / 60:.1f} min.", ""]
    if "per" in t:
        lines.append(f"Float model on {m['dataset']['n_test']:,} held-out words: **PER {t['per']:.2%}, WER "
                     f"{t['wer']:.2%}** ({t['decoding']}; greedy {t['greedy_per']:.2%} / {t['greedy_wer']:.2%}).")
    elif "perplexity" in t:
        base = ", ".join(f"{b['name']} {b['perplexity']:.2f} / {b['top1']:.1%}" for b in t.get("baselines", []))
        lines.append(f"Float model on {m['dataset']['n_test']:,} held-out texts: **perplexity {t['perplexity']:.2f} "
                     f"per token, top-1 {t['top1']:.2%}** ({t['tokens']:,} predictions; n-gram baselines, "
                     f"perplexity / top-1: {base}).")
    elif "accuracy" in t:
        base = ", ".join(f"{b['name']} {b['accuracy']:.2%}" for b in t.get("baselines", []))
        lines.append(f"Float model: **accuracy {t['accuracy']:.2%}** on {m['dataset']['n_test']:,} held-out texts "
                     f"(baselines: {base}).")
    lines.append("")
    if parity and parity.get("task") in ("classify", "tag"):
        lines += [f"### Parity ({parity['texts']:,} held-out texts)", "",
                  "| artifact | accuracy | agreement with float | p50 us per text | size | verdict |",
                  "|---|---|---|---|---|---|"]
        for a in parity["artifacts"]:
            verdict = "pass" if a["passed"] else "FAIL: " + "; ".join(a["reasons"])
            lines.append(f"| {a['format']} {a['precision']} | {a['accuracy']:.2%} | {a['agreement']:.2%} | "
                         f"{a['latency_us']['p50']:.1f} | {a['bytes'] / 1024:.0f} KB | {verdict} |")
        lines.append("")
        parity = None  # the encoder-decoder tables below do not apply
    if parity and parity.get("task") == "next-token":
        g = parity["gates"]
        lines += [f"### Parity ({parity['sources']:,} held-out texts, {parity['float']['tokens']:,} predictions)", "",
                  "| artifact | recipe | perplexity | x float | top-1 | agreement with float | soak agreement | "
                  "soak max abs diff | verdict |", "|---|---|---|---|---|---|---|---|---|"]
        for a in parity["artifacts"]:
            verdict = "pass" if a["passed"] else "FAIL: " + "; ".join(a["reasons"])
            lines.append(f"| {a['format']} {a['precision']} | {a['recipe']} | {a['perplexity']:.3f} | "
                         f"{a['perplexity_ratio']:.4f} | {a['top1']:.2%} | {a['agreement']:.2%} | "
                         f"{a['soak']['agreement']:.2%} | {a['soak']['max_diff']:.1e} | {verdict} |")
        lines += ["", f"Gates: float agreement >= {g['float_min_agreement']:.1%}; int8 perplexity <= float x "
                      f"{1 + g['max_perplexity_increase']:g}, agreement >= {g['min_top1_agreement']:.0%}; soak = "
                      f"{g['soak_tokens']:,} steps of one long generation.", ""]
        parity_rows, parity = parity, None
    else:
        parity_rows = parity
    if parity:
        g = parity["gates"]
        lines += [f"### Parity ({parity['sources']:,} held-out sources, {parity['decoding']['method']} "
                  f"{parity['decoding']['width']})", "",
                  "| artifact | PER | WER | dPER (points) | agreement with float | soak agreement | soak max abs diff "
                  "| verdict |", "|---|---|---|---|---|---|---|---|"]
        for a in parity["artifacts"]:
            verdict = "pass" if a["passed"] else "FAIL: " + "; ".join(a["reasons"])
            lines.append(f"| {a['format']} {a['precision']} | {a['per']:.2%} | {a['wer']:.2%} | "
                         f"{a['per_delta'] * 100:+.2f} | {a['agreement']:.2%} | {a['soak']['agreement']:.2%} | "
                         f"{a['soak']['max_diff']:.1e} | {verdict} |")
        lines += ["", f"Gates: float agreement >= {g['float_min_agreement']:.1%}; int8 PER <= float + "
                      f"{g['max_per_increase'] * 100:.1f} points, WER <= float + {g['max_wer_increase'] * 100:.0f} "
                      f"points; soak = {g['soak_tokens']:,} decoder steps of one long generation.", ""]
    if bench and bench.get("task") == "next-token":
        lines += [f"### Benchmarks ({bench['cpu']}, 1 thread)", "",
                  "| artifact | step p50 (us) | step p99 (us) | tokens/s | C step inside C (us) | word completion "
                  "(us) | Cortex-M4 flash |", "|---|---|---|---|---|---|---|"]
        for b in bench["artifacts"]:
            c = f"{b['c_step_ns']['p50'] / 1000:.2f}" if "c_step_ns" in b else "-"
            flash = (b.get("cortex_m4") or {}).get("flash_bytes")
            lines.append(f"| {b['format']} {b['precision']} | {b['step']['p50_us']:.1f} | {b['step']['p99_us']:.1f} | "
                         f"{b['tokens_per_s']:,.0f} | {c} | {b['word_complete']['p50_us']:.0f} | "
                         f"{f'{flash / 1024:.0f} KB' if flash else '-'} |")
        lines += ["", "Step, word completion (a held-out word from its first letter, greedy): through the Python "
                      "runtime (edgernn.runtimes.token_lm); C step: timed inside C.", ""]
    elif bench:
        w = bench["beam_width"]
        lines += [f"### Benchmarks ({bench['cpu']}, 1 thread)", "",
                  f"| artifact | step p50 (us) | step p99 (us) | tokens/s | C step inside C (us) | word, greedy (us) "
                  f"| word, beam {w} (us) | Cortex-M4 flash |", "|---|---|---|---|---|---|---|---|"]
        for b in bench["artifacts"]:
            c = f"{b['c_step_ns']['p50'] / 1000:.2f}" if "c_step_ns" in b else "-"
            flash = (b.get("cortex_m4") or {}).get("flash_bytes")
            lines.append(f"| {b['format']} {b['precision']} | {b['step']['p50_us']:.1f} | {b['step']['p99_us']:.1f} | "
                         f"{b['tokens_per_s']:,.0f} | {c} | {b['word_greedy']['p50_us']:.0f} | "
                         f"{b[f'word_beam{w}']['p50_us']:.0f} | {f'{flash / 1024:.0f} KB' if flash else '-'} |")
        lines += ["", "Step, word: through the Python runtime (edgernn.runtimes.token_session); C step: the library's "
                      "step timed inside C, what an app calling it pays.", ""]
    lines += _mcu_lines(run_dir)
    decisions = decide(parity_rows, bench)
    if decisions:
        lines += ["### Ship", ""] + [f"- **{d['target']}: {d['artifact']}** - {d['why']}" for d in decisions] + [""]
    return lines, {"run": str(run_dir), "metrics": m, "parity": parity_rows, "bench": bench, "decisions": decisions}


def _mcu_lines(run_dir: Path) -> list[str]:
    """The emulated microcontroller runs of the C libraries (edgernn.tokens.mcu), one table per core."""
    lines = []
    for path in sorted(run_dir.glob("mcu-*-emulated.json")):
        r = _load(path)
        if not r or not r.get("artifacts"):
            continue
        board = r.get("board")
        name = board.get("cpu") or board.get("name") if isinstance(board, dict) else (board or r.get("target", "?"))
        lines += [f"### Emulated {name} ({r['words']} held-out words; instructions "
                  "counted by qemu, NOT board timings)", "",
                  "| artifact | gate | vs host build | instructions per step (p50) | per word (p50) | stack | flash | "
                  "RAM |", "|---|---|---|---|---|---|---|---|"]
        for a in r["artifacts"]:
            c, fp = a["costs"], a["footprint"]
            lines.append(f"| {a['artifact']} | {'pass' if a['passed'] else 'FAIL'} | "
                         f"{'bit-exact' if a['vs_host_build'].get('bit_exact') else 'differs'} | "
                         f"{c['step']['p50']:,} | {c['word']['p50']:,} | {fp['stack_bytes']:,} B | "
                         f"{fp['flash_bytes'] / 1024:.0f} KB | {fp['ram_bytes'] / 1024:.1f} KB |")
        lines += ["", f"{r.get('word_note', '')}", ""]
    return lines


def token_report(run_dirs: list, out_dir: Path | str) -> tuple[str, dict]:
    out_dir = Path(out_dir)
    lines = ["# edgernn report: token models", ""]
    data = {"kind": "tokens", "runs": []}
    for rd in run_dirs:
        sec, d = _run_section(Path(rd))
        lines += sec
        data["runs"].append(d)
    md = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.md", md)
    atomic_write_json(out_dir / "report.json", data)
    return md, data
