"""
`edgernn datasets`, `edgernn train` and `edgernn export`: the data, the model and its artifacts.

    edgernn datasets                                   # what ships inside the installed packages
    edgernn train --dataset basic-motions --cell gru --hidden 32 --out runs/gru
    edgernn export runs/gru --format onnx,tflite --precision float,int8 --streaming

Each command parses its options, calls the library (edgernn.train, edgernn.export) and prints.
"""

from __future__ import annotations

from pathlib import Path

import click

from edgernn.cli.options import CommaChoice, echo_json, format_help, handle_errors
from edgernn.export import FORMATS, INT8_IO
from edgernn.export.recipes import RECIPES
from edgernn.runtimes.manifest import PRECISIONS

# ----------------------------------------------------------------------------- datasets


@click.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@handle_errors
def datasets_cmd(as_json):
    """List the bundled datasets (no download: they ship inside installed packages)."""
    from edgernn.data import DATASETS, load_dataset
    from edgernn.data.registry import AUDIO, audio_summary

    rows = []
    for name in DATASETS:
        if name in AUDIO:  # synthesized at first use (minutes): listed from what it will be, not built here
            rows.append(audio_summary(name))
            continue
        ds = load_dataset(name)
        s = ds.summary()
        s["description"] = ds.description
        rows.append(s)
    from edgernn.data.registry import TOKEN_DATASETS, load_token_dataset

    tokens = []
    for name in TOKEN_DATASETS:
        t = load_token_dataset(name).summary()
        tokens.append(t)
    if as_json:
        echo_json(rows + tokens)
        return
    click.echo(f"{'name':<20} {'task':<9} {'train':>5} {'test':>5} {'T':>4} {'C':>3} {'classes':>7}  description")
    for r in rows:
        click.echo(f"{r['name']:<20} {r['task']:<9} {r['n_train']:>5} {r['n_test']:>5} {r['seq_len']:>4} "
                   f"{r['channels']:>3} {r['num_classes']:>7}  {r['description']}")
    click.echo("\ntoken sets (text in; docs/tokens.md)")
    click.echo(f"{'name':<20} {'task':<9} {'train':>6} {'test':>5} {'vocab':>5}  description")
    for t in tokens:
        click.echo(f"{t['name']:<20} {t['task']:<9} {t['n_train']:>6} {t['n_test']:>5} {t['src_vocab']:>5}  "
                   f"{t['description']}")
    click.echo("Your own data: --dataset path/to/data.npz (X [N,T,C], y [N]) or .csv (see docs/data.md); text: a "
               ".csv/.tsv/.jsonl with text,label / text,tags / source,target / text (next-token) columns "
               "(docs/tokens.md).")


# ----------------------------------------------------------------------------- train


