"""
The main job for token sets: train each cell, export (ONNX, TFLite, C; float and int8), check parity, benchmark,
report.

    edgernn pipeline --dataset g2p --cells gru --out runs/g2p
    run_token_pipeline(Path("runs/g2p"), "g2p", cells=("gru",))

Each model gets a run directory (runs/g2p/gru); the report goes to runs/g2p/report.md (+ report.json) and a
summary of the job to runs/g2p/summary.json.
"""

from __future__ import annotations

from pathlib import Path

import click

from edgernn.runtimes.files import atomic_write_json

TOKEN_STAGES = ("train", "export", "parity", "bench", "report")


def run_token_pipeline(out: Path, dataset: str, cells=("gru",), hidden: int | None = None, seed: int = 0,
                       epochs: int | None = None, stages=TOKEN_STAGES, formats=("onnx", "tflite", "c"),
                       progress: bool = True, strict: bool = False, echo=click.echo) -> dict:
    from edgernn.errors import ParityError
    from edgernn.tokens.bench import format_token_bench, token_bench
    from edgernn.tokens.export import TOKEN_FORMATS, export_tokens
    from edgernn.tokens.parity import format_token_parity, token_parity
    from edgernn.tokens.report import token_report
    from edgernn.tokens.train import TokenTrainConfig, train_tokens

    out = Path(out)
    summary = {"dataset": dataset, "kind": "tokens", "models": {}}
    run_dirs, failed = [], []
    fmts = tuple(f for f in formats if f in TOKEN_FORMATS)
    for cell in cells:
        run_dir = out / cell
        run_dirs.append(run_dir)
        entry = summary["models"][cell] = {"run_dir": str(run_dir)}
        if "train" in stages:
            kw = {"dataset": dataset, "cell": cell, "seed": seed}
            kw.update({k: v for k, v in (("hidden", hidden), ("epochs", epochs)) if v is not None})
            echo(f"== {cell}: train on {dataset} -> {run_dir}")
            m = train_tokens(TokenTrainConfig(**kw), run_dir, progress=progress, force=True)
            t = m["test"]
            echo("   test " + (f"PER {t['per']:.2%} WER {t['wer']:.2%}" if "per" in t else
                                 f"perplexity {t['perplexity']:.2f} top-1 {t['top1']:.2%}" if "perplexity" in t else
                                 f"accuracy {t['accuracy']:.2%}") +
                 f" ({m['parameters']:,} params, {m['train_time_s']:.0f} s)")
            entry["train"] = m
        from edgernn.tokens.run import load_token_run

        kind = load_token_run(run_dir).config.kind
        if kind in ("classify", "tag"):  # ONNX / C export, parity, latency per text (edgernn.tokens.classifier)
            from edgernn.tokens.classifier import (
                CLASSIFIER_FORMATS,
                classifier_parity,
                export_classifier,
                format_classifier_parity,
            )

            cfmts = tuple(f for f in formats if f in CLASSIFIER_FORMATS)
            if "export" in stages and cfmts:
                echo(f"== {cell}: export {', '.join(cfmts)} x float, int8")
                export_classifier(run_dir, formats=cfmts)
            if "parity" in stages:
                echo(f"== {cell}: parity")
                rep = classifier_parity(run_dir)
                echo(format_classifier_parity(rep))
                failed += [f"{cell}/{a['format']} {a['precision']}" for a in rep["artifacts"] if not a["passed"]]
            continue
        if kind not in ("seq2seq", "next-token"):
            echo(f"== {cell}: a {kind} model: export, parity and bench are for encoder-decoders, next-token models and "
                 "classifiers so far")
            continue
        if "export" in stages:
            echo(f"== {cell}: export {', '.join(fmts)} x float, int8")
            written = export_tokens(run_dir, fmts, ("float", "int8"))
            echo(f"   {len(written)} artifacts in {run_dir / 'artifacts'}")
        if "parity" in stages:
            echo(f"== {cell}: parity")
            rep = token_parity(run_dir, progress=progress)
            echo(format_token_parity(rep))
            failed += [f"{cell}/{a['format']} {a['precision']}" for a in rep["artifacts"] if not a["passed"]]
        if "bench" in stages:
            echo(f"== {cell}: bench on this machine")
            echo(format_token_bench(token_bench(run_dir, progress=progress)))
    if "report" in stages:
        md, _ = token_report(run_dirs, out)
        echo(md)
        summary["report"] = {"markdown": str(out / "report.md"), "json": str(out / "report.json")}
    summary["parity_failed"] = failed
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", summary)
    echo(f"summary: {out / 'summary.json'}")
    if failed:
        msg = f"parity gate failed for: {', '.join(failed)} (see the parity tables above and the report)"
        if strict:
            raise ParityError(msg)
        echo(f"WARNING: {msg}")
    return summary
