"""
Token models on the command line: `edgernn train|export|parity` route a token set or a token run here, and
`edgernn generate` runs an exported encoder-decoder or next-token model.

    edgernn train --dataset g2p --out runs/g2p            # bundled CMU dictionary, grapheme-to-phoneme
    edgernn export runs/g2p                                # encoder + decoder step, float and int8
    edgernn parity runs/g2p                                # PER / WER of each artifact pair vs the float model
    edgernn generate runs/g2p hello world --method beam    # phonemes per word
    edgernn generate runs/words ed qu --method top-k       # next-token model: complete each prompt
"""

from __future__ import annotations

from pathlib import Path

import click

from edgernn.cli.options import echo_json, handle_errors
from edgernn.errors import ConfigError

# `edgernn train` options a token model reads (the rest are for sensor / audio data); when one is not given on the
# command line the token default (TokenTrainConfig) applies, not the sensor one
TOKEN_TRAIN_OPTIONS = ("dataset", "cell", "hidden", "layers", "bidirectional", "dropout", "epochs", "batch_size", "lr",
                       "clip", "patience", "seed", "threads", "embed", "attention", "beam", "limit", "tokenizer",
                       "max_len", "max_vocab")


def train_tokens_cli(ctx: click.Context, out: Path, force: bool, as_json: bool, quiet: bool, kw: dict) -> None:
    from click.core import ParameterSource

    from edgernn.tokens.train import TokenTrainConfig, train_tokens

    given = {k: v for k, v in kw.items() if k in TOKEN_TRAIN_OPTIONS and v is not None
             and (k == "dataset" or ctx.get_parameter_source(k) != ParameterSource.DEFAULT)}
    ignored = [k for k in kw if k not in TOKEN_TRAIN_OPTIONS
               and ctx.get_parameter_source(k) != ParameterSource.DEFAULT]
    if ignored:
        raise click.UsageError(f"{', '.join('--' + k.replace('_', '-') for k in ignored)} "
                               f"{'does' if len(ignored) == 1 else 'do'} not apply to token datasets")
    cfg = TokenTrainConfig(**given)
    m = train_tokens(cfg, out, progress=not quiet, force=force)
    if as_json:
        echo_json(m)
        return
    t = m["test"]
    if m["task"] == "seq2seq":
        line = (f"PER {t['per']:.2%}  WER {t['wer']:.2%} ({t['decoding']}; greedy {t['greedy_per']:.2%} / "
                f"{t['greedy_wer']:.2%})")
    elif m["task"] == "next-token":
        base = ", ".join(f"{b['name']} {b['perplexity']:.2f}" for b in t.get("baselines", []))
        line = (f"perplexity {t['perplexity']:.2f} per token, top-1 {t['top1']:.2%} (baselines: {base})")
    else:
        base = ", ".join(f"{b['name']} {b['accuracy']:.2%}" for b in t.get("baselines", []))
        line = f"accuracy {t['accuracy']:.2%} (baselines: {base})"
    click.echo(f"trained {m['task']} {cfg.cell} h{cfg.hidden} on {m['dataset']['name']}: test {line}; "
               f"{m['parameters']:,} parameters ({m['float_bytes'] / 1024:.0f} KB float), {m['epochs_run']} epochs, "
               f"{m['train_time_s']:.0f} s -> {out}")


def export_tokens_cli(run_dir: Path, formats, precisions, out_dir, as_json: bool) -> None:
    from edgernn.tokens.export import TOKEN_FORMATS, export_tokens
    from edgernn.tokens.run import load_token_run

    precs = [p for p in precisions if p in ("float", "int8")]
    if load_token_run(run_dir).config.kind in ("classify", "tag"):
        from edgernn.tokens.classifier import CLASSIFIER_FORMATS, export_classifier

        supported, what = CLASSIFIER_FORMATS, "token classifiers and taggers"
        fmts = [f for f in formats if f in supported]
        written = export_classifier(run_dir, precs, out_dir, fmts) if fmts else []
    else:
        supported, what = TOKEN_FORMATS, "token models"
        fmts = [f for f in formats if f in supported]
        written = export_tokens(run_dir, fmts, precs, out_dir) if fmts else []
    skipped = [f for f in formats if f not in supported]
    if as_json:
        echo_json({"written": [str(p) for p in written], "skipped": skipped})
        return
    for p in written:
        click.echo(f"wrote    {p.stat().st_size / 1024:8.1f} KB  {p}")
    for f in skipped:
        click.echo(f"skipped  {f}: {what} export to {', '.join(supported)} so far")


