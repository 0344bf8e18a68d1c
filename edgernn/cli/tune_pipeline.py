"""
`edgernn pipeline` and `edgernn tune`: the whole flow on one model each, and the search for the best model
within a device's budget (both run train -> export -> parity -> bench for you).

    edgernn pipeline --out runs/demo                 # train GRU and LSTM, export, parity, bench, report
    edgernn tune --target desktop --max-latency-us 200 --max-kb 64 --trials 20 --out tune/bm

Each command parses its options, calls edgernn.pipeline / edgernn.tune and prints.
"""

from __future__ import annotations

from pathlib import Path

import click

from edgernn.cli.options import CommaChoice, IntList, echo_json, handle_errors
from edgernn.export import FORMATS
from edgernn.runtimes.manifest import PRECISIONS

# ----------------------------------------------------------------------------- pipeline


@click.command("pipeline")
@click.option("--dataset", "-d", default="basic-motions", show_default=True,
              help="Bundled dataset name or .npz/.csv path.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Output directory (one run directory per cell inside).")
@click.option("--hidden", type=click.IntRange(1, 4096), default=32, show_default=True, help="Hidden units.")
@click.option("--cells", default="gru,lstm", show_default=True, help="Comma-separated cells to train.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--stages", default=",".join(("train", "export", "parity", "bench", "mcu", "report")), show_default=True,
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
    """The main job: train GRU and LSTM, export, check parity, benchmark, report.

    A token set (--dataset g2p, or a text file) runs the token stages: train one GRU encoder-decoder (--cells to
    change), export ONNX/TFLite/C float and int8, parity by phoneme/word error rate, bench per token, report.
    """
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
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = {k: ctx.get_parameter_source(k) != ParameterSource.DEFAULT for k in ("hidden", "epochs", "cells")}
    from edgernn.data.registry import is_token_spec

    if is_token_spec(dataset) and not given["cells"]:
        cell_list = ("gru",)  # token sets: one encoder-decoder (an LSTM of the same size is 30% larger)
    run_pipeline(PipelineConfig(out=out, dataset=dataset, cells=cell_list, hidden=hidden, seed=seed,
                                progress=not quiet, stages=stage_list, runs=runs, repeat=repeat,
                                formats=formats, precisions=precisions,
                                epochs=epochs, strict=strict, token_hidden=hidden if given["hidden"] else None,
                                token_epochs=epochs if given["epochs"] else None))


# ----------------------------------------------------------------------------- tune


@click.command("tune")
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
