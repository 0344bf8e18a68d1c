"""
The `edgernn` command line: parse options, call the library, print. Nothing else lives here. This file
holds the command group; the commands live by stage beside it (train_export, parity_bench_report,
devices, tune_pipeline) and share cli.options (error handling, option types, the gate options).

    edgernn train --dataset basic-motions --cell gru --hidden 32 --out runs/gru
    edgernn pipeline --out runs/demo          # the main job: train -> export -> parity -> bench -> report
    edgernn --help                            # every command; `edgernn CMD --help` for its options

Library errors (edgernn.errors.EdgernnError) become one-line messages and exit code 1; usage errors
exit 2 (click). No tracebacks for user mistakes.
"""

from __future__ import annotations

import os

import click

from edgernn import __version__
from edgernn.cli.devices import boards_cmd, emulate_group
from edgernn.cli.parity_bench_report import bench_cmd, parity_cmd, report_cmd
from edgernn.cli.tokens import generate_cmd
from edgernn.cli.train_export import datasets_cmd, export_cmd, finetune_cmd, train_cmd
from edgernn.cli.tune_pipeline import pipeline_cmd, tune_cmd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgernn")
def main():
    """edgernn: compact GRU/LSTM models from training to a measured edge deployment.

    \b
    Typical flow:
      edgernn train --out RUN_DIR   train and write a run directory
      edgernn finetune RUN_DIR --qat --out QAT_DIR   quantization-aware fine-tuning
      edgernn export RUN_DIR        ONNX/TFLite, float/int8, full-sequence and streaming
      edgernn parity RUN_DIR        every artifact vs the float model, with a gate
      edgernn bench RUN_DIR         latency percentiles, memory, size (desktop, Pi, Android)
      edgernn report RUN_DIR        Markdown + JSON + plots
      edgernn pipeline              all of the above on the bundled default dataset
      edgernn generate RUN_DIR TEXT  run an exported encoder-decoder (token models: g2p)
    """
    from edgernn.interrupts import install_sigterm

    install_sigterm()


# in the order the original single-file CLI declared them
for _cmd in (datasets_cmd, train_cmd, finetune_cmd, pipeline_cmd, export_cmd, parity_cmd, bench_cmd, tune_cmd,
             report_cmd, generate_cmd, boards_cmd, emulate_group):
    main.add_command(_cmd)
del _cmd

__all__ = ["main"]
