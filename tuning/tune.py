"""Optuna hyperparameter search over a track's training config: `python -m tuning.tune`.

Each trial resolves the track's config (preset < --config YAML < search-space `fixed` < KEY=VALUE overrides <
sampled params), trains into its own run folder `<study dir>/trials/trial-NNNN/`, reports every dev evaluation
to the pruner and returns the best dev competition score (maximized). The study lives in a storage: a SQLite
file in the study folder by default, so rerunning the same command resumes it, or any SQLAlchemy URL
(`--storage postgresql+psycopg2://...`) so several workers share one study.

Outputs in `<out>/<study>/`: study.json (settings, seeds, provenance), search_space.yaml (resolved),
trials.csv + trials.md, best_config.yaml (the best trial's resolved config, accepted by `make baseline|llm
CONFIG=...`), history.png, importance.png, summary.md + summary.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, TypeVar

import optuna
import yaml
from optuna.trial import FrozenTrial, Trial, TrialState

from competition.cli import exit_on_bad_input
from competition.config import load_yaml, parse_overrides
from competition.data import file_sha256, split_paths
from competition.errors import ConfigError, DataError
from competition.files import atomic_path, write_text_atomic
from competition.logs import setup_logging
from competition.runs import git_revision, library_versions, start_run
from competition.tracks import TRACK_MODULES, Track, get_track

ResultT = TypeVar("ResultT")
SEARCH_SPACE_DIR = Path(__file__).with_name("search_spaces")
PRUNERS = ("median", "hyperband", "none")
# Failures a study records and continues past; any other exception stops the study (it is likely a bug).
CONTINUABLE_FAILURES = ("oom", "nan_loss")
HEARTBEAT_INTERVAL_S = 60  # a killed worker's RUNNING trial is marked FAIL after the grace period
HEARTBEAT_GRACE_S = 240
REASON_MAX_CHARS = 500


# ---------------------------------------------------------------- search space


@dataclass(frozen=True)
class ParamSpec:
    """One tuned config key: `float`/`int` in [low, high] (optionally log-scaled or stepped) or `categorical`."""

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Trial) -> Any:
        """Ask the trial for a value of this parameter."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_categorical(self.name, list(self.choices))

    def example(self) -> Any:
        """A valid value, used to check the key against the track's config before any training."""
        if self.type == "categorical":
            return self.choices[0]
        return int(self.low) if self.type == "int" else float(self.low)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of this spec."""
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        spec: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            spec["log"] = True
        if self.step is not None:
            spec["step"] = self.step
        return spec


@dataclass(frozen=True)
class SearchSpace:
    """Tuned parameters plus `fixed` config values applied to every trial."""

    params: tuple[ParamSpec, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The resolved YAML form (what the study really searched)."""
        return {"params": {p.name: p.to_dict() for p in self.params}, "fixed": dict(self.fixed)}

    def without(self, names: set[str]) -> "SearchSpace":
        """The space with `names` pinned elsewhere (e.g. by a command-line override)."""
        return SearchSpace(tuple(p for p in self.params if p.name not in names), self.fixed, self.source)


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
    try:
        return float(value)  # YAML reads `1e-5` (no dot) as a string
    except ValueError:
        raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}") from None


