"""
One tune trial, the objective Optuna calls: draw the parameters, train, export one artifact, gate it with
parity and benchmark it on the target; record the numbers (or why it failed) on the trial.

    objective = make_objective(cfg, dataset, echo=print, gate=interrupt_gate)
    study.optimize(objective, n_trials=5, catch=(TrialFailed,))   # returns (score, p50 us, KB) per trial
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from edgernn.errors import EdgernnError
from edgernn.tune.config import LR_RANGE, TuneConfig


class TrialFailed(EdgernnError):
    """A trial that could not be measured (export refused, target down): failed with its reason."""


def measure(cfg: TuneConfig, params: dict, run_dir: Path, dataset) -> dict:
    """Train, export one artifact, gate it and bench it. Returns the trial's numbers."""
    from edgernn.bench import bench_run
    from edgernn.export import export_run
    from edgernn.parity import check_parity
    from edgernn.train import TrainConfig, train

    tcfg = TrainConfig(dataset=cfg.dataset, cell=params["cell"], hidden=params["hidden"], layers=params["layers"],
                       lr=params["lr"], epochs=cfg.epochs, seed=cfg.seed)
    m = train(tcfg, run_dir, progress=False, dataset=dataset, force=True)
    fmt, prec = params["artifact"].split("/")
    res = [r for r in export_run(run_dir, formats=[fmt], precisions=[prec], streaming=cfg.mode == "step")
           if r.mode == cfg.mode]
    if not res or res[0].path is None:
        raise TrialFailed(f"export {fmt} {prec} {cfg.mode}: {res[0].skipped if res else 'nothing built'}")
    path = res[0].path
    par = check_parity(run_dir, artifacts=[path])
    row = par["artifacts"][0]
    b = bench_run(run_dir, target=cfg.target, host=cfg.host, artifacts=[path], runs=cfg.runs,
                  warmup=min(20, cfg.runs), include_torch=False, emulate=cfg.emulate, progress=False,
                  target_opts=cfg.target_opts or None)
    p50 = b["results"][0]["latency_us"]["p50"]
    key = "rmse" if m["task"] == "forecast" else "accuracy"
    return {"score": row[key], "score_name": key, "float_score": m["test"][key], "p50_us": p50,
            "kb": deployed_bytes(path, row["size_bytes"]) / 1024, "parity_passed": row["passed"], "artifact": str(path),
            "recipe": row.get("recipe"), "compute": row.get("compute_label"), "target": b["target"],
            "beats_baseline": m.get("beats_baseline"), "parameters": m["parameters"]}


def deployed_bytes(path: Path, file_bytes: int) -> int:
    """What the budget's size counts: the artifact file, except for C, whose header is source text: there
    the compiled code + weights (Cortex-M4 flash, from the manifest) is what a device stores."""
    from edgernn.runtimes.manifest import read_manifest

    m = read_manifest(path, verify=False)
    flash = ((m.get("c") or {}).get("targets") or {}).get("cortex-m4", {}).get("flash_bytes")
    return int(flash) if flash else int(file_bytes)


def make_objective(cfg: TuneConfig, dataset, echo, gate):
    def objective(trial):
        params = {"cell": trial.suggest_categorical("cell", list(cfg.cells)),
                  "hidden": trial.suggest_categorical("hidden", list(cfg.hidden)),
                  "layers": trial.suggest_categorical("layers", list(cfg.layers)),
                  "lr": trial.suggest_float("lr", *LR_RANGE, log=True),
                  "artifact": trial.suggest_categorical("artifact", cfg.artifact_choices())}
        run_dir = cfg.out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        label = (f"trial {trial.number}: {params['cell']} h{params['hidden']} x{params['layers']} "
                 f"lr {params['lr']:.2g} {params['artifact']}")
        t0 = time.perf_counter()
        try:
            with gate.open():  # Ctrl-C cuts the measurement (optuna marks the trial failed), never a DB write
                r = measure(cfg, params, run_dir, dataset)
        except EdgernnError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            trial.set_user_attr("fail_reason", reason)
            echo(f"{label}: FAILED: {reason}")
            raise TrialFailed(reason) from exc
        over = [r["p50_us"] - cfg.max_latency_us if cfg.max_latency_us else 0.0,
                r["kb"] - cfg.max_kb if cfg.max_kb else 0.0,
                0.0 if r["parity_passed"] else 1.0]
        for k, v in r.items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("constraints", over)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
        feasible = all(v <= 0 for v in over)
        echo(f"{label}: {r['score_name']} {r['score']:.4f}, p50 {r['p50_us']:.1f} us, {r['kb']:.1f} KB, parity "
             f"{'pass' if r['parity_passed'] else 'FAIL'}{'' if feasible else ' (outside the budget)'} "
             f"[{time.perf_counter() - t0:.0f} s]")
        return r["score"], r["p50_us"], r["kb"]

    return objective
