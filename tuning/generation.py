"""Generation-only tuning of a trained run: `python -m tuning.generation --run RUN --data D --trials N`.

Reuses RUN's best checkpoint (no retraining). Each trial sets generation settings (beams, length penalty,
no-repeat n-gram size, max new tokens, repetition penalty: see tuning/search_spaces/generation.yaml),
predicts dev with the track's `predict` and scores it with the competition metric. Nothing is cached between
trials: every trial generates from the checkpoint with its own settings. The first trial replays the run's own
settings, so the best is never worse than what the run had.

Outputs in RUN/tune_generation/ (same layout as tuning.tune): study.db, trials.csv/.md with each trial's
dev predictions under trials/, best_config.yaml (RUN's config with the best generation settings), plots, summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import Trial

from competition.harness.cli import exit_on_bad_input
from competition.harness.config import CONFIG_FILE, load_yaml, parse_overrides
from competition.harness.logs import setup_logging
from competition.harness.runs import BEST_DIR, RUN_INFO_FILE, load_run_info
from competition.harness.tracks import Track, get_track
from competition.rules.data import load_splits
from competition.rules.errors import ConfigError, DataError
from competition.rules.metric import compute_rouge
from competition.rules.predictions import PredictionMeta, write_predictions
from tuning.outputs import write_study_info, write_study_outputs
from tuning.search_space import SEARCH_SPACE_DIR, SearchSpace, load_search_space
from tuning.study import (
    TuneSettings,
    finished_trials,
    make_pruner,
    open_study,
    safe_url,
    sampler_seed,
    stop_at_budget,
    worker_id,
)
from tuning.trials import TrialFailed, config_as_dict, run_guarded, trial_run_dir

STUDY_NAME = "tune_generation"


def run_track(run_dir: Path) -> str:
    """The track of a run folder, from its run.json (`track`), else from its folder name `<track>-<preset>-...`."""
    if (run_dir / RUN_INFO_FILE).is_file():
        track = load_run_info(run_dir).get("track")
        if track in ("baseline", "llm"):
            return track
    prefix = run_dir.name.split("-", 1)[0]
    if prefix in ("baseline", "llm"):
        return prefix
    raise DataError(f"{run_dir}: cannot tell the track (no 'track' in {RUN_INFO_FILE}, folder not named "
                    f"baseline-* or llm-*)")


def check_run(run_dir: Path) -> tuple[Path, str]:
    """The run's config.yaml and preset; DataError when the run has no config or no best checkpoint."""
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise DataError(f"{run_dir}: no config.yaml (expected a run folder written by a track)")
    if not (run_dir / BEST_DIR).is_dir():
        raise DataError(f"{run_dir}: no {BEST_DIR}/ checkpoint (training unfinished, or weights removed by the tuner)")
    preset = load_yaml(config_path).get("preset")
    if not preset:
        raise DataError(f"{config_path}: no 'preset' key")
    return config_path, str(preset)


def enqueue_run_settings(study: optuna.Study, space: SearchSpace, config: dict[str, Any]) -> None:
    """Make the first trial of a fresh study replay the run's own generation settings (where the space allows)."""
    if study.get_trials(deepcopy=False):
        return
    current = {}
    for spec in space.params:
        value = config.get(spec.name)
        inside = value in spec.choices if spec.type == "categorical" else (
            isinstance(value, (int, float)) and spec.low <= value <= spec.high)
        if inside:
            current[spec.name] = value
    if current:
        study.enqueue_trial(current, user_attrs={"replays_run_settings": True})


def make_generation_objective(track: Track, settings: TuneSettings, space: SearchSpace, checkpoint: Path,
                              dev, run_dir: Path):
    """Per trial: resolve the run's config with sampled generation settings, predict dev, score it."""
    fnames, dialogues, references = list(dev["fname"]), list(dev["dialogue"]), list(dev["references"])

    def objective(trial: Trial) -> float:
        params = {p.name: p.suggest(trial) for p in space.params}
        config = track.config(settings.preset, settings.config_path, space.overrides(settings.overrides, params))
        trial_dir = trial_run_dir(settings.study_dir, trial.number)
        trial.set_user_attr("run_dir", str(trial_dir))
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("config", config_as_dict(config))
        summaries = run_guarded(trial, lambda: track.predict(checkpoint, dialogues, config))
        result = compute_rouge(summaries, references, analyzer=getattr(config, "analyzer", "mecab"))
        write_predictions(trial_dir / "preds_dev.csv", fnames, summaries,
                          PredictionMeta("dev", str(run_dir), settings.track, settings.preset, checkpoint=str(checkpoint),
                                         extra={"generation": params, "dev_score": result.final}))
        return result.final

    return objective