def parse_param(name: str, spec: Any, source: str) -> ParamSpec:
    """Validate one `name: {type: ..., ...}` entry; errors name the file and the parameter."""
    where = f"{source}: parameter '{name}'"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'type', got {spec!r}")
    kind = spec.get("type")
    allowed = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
               "categorical": {"type", "choices"}}
    if kind not in allowed:
        raise ConfigError(f"{where}: 'type' must be one of {sorted(allowed)}, got {kind!r}")
    unknown = sorted(set(spec) - allowed[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown} for type {kind}; allowed: {sorted(allowed[kind])}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: 'choices' must be a non-empty list")
        return ParamSpec(name, "categorical", choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: type {kind} needs 'low' and 'high'")
    low, high = _number(spec["low"], where, "low"), _number(spec["high"], where, "high")
    step = _number(spec["step"], where, "step") if spec.get("step") is not None else None
    log = bool(spec.get("log", False))
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0, got {low}")
    if log and step is not None:
        raise ConfigError(f"{where}: 'log' and 'step' cannot be combined")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigError(f"{where}: type int needs integer low/high, got {low}, {high}")
    return ParamSpec(name, kind, low=low, high=high, log=log, step=step)


def _section(raw: Mapping[str, Any], source: str) -> tuple[dict[str, ParamSpec], dict[str, Any]]:
    params, fixed = raw.get("params") or {}, raw.get("fixed") or {}
    if not isinstance(params, Mapping) or not isinstance(fixed, Mapping):
        raise ConfigError(f"{source}: 'params' and 'fixed' must be mappings")
    return {name: parse_param(str(name), spec, source) for name, spec in params.items()}, dict(fixed)


def load_search_space(path: Path | str, demo: bool = False, section: str | None = None) -> SearchSpace:
    """Read a search-space YAML: `params`, `fixed`, and an optional `demo` section merged over them with --demo.

    The `demo` section may replace parameter specs and add fixed values (tiny epochs, data subsets).
    With `section`, the space is the mapping under that top-level key (one file holding a space per track).
    """
    raw = load_yaml(path)
    source = str(path)
    if section is not None:
        if not isinstance(raw.get(section), Mapping):
            raise ConfigError(f"{source}: no search space for '{section}'; sections: {sorted(raw)}")
        raw, source = raw[section], f"{source} [{section}]"
    unknown = sorted(set(raw) - {"params", "fixed", "demo"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level keys {unknown}; allowed: ['demo', 'fixed', 'params']")
    params, fixed = _section(raw, source)
    if demo and raw.get("demo"):
        demo_params, demo_fixed = _section(raw["demo"], f"{source} (demo)")
        params.update(demo_params)
        fixed.update(demo_fixed)
    overlap = sorted(set(params) & set(fixed))
    if overlap:
        raise ConfigError(f"{source}: keys {overlap} are both tuned ('params') and fixed ('fixed')")
    if not params:
        raise ConfigError(f"{source}: no parameters to tune under 'params'")
    return SearchSpace(tuple(params.values()), fixed, source)


# ---------------------------------------------------------------- tracks


def config_as_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a track config (dataclass or mapping)."""
    import dataclasses

    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.loads(json.dumps(data, default=str))


# ---------------------------------------------------------------- failures


class TrialFailed(RuntimeError):
    """A trial failed in a way the study records and continues past (out of memory, NaN loss)."""


def failure_kind(err: BaseException) -> str | None:
    """`oom` or `nan` for failures worth continuing past; None for anything else."""
    text = f"{type(err).__name__}: {err}".lower()
    oom_type = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
    if (oom_type is not None and isinstance(err, oom_type)) or "out of memory" in text:
        return "oom"
    if isinstance(err, FloatingPointError) or any(word in text for word in ("nan loss", "loss is nan", "non-finite")):
        return "nan_loss"
    return None


def free_accelerator_memory() -> None:
    """Release cached GPU memory after a failed trial so the next one starts clean."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- study


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


class PruningReporter:
    """The `on_evaluate` callback: report each dev score to Optuna and stop the trial when the pruner says so."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.calls = 0
        self.track_steps: list[int] = []

    def __call__(self, step: int, dev_score: float) -> None:
        # Optuna's step is the evaluation's ordinal (0, 1, ...), not the track's epoch or global step, so trials
        # with different batch sizes still compare at the same point; the track's step is kept in user attrs.
        ordinal = self.calls
        self.calls += 1
        score = float(dev_score)
        if not math.isfinite(score):
            raise FloatingPointError(f"non-finite dev score {dev_score} at step {step} (NaN loss?)")
        self.trial.report(score, ordinal)
        self.trial.set_user_attr("evaluations", self.calls)
        self.track_steps.append(int(step))
        self.trial.set_user_attr("track_steps", self.track_steps)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_step", ordinal)
            raise optuna.TrialPruned(f"pruned at evaluation {ordinal} (track step {step}) with dev score {score:.4f}")


def trial_run_dir(study_dir: Path, number: int) -> Path:
    """`<study dir>/trials/trial-NNNN` (trial numbers are unique in a study, so no two trials share a folder)."""
    return study_dir / "trials" / f"trial-{number:04d}"


def record_failure(trial: Trial, kind: str, err: BaseException) -> str:
    """Store why a trial failed in its user attributes; return the reason."""
    reason = f"{type(err).__name__}: {err}".strip()[:REASON_MAX_CHARS]
    trial.set_user_attr("failure_kind", kind)
    trial.set_user_attr("failure_reason", reason)
    return reason


def run_guarded(trial: Trial, work: Callable[[], ResultT]) -> ResultT:
    """Run a trial's work; record why it failed. OOM/NaN become TrialFailed (the study goes on), other errors
    and Ctrl-C propagate (the study stops), pruning passes through."""
    try:
        return work()
    except optuna.TrialPruned:
        raise
    except KeyboardInterrupt as err:
        record_failure(trial, "interrupted", err)
        raise
    except Exception as err:
        kind = failure_kind(err)
        reason = record_failure(trial, kind or "error", err)
        free_accelerator_memory()
        if kind is None:
            raise
        raise TrialFailed(reason) from err


def make_objective(track: Track, settings: TuneSettings, space: SearchSpace) -> Callable[[Trial], float]:
    """The function Optuna calls per trial: sample, resolve the config, train, return the best dev score."""

    def objective(trial: Trial) -> float:
        params = {p.name: p.suggest(trial) for p in space.params}
        overrides = {**space.fixed, **settings.overrides, **params}
        run_dir = trial_run_dir(settings.study_dir, trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", worker_id())
        config = track.config(settings.preset, settings.config_path, overrides, settings.demo)
        trial.set_user_attr("config", config_as_dict(config))
        save_trial_provenance(run_dir, config, settings, trial.number, params)
        reporter = PruningReporter(trial)
        result = run_guarded(trial, lambda: track.train(config, settings.data_dir, run_dir, on_evaluate=reporter))
        score = float(result.best_dev_score)
        if not math.isfinite(score):
            reason = record_failure(trial, "nan_loss", FloatingPointError(
                f"best dev score is {score} (no finite dev evaluation: NaN loss?)"))
            raise TrialFailed(reason)
        trial.set_user_attr("best_checkpoint", str(result.best_checkpoint))
        trial.set_user_attr("evaluations", reporter.calls)
        return score

    return objective


def save_trial_provenance(run_dir: Path, config: Any, settings: TuneSettings, number: int,
                          params: dict[str, Any]) -> None:
    """config.yaml and run.json in the trial's run folder (the tracks keep them when already present)."""
    start_run(run_dir, config, split_paths(settings.data_dir).values(), settings.track,
              extra={"tuning": {"study": settings.name, "trial": number, "params": params}})


def remove_checkpoints(run_dir: Path) -> None:
    """Delete a trial's model weights (best/ and checkpoint-*), keeping its config, run.json, predictions, report."""
    if not run_dir.is_dir():
        return
    for child in run_dir.iterdir():
        if child.is_dir() and (child.name in ("best", "merged") or child.name.startswith("checkpoint")):
            shutil.rmtree(child, ignore_errors=True)


class CheckpointJanitor:
    """After each trial, keep model weights only for this worker's best trial so far (saves disk on long studies)."""

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = study_dir
        self.kept: int | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        best = _best_trial(study)
        if best is not None and best.number == trial.number:
            if self.kept is not None:
                remove_checkpoints(trial_run_dir(self.study_dir, self.kept))
            self.kept = trial.number
        else:
            remove_checkpoints(trial_run_dir(self.study_dir, trial.number))


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
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


def check_inputs(track: Track, settings: TuneSettings, space: SearchSpace) -> None:
    """Fail fast (exit 2) on missing data files or search-space keys the track's config does not know."""
    paths = split_paths(settings.data_dir)
    missing = [name for name in ("train", "dev") if name not in paths]
    if missing:
        raise DataError(f"{settings.data_dir}: missing {', '.join(f'{m}.csv' for m in missing)} needed for tuning")
    if settings.n_trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {settings.n_trials}")
    example = {**space.fixed, **settings.overrides, **{p.name: p.example() for p in space.params}}
    track.config(settings.preset, settings.config_path, example, settings.demo)  # unknown keys -> ConfigError


def run_study(track: Track, settings: TuneSettings) -> optuna.Study:
    """Run (or resume) the study until it holds `n_trials` counted trials, then write its outputs."""
    space = load_search_space(settings.space_path, demo=settings.demo)
    pinned = set(settings.overrides) & {p.name for p in space.params}
    if pinned:
        print(f"not tuning {sorted(pinned)}: fixed by command-line overrides")
        space = space.without(pinned)
    if settings.config_path is None:
        settings.config_path = track.settings.shipped_yaml(settings.preset)
    check_inputs(track, settings, space)
    settings.study_dir.mkdir(parents=True, exist_ok=True)
    pruner = make_pruner(settings.pruner, settings.pruner_startup_trials)
    study = open_study(settings.name, settings.storage_url, pruner)
    seed = sampler_seed(settings.seed, len(study.get_trials(deepcopy=False)), shared=settings.storage is not None)
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    write_study_info(settings, space, seed)
    remaining = settings.n_trials - finished_trials(study)
    print(f"study '{settings.name}' ({safe_url(settings.storage_url)}): {finished_trials(study)} of "
          f"{settings.n_trials} trials done, running up to {max(remaining, 0)} here")
    callbacks = [stop_at_budget(settings.n_trials)]
    if settings.keep_checkpoints == "best":
        callbacks.append(CheckpointJanitor(settings.study_dir))
    try:
        if remaining > 0:
            study.optimize(make_objective(track, settings, space), n_trials=remaining, catch=(TrialFailed,),
                           callbacks=callbacks, gc_after_trial=True)
    finally:
        write_study_outputs(study, settings)
    return study


# ---------------------------------------------------------------- outputs


def write_study_info(settings: TuneSettings, space: SearchSpace, seed: int) -> None:
    """study.json and the resolved search_space.yaml: what this worker searched, with which seeds and data."""
    data_files = split_paths(settings.data_dir)
    info = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "study": settings.name,
        "track": settings.track,
        "preset": settings.preset,
        "storage": safe_url(settings.storage_url),
        "n_trials": settings.n_trials,
        "seed": settings.seed,
        "sampler": {"name": "TPESampler", "seed": seed},
        "pruner": {"name": settings.pruner, "startup_trials": settings.pruner_startup_trials},
        "demo": settings.demo,
        "config_path": str(settings.config_path) if settings.config_path else None,
        "overrides": settings.overrides,
        "search_space": space.source,
        "data": {str(p): file_sha256(p) for p in data_files.values()},
        "git_revision": git_revision(),
        "versions": library_versions(),
        "worker": worker_id(),
    }
    write_text_atomic(settings.study_dir / "study.json", json.dumps(info, ensure_ascii=False, indent=2))
    header = f"# resolved search space of study '{settings.name}' (from {space.source}, demo={settings.demo})\n"
    write_text_atomic(settings.study_dir / "search_space.yaml",
                      header + yaml.safe_dump(space.to_dict(), allow_unicode=True, sort_keys=False))


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, state, score, params, run dir, evaluations, failure reason, worker, duration."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        ended = t.datetime_complete and t.datetime_start
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if ended else None
        last_step = t.last_step
        rows.append({
            "number": t.number,
            "state": t.state.name,
            "score": t.value if t.state == TrialState.COMPLETE else None,
            "last_intermediate": t.intermediate_values.get(last_step) if last_step is not None else None,
            **{f"param_{k}": v for k, v in t.params.items()},
            "evaluations": t.user_attrs.get("evaluations", len(t.intermediate_values)),
            "pruned_at_step": t.user_attrs.get("pruned_at_step"),
            "failure_kind": t.user_attrs.get("failure_kind") or ("stale" if t.state == TrialState.FAIL else None),
            "failure_reason": t.user_attrs.get("failure_reason") or t.system_attrs.get("fail_reason"),
            "run_dir": t.user_attrs.get("run_dir"),
            "worker": t.user_attrs.get("worker"),
            "duration_s": round(duration, 1) if duration is not None else None,
        })
    return rows


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no trials)\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_trials_table(study: optuna.Study, study_dir: Path) -> list[dict[str, Any]]:
    """trials.csv and trials.md."""
    import pandas as pd

    rows = trial_rows(study)
    with atomic_path(study_dir / "trials.csv") as temp:
        pd.DataFrame(rows).to_csv(temp, index=False)
    write_text_atomic(study_dir / "trials.md", f"# Trials of study '{study.study_name}'\n\n" + _markdown_table(rows))
    return rows


def plot_history(study: optuna.Study, path: Path) -> Path | None:
    """Dev score per trial (completed dots, pruned/failed at their last report) and the best-so-far line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.last_step is not None]
    if not done and not pruned:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if done:
        ax.scatter([t.number for t in done], [t.value for t in done], label="complete", color="tab:blue")
        best, line = -math.inf, []
        for t in done:
            best = max(best, t.value)
            line.append(best)
        ax.step([t.number for t in done], line, where="post", color="tab:red", label="best so far")
    if pruned:
        ax.scatter([t.number for t in pruned], [t.intermediate_values[t.last_step] for t in pruned], marker="x",
                   color="gray", label="pruned (last report)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("dev score (ROUGE mean x100)")
    ax.set_title(f"Optimization history: {study.study_name}")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_importance(study: optuna.Study, path: Path) -> tuple[Path | None, str]:
    """Parameter importance (fANOVA) bar chart; returns (path or None, a note on why it was skipped)."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return None, f"parameter importance needs at least 2 completed trials, have {len(complete)}"
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as err:
        return None, f"parameter importance unavailable: {err}"
    if not importances:
        return None, "parameter importance unavailable: no parameter varied across completed trials"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names], color="tab:green")
    ax.set_xlabel("importance (fANOVA, normalized)")
    ax.set_title(f"Parameter importance: {study.study_name}")
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=110)
    plt.close(fig)
    return path, ""


