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
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgernn.errors import ConfigError, EdgernnError, require
from edgernn.interrupts import InterruptGate

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


def storage_url(cfg: TuneConfig) -> str:
    return cfg.storage or f"sqlite:///{(cfg.out / 'study.db').resolve()}"


def shown_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            cred = cred.split(":", 1)[0] + ":***"
        return f"{scheme}://{cred}@{host}"
    return url


def open_storage(url: str, heartbeat_s: int):
    """An Optuna RDB storage with heartbeats, or a ConfigError that says why it cannot be reached."""
    optuna = require("optuna", "tune")
    import warnings

    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    # heartbeats, the retry callback and constraints_func are labelled experimental by Optuna: say it once in
    # the docs, not on every run
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    engine_kwargs = {}
    given = url
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # the driver edgernn[tune] installs (psycopg 3)
    if url.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}}
    elif not url.startswith("sqlite"):
        raise ConfigError(f"--storage {shown_url(given)}: use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB")
    try:
        for attempt in range(5):
            try:
                return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                                  grace_period=2 * heartbeat_s,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
            except Exception as exc:
                # workers started together on an empty database race to create Optuna's tables (PostgreSQL:
                # "duplicate key value violates unique constraint pg_type_typname_nsp_index"): the loser retries
                text = str(exc)
                if attempt == 4 or not ("duplicate key" in text or "already exists" in text):
                    raise
                time.sleep(0.5 + attempt)
    except ImportError as exc:
        raise ConfigError(f"--storage {shown_url(given)} needs a database driver ({exc.__cause__ or exc}); "
                          "install it with: pip install 'edgernn[tune]'") from exc
    except Exception as exc:  # sqlalchemy OperationalError/ArgumentError: unreachable, bad URL, auth
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"cannot open the study storage {shown_url(given)}: {reason}") from exc
    finally:
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials: our own one line


def constraints(trial) -> list[float]:
    """Optuna constraints (<= 0 is feasible): latency and size over budget, parity gate failed."""
    return list(trial.user_attrs.get("constraints", [1.0]))


def open_study(cfg: TuneConfig, task: str):
    optuna = require("optuna", "tune")
    storage = open_storage(storage_url(cfg), cfg.heartbeat_s)
    direction = "minimize" if task == "forecast" else "maximize"
    sampler = optuna.samplers.TPESampler(constraints_func=constraints, n_startup_trials=8)
    study = optuna.create_study(study_name=cfg.study, storage=storage, sampler=sampler, load_if_exists=True,
                                directions=[direction, "minimize", "minimize"])
    want = cfg.identity(task)
    have = study.user_attrs.get("identity")
    if have is None:
        study.set_user_attr("identity", want)
    elif have != want:
        diff = [k for k in want if have.get(k) != want.get(k)]
        raise ConfigError(f"study {cfg.study!r} in {shown_url(storage_url(cfg))} was started with other settings "
                          f"({', '.join(f'{k}: {have.get(k)!r}' for k in diff)}); use the same options, "
                          "or another --study / --storage")
    return study


class TrialFailed(EdgernnError):
    """A trial that could not be measured (export refused, target down): failed with its reason."""


def _measure(cfg: TuneConfig, params: dict, run_dir: Path, dataset) -> dict:
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


def _objective(cfg: TuneConfig, dataset, echo, gate):
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
                r = _measure(cfg, params, run_dir, dataset)
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


# ----------------------------------------------------------------------------- results


