"""Optuna hyperparameter search over a track's training config: `python -m tuning.tune`.

Each trial resolves the track's config the way the track's own CLI does (preset < --config YAML < KEY=VALUE
overrides), its overrides being the search space's `fixed` values, then the command line's KEY=VALUE, then the
sampled params; it trains into its own run folder `<study dir>/trials/trial-NNNN/`, reports every dev evaluation
to the pruner and returns the best dev competition score (maximized). Rerunning the same command resumes the
study (see tuning/study.py for shared storages); tuning/outputs.py lists what the study folder holds, among it
best_config.yaml, accepted by `make baseline|llm CONFIG=...`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import Trial

from competition.harness.cli import exit_on_bad_input
from competition.harness.config import parse_overrides
from competition.harness.logs import setup_logging
from competition.harness.memory import prefer_expandable_segments
from competition.harness.runs import start_run
from competition.harness.tracks import TRACK_MODULES, Track, get_track
from competition.modeling.tracking import require_reporter
from competition.rules.data import Splits, load_splits
from competition.rules.errors import ConfigError
from tuning.outputs import write_study_info, write_study_outputs
from tuning.search_space import SEARCH_SPACE_DIR, SearchSpace, load_search_space
from tuning.study import (
    DEMO_PRUNER_STARTUP_TRIALS,
    PRUNERS,
    TuneSettings,
    finished_trials,
    make_pruner,
    open_study,
    safe_url,
    sampler_seed,
    stop_at_budget,
    worker_id,
)
from tuning.trials import (
    CheckpointJanitor,
    PruningReporter,
    TrialFailed,
    config_as_dict,
    record_failure,
    run_guarded,
    trial_run_dir,
)


def make_objective(track: Track, settings: TuneSettings, space: SearchSpace,
                   splits: Splits) -> Callable[[Trial], float]:
    """The function Optuna calls per trial: sample, resolve the config, train, return the best dev score."""

    def objective(trial: Trial) -> float:
        params = {p.name: p.suggest(trial) for p in space.params}
        overrides = space.overrides(settings.overrides, params)
        run_dir = trial_run_dir(settings.study_dir, trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", worker_id())
        config = track.config(settings.preset, settings.config_path, overrides, settings.demo)
        trial.set_user_attr("config", config_as_dict(config))
        save_trial_provenance(run_dir, config, settings, splits, trial.number, params)
        reporter = PruningReporter(trial)
        result = run_guarded(trial, lambda: track.train(config, splits, run_dir, on_evaluate=reporter))
        score = float(result.best_dev_score)
        if not math.isfinite(score):
            reason = record_failure(trial, "nan_loss", FloatingPointError(
                f"best dev score is {score} (no finite dev evaluation: NaN loss?)"))
            raise TrialFailed(reason)
        trial.set_user_attr("best_checkpoint", str(result.best_checkpoint))
        trial.set_user_attr("evaluations", reporter.calls)
        return score

    return objective


def save_trial_provenance(run_dir: Path, config: Any, settings: TuneSettings, splits: Splits, number: int,
                          params: dict[str, Any]) -> None:
    """config.yaml and run.json in the trial's run folder (the tracks keep them when already present)."""
    start_run(run_dir, config, splits.paths.values(), settings.track,
              extra={"tuning": {"study": settings.name, "trial": number, "params": params}})


def check_inputs(track: Track, settings: TuneSettings, space: SearchSpace) -> Splits:
    """Fail fast (exit 2) on bad data files or search-space keys the track's config does not know; the splits, read
    once for every trial."""
    splits = load_splits(settings.data_dir)
    if settings.n_trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {settings.n_trials}")
    example = space.overrides(settings.overrides, space.example_params())
    config = track.config(settings.preset, settings.config_path, example, settings.demo)  # unknown keys -> ConfigError
    require_reporter(getattr(config, "report_to", "none"))  # a missing wandb/mlflow fails before the first trial
    return splits


def run_study(track: Track, settings: TuneSettings) -> optuna.Study:
    """Run (or resume) the study until it holds `n_trials` counted trials, then write its outputs."""
    space = load_search_space(settings.space_path, demo=settings.demo)
    pinned = set(settings.overrides) & {p.name for p in space.params}
    if pinned:
        print(f"not tuning {sorted(pinned)}: fixed by command-line overrides")
        space = space.without(pinned)
    if settings.config_path is None:  # the YAML the track reads without --config, named in study.json
        settings.config_path = track.settings.shipped_yaml(settings.preset)
    splits = check_inputs(track, settings, space)
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
            study.optimize(make_objective(track, settings, space, splits), n_trials=remaining, catch=(TrialFailed,),
                           callbacks=callbacks, gc_after_trial=True)
    finally:
        write_study_outputs(study, settings)
    return study


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The CLI's options; defaults not given here are TuneSettings' own."""
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
    parser.add_argument("--pruner", default=TuneSettings.pruner, choices=PRUNERS)
    parser.add_argument("--pruner-startup-trials", type=int, default=None,
                        help=f"median pruner: trials never pruned at the start (default "
                             f"{TuneSettings.pruner_startup_trials}, {DEMO_PRUNER_STARTUP_TRIALS} with --demo)")
    parser.add_argument("--seed", type=int, default=TuneSettings.seed,
                        help="sampler seed (training seed comes from the config)")
    parser.add_argument("--keep-checkpoints", default=TuneSettings.keep_checkpoints, choices=("best", "all"),
                        help="keep model weights of every trial, or only of the best one")
    parser.add_argument("--demo", action="store_true", help="tiny settings from the search space's demo section")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every trial")
    return parser.parse_args(argv)


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    prefer_expandable_segments()
    settings = TuneSettings(
        track=args.track, preset=args.model, data_dir=Path(args.data), out_dir=Path(args.out),
        n_trials=args.trials, space_path=Path(args.space) if args.space else SEARCH_SPACE_DIR / f"{args.track}.yaml",
        config_path=Path(args.config) if args.config else None, overrides=parse_overrides(args.overrides),
        storage=args.storage, study_name=args.study, pruner=args.pruner,
        pruner_startup_trials=args.pruner_startup_trials if args.pruner_startup_trials is not None
        else (DEMO_PRUNER_STARTUP_TRIALS if args.demo else TuneSettings.pruner_startup_trials),
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
