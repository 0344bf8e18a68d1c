"""
What a tune study searches and within which budget: TuneConfig (and the default search space), checked on
creation, plus the identity every worker of one study must share.

    cfg = TuneConfig(dataset="basic-motions", out="tune/bm", max_latency_us=200, max_kb=64, trials=20)
    cfg.artifact_choices()          # ["onnx/float", "onnx/int8", "tflite/float", ...]
    cfg.identity("classify")        # stored in the study; a worker with other settings is refused
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgernn.errors import ConfigError

STUDY_NAME = "edgernn"
CELLS = ("gru", "lstm")
HIDDEN = (8, 16, 32, 64)
LAYERS = (1, 2)
LR_RANGE = (1e-3, 1e-2)
FORMATS = ("onnx", "tflite", "c")
PRECISIONS = ("float", "int8", "dynamic")
MAX_CONSECUTIVE_FAILURES = 3  # a target that is down fails every trial: stop instead of burning the budget


@dataclass
class TuneConfig:
    out: Path = Path("tune")
    dataset: str = "basic-motions"
    target: str = "desktop"  # a board (edgernn boards)
    host: str | None = None  # ssh boards: user@host[:port]
    emulate: bool = False  # aarch64 ssh boards: run on the emulated board here
    target_opts: dict = field(default_factory=dict)  # ssh: port, identity, remote_python, remote_tmp
    max_latency_us: float | None = None  # budget on the artifact's p50 latency (per window, or per frame in step mode)
    max_kb: float | None = None  # budget on the artifact's file size
    trials: int = 20  # trials THIS command runs (other workers add their own)
    storage: str | None = None  # Optuna storage URL; default sqlite:///OUT/study.db
    study: str = STUDY_NAME
    mode: str = "sequence"  # sequence: latency of one window | step: latency of one streamed frame
    cells: tuple = CELLS
    hidden: tuple = HIDDEN
    layers: tuple = LAYERS
    formats: tuple = FORMATS
    precisions: tuple = PRECISIONS
    epochs: int = 300  # training upper bound per trial (early stopping ends most sooner)
    seed: int = 0  # training seed, the same for every trial: trials differ by their parameters only
    runs: int = 100  # timed bench runs per trial
    heartbeat_s: int = 30  # a worker silent for 2x this is presumed dead; its running trial is failed + retried

    def __post_init__(self):
        self.out = Path(self.out)
        if self.trials < 0:
            raise ConfigError(f"--trials must be >= 0, got {self.trials}")
        if self.mode not in ("sequence", "step"):
            raise ConfigError(f"--mode must be sequence or step, got {self.mode!r}")
        for name in ("max_latency_us", "max_kb"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {v}")
        if self.heartbeat_s < 1:
            raise ConfigError(f"heartbeat must be >= 1 s, got {self.heartbeat_s}")
        for name, allowed in (("cells", ("gru", "lstm", "rnn")), ("formats", FORMATS + ("ort",)),
                              ("precisions", PRECISIONS)):
            bad = [v for v in getattr(self, name) if v not in allowed]
            if bad or not getattr(self, name):
                raise ConfigError(f"--{name}: {', '.join(bad) or 'nothing given'} not in {', '.join(allowed)}")
        if not self.hidden or min(self.hidden) < 1 or not self.layers or min(self.layers) < 1:
            raise ConfigError("--hidden and --layers need positive sizes")

    def artifact_choices(self) -> list[str]:
        """The format/precision pairs to search: every requested pair the format offers."""
        from edgernn.export import FORMATS as TABLE

        pairs = [f"{f}/{p}" for f in self.formats for p in self.precisions if p in TABLE[f].precisions]
        if not pairs:
            raise ConfigError(f"no format in {', '.join(self.formats)} offers {', '.join(self.precisions)}")
        return pairs

    def identity(self, task: str) -> dict:
        """What every worker of one study must agree on (stored in the study; a mismatch is refused)."""
        return {"dataset": self.dataset, "task": task, "target": self.target, "mode": self.mode,
                "max_latency_us": self.max_latency_us, "max_kb": self.max_kb,
                "space": {"cells": list(self.cells), "hidden": list(self.hidden), "layers": list(self.layers),
                          "artifacts": self.artifact_choices(), "lr": list(LR_RANGE)},
                "epochs": self.epochs, "seed": self.seed}