def train_options(fn):
    from edgernn.models import CELLS

    opts = [
        click.option("--dataset", "-d", default="basic-motions", show_default=True,
                     help="Bundled dataset name (see `edgernn datasets`: sensor, audio and token sets such as g2p, "
                          "names, words) or a .npz/.csv file, a folder of audio clips, or a .csv/.tsv/.jsonl of text."),
        click.option("--cell", type=click.Choice(CELLS), default="gru", show_default=True,
                     help="Recurrent cell."),
        click.option("--hidden", type=click.IntRange(1, 4096), default=32, show_default=True,
                     help="Hidden units per layer (MACs grow with hidden^2)."),
        click.option("--layers", type=click.IntRange(1, 8), default=1, show_default=True, help="Stacked layers."),
        click.option("--bidirectional/--no-bidirectional", default=False, show_default=True,
                     help="Bidirectional RNN (more accurate offline; cannot be exported for streaming)."),
        click.option("--dropout", type=click.FloatRange(0.0, 0.9), default=0.0, show_default=True,
                     help="Dropout between layers and before the head."),
        click.option("--epochs", type=click.IntRange(1), default=300, show_default=True,
                     help="Maximum epochs; early stopping usually ends sooner."),
        click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Minibatch size."),
        click.option("--lr", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=3e-3,
                     show_default=True, help="Adam learning rate."),
        click.option("--clip", type=click.FloatRange(0.0, min_open=True), default=1.0, show_default=True,
                     help="Gradient-norm clipping threshold (guards against exploding gradients)."),
        click.option("--val-fraction", type=click.FloatRange(0.0, 0.9), default=0.2, show_default=True,
                     help="Fraction of the training split held out for early stopping."),
        click.option("--patience", type=click.IntRange(1), default=60, show_default=True,
                     help="Stop after this many epochs without validation-loss improvement (no early stopping "
                          "when the validation split has under 30 windows: all epochs run on all windows)."),
        click.option("--min-epochs", type=click.IntRange(0), default=100, show_default=True,
                     help="Early stopping may not end training before this epoch."),
        click.option("--lr-schedule", type=click.Choice(("plateau", "none")), default="plateau", show_default=True,
                     help="plateau: halve the learning rate after patience/3 epochs without improvement."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Random seed: same seed, same weights."),
        click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
                     help="Torch CPU threads for training."),
        click.option("--stream-stable", is_flag=True, default=False,
                     help="Also train every batch on its windows streamed right after another window, without a "
                          "reset (the carried-in state must not change the answer), so the model can stream for "
                          "long without resets; parity reports its streaming horizon. About 3x the training time."),
        click.option("--mask-padding", is_flag=True, default=False,
                     help="Variable-length data (classify, forecast): learn from each window's real frames only "
                          "(the left padding never reaches the recurrence), and every runtime then runs a window's "
                          "real frames alone (leading frames equal to the pad value in every channel are dropped), "
                          "so a padded window and a stream of its real frames from a reset give one answer."),
        # audio datasets (a folder of clips, `keywords`): ignored for feature data
        click.option("--sample-rate", type=click.IntRange(1000, 192000), default=16000, show_default=True,
                     help="Audio: clips of any rate are resampled to this (Hz)."),
        click.option("--clip-ms", type=click.FloatRange(10, 60000), default=1000.0, show_default=True,
                     help="Audio: clips are padded / centre-cropped to this length (a whole number of hops)."),
        click.option("--frame-ms", type=click.FloatRange(1, 1000), default=30.0, show_default=True,
                     help="Audio front end: analysis frame (Hann window), between --hop-ms and twice it."),
        click.option("--hop-ms", type=click.FloatRange(1, 1000), default=20.0, show_default=True,
                     help="Audio front end: one recurrent step per hop; a streaming step takes this much audio."),
        click.option("--mels", type=click.IntRange(1, 256), default=40, show_default=True,
                     help="Audio front end: mel bands (log-mel features)."),
        click.option("--mfcc", type=click.IntRange(0, 256), default=0, show_default=True,
                     help="Audio front end: 0 = log-mel features; k = the first k MFCCs (DCT of the log-mels)."),
        click.option("--augment/--no-augment", default=True, show_default=True,
                     help="Audio: shift, frequency-warp and noise every batch's features (seeded)."),
        # token sets (g2p, names, a .tsv/.jsonl/.csv of text): see docs/tokens.md; options not given take the
        # token defaults (bidirectional encoder, hidden 48, 40 epochs, batch 128)
        click.option("--embed", type=click.IntRange(1, 1024), default=None,
                     help="Token sets: embedding width [default: 32]."),
        click.option("--attention/--no-attention", default=None,
                     help="Token seq2seq: dot-product attention over the encoder outputs [default: on]."),
        click.option("--beam", type=click.IntRange(1, 64), default=None,
                     help="Token seq2seq: beam width for decoding the test set and in the manifest [default: 4]."),
        click.option("--limit", type=click.IntRange(0), default=None,
                     help="Token sets: use only this many examples of a bundled set (quick runs) [default: all]."),
        click.option("--tokenizer", type=click.Choice(("chars", "words")), default=None,
                     help="Token files: split text into characters or whitespace-separated words [default: chars]."),
        click.option("--max-len", type=click.IntRange(1), default=None,
                     help="Token files: the longest source/target in tokens; longer rows are refused [default: 64]."),
        click.option("--max-vocab", type=click.IntRange(5), default=None,
                     help="Token files: at most this many token ids (the rarest become <unk>) [default: all]."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@click.command("train")
@train_options
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory to write (checkpoint, config, normalization, labels, metrics.json).")
@click.option("--force", is_flag=True,
              help="Replace the run in a non-empty --out: after training succeeds, its old artifacts/, parity, "
                   "bench and report files are removed (they belong to the old model).")
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def train_cmd(out, force, as_json, quiet, **kw):
    """Train a GRU/LSTM and write a run directory.

    Adam with gradient clipping, a stratified validation split with early stopping (best weights
    kept), per-channel normalization computed on the training data and saved with the model.
    A non-empty --out is refused unless --force. Ctrl-C or SIGTERM leave --out as it was.
    """
    from edgernn.data.registry import is_token_spec

    if is_token_spec(kw["dataset"]):
        from edgernn.cli.tokens import train_tokens_cli

        return train_tokens_cli(click.get_current_context(), out, force, as_json, quiet, kw)
    token_only = [k for k in ("embed", "attention", "beam", "limit", "tokenizer", "max_len", "max_vocab")
                  if kw.pop(k) is not None]
    if token_only:
        raise click.UsageError(f"{', '.join('--' + k for k in token_only)}: for token datasets only (g2p, names, "
                               "a .tsv/.jsonl file of text)")
    from edgernn.rundir import stale_files
    from edgernn.train import TrainConfig, train

    stale = [p.name for p in stale_files(out)] if force else []
    metrics = train(TrainConfig(**kw), out, progress=not quiet, force=force)
    if as_json:
        echo_json(metrics)
        return
    if stale:
        click.echo(f"removed what the previous model left in {out}: {', '.join(stale)}")
    click.echo(format_train_summary(kw["cell"], kw["hidden"], metrics, out))
    warning = baseline_warning(metrics)
    if warning:
        click.echo(warning, err=True)


@click.command("finetune")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--qat", is_flag=True, required=True,
              help="Quantization-aware: fine-tune through a forward pass that rounds weights (int8 per row), "
                   "activations (int8 per tensor, observed ranges), sigmoid/tanh (fixed int8 scales) and the "
                   "LSTM cell (int16) as integer-only inference does; straight-through gradients.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The new run directory (the source run is left as it is).")
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True, help="Fine-tuning epochs.")
@click.option("--lr", type=click.FloatRange(0.0, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate (a fraction of training's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def finetune_cmd(run_dir, qat, out, epochs, lr, seed, force, as_json, quiet):
    """Fine-tune a trained run into a new run directory (quantization-aware with --qat).

    Export the new run as any other, e.g. `edgernn export OUT --format tflite,c --precision int8
    --integer-only --streaming`; its int8 artifacts are gated against its own float model, and its
    metrics.json keeps the source run's float accuracy beside the fine-tuned and simulated-int8 ones.
    """
    from edgernn.qat import finetune_qat

    m = finetune_qat(run_dir, out, epochs=epochs, lr=lr, seed=seed, force=force, progress=not quiet)
    if as_json:
        echo_json(m)
        return
    click.echo(f"wrote {out}: {m['qat']['headline']} ({m['qat']['finetune_seconds']:.1f} s fine-tuning)")


def baseline_warning(m) -> str:
    """One line when the model does not beat its strongest baseline (empty otherwise)."""
    if m.get("beats_baseline", True):
        return ""
    return (f"WARNING: {m['baseline_verdict']}; do not ship this model: retrain it (more --epochs, another --lr, "
            "--hidden or --seed) or collect more data")


def format_train_summary(cell, hidden, m, out) -> str:
    key = m["headline_metric"]
    parts = [f"{cell} h{hidden} on {m['dataset']['name']}:"]
    for split in ("train", "val", "test"):
        if m.get(split):
            parts.append(f"{split} {key} {m[split][key]:.4f}")
    parts.append(f"| {m['parameters']} params, {m['macs_per_inference']} MACs/inference, "
                 f"{m['epochs_run']} epochs, {m['train_time_s']:.1f} s -> {out}")
    return " ".join(parts)


# ----------------------------------------------------------------------------- export


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "formats", type=CommaChoice(FORMATS), default="onnx,ort,tflite", show_default=True,
              help=format_help())
@click.option("--precision", "precisions", type=CommaChoice(PRECISIONS), default="float,int8", show_default=True,
              help="Comma-separated: float; int8 (built by the format's int8 recipes, tried in order - TFLite "
                   "full-int8, int16x8, dynamic; ONNX dynamic - keeping the first that passes the parity gate "
                   "on held-out calibration windows; see --recipe and the manifest's quantization.selection); "
                   "dynamic (TFLite dynamic range).")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=None,
              help="Pin one int8 recipe instead of trying the order (kept even if it fails the gate; the "
                   "manifest says so). " + "; ".join(f"{r.name} ({'/'.join(r.formats)}): {r.help}"
                                                     for r in RECIPES.values()) + ".")
@click.option("--integer-only", is_flag=True,
              help="int8: try only the recipes with no float op on the inference path (TFLite full-int8, "
                   "int16x8; C) - what TFLite Micro, microcontrollers and NPUs run - and fail in one line when "
                   "none passes, instead of falling back to dynamic range. ONNX int8 is then skipped.")
@click.option("--streaming/--no-streaming", default=False, show_default=True,
              help="Also write step artifacts (one frame + recurrent state in, output + new state out) "
                   "for frame-by-frame inference at sensor rate. Not possible for bidirectional models.")
@click.option("--int8-io", type=click.Choice(INT8_IO), default="int8", show_default=True,
              help="TFLite full-int8 only: int8 input/output tensors, or float I/O around int8 internals.")
@click.option("--c-prefix", default=None, metavar="NAME",
              help="C only: the prefix of every symbol of the generated library (NAME_step, NAME_state, ...) "
                   "[default: <run dir>_<mode>_<precision>, e.g. gru_step_int8].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: RUN_DIR/artifacts].")
@click.option("--timeout", type=click.FloatRange(0.0, min_open=True), default=600.0, show_default=True,
              help="Seconds the TFLite converter may take to build one artifact, its fallbacks included (each "
                   "int8 recipe candidate gets its own); long sequences need more.")
@click.option("--max-fa-per-hour", type=click.FloatRange(0.0, min_open=True), default=1.0, show_default=True,
              help="Audio classifiers: the keyword detector's thresholds (stored in every manifest) are the lowest "
                   "that keep the float model within this many false accepts per hour on a continuous stream of "
                   "validation speakers.")
@click.option("--json", "as_json", is_flag=True, help="Print the list of artifacts as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def export_cmd(run_dir, formats, precisions, streaming, recipe, integer_only, int8_io, c_prefix, out_dir, timeout,
               max_fa_per_hour, as_json, quiet):
    """Export a trained run to ONNX / ORT / TFLite / C artifacts, each with a JSON manifest.

    Every artifact is written atomically (no half files) and gets RUN_DIR/artifacts/NAME.json: format,
    precision, which ops really run in int8, tensor names/shapes/dtypes/quantization, normalization,
    labels, sha256, size and tool versions. Check them with `edgernn parity RUN_DIR`.
    """
    from edgernn.tokens.run import is_token_run

    if is_token_run(run_dir):
        from edgernn.cli.tokens import export_tokens_cli

        return export_tokens_cli(run_dir, formats, precisions, out_dir, as_json)
    from edgernn.export import ExportFailed, export_run

    losses = []

    def show(r):  # one line as each artifact lands (a long export shows its progress in a log too)
        line, loss = result_line(r)
        losses.extend([r] if loss else [])
        if not as_json:
            click.echo(line)

    failure = None
    try:
        results = export_run(run_dir, formats=formats, precisions=precisions, streaming=streaming,
                             out_dir=out_dir, int8_io=int8_io, progress=not quiet, recipe=recipe, c_prefix=c_prefix,
                             timeout=timeout, on_result=show, max_fa_per_hour=max_fa_per_hour,
                             integer_only=integer_only)
    except ExportFailed as exc:  # the lines above said what was written; the error ends the output, exit 1
        results, failure = exc.results, exc
    if as_json:  # machines read the JSON (each row says LOSS through its recipe, failures through error)
        echo_json([r.to_dict() for r in results])
    losses = len(losses)
    if losses and not as_json:
        click.echo(f"warning: {losses} int8 artifact(s) lose against the float model on held-out windows (LOSS "
                   f"above); check them with `edgernn parity {run_dir}` before shipping", err=True)
    if failure is not None:
        raise failure


def result_line(r) -> tuple[str, bool]:
    """One line for a combination of `edgernn export` (wrote / LOSS / skipped / FAILED), and whether it is
    an int8 artifact that loses against the float model on its own held-out check."""
    from edgernn.export.recipes import selection_passed, selection_summary
    from edgernn.runtimes.manifest import read_manifest

    if r.skipped:
        return f"skipped  {r.format:<7} {r.precision:<8} {r.mode:<9} {r.skipped}", False
    if r.error:
        return f"FAILED   {r.format:<7} {r.precision:<8} {r.mode:<9} {r.seconds:6.1f} s  {r.error}", False
    status, how, loss = "wrote", "", False
    if r.precision == "int8":
        m = read_manifest(r.path)
        how = f"  recipe {selection_summary(m)}"
        if not selection_passed(m):  # written, but its own check shows a loss: say so
            status, loss = "LOSS", True
    return (f"{status:<8} {r.format:<7} {r.precision:<8} {r.mode:<9} {r.path.stat().st_size / 1024:8.1f} KB "
            f"{r.seconds:6.1f} s  {r.path}{how}"), loss
