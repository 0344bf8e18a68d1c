"""
The main job: train a GRU and an LSTM on a dataset, then export, check parity, benchmark and report.

    edgernn pipeline --out runs/demo                    # bundled basic-motions, hidden 32
    run_pipeline(PipelineConfig(out="runs/demo"))       # same, from Python

Each stage writes into the per-model run directory (runs/demo/gru, runs/demo/lstm); the summary of
the whole job goes to runs/demo/summary.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from .rundir import atomic_write_json
from .train import TrainConfig, train


@dataclass
class PipelineConfig:
    out: Path = Path("runs/demo")
    dataset: str = "basic-motions"
    cells: tuple = ("gru", "lstm")
    hidden: int = 32
    seed: int = 0
    progress: bool = True
    stages: tuple = ("train",)  # later stages are added as they land
    extra: dict = field(default_factory=dict)


def run_pipeline(cfg: PipelineConfig, echo=click.echo) -> dict:
    out = Path(cfg.out)
    summary = {"dataset": cfg.dataset, "hidden": cfg.hidden, "models": {}}
    for cell in cfg.cells:
        run_dir = out / cell
        echo(f"== {cell}: train on {cfg.dataset} -> {run_dir}")
        m = train(TrainConfig(dataset=cfg.dataset, cell=cell, hidden=cfg.hidden, seed=cfg.seed), run_dir,
                  progress=cfg.progress)
        key = m["headline_metric"]
        echo(f"   test {key} {m['test'][key]:.4f} ({m['parameters']} params, {m['train_time_s']:.1f} s)")
        summary["models"][cell] = {"run_dir": str(run_dir), "train": m}
    atomic_write_json(out / "summary.json", summary)
    echo(f"summary: {out / 'summary.json'}")
    return summary