def tune_generation(run_dir: Path, data_dir: Path, n_trials: int, *, storage: str | None = None, seed: int = 42,
                    limit: int | None = None, demo: bool = False, space_path: Path | None = None,
                    overrides: dict[str, Any] | None = None, track: Track | None = None) -> optuna.Study:
    """Run (or resume) the generation study of `run_dir`; outputs go to `run_dir/tune_generation/`."""
    config_path, preset = check_run(run_dir)
    track_name = track.name if track else run_track(run_dir)
    track = track or get_track(track_name)
    if track.predict is None:
        raise ConfigError(f"track '{track_name}' has no predict function")
    if n_trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {n_trials}")
    settings = TuneSettings(track=track_name, preset=preset, data_dir=data_dir, out_dir=run_dir, n_trials=n_trials,
                            space_path=space_path or SEARCH_SPACE_DIR / "generation.yaml", config_path=config_path,
                            overrides=overrides or {}, storage=storage, study_name=STUDY_NAME, pruner="none",
                            seed=seed, demo=demo)
    space = load_search_space(settings.space_path, demo=demo, section=track_name)
    dev = load_splits(data_dir, required=("dev",), optional=())["dev"]
    dev = dev.head(limit) if limit else dev
    example = space.overrides(settings.overrides, space.example_params())
    track.config(preset, config_path, example)  # keys the track's config does not know fail here, before any work
    study = open_study(settings.name, settings.storage_url, make_pruner("none", 0))
    trial_seed = sampler_seed(seed, len(study.get_trials(deepcopy=False)), shared=storage is not None)
    study.sampler = optuna.samplers.TPESampler(seed=trial_seed)
    enqueue_run_settings(study, space, config_as_dict(track.config(preset, config_path, {})))
    write_study_info(settings, space, trial_seed)
    remaining = n_trials - finished_trials(study)
    print(f"generation study of {run_dir} ({safe_url(settings.storage_url)}): {finished_trials(study)} of "
          f"{n_trials} trials done; scoring {len(dev)} dev rows")
    best_config = settings.study_dir / "best_config.yaml"
    usage = (f"{config_path} with the best generation settings; predict with it via the track's predict(), "
             f"or retrain: make {settings.track} MODEL={preset} CONFIG={best_config}")
    try:
        if remaining > 0:
            objective = make_generation_objective(track, settings, space, run_dir / BEST_DIR, dev, run_dir)
            study.optimize(objective, n_trials=remaining, catch=(TrialFailed,), callbacks=[stop_at_budget(n_trials)],
                           gc_after_trial=True)
    finally:
        write_study_outputs(study, settings, usage=usage)
    return study


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tuning.generation", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a trained run folder (has config.yaml and best/)")
    parser.add_argument("--data", required=True, help="folder with dev.csv")
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--limit", type=int, help="score only the first N dev rows (faster, noisier)")
    parser.add_argument("--space", help="search-space YAML with one section per track "
                                        "(default: tuning/search_spaces/generation.yaml)")
    parser.add_argument("--storage", help="SQLAlchemy URL (default: sqlite file RUN/tune_generation/study.db)")
    parser.add_argument("--seed", type=int, default=42, help="sampler seed")
    parser.add_argument("--demo", action="store_true", help="the space's small demo ranges")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every trial")
    return parser.parse_args(argv)


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run folder not found")
    optuna.logging.set_verbosity(optuna.logging.INFO)
    study = tune_generation(run_dir, Path(args.data), args.trials, storage=args.storage, seed=args.seed,
                            limit=args.limit, demo=args.demo, space_path=Path(args.space) if args.space else None,
                            overrides=parse_overrides(args.overrides))
    print(f"study folder: {run_dir / STUDY_NAME}")
    try:
        print(f"best trial {study.best_trial.number}: dev score {study.best_value:.4f} with {study.best_params}")
    except ValueError:  # no completed trial
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