def train_command(settings: TuneSettings, config_path: Path) -> str:
    """The command that trains a config file (what the best config is for)."""
    return f"make {settings.track} MODEL={settings.preset} DATA={settings.data_dir} CONFIG={config_path}"


def write_best_config(best: FrozenTrial, settings: TuneSettings, path: Path, usage: str) -> Path:
    """The best trial's resolved track config as YAML, with the command that uses it."""
    header = (f"# best trial {best.number} of study '{settings.name}': dev score {best.value:.4f}\n"
              f"# run dir: {best.user_attrs.get('run_dir')}\n"
              f"# use it: {usage}\n")
    config = best.user_attrs["config"]
    return write_text_atomic(path, header + yaml.safe_dump(config, allow_unicode=True, sort_keys=False))


def write_study_outputs(study: optuna.Study, settings: TuneSettings, usage: str | None = None) -> dict[str, Any]:
    """Trials table, plots, best config and summary (md + json); safe to call with zero finished trials.

    `usage` is the command line shown for the best config (default: train it with the track's make target).
    """
    study_dir = settings.study_dir
    usage = usage or train_command(settings, study_dir / "best_config.yaml")
    rows = write_trials_table(study, study_dir)
    history = plot_history(study, study_dir / "history.png")
    importance, importance_note = plot_importance(study, study_dir / "importance.png")
    best = _best_trial(study)
    best_config = write_best_config(best, settings, study_dir / "best_config.yaml", usage) if best else None
    states = {s.name: sum(r["state"] == s.name for r in rows) for s in TrialState}
    summary = {
        "study": settings.name,
        "storage": safe_url(settings.storage_url),
        "n_trials_requested": settings.n_trials,
        "n_trials_counted": finished_trials(study),
        "states": {k: v for k, v in states.items() if v},
        "best": None if best is None else {"number": best.number, "score": best.value, "params": best.params,
                                           "run_dir": best.user_attrs.get("run_dir")},
        "best_config": str(best_config) if best_config else None,
        "usage": usage,
        "plots": {"history": str(history) if history else None, "importance": str(importance) if importance else None},
        "importance_note": importance_note,
    }
    write_text_atomic(study_dir / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2))
    write_text_atomic(study_dir / "summary.md", summary_markdown(summary, settings))
    return summary


