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

from edgernn import __version__
from edgernn.errors import EdgernnError
from edgernn.export import FORMATS, INT8_IO
from edgernn.export.recipes import RECIPES
from edgernn.runtimes.manifest import PRECISIONS
from edgernn.runtimes.registry import RUNTIMES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def debug_enabled() -> bool:
    return os.environ.get("EDGERNN_DEBUG", "").strip() not in ("", "0")


def print_debug(exc: BaseException) -> None:
    """EDGERNN_DEBUG=1: the chained traceback (and a child process's saved traceback) on stderr, before
    the usual one-line error."""
    import traceback

    click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    detail = getattr(exc, "detail", "")
    if detail:
        click.echo(detail.rstrip(), err=True)


def handle_errors(fn):
    """Turn EdgernnError into a one-line click error (exit 1), Ctrl-C into exit 130 and SIGTERM into 143
    (both after the same cleanup: see edgernn.interrupts). With
    EDGERNN_DEBUG=1 the chained traceback is printed first (the one-line error still ends the output)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgernnError as exc:
            if debug_enabled():
                print_debug(exc)
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # disk full, permission denied, ...: the environment, not a bug
            if debug_enabled():
                print_debug(exc)
            raise click.ClickException(f"{exc.strerror or exc} ({exc.filename or 'file system'})") from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (edgernn.interrupts.Terminated)
            from edgernn.interrupts import Terminated

            if isinstance(exc, Terminated):
                click.echo("terminated", err=True)
                sys.exit(143)
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


class CommaChoice(click.ParamType):
    """A comma-separated list of choices ("onnx,tflite"), validated; usage error (exit 2) otherwise."""

    name = "list"

    def __init__(self, choices):
        self.choices = tuple(choices)

    def get_metavar(self, param, ctx=None):
        return "[" + "|".join(self.choices) + "],..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        bad = [v for v in items if v not in self.choices]
        if bad or not items:
            self.fail(f"{', '.join(map(repr, bad)) or 'nothing'} given; choose from {', '.join(self.choices)} "
                      "(comma-separated)", param, ctx)
        return tuple(dict.fromkeys(items))


def _format_help() -> str:
    from edgernn.export import FORMATS

    return "Comma-separated formats: " + "; ".join(
        f"{f.name} ({f.help}; precisions {'/'.join(f.precisions)})" for f in FORMATS.values()) + "."


EMULATE_HELP = ("Run an aarch64 board (rpi4, rpi5, rpi3b, rpi-zero-2w) emulated here: a cached arm64 Debian "
                "with its own python and runtimes under qemu, reached over its own sshd on 127.0.0.1 (needs root; "
                "the first run builds the rootfs, ~6 min). Outputs are real ARM results; timings are not the "
                "board's. See `edgernn emulate --help`.")


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
    from edgernn.interrupts import install_sigterm

    install_sigterm()


# ----------------------------------------------------------------------------- datasets


@main.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@handle_errors
def datasets_cmd(as_json):
    """List the bundled datasets (no download: they ship inside installed packages)."""
    from edgernn.data import DATASETS, load_dataset

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
    from edgernn.models import CELLS

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
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@main.command("train")
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


# ----------------------------------------------------------------------------- pipeline


@main.command("pipeline")
@click.option("--dataset", "-d", default="basic-motions", show_default=True,
              help="Bundled dataset name or .npz/.csv path.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Output directory (one run directory per cell inside).")
@click.option("--hidden", type=click.IntRange(1, 4096), default=32, show_default=True, help="Hidden units.")
@click.option("--cells", default="gru,lstm", show_default=True, help="Comma-separated cells to train.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--stages", default=",".join(("train", "export", "parity", "bench", "report")), show_default=True,
              help="Comma-separated stages to run (later stages reuse what earlier runs wrote).")
@click.option("--runs", type=click.IntRange(1), default=200, show_default=True, help="Timed runs per artifact.")
@click.option("--repeat", type=click.IntRange(1), default=1, show_default=True, help="Benchmark repeats.")
@click.option("--format", "formats", type=CommaChoice(FORMATS), default="onnx,ort,tflite,c", show_default=True,
              help="Export formats (see `edgernn export --help`).")
@click.option("--precision", "precisions", type=CommaChoice(PRECISIONS), default="float,int8,dynamic",
              show_default=True, help="Export precisions (see `edgernn export --help`).")
@click.option("--epochs", type=click.IntRange(1), default=300, show_default=True, help="Maximum training epochs.")
@click.option("--strict", is_flag=True, help="Exit 1 when any artifact fails its parity gate.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@handle_errors
def pipeline_cmd(dataset, out, hidden, cells, seed, stages, runs, repeat, formats, precisions, epochs, strict, quiet):
    """The main job: train GRU and LSTM, export, check parity, benchmark, report."""
    from edgernn.models import CELLS
    from edgernn.pipeline import PipelineConfig, run_pipeline

    cell_list = tuple(c.strip() for c in cells.split(",") if c.strip())
    bad = [c for c in cell_list if c not in CELLS]
    if bad or not cell_list:
        raise click.BadParameter(f"unknown cell(s) {bad}; choose from {', '.join(CELLS)}", param_hint="--cells")
    from edgernn.pipeline import STAGES

    stage_list = tuple(x.strip() for x in stages.split(",") if x.strip())
    if not stage_list or any(x not in STAGES for x in stage_list):
        raise click.BadParameter(f"choose stages from {', '.join(STAGES)}", param_hint="--stages")
    run_pipeline(PipelineConfig(out=out, dataset=dataset, cells=cell_list, hidden=hidden, seed=seed,
                                progress=not quiet, stages=stage_list, runs=runs, repeat=repeat,
                                formats=formats, precisions=precisions,
                                epochs=epochs, strict=strict))


# ----------------------------------------------------------------------------- export


@main.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "formats", type=CommaChoice(FORMATS), default="onnx,ort,tflite", show_default=True,
              help=_format_help())
@click.option("--precision", "precisions", type=CommaChoice(PRECISIONS), default="float,int8", show_default=True,
              help="Comma-separated: float; int8 (built by the format's int8 recipes, tried in order - TFLite "
                   "full-int8, int16x8, dynamic; ONNX dynamic - keeping the first that passes the parity gate "
                   "on held-out calibration windows; see --recipe and the manifest's quantization.selection); "
                   "dynamic (TFLite dynamic range).")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=None,
              help="Pin one int8 recipe instead of trying the order (kept even if it fails the gate; the "
                   "manifest says so). " + "; ".join(f"{r.name} ({'/'.join(r.formats)}): {r.help}"
                                                     for r in RECIPES.values()) + ".")
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
@click.option("--json", "as_json", is_flag=True, help="Print the list of artifacts as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def export_cmd(run_dir, formats, precisions, streaming, recipe, int8_io, c_prefix, out_dir, as_json, quiet):
    """Export a trained run to ONNX / ORT / TFLite / C artifacts, each with a JSON manifest.

    Every artifact is written atomically (no half files) and gets RUN_DIR/artifacts/NAME.json: format,
    precision, which ops really run in int8, tensor names/shapes/dtypes/quantization, normalization,
    labels, sha256, size and tool versions. Check them with `edgernn parity RUN_DIR`.
    """
    from edgernn.export import export_run
    from edgernn.export.recipes import selection_passed, selection_summary
    from edgernn.runtimes.manifest import read_manifest

    results = export_run(run_dir, formats=formats, precisions=precisions, streaming=streaming,
                         out_dir=out_dir, int8_io=int8_io, progress=not quiet, recipe=recipe, c_prefix=c_prefix)
    if as_json:
        echo_json([r.to_dict() for r in results])
        return
    losses = 0
    for r in results:
        if r.skipped:
            click.echo(f"skipped  {r.format:<7} {r.precision:<8} {r.mode:<9} {r.skipped}")
            continue
        status, how = "wrote", ""
        if r.precision == "int8":
            m = read_manifest(r.path)
            how = f"  recipe {selection_summary(m)}"
            if not selection_passed(m):  # written, but its own check shows a loss: say so
                status, losses = "LOSS", losses + 1
        click.echo(f"{status:<8} {r.format:<7} {r.precision:<8} {r.mode:<9} {r.path.stat().st_size / 1024:8.1f} KB "
                   f"{r.seconds:6.1f} s  {r.path}{how}")
    if losses:
        click.echo(f"warning: {losses} int8 artifact(s) lose against the float model on held-out windows (LOSS "
                   f"above); check them with `edgernn parity {run_dir}` before shipping", err=True)


# ----------------------------------------------------------------------------- parity


@main.command("parity")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--min-accuracy-ratio", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.99,
              show_default=True,
              help="Gate for int8/dynamic classifiers: accuracy must be >= this x the float model's accuracy.")
@click.option("--min-agreement", type=click.FloatRange(0.0, 1.0), default=0.98, show_default=True,
              help="Gate for int8/dynamic classifiers: top-1 agreement with the float model (accuracy alone is "
                   "one-sided: an artifact of another model can score as well).")
@click.option("--max-rmse-ratio", type=click.FloatRange(1.0), default=1.02, show_default=True,
              help="Gate for int8/dynamic forecasters: RMSE <= this x the float RMSE, and the RMS difference "
                   "from the float forecasts <= sqrt(ratio^2 - 1) x the float RMSE.")
@click.option("--float-tol", type=click.FloatRange(0.0), default=1e-4, show_default=True,
              help="Gate for float artifacts: max |output difference| vs the PyTorch model must be <= "
                   "float-tol + float-rtol x the range of the float outputs (like numpy allclose).")
@click.option("--float-rtol", type=click.FloatRange(0.0), default=1e-4, show_default=True,
              help="Relative part of the float gate (see --float-tol): float32 rounding grows with the "
                   "outputs and the sequence length.")
@click.option("--stream-frames", type=click.IntRange(1), default=20000, show_default=True,
              help="Soak for step artifacts: test windows streamed back to back, no reset, for this many frames; "
                   "the error is reported per ~1,000 frames so drift shows (a device streams for hours).")
@click.option("--min-stream-agreement", type=click.FloatRange(0.0, 1.0), default=0.95, show_default=True,
              help="Soak gate for quantized step artifacts: top-1 agreement with the float model over the stream.")
@click.option("--max-stream-drift", type=click.FloatRange(1.0), default=2.0, show_default=True,
              help="Soak gate for quantized step artifacts: mean |diff| over the stream at most this x "
                   "that of the same windows streamed one at a time from a reset.")
@click.option("--artifact", "artifacts", multiple=True, type=click.Path(path_type=Path),
              help="Check only these artifact files (repeatable) [default: all in RUN_DIR/artifacts].")
@click.option("--explain", "explain_artifact", default=None, metavar="ARTIFACT",
              help="Instead of the gate: diagnose why this quantized artifact (file name in RUN_DIR/artifacts, "
                   "or a path) differs from float - error against frame index, how fragile the float model "
                   "is there, passing alternatives - and write RUN_DIR/explain/explain-ARTIFACT.json + .png.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Runtime threads.")
@click.option("--target", "-t", default=None,
              help="Run the artifacts on this board instead (ssh: give --host, or --emulate) and compare their "
                   "outputs with the float model AND with this machine's; writes RUN_DIR/parity-TARGET.json.")
@click.option("--host", default=None, help="SSH destination for --target, e.g. pi@raspberrypi.local.")
@click.option("--emulate", is_flag=True, help=EMULATE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def parity_cmd(run_dir, min_accuracy_ratio, min_agreement, max_rmse_ratio, float_tol, float_rtol, stream_frames,
               min_stream_agreement, max_stream_drift, artifacts, explain_artifact, threads, target, host, emulate,
               as_json, quiet):
    """Check every artifact against the float PyTorch model on the held-out test set.

    Each artifact runs in its real runtime from raw inputs (normalization applied by the runtime,
    as on a device). Reports accuracy (or RMSE), change vs float, top-1 agreement, max/mean |diff|,
    and for streaming artifacts frame-by-frame vs full-sequence difference plus a soak (--stream-frames
    frames of test windows back to back, no reset: error per ~1,000 frames, so drift shows, and how often
    the int8 input and state hit their range ends). Writes RUN_DIR/parity.json.
    Refuses artifacts exported from another model than the run's (re-export). Exits 1 when an artifact
    fails its gate.
    """
    from edgernn.errors import ParityError
    from edgernn.gates import Gates
    from edgernn.parity import check_parity, format_table

    if explain_artifact:
        from edgernn.explain import explain, format_explain

        rep = explain(run_dir, explain_artifact)
        if as_json:
            echo_json(rep)
        else:
            click.echo(format_explain(rep))
        return

    gates = Gates(min_accuracy_ratio=min_accuracy_ratio, min_agreement=min_agreement, max_rmse_ratio=max_rmse_ratio,
                  float_tol=float_tol, float_rtol=float_rtol, min_stream_agreement=min_stream_agreement,
                  stream_frames=stream_frames, max_stream_drift=max_stream_drift)
    if emulate and not target:
        raise click.UsageError("--emulate needs --target (rpi4, rpi5, rpi3b or rpi-zero-2w)")
    if target:
        from edgernn.device_parity import device_parity_run
        from edgernn.device_parity import format_table as device_table

        report = device_parity_run(run_dir, target, host=host, emulate=emulate, gates=gates,
                                   artifacts=list(artifacts) or None, threads=threads, progress=not quiet)
        written = Path(run_dir) / f"parity-{report['target']}.json"
        if as_json:
            echo_json(report)
        else:
            click.echo(device_table(report))
    else:
        report = check_parity(run_dir, artifacts=list(artifacts) or None, gates=gates, threads=threads,
                              progress=not quiet)
        written = Path(run_dir) / "parity.json"
        if as_json:
            echo_json(report)
        else:
            click.echo(format_table(report))
    if not report["passed"]:
        raise ParityError(f"parity gate failed for {len(report['failed'])} artifact(s): {', '.join(report['failed'])}"
                          f" (see {written})")


# ----------------------------------------------------------------------------- bench


@main.command("bench")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--target", "-t", default="desktop", show_default=True,
              help="Board profile name (see `edgernn boards`) or a path to your own profile .toml. "
                   "Its transport decides how: local, ssh (needs --host) or adb.")
@click.option("--host", default=None, help="SSH destination for ssh targets, e.g. pi@raspberrypi.local "
                                           "(your ~/.ssh/config, agent and jump hosts apply).")
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice(tuple(RUNTIMES)),
              help="Only artifacts for this runtime (repeatable) [default: all].")
@click.option("--artifact", "artifacts", multiple=True, type=click.Path(path_type=Path),
              help="Only these artifact files (repeatable) [default: all in RUN_DIR/artifacts].")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Runtime threads [default: the board profile's].")
@click.option("--runs", type=click.IntRange(1), default=200, show_default=True,
              help="Timed runs per artifact (after warm-up).")
@click.option("--warmup", type=click.IntRange(0), default=20, show_default=True, help="Untimed warm-up runs.")
@click.option("--repeat", type=click.IntRange(1), default=1, show_default=True,
              help="Repeat each measurement K times in fresh processes; reports the spread, warns above 5%.")
@click.option("--stream-frames", type=click.IntRange(0), default=200, show_default=True,
              help="Frames timed one by one for streaming (step) artifacts.")
@click.option("--no-torch", is_flag=True, help="Skip the PyTorch eager reference (desktop only).")
@click.option("--tool", default=None, help="Android: path to TFLite's benchmark_model or onnxruntime_perf_test.")
@click.option("--remote-python", default=None,
              help="SSH: the device's Python with numpy + a runtime [default: the board profile's].")
@click.option("--remote-tmp", default=None, help="SSH: base directory for the remote temporary directory.")
@click.option("--port", type=int, default=None, help="SSH port (else ~/.ssh/config or 22).")
@click.option("--identity", "-i", default=None, help="SSH identity file (else ~/.ssh/config or the agent).")
@click.option("--emulate", is_flag=True, help=EMULATE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the full JSON instead of a table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def bench_cmd(run_dir, target, host, runtimes, artifacts, threads, runs, warmup, repeat, stream_frames,
              no_torch, tool, remote_python, remote_tmp, port, identity, emulate, as_json, quiet):
    """Benchmark every artifact of a run: latency percentiles, memory, size.

    Each artifact runs in a fresh process: load time, first inference, warm latency p50/p90/p99/mean/std,
    throughput, per-frame streaming latency, peak RSS for load and inference, size, MACs -> MAC/s.
    Writes RUN_DIR/bench-TARGET.json. On an ssh target the runtime module, artifacts and inputs are pushed
    to a temporary directory on the device, run with its python3, and parity is checked on the device
    (against the float model and against this machine's outputs).
    With --emulate (rpi4, rpi5, rpi3b, rpi-zero-2w) the board runs emulated here: real aarch64 outputs,
    timings that are not the board's; written to RUN_DIR/bench-TARGET-emulated.json.
    """
    from edgernn.bench import bench_run, format_table

    report = bench_run(run_dir, target=target, host=host, runtimes=list(runtimes) or None,
                       artifacts=list(artifacts) or None, threads=threads, runs=runs, warmup=warmup,
                       repeat=repeat, stream_frames=stream_frames, include_torch=not no_torch, tool=tool,
                       target_opts={k: v for k, v in {"remote_python": remote_python, "remote_tmp": remote_tmp,
                                                      "port": port, "identity": identity}.items() if v is not None},
                       progress=not quiet, emulate=emulate)
    if as_json:
        from edgernn.bench import _jsonable

        echo_json(_jsonable(report))
        return
    click.echo(format_table(report))
    dp = report.get("device_parity")
    if dp:
        from edgernn.device_parity import format_table as parity_table

        click.echo("\non-device parity:")
        click.echo(parity_table(dp))
    click.echo(f"\nwrote {Path(run_dir) / ('bench-' + report['target'] + '.json')}")


# ----------------------------------------------------------------------------- tune


class IntList(click.ParamType):
    """A comma-separated list of positive integers ("8,16,32")."""

    name = "ints"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            items = tuple(dict.fromkeys(int(v) for v in str(value).split(",") if v.strip()))
        except ValueError:
            self.fail(f"{value!r}: give comma-separated whole numbers, e.g. 8,16,32", param, ctx)
        if not items or min(items) < 1:
            self.fail(f"{value!r}: give positive whole numbers", param, ctx)
        return items


@main.command("tune")
@click.option("--dataset", "-d", default="basic-motions", show_default=True,
              help="Bundled dataset name or .npz/.csv path.")
@click.option("--target", "-t", default="desktop", show_default=True,
              help="Board to benchmark on (see `edgernn boards`): desktop, or an ssh board with --host/--emulate.")
@click.option("--host", default=None, help="SSH destination of the board (e.g. pi@raspberrypi.local).")
@click.option("--emulate", is_flag=True, help="Benchmark an aarch64 board (rpi4, ...) emulated on this machine.")
@click.option("--max-latency-us", type=click.FloatRange(0, min_open=True), default=None,
              help="Budget: p50 latency of the artifact on the target (per window; per frame with --mode step).")
@click.option("--max-kb", type=click.FloatRange(0, min_open=True), default=None,
              help="Budget: artifact file size in KB.")
@click.option("--trials", type=click.IntRange(0), default=20, show_default=True,
              help="Trials THIS command runs (other workers on the same --storage add theirs); 0 = only "
                   "rewrite the outputs from the study.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the trials' run directories, tune.md/json, pareto.png (and study.db).")
@click.option("--storage", default=None,
              help="Optuna storage URL shared by all workers, e.g. postgresql://USER:PASSWORD@HOST:5432/DB "
                   "[default: sqlite:///OUT/study.db, one machine].")
@click.option("--study", default="edgernn", show_default=True, help="Study name inside the storage.")
@click.option("--mode", type=click.Choice(("sequence", "step")), default="sequence", show_default=True,
              help="sequence: whole-window artifacts, latency per window; step: streaming, latency per frame.")
@click.option("--cells", type=CommaChoice(("gru", "lstm", "rnn")), default="gru,lstm", show_default=True,
              help="Cells to search.")
@click.option("--hidden", type=IntList(), default="8,16,32,64", show_default=True, help="Hidden sizes to search.")
@click.option("--layers", type=IntList(), default="1,2", show_default=True, help="Layer counts to search.")
@click.option("--format", "formats", type=CommaChoice(("onnx", "ort", "tflite", "c")), default="onnx,tflite,c",
              show_default=True, help="Formats to search.")
@click.option("--precision", "precisions", type=CommaChoice(("float", "int8", "dynamic")),
              default="float,int8,dynamic", show_default=True,
              help="Precisions to search (int8 picks its recipe by the parity gate, see `edgernn export`).")
@click.option("--epochs", type=click.IntRange(1), default=300, show_default=True,
              help="Maximum training epochs per trial.")
@click.option("--runs", type=click.IntRange(1), default=100, show_default=True, help="Timed bench runs per trial.")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed (the same for every trial).")
@click.option("--port", type=int, default=None, help="SSH port of --host.")
@click.option("--identity", "-i", default=None, help="SSH identity file for --host.")
@click.option("--remote-python", default=None, help="SSH: the board's Python [default: the board profile's].")
@click.option("--heartbeat", type=click.IntRange(1), default=30, show_default=True,
              help="Seconds between a worker's heartbeats; a worker silent for twice this is presumed dead "
                   "and its running trial is failed and retried.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Only the final table.")
@handle_errors
def tune_cmd(dataset, target, host, emulate, max_latency_us, max_kb, trials, out, storage, study, mode, cells,
             hidden, layers, formats, precisions, epochs, runs, seed, port, identity, remote_python, heartbeat,
             as_json, quiet):
    """Search cell, size, learning rate and format/precision for the best accuracy within a budget.

    Every trial trains a model, exports one artifact, gates it with parity and benchmarks it on
    --target (Optuna, multi-objective: accuracy of the exported artifact, p50 latency, size; the
    budgets and the parity gate are constraints). Writes OUT/tune.md (Pareto front, recommendation),
    OUT/tune.json and OUT/pareto.png; each trial's run directory is OUT/trials/NNNN.

    Workers on several machines share one study through --storage postgresql://...; each runs its own
    --trials. Rerunning continues the study; Ctrl-C marks the running trial failed and keeps the rest.
    """
    from edgernn.tune import TuneConfig, format_table, run_tune

    opts = {k: v for k, v in {"port": port, "identity": identity, "remote_python": remote_python}.items()
            if v is not None}
    cfg = TuneConfig(out=out, dataset=dataset, target=target, host=host, emulate=emulate, target_opts=opts,
                     max_latency_us=max_latency_us, max_kb=max_kb, trials=trials, storage=storage, study=study,
                     mode=mode, cells=cells, hidden=hidden, layers=layers, formats=formats, precisions=precisions,
                     epochs=epochs, runs=runs, seed=seed, heartbeat_s=heartbeat)
    echo = (lambda *_: None) if quiet or as_json else click.echo
    try:
        res = run_tune(cfg, echo=echo)
    except KeyboardInterrupt as exc:
        r = getattr(exc, "result", None)
        if r is not None:
            click.echo(f"interrupted: {r.ran} trials finished in this command (a trial cut short is marked failed); "
                       f"outputs in {r.paths['markdown']}; rerun to continue the study", err=True)
        raise
    if as_json:
        echo_json(res.summary)
        return
    click.echo(format_table(res.summary))
    click.echo("wrote " + ", ".join(res.paths.values()))


# ----------------------------------------------------------------------------- report


@main.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write report.md, report.json and plots/ [default: the first RUN_DIR].")
@click.option("--target", default=None, help="Use the bench results of this target [default: the newest].")
@handle_errors
def report_cmd(run_dirs, out_dir, target):
    """Join training metrics, parity and benchmarks into report.md + report.json + PNG plots.

    Plots: latency distribution per artifact and runtime; accuracy vs latency vs size (the deployment
    trade-off at a glance). Give several run directories to compare models on one page.
    """
    from edgernn.report import build_report

    res = build_report(run_dirs, out_dir=out_dir, target=target)
    click.echo(res["markdown"])
    click.echo("wrote " + ", ".join(res["paths"].values()))


# ----------------------------------------------------------------------------- boards


@main.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
@handle_errors
def boards_cmd(as_json):
    """List board profiles (packaged ones and yours from $EDGERNN_BOARDS_DIR)."""
    from dataclasses import asdict

    from edgernn.devices.boards import list_boards

    boards = list_boards()
    if as_json:
        echo_json([asdict(b) for b in boards])
        return
    click.echo(f"{'name':<14} {'arch':<8} {'cores':>5} {'RAM MB':>7} {'transport':<9} {'threads':>7}  cpu / runtimes")
    for b in boards:
        click.echo(f"{b.name:<14} {b.arch:<8} {b.cores:>5} {b.ram_mb:>7} {b.transport:<9} {b.default_threads:>7}  "
                   f"{b.cpu} / {', '.join(b.runtimes)}")


# ----------------------------------------------------------------------------- emulate


@main.group("emulate")
def emulate_group():
    """The emulated Raspberry Pi behind `bench --emulate` and `parity --target ... --emulate`.

    \b
    An arm64 Debian (bookworm, as Raspberry Pi OS 12) with its own python3, numpy, onnxruntime and
    ai-edge-litert, run under qemu user emulation with the board's core (qemu_cpu in its profile),
    cached under ~/.cache/edgernn/emulate ($EDGERNN_CACHE_DIR/emulate). Needs root.
      edgernn emulate status          what the cache holds, its size, leftovers of a killed run
      edgernn emulate build -t rpi4   build the rootfs now (else the first --emulate does, ~6 min)
      edgernn emulate clean           remove the cache (unmounting anything a killed run left)
    """


@emulate_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def emulate_status_cmd(as_json):
    """Show the cached rootfs: path, size, python and runtime versions, leftovers."""
    from edgernn.devices.emulated_pi import status

    st = status()
    if as_json:
        echo_json(st)
        return
    click.echo(f"cache {st['cache']}: {st['bytes'] / 2 ** 20:.0f} MB; qemu {st['qemu'] or 'not installed'}")
    if not st["rootfs"]:
        click.echo("no rootfs yet: the first `edgernn bench RUN --target rpi4 --emulate` (or `edgernn emulate "
                   "build`) builds one")
    for e in st["rootfs"]:
        info = e["info"] or {}
        pk = ", ".join(f"{k} {v}" for k, v in (info.get("packages") or {}).items())
        state = "complete" if e["complete"] else "UNFINISHED build (removed by the next run or `emulate clean`)"
        click.echo(f"  {Path(e['path']).name}: {e['bytes'] / 2 ** 20:.0f} MB, {state}"
                   + (f", python {info.get('python')}, {pk}, built {info.get('built')} in {info.get('build_s')} s"
                      if info else ""))
        if e["mounted"] or e["processes"]:
            click.echo(f"    left by a killed run: {len(e['mounted'])} mount(s), {e['processes']} process(es); "
                       "the next --emulate run or `edgernn emulate clean` removes them")


@emulate_group.command("build")
@click.option("--target", "-t", default="rpi4", show_default=True, help="Board whose runtimes to install.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def emulate_build_cmd(target, quiet):
    """Build (or check) the rootfs now and start/stop its sshd once, so later runs start warm."""
    import subprocess
    import time

    from edgernn.devices.boards import load_board
    from edgernn.devices.emulated_pi import Emulator
    from edgernn.runtimes.registry import INSTALL

    board = load_board(target)
    modules = ", ".join(["numpy"] + [INSTALL[rt][2][0] for rt in board.runtimes if INSTALL[rt][2]])
    t0 = time.time()
    with Emulator(board, progress=not quiet) as emu:
        o = emu.target_opts()
        proc = subprocess.run(["ssh", "-F", o["config"], emu.host, f"uname -m && {o['remote_python']} -c "
                               f"'import {modules}'"], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            from edgernn.devices.emulated_pi import EmulationError

            raise EmulationError(f"the emulated {board.name} does not run its runtimes: "
                                 f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        info = emu.info
    click.echo(f"{'built' if emu.timings['built'] else 'reused'} {emu.rootfs} ({proc.stdout.strip()}, python "
               f"{info.get('python')}, {', '.join(f'{k} {v}' for k, v in (info.get('packages') or {}).items())}) "
               f"in {time.time() - t0:.0f} s")


@emulate_group.command("clean")
@handle_errors
def emulate_clean_cmd():
    """Remove the emulator cache (after unmounting and stopping anything a killed run left)."""
    from edgernn.devices.emulated_pi import cache_root, clean

    removed = clean()
    click.echo(f"removed {', '.join(removed)}" if removed else f"nothing to remove in {cache_root()}")