def trial_rows(study) -> list[dict]:
    """Every trial as a flat dict (finished or not)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        u = t.user_attrs
        # params["artifact"] is the format/precision choice, user_attrs["artifact"] the file it produced
        rows.append({"number": t.number, "state": t.state.name, **t.params, "artifact_choice": t.params.get("artifact"),
                     **{k: u.get(k) for k in ("score", "score_name", "float_score", "p50_us", "kb", "parity_passed",
                                              "recipe", "compute", "artifact", "run_dir", "host", "target",
                                              "constraints", "fail_reason", "seconds", "beats_baseline")},
                     "feasible": t.state.name == "COMPLETE" and all(v <= 0 for v in u.get("constraints", [1]))})
    return rows


def pareto(rows: list[dict], maximize: bool) -> list[dict]:
    """Feasible complete trials no other feasible trial beats on score, latency and size at once."""
    pts = [r for r in rows if r["feasible"]]

    def better_or_equal(a, b):
        s = a["score"] >= b["score"] if maximize else a["score"] <= b["score"]
        return s and a["p50_us"] <= b["p50_us"] and a["kb"] <= b["kb"]

    front = [r for r in pts if not any(better_or_equal(o, r) and (o["score"], o["p50_us"], o["kb"]) !=
                                       (r["score"], r["p50_us"], r["kb"]) for o in pts)]
    return sorted(front, key=lambda r: r["p50_us"])


def recommend(rows: list[dict], maximize: bool) -> dict | None:
    """The feasible trial with the best score; ties go to the faster, then the smaller artifact."""
    pts = [r for r in rows if r["feasible"]]
    if not pts:
        return None
    return min(pts, key=lambda r: (-r["score"] if maximize else r["score"], r["p50_us"], r["kb"]))


def closest(rows: list[dict], cfg: TuneConfig) -> dict | None:
    """The complete trial nearest the budget (sum of relative overshoots; a failed gate counts 1)."""
    done = [r for r in rows if r["state"] == "COMPLETE"]
    if not done:
        return None

    def miss(r):
        lat = max(0.0, r["p50_us"] / cfg.max_latency_us - 1) if cfg.max_latency_us else 0.0
        kb = max(0.0, r["kb"] / cfg.max_kb - 1) if cfg.max_kb else 0.0
        return lat + kb + (0.0 if r["parity_passed"] else 1.0)

    return min(done, key=miss)


def _budget_text(cfg: TuneConfig) -> str:
    parts = [f"p50 <= {cfg.max_latency_us:g} us" if cfg.max_latency_us else "",
             f"size <= {cfg.max_kb:g} KB" if cfg.max_kb else "", "parity gate passed"]
    return ", ".join(p for p in parts if p)


def describe(r: dict) -> str:
    return (f"trial {r['number']}: {r['cell']} h{r['hidden']} x{r['layers']} {r['artifact_choice']} "
            f"({r['score_name']} {r['score']:.4f}, p50 {r['p50_us']:.1f} us, {r['kb']:.1f} KB)")


def summarize(study, cfg: TuneConfig, task: str) -> dict:
    rows = trial_rows(study)
    maximize = task != "forecast"
    states = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    front = pareto(rows, maximize)
    best = recommend(rows, maximize)
    near = None if best else closest(rows, cfg)
    return {"study": cfg.study, "storage": shown_url(storage_url(cfg)), "identity": study.user_attrs.get("identity"),
            "budget": _budget_text(cfg), "states": states, "trials": rows, "pareto": [r["number"] for r in front],
            "recommended": best, "closest": near,
            "hosts": sorted({r["host"] for r in rows if r.get("host")})}


def format_table(summary: dict) -> str:
    front = [r for r in summary["trials"] if r["number"] in summary["pareto"]]
    feasible = sum(1 for r in summary["trials"] if r["feasible"])
    lines = [f"Pareto front: {len(front)} of the {feasible} trials that meet {summary['budget']} (trials by state: "
             + ", ".join(f"{k.lower()} {v}" for k, v in sorted(summary["states"].items())) + ")",
             "| trial | cell | hidden | layers | lr | artifact | recipe | score | p50 us | KB | host:run dir |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in front:
        lines.append(f"| {r['number']} | {r['cell']} | {r['hidden']} | {r['layers']} | {r['lr']:.2g} | "
                     f"{r['artifact_choice']} | {r['recipe'] or '-'} | {r['score']:.4f} | {r['p50_us']:.1f} | "
                     f"{r['kb']:.1f} | {r['host']}:{r['run_dir']} |")
    if not front:
        lines.append("| - | no trial meets the budget yet | | | | | | | | | |")
    best, near = summary["recommended"], summary["closest"]
    if best:
        lines.append(f"\nRecommended: {describe(best)}\n  artifact {best['artifact']} (on {best['host']})")
    elif near:
        lines.append(f"\nNo trial meets {summary['budget']}. Closest: {describe(near)}"
                     + ("" if near["parity_passed"] else ", parity gate FAILED")
                     + ". Relax the budget or run more trials.")
    else:
        lines.append("\nNo trial has finished yet.")
    failed = [r for r in summary["trials"] if r["state"] == "FAIL" and r.get("fail_reason")]
    for r in failed[-5:]:
        lines.append(f"failed trial {r['number']}: {r['fail_reason']}")
    return "\n".join(lines)


def plot(summary: dict, cfg: TuneConfig, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    done = [r for r in summary["trials"] if r["state"] == "COMPLETE"]
    if not done:
        return None
    front = [r for r in done if r["number"] in summary["pareto"]]
    fig, ax = plt.subplots(figsize=(8, 5))
    kb = [r["kb"] for r in done]
    scale = 400 / max(max(kb), 1e-9)
    for group, color, label in ((lambda r: not r["feasible"], "#bbbbbb", "outside budget / parity failed"),
                                (lambda r: r["feasible"] and r["number"] not in summary["pareto"], "#4c72b0",
                                 "meets budget"),
                                (lambda r: r["number"] in summary["pareto"], "#dd5533", "Pareto front")):
        pts = [r for r in done if group(r)]
        if pts:
            ax.scatter([r["p50_us"] for r in pts], [r["score"] for r in pts], s=[20 + r["kb"] * scale for r in pts],
                       c=color, alpha=0.8, edgecolors="black", linewidths=0.5, label=label)
    labels = []
    for r in front:
        recipe = f" ({r['recipe']})" if r["artifact_choice"].endswith("int8") and r.get("recipe") else ""
        text = f"#{r['number']} {r['cell']} h{r['hidden']}x{r['layers']} {r['artifact_choice']}{recipe}"
        labels.append({"x": r["p50_us"], "y": r["score"], "area": 20 + r["kb"] * scale, "color": "black",
                       "label": text})
    if cfg.max_latency_us:
        ax.axvline(cfg.max_latency_us, color="#dd5533", linestyle="--", linewidth=1, label="latency budget")
    from edgernn.report import log_axis, place_labels

    log_axis(ax, [r["p50_us"] for r in done])
    ax.set_xlabel(f"p50 latency per {'window' if cfg.mode == 'sequence' else 'frame'} on "
                  f"{done[0].get('target') or cfg.target} (us, log scale)")
    ax.set_ylabel(f"{done[0]['score_name']} of the exported artifact (parity)")
    ax.set_title(f"edgernn tune: {cfg.dataset}, {len(done)} trials (marker area = artifact size)")
    ax.grid(alpha=0.3)
    legend = ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.canvas.draw()  # labels are placed in screen space, clear of each other, the markers and the legend
    place_labels(ax, labels, avoid=[legend])
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(summary: dict, cfg: TuneConfig) -> dict:
    from edgernn.runtimes.files import atomic_write_json, atomic_write_text

    paths = {"json": cfg.out / "tune.json", "markdown": cfg.out / "tune.md"}
    atomic_write_json(paths["json"], summary)
    png = plot(summary, cfg, cfg.out / "pareto.png")
    md = f"# edgernn tune: {cfg.dataset} on {cfg.target}\n\n{format_table(summary)}\n"
    if png:
        paths["plot"] = png
        md += "\n![Pareto front](pareto.png)\n"
    atomic_write_text(paths["markdown"], md)
    return {k: str(v) for k, v in paths.items()}


# ----------------------------------------------------------------------------- entry point


@dataclass
class TuneResult:
    summary: dict
    ran: int = 0  # trials this command finished (complete or failed)
    paths: dict = field(default_factory=dict)


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
         f"on {cfg.target}{' (emulated)' if cfg.emulate else ''}, budget: {_budget_text(cfg)}")
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
                study.optimize(_objective(cfg, dataset, echo, gate), n_trials=cfg.trials, catch=(TrialFailed,),
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


class TuneStopped(EdgernnError):
    def __init__(self, message: str, result: TuneResult):
        super().__init__(message)
        self.result = result
