"""A study: its settings, its storage (shared by every worker), its pruner and its trial budget.

The study lives in a storage: a SQLite file in the study folder by default, so rerunning the same command resumes
it, or any SQLAlchemy URL (`--storage postgresql+psycopg2://...`) so several workers share one study.
"""

from __future__ import annotations

import os
import random
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from competition.rules.errors import ConfigError

PRUNERS = ("median", "hyperband", "none")
DEMO_PRUNER_STARTUP_TRIALS = 1  # a demo study is too short to wait for the median of several trials
# Failures a study records and continues past; any other exception stops the study (it is likely a bug).
CONTINUABLE_FAILURES = ("oom", "nan_loss")
HEARTBEAT_INTERVAL_S = 60  # a killed worker's RUNNING trial is marked FAIL after the grace period
HEARTBEAT_GRACE_S = 240


@dataclass
class TuneSettings:
    """Everything one tuning worker needs; saved to study.json."""

    track: str
    preset: str
    data_dir: Path
    out_dir: Path
    n_trials: int
    space_path: Path
    config_path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    storage: str | None = None  # None: SQLite file in the study folder
    study_name: str | None = None
    pruner: str = "median"
    pruner_startup_trials: int = 5
    seed: int = 42
    demo: bool = False
    keep_checkpoints: Literal["best", "all"] = "best"

    @property
    def name(self) -> str:
        """The study name (also its folder name)."""
        return self.study_name or f"{self.track}-{self.preset}"

    @property
    def study_dir(self) -> Path:
        """Where this study's outputs and trial runs go."""
        return self.out_dir / self.name

    @property
    def storage_url(self) -> str:
        """The SQLAlchemy URL of the study storage."""
        return self.storage or f"sqlite:///{(self.study_dir / 'study.db').resolve()}"


def make_pruner(name: str, startup_trials: int) -> optuna.pruners.BasePruner:
    """MedianPruner (prune below the median of earlier trials at the same step), Hyperband, or none."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner '{name}'; known: {list(PRUNERS)}")


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats, so trials of a killed worker end up FAIL instead of RUNNING forever."""
    from sqlalchemy.engine import make_url

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}  # several local workers may share one file
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_INTERVAL_S,
                                          grace_period=HEARTBEAT_GRACE_S)


def safe_url(url: str) -> str:
    """The storage URL with any password hidden, for logs and study.json."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_study(name: str, storage_url: str, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """Create the study, or load it when it exists (this is what makes a rerun resume).

    Workers started together may race to create the tables or the study; the loser retries and loads it.
    """
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(3):
        try:
            return optuna.create_study(study_name=name, storage=make_storage(storage_url), direction="maximize",
                                       pruner=pruner, load_if_exists=True)
        except SQLAlchemyError:
            if attempt == 2:
                raise
            time.sleep(1.0 + random.random())
    raise AssertionError("unreachable")


def sampler_seed(seed: int, existing_trials: int, shared: bool) -> int:
    """The TPE seed for this worker.

    Offsetting by the number of trials already in the study keeps a resumed study from replaying the first
    random proposals; workers sharing a study also mix in a per-worker token so they do not propose the same
    parameters in lockstep.
    """
    token = random.SystemRandom().randrange(1, 2**20) if shared else 0
    return (seed + existing_trials + 7919 * token) % 2**31


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Completed, pruned, and OOM/NaN-failed trials use up --trials; interrupted or crashed ones do not."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get("failure_kind") in CONTINUABLE_FAILURES


def finished_trials(study: optuna.Study) -> int:
    """How many trials count toward the requested number."""
    return sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))


def worker_id() -> str:
    """Host and process of this worker, recorded with each trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best completed trial, or None before the first one completes."""
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def stop_at_budget(n_trials: int) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Stop this worker once the study (all workers together) has `n_trials` counted trials."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if finished_trials(study) >= n_trials:
            study.stop()

    return callback
