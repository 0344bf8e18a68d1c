"""
The `edgernn` command line: parse options, call the library, print. Nothing else lives here.

    edgernn train --dataset basic-motions --cell gru --hidden 32 --out runs/gru
    edgernn pipeline --out runs/demo          # the main job: train -> export -> parity -> bench -> report
    edgernn --help                            # every command; `edgernn CMD --help` for its options

Library errors (edgernn.errors.EdgernnError) become one-line messages and exit code 1; usage errors
exit 2 (click). No tracebacks for user mistakes.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import EdgernnError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def handle_errors(fn):
    """Turn EdgernnError into a one-line click error (exit 1) and Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgernnError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgernn")
def main():
    """edgernn: compact GRU/LSTM models from training to a measured edge deployment.

    \b
    Typical flow:
      edgernn train --out RUN_DIR   train and write a run directory
      edgernn export RUN_DIR        ONNX/TFLite, float/int8, full-sequence and streaming
      edgernn parity RUN_DIR        every artifact vs the float model, with a gate
      edgernn bench RUN_DIR         latency percentiles, memory, size (desktop, Pi, Android)
      edgernn report RUN_DIR        Markdown + JSON + plots
      edgernn pipeline              all of the above on the bundled default dataset
    """


# ----------------------------------------------------------------------------- datasets


@main.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@handle_errors
def datasets_cmd(as_json):
    """List the bundled datasets (no download: they ship inside installed packages)."""
    from .data import DATASETS, load_dataset

    rows = []
    for name in DATASETS:
        ds = load_dataset(name)
        s = ds.summary()
        s["description"] = ds.description
        rows.append(s)
    if as_json:
        echo_json(rows)
        return
    click.echo(f"{'name':<20} {'task':<9} {'train':>5} {'test':>5} {'T':>4} {'C':>3} {'classes':>7}  description")
    for r in rows:
        click.echo(f"{r['name']:<20} {r['task']:<9} {r['n_train']:>5} {r['n_test']:>5} {r['seq_len']:>4} "
                   f"{r['channels']:>3} {r['num_classes']:>7}  {r['description']}")
    click.echo("Your own data: --dataset path/to/data.npz (X [N,T,C], y [N]) or .csv (see docs/data.md).")


# ----------------------------------------------------------------------------- train


def train_options(fn):
    from .models import CELLS

    opts = [
        click.option("--dataset", "-d", default="basic-motions", show_default=True,
                     help="Bundled dataset name (see `edgernn datasets`) or a .npz/.csv file path."),
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
                     help="Stop after this many epochs without validation-loss improvement."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Random seed: same seed, same weights."),
        click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
                     help="Torch CPU threads for training."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@main.command("train")
@train_options
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory to write (checkpoint, config, normalization, labels, metrics.json).")
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def train_cmd(out, as_json, quiet, **kw):
    """Train a GRU/LSTM and write a run directory.

    Adam with gradient clipping, a stratified validation split with early stopping (best weights
    kept), per-channel normalization computed on the training data and saved with the model.
    """
    from .train import TrainConfig, train

    metrics = train(TrainConfig(**kw), out, progress=not quiet)
    if as_json:
        echo_json(metrics)
        return
    click.echo(format_train_summary(kw["cell"], kw["hidden"], metrics, out))


def format_train_summary(cell, hidden, m, out) -> str:
    key = m["headline_metric"]
    parts = [f"{cell} h{hidden} on {m['dataset']['name']}:"]
    for split in ("train", "val", "test"):
        if m.get(split):
            parts.append(f"{split} {key} {m[split][key]:.4f}")
    parts.append(f"| {m['parameters']} params, {m['macs_per_inference']} MACs/inference, "
                 f"{m['epochs_run']} epochs, {m['train_time_s']:.1f} s -> {out}")
    return " ".join(parts)


# ----------------------------------------------------------------------------- pipeline


@main.command("pipeline")
@click.option("--dataset", "-d", default="basic-motions", show_default=True,
              help="Bundled dataset name or .npz/.csv path.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Output directory (one run directory per cell inside).")
@click.option("--hidden", type=click.IntRange(1, 4096), default=32, show_default=True, help="Hidden units.")
@click.option("--cells", default="gru,lstm", show_default=True, help="Comma-separated cells to train.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@handle_errors
def pipeline_cmd(dataset, out, hidden, cells, seed, quiet):
    """The main job: train GRU and LSTM, export, check parity, benchmark, report."""
    from .models import CELLS
    from .pipeline import PipelineConfig, run_pipeline

    cell_list = tuple(c.strip() for c in cells.split(",") if c.strip())
    bad = [c for c in cell_list if c not in CELLS]
    if bad or not cell_list:
        raise click.BadParameter(f"unknown cell(s) {bad}; choose from {', '.join(CELLS)}", param_hint="--cells")
    run_pipeline(PipelineConfig(out=out, dataset=dataset, cells=cell_list, hidden=hidden, seed=seed,
                                progress=not quiet))
