"""
Where a tune study lives: the Optuna storage (SQLite file by default, PostgreSQL for many workers), opened
with worker heartbeats (a killed worker's trial is failed and retried), and the study in it, refusing a
worker whose settings differ from the study's.

    storage = open_storage("postgresql://me:pw@db:5432/tune", heartbeat_s=30)   # ConfigError if unreachable
    study = open_study(cfg, task="classify")                                      # created or continued
    shown_url("postgresql://me:pw@db/tune")                                       # "postgresql://me:***@db/tune"
"""

from __future__ import annotations

import time

from edgernn.errors import ConfigError, require
from edgernn.tune.config import TuneConfig


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
