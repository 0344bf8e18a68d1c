"""
`edgernn tune`'s entry point: check the target and the output directory, open the study, run this
command's trials (Ctrl-C / SIGTERM cut only a measurement, never a storage write) and write the outputs.

    res = run_tune(TuneConfig(dataset="basic-motions", out="tune/bm", trials=20))
    res.summary["recommended"], res.paths["markdown"]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from edgernn.errors import ConfigError, EdgernnError, require
from edgernn.interrupts import InterruptGate
from edgernn.tune.config import MAX_CONSECUTIVE_FAILURES, TuneConfig
from edgernn.tune.results import budget_text, summarize, write_outputs
from edgernn.tune.storage import open_study, shown_url, storage_url
from edgernn.tune.trial import TrialFailed, make_objective


@dataclass
class TuneResult:
    summary: dict
    ran: int = 0  # trials this command finished (complete or failed)
    paths: dict = field(default_factory=dict)


class TuneStopped(EdgernnError):
    """MAX_CONSECUTIVE_FAILURES trials in a row failed (a target that is down): the command stopped; `result`
    holds what the study has so far (its outputs are written)."""

    def __init__(self, message: str, result: TuneResult):
        super().__init__(message)
        self.result = result


def run_tune(cfg: TuneConfig, echo=print) -> TuneResult:
    """Run cfg.trials trials into the study and write the outputs (also after Ctrl-C: the interrupted trial
    is marked failed, every finished one stays)."""
    from edgernn.data import load_dataset
    from edgernn.devices.boards import load_board
    from edgernn.export import check_prerequisites
    from edgernn.runtimes.files import writable_dir_problem

    require("optuna", "tune")
    board = load_board(cfg.target)
    if board.transport == "ssh" and not (cfg.host or cfg.emulate):
        raise ConfigError(f"--target {cfg.target} is benchmarked over ssh: give --host USER@HOST or --emulate")
    if board.transport == "adb":
        raise ConfigError(f"--target {cfg.target}: tune benchmarks on desktop and ssh boards (adb is not supported)")
    dataset = load_dataset(cfg.dataset, seed=cfg.seed)
    check_prerequisites(list(cfg.formats))
    created = not cfg.out.exists()
    cfg.out.mkdir(parents=True, exist_ok=True)
    problem = writable_dir_problem(cfg.out)
    if problem:
        raise ConfigError(f"--out {cfg.out} is not writable ({problem})")
    try:
        study = open_study(cfg, dataset.task)
    except BaseException:
        if created and not any(cfg.out.iterdir()):
            cfg.out.rmdir()  # an unreachable storage leaves nothing behind
        raise
    done_before = len(study.get_trials(deepcopy=False))
    echo(f"study {cfg.study!r} in {shown_url(storage_url(cfg))}: {done_before} trials so far; running {cfg.trials} "
         f"on {cfg.target}{' (emulated)' if cfg.emulate else ''}, budget: {budget_text(cfg)}")
    failures = {"n": 0}
    ran = {"n": 0}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Ctrl-C / SIGTERM interrupt a trial's measurement only: one that lands while optuna asks for a trial,
    # records a result or while the outputs are written waits (optuna has no cleanup there; the trial would
    # stay RUNNING until another worker's heartbeat check failed it) and stops the study after that step
    with InterruptGate() as gate:
        def after(study, trial):
            ran["n"] += 1
            failures["n"] = failures["n"] + 1 if trial.state.name == "FAIL" else 0
            if failures["n"] >= MAX_CONSECUTIVE_FAILURES or gate.pending is not None:
                study.stop()

        interrupted = None
        try:
            if cfg.trials:
                study.optimize(make_objective(cfg, dataset, echo, gate), n_trials=cfg.trials, catch=(TrialFailed,),
                               callbacks=[after])
        except KeyboardInterrupt as exc:
            interrupted = exc  # optuna marked the running trial failed before re-raising
        interrupted = interrupted or gate.pending
        summary = summarize(study, cfg, dataset.task)
        paths = write_outputs(summary, cfg)
    result = TuneResult(summary=summary, ran=ran["n"], paths=paths)
    if failures["n"] >= MAX_CONSECUTIVE_FAILURES:
        last = [r for r in summary["trials"] if r["state"] == "FAIL"][-1]
        raise TuneStopped(f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed (last: {last.get('fail_reason')}); "
                          f"stopped. The study keeps every trial; fix the cause and rerun to continue. "
                          f"Results so far: {paths['markdown']}", result)
    if interrupted is not None:
        interrupted.result = result  # the CLI prints where the outputs are, then exits 130 (143 on SIGTERM)
        raise interrupted
    return result
