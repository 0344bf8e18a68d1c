"""
`edgernn parity`, `edgernn bench` and `edgernn report`: check the artifacts, measure them, write it up.

    edgernn parity runs/gru                  # every artifact vs the float model, with the gate (edgernn.gates)
    edgernn bench runs/gru --target rpi4 --host pi@raspberrypi.local
    edgernn report runs/gru runs/lstm --out reports/

The gate options' defaults are edgernn.gates.Gates' fields (cli.options.gate_option): one home for each.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgernn.cli.options import EMULATE_HELP, echo_json, gate_option, gates_from, handle_errors
from edgernn.runtimes.registry import RUNTIMES

# ----------------------------------------------------------------------------- parity


def mcu_target(target, host, emulate) -> bool:
    """True for a microcontroller profile (transport mcu), which runs only emulated here."""
    from edgernn.devices.boards import load_board

    board = load_board(target)
    if board.transport != "mcu":
        return False
    if not emulate:
        raise click.UsageError(f"{board.name} is a microcontroller: edgernn runs its C artifacts on an emulated "
                               f"{board.core} (add --emulate); flashing a real board is not supported")
    if host:
        raise click.UsageError(f"--host does not apply to {board.name}: a microcontroller is emulated here")
    return True


TOKEN_TARGETS = "token runs run on this machine or an emulated microcontroller (--target cortex-m4 --emulate) so far"


def token_mcu_cli(run_dir, target, host, emulate, as_json, quiet, show: str) -> dict:
    """A token run on an emulated microcontroller (edgernn.tokens.mcu); any other target is refused in one line."""
    if not mcu_target(target, host, emulate):
        raise click.UsageError(f"{TOKEN_TARGETS}, not on {target}")
    from edgernn.tokens.mcu import format_token_mcu, token_mcu_run

    report = token_mcu_run(run_dir, target, progress=not quiet)
    click.echo(json.dumps(report, indent=2) if as_json else format_token_mcu(report, show))
    if not as_json:
        click.echo(f"\nwrote {Path(run_dir) / ('mcu-' + report['target'] + '.json')}")
    return report


@click.command("parity")
@click.argument("run_dir", type=click.Path(path_type=Path))
@gate_option("--min-accuracy-ratio", click.FloatRange(0.0, 1.0, min_open=True),
             help="Gate for int8/dynamic classifiers: accuracy must be >= this x the float model's accuracy.")
@gate_option("--min-agreement", click.FloatRange(0.0, 1.0),
             help="Gate for int8/dynamic classifiers: top-1 agreement with the float model (accuracy alone is "
                  "one-sided: an artifact of another model can score as well).")
@gate_option("--max-rmse-ratio", click.FloatRange(1.0),
             help="Gate for int8/dynamic forecasters: RMSE <= this x the float RMSE, and the RMS difference "
                  "from the float forecasts <= sqrt(ratio^2 - 1) x the float RMSE.")
@gate_option("--float-tol", click.FloatRange(0.0),
             help="Gate for float artifacts: max |output difference| vs the PyTorch model must be <= "
                  "float-tol + float-rtol x the range of the float outputs (like numpy allclose).")
@gate_option("--float-rtol", click.FloatRange(0.0),
             help="Relative part of the float gate (see --float-tol): float32 rounding grows with the "
                  "outputs and the sequence length.")
@gate_option("--stream-frames", click.IntRange(1),
             help="Soak for step artifacts: test windows streamed back to back, no reset, for this many frames; "
                  "the error is reported per ~1,000 frames so drift shows (a device streams for hours).")
@gate_option("--min-stream-agreement", click.FloatRange(0.0, 1.0),
             help="Soak gate for quantized step artifacts: top-1 agreement with the float model over the stream.")
@gate_option("--max-stream-drift", click.FloatRange(1.0),
             help="Soak gate for quantized step artifacts: mean |diff| over the stream at most this x "
                  "that of the same windows streamed one at a time from a reset.")
@gate_option("--max-kws-frr-increase", click.FloatRange(0.0, 1.0),
             help="Audio classifiers, keyword stream: an artifact's false reject rate may exceed the float "
                  "model's by at most this (absolute, 0.02 = 2 points), with the same thresholds.")
@gate_option("--max-kws-fa-increase", click.FloatRange(0.0),
             help="Audio classifiers, keyword stream: an artifact's false accepts per hour may exceed the float "
                  "model's by at most this.")
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
@click.option("--stream-minutes", type=click.FloatRange(0.5, 24 * 60), default=60.0, show_default=True,
              help="Audio classifiers: minutes of the continuous keyword stream (test speakers) every step artifact "
                   "runs for false rejects and false accepts per hour.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def parity_cmd(run_dir, artifacts, explain_artifact, threads, target, host, emulate, stream_minutes, as_json, quiet,
               **gate_options):
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
    from edgernn.parity import check_parity, format_table
    from edgernn.tokens.run import is_token_run

    if is_token_run(run_dir) and not target and not explain_artifact:
        from edgernn.cli.tokens import parity_tokens_cli

        return parity_tokens_cli(run_dir, as_json, quiet)
    if is_token_run(run_dir) and target and not explain_artifact:
        report = token_mcu_cli(run_dir, target, host, emulate, as_json, quiet, "gate")
        if not report["passed"]:
            raise ParityError(f"MCU gate failed for {len(report['failed'])} artifact(s): {', '.join(report['failed'])}"
                              f" (see {Path(run_dir) / ('mcu-' + report['target'] + '.json')})")
        return
    if explain_artifact:
        from edgernn.explain import explain, format_explain

        rep = explain(run_dir, explain_artifact)
        if as_json:
            echo_json(rep)
        else:
            click.echo(format_explain(rep))
        return

    gates = gates_from(gate_options)  # one option per Gates field (cli.options.gate_option)
    if emulate and not target:
        raise click.UsageError("--emulate needs --target (rpi4, rpi5, rpi3b, rpi-zero-2w, or a microcontroller: "
                               "cortex-m4, cortex-m7, cortex-m55, nucleo-l476rg, ...)")
    if target and mcu_target(target, host, emulate):
        from edgernn.mcu_parity import format_table as mcu_table
        from edgernn.mcu_parity import mcu_parity_run

        report = mcu_parity_run(run_dir, target, gates=gates, artifacts=list(artifacts) or None, progress=not quiet)
        written = Path(run_dir) / f"parity-{report['target']}.json"
        if as_json:
            echo_json(report)
        else:
            click.echo(mcu_table(report))
    elif target:
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
                              progress=not quiet, stream_minutes=stream_minutes)
        written = Path(run_dir) / "parity.json"
        if as_json:
            echo_json(report)
        else:
            click.echo(format_table(report))
    if not report["passed"]:
        raise ParityError(f"parity gate failed for {len(report['failed'])} artifact(s): {', '.join(report['failed'])}"
                          f" (see {written})")


# ----------------------------------------------------------------------------- bench


@click.command("bench")
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
    from edgernn.tokens.run import is_token_run

    if is_token_run(run_dir):
        if target != "desktop":
            token_mcu_cli(run_dir, target, host, emulate, as_json, quiet, "cost")
            return
        if host or emulate:
            raise click.UsageError(f"{TOKEN_TARGETS} (no --host/--emulate without a microcontroller --target)")
        from edgernn.tokens.bench import format_token_bench, token_bench

        report = token_bench(run_dir, steps=max(runs * 10, 200), warmup=max(warmup * 10, 20), progress=not quiet)
        click.echo(json.dumps(report, indent=2) if as_json else format_token_bench(report))
        if not as_json:
            click.echo(f"\nwrote {Path(run_dir) / 'bench-local.json'}")
        return
    if mcu_target(target, host, emulate):
        from edgernn.mcu_bench import format_table as mcu_table
        from edgernn.mcu_bench import mcu_bench_run

        report = mcu_bench_run(run_dir, target, artifacts=list(artifacts) or None,
                               stream_frames=max(stream_frames, 1), progress=not quiet)
        click.echo(json.dumps(report, indent=2) if as_json else mcu_table(report))
        if not as_json:
            click.echo(f"\nwrote {Path(run_dir) / ('bench-' + report['target'] + '.json')}")
        return
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

# ----------------------------------------------------------------------------- report


@click.command("report")
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
