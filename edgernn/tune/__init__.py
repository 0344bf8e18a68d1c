"""
`edgernn tune`: which cell, size and precision give the best accuracy within a device's budget? Measured,
not estimated: every trial trains a model, exports one artifact, gates it with parity and benchmarks it on
the target. Optuna searches (multi-objective: accuracy of the exported artifact, p50 latency on the target,
size) with the budgets as constraints.

    edgernn tune --dataset basic-motions --target desktop --max-latency-us 200 --max-kb 64 --trials 20 --out tune/bm
    run_tune(TuneConfig(dataset="basic-motions", out="tune/bm", trials=20))       # same, from Python

The study lives in Optuna storage: DIR/study.db (SQLite) by default, or `--storage postgresql://...` so
any number of workers on any number of machines add trials to one study. `--trials N` is what this
command runs; a restarted command continues the study. Each trial's run directory (trained model +
artifact + parity.json + bench JSON) is DIR/trials/NNNN on the machine that ran it; the trial records
that machine and path. Workers send heartbeats: a killed worker's running trial is marked failed (and
retried once) by the next worker that starts a trial after the grace period.

Outputs (rewritten by every worker when it finishes): DIR/tune.json (every trial), DIR/tune.md (the
Pareto front and the recommendation) and DIR/pareto.png.

One file per job: config (TuneConfig, the search space), storage (Optuna storage, heartbeats, the study),
trial (the objective: train, export, gate, bench one candidate), results (Pareto front, recommendation,
tune.json/md/png) and run (run_tune, the entry point).
"""

from edgernn.tune.config import (
    CELLS,
    FORMATS,
    HIDDEN,
    LAYERS,
    LR_RANGE,
    MAX_CONSECUTIVE_FAILURES,
    PRECISIONS,
    STUDY_NAME,
    TuneConfig,
)
from edgernn.tune.results import (
    closest,
    describe,
    format_table,
    pareto,
    plot,
    recommend,
    summarize,
    trial_rows,
    write_outputs,
)
from edgernn.tune.run import TuneResult, TuneStopped, run_tune
from edgernn.tune.storage import constraints, open_storage, open_study, shown_url, storage_url
from edgernn.tune.trial import TrialFailed, deployed_bytes

__all__ = ["CELLS", "FORMATS", "HIDDEN", "LAYERS", "LR_RANGE", "MAX_CONSECUTIVE_FAILURES", "PRECISIONS", "STUDY_NAME",
           "TrialFailed", "TuneConfig", "TuneResult", "TuneStopped", "closest", "constraints", "deployed_bytes",
           "describe", "format_table", "open_storage", "open_study", "pareto", "plot", "recommend", "run_tune",
           "shown_url", "storage_url", "summarize", "trial_rows", "write_outputs"]