def parity_tokens_cli(run_dir: Path, as_json: bool, quiet: bool) -> None:
    from edgernn.errors import ParityError
    from edgernn.tokens.parity import format_token_parity, token_parity
    from edgernn.tokens.run import load_token_run

    if load_token_run(run_dir).config.kind in ("classify", "tag"):
        from edgernn.tokens.classifier import classifier_parity, format_classifier_parity

        r = classifier_parity(run_dir)
        fmt = format_classifier_parity
    else:
        r = token_parity(run_dir, progress=not quiet)
        fmt = format_token_parity
    if as_json:
        echo_json(r)
    else:
        click.echo(fmt(r))
    if not r["passed"]:
        failed = [" + ".join(a["files"]) for a in r["artifacts"] if not a["passed"]]
        raise ParityError(f"parity gate failed for {len(failed)} artifact pair(s): {', '.join(failed)} "
                          f"(see {Path(run_dir) / 'parity.json'})")


@click.command("generate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(("onnx", "ort", "tflite", "c")), default="onnx",
              show_default=True, help="Which exported artifacts run: onnx, ort or tflite (the encoder + decoder "
                                      "step) or c (one C library, compiled here with the system compiler).")
@click.option("--precision", type=click.Choice(("float", "int8")), default="float", show_default=True)
@click.option("--method", type=click.Choice(("greedy", "beam", "top-k")), default=None,
              help="Decoding [default: what the manifest says, beam for g2p].")
@click.option("--width", type=click.IntRange(1, 64), default=None, help="Beam width [default: the manifest's].")
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True, help="top-k: sample from this many.")
@click.option("--seed", type=int, default=0, show_default=True, help="top-k: same seed, same output.")
@click.option("--max-len", type=click.IntRange(1), default=None,
              help="Stop after this many tokens [default: source length + 10; next-token: the manifest's].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per text.")
@handle_errors
def generate_cmd(run_dir, texts, fmt, precision, method, width, top_k, seed, max_len, as_json):
    """Generate from exported token artifacts, one TEXT at a time.

    An encoder-decoder (g2p) runs RUN_DIR/artifacts/encoder-PRECISION.FORMAT and decoder-PRECISION.FORMAT with the
    runtime a device embeds (edgernn.runtimes.token_session): the text is split and encoded with the manifest's
    vocabulary, the decoder step is driven token by token (greedy, beam search or seeded top-k sampling).
    A next-token model (words) runs lm-PRECISION.FORMAT (edgernn.runtimes.token_lm): each TEXT is a prompt, fed
    through the step, then continued until <eos>; it prints the completion and the five likeliest next tokens
    ('' as TEXT: generate from nothing). A token classifier prints each TEXT's label, a tagger each token's.
    """
    from edgernn.runtimes.token_session import load_classifier, load_seq2seq

    if not Path(run_dir).is_dir():  # not "an artifact is missing": the run itself is
        raise ConfigError(f"run directory {run_dir} does not exist; create one with `edgernn train`")
    arts = Path(run_dir) / "artifacts"

    if any(arts.glob("classifier-*.json")):  # a token classifier: the label per text
        clf = load_classifier(arts, fmt, precision, part="classifier")
        rows = []
        for text in texts:
            label, p = clf.classify(text)
            rows.append({"text": text, "label": label, "probability": float(p.max())})
        if as_json:
            echo_json(rows)
        else:
            for r in rows:
                click.echo(f"{r['text']}\t{r['label']}\t{r['probability']:.3f}")
        return
    if any(arts.glob("tagger-*.json")):  # a token tagger: a label per token
        tagger = load_classifier(arts, fmt, precision, part="tagger")
        rows = [{"text": text, "tags": [{"token": t, "label": lab} for t, lab in tagger.tag(text)]} for text in texts]
        if as_json:
            echo_json(rows)
        else:
            for r in rows:
                click.echo(f"{r['text']}\t{' '.join(d['token'] + '/' + d['label'] for d in r['tags'])}")
        return
    from edgernn.runtimes.token_lm import LM_PART, load_lm

    if any(arts.glob(f"{LM_PART}-*.json")):  # a next-token model: each TEXT is a prompt to continue
        lm = load_lm(arts, fmt, precision)
        rows = [{"prompt": text, "completion": lm.complete(text, method=method, width=width, top_k=top_k, seed=seed,
                                                            max_len=max_len),
                 "next": [{"token": t, "probability": p} for t, p in lm.next_tokens(text, 5)]} for text in texts]
        if as_json:
            echo_json(rows)
            return
        for r in rows:
            nxt = "  ".join(f"{d['token']} {d['probability']:.2f}" for d in r["next"])
            click.echo(f"{r['prompt']}\t{r['completion']}\t(next: {nxt})")
        return
    s = load_seq2seq(arts, fmt, precision)
    rows = []
    for text in texts:
        if not text.strip():
            raise click.UsageError("an empty TEXT has nothing to generate from")
        out = s.generate(text, method=method, width=width, top_k=top_k, seed=seed, max_len=max_len)
        rows.append({"text": text, "output": out})
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['text']}\t{' '.join(r['output'])}")