def summary_markdown(summary: dict[str, Any], settings: TuneSettings) -> str:
    """Human-readable study summary."""
    lines = [f"# Tuning study '{summary['study']}'", "",
             f"- track: {settings.track}, preset: {settings.preset}, data: {settings.data_dir}",
             f"- storage: {summary['storage']}",
             f"- trials: {summary['n_trials_counted']} of {summary['n_trials_requested']} counted; states: "
             + ", ".join(f"{k} {v}" for k, v in summary["states"].items())]
    best = summary["best"]
    if best:
        lines += ["", f"## Best: trial {best['number']}, dev score {best['score']:.4f}", "",
                  *[f"- {k}: {v}" for k, v in best["params"].items()], "",
                  f"Best config: `{summary['best_config']}`; use it: `{summary['usage']}`"]
    else:
        lines += ["", "No completed trial yet."]
    lines += ["", "Trials: `trials.csv` / `trials.md`.", ""]
    if summary["plots"]["history"]:
        lines.append("![history](history.png)")
    if summary["plots"]["importance"]:
        lines.append("![importance](importance.png)")
    elif summary["importance_note"]:
        lines.append(f"Parameter importance: {summary['importance_note']}.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tuning.tune", description=__doc__.split("\n")[0])
    parser.add_argument("--track", required=True, choices=sorted(TRACK_MODULES))
    parser.add_argument("--model", required=True, help="preset name, e.g. kobart, tiny-bart, llama3.2-ko-3b")
    parser.add_argument("--data", required=True, help="folder with train.csv and dev.csv")
    parser.add_argument("--trials", type=int, required=True, help="total trials of the study (all workers)")
    parser.add_argument("--out", default="runs/tune", help="studies go to OUT/STUDY/")
    parser.add_argument("--config", help="track config YAML used as the base of every trial")
    parser.add_argument("--space", help="search-space YAML (default: tuning/search_spaces/TRACK.yaml)")
    parser.add_argument("--storage", help="SQLAlchemy URL to share a study between workers "
                                          "(default: sqlite file OUT/STUDY/study.db)")
    parser.add_argument("--study", help="study name (default: TRACK-MODEL)")
    parser.add_argument("--pruner", default="median", choices=PRUNERS)
    parser.add_argument("--pruner-startup-trials", type=int, default=None,
                        help="median pruner: trials never pruned at the start (default 5, 1 with --demo)")
    parser.add_argument("--seed", type=int, default=42, help="sampler seed (training seed comes from the config)")
    parser.add_argument("--keep-checkpoints", default="best", choices=("best", "all"),
                        help="keep model weights of every trial, or only of the best one")
    parser.add_argument("--demo", action="store_true", help="tiny settings from the search space's demo section")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every trial")
    return parser.parse_args(argv)


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    settings = TuneSettings(
        track=args.track, preset=args.model, data_dir=Path(args.data), out_dir=Path(args.out),
        n_trials=args.trials, space_path=Path(args.space) if args.space else SEARCH_SPACE_DIR / f"{args.track}.yaml",
        config_path=Path(args.config) if args.config else None, overrides=parse_overrides(args.overrides),
        storage=args.storage, study_name=args.study, pruner=args.pruner,
        pruner_startup_trials=args.pruner_startup_trials if args.pruner_startup_trials is not None
        else (1 if args.demo else 5),
        seed=args.seed, demo=args.demo, keep_checkpoints=args.keep_checkpoints)
    if settings.config_path is not None and not settings.config_path.is_file():
        raise ConfigError(f"{settings.config_path}: config file not found")
    optuna.logging.set_verbosity(optuna.logging.INFO)
    study = run_study(get_track(args.track), settings)
    summary = json.loads((settings.study_dir / "summary.json").read_text(encoding="utf-8"))
    best = summary["best"]
    print(f"study folder: {settings.study_dir}")
    if best:
        print(f"best trial {best['number']}: dev score {best['score']:.4f}; config {summary['best_config']}")
    return 0 if study.trials else 1


if __name__ == "__main__":
    sys.exit(main())
