"""K-fold training, top-down: fold the training rows -> per fold: write its data, train with the track, predict
dev, test and the held-out rows -> ensemble the K fold runs -> a validated submission.

Layout of `<out>/<track>-<preset>-k<K>[-with-dev]/` (the K-fold folder):
  run.json, config.yaml, folds.csv (fname, fold), summary.md
  <name>-fold<k>/  an ordinary run folder: data/{train,dev,test}.csv (dev = the evaluation fold), config.yaml,
                   run.json ("done" once finished), best/, preds_dev.csv, preds_test.csv, preds_oof.csv (+ .meta.json)
  ensemble/        the ensembler's outputs over the fold runs: preds_{dev,test}.csv, run.json, report/
Rerunning the same command skips finished folds and resumes an unfinished one (the tracks resume training from the
run folder's last checkpoint). Under torchrun (GPUS=N) every rank trains and predicts its share; rank 0 writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from competition.harness.config import Layer, config_hash, resolve_config
from competition.harness.distributed import (
    barrier,
    broadcast_from_main,
    distributed_map,
    ensure_process_group,
    is_main_process,
)
from competition.harness.runs import (
    RUN_INFO_FILE,
    finish_run,
    load_run_info,
    submission_blocked,
    submit_once,
    write_run_files,
)
from competition.harness.tracks import Track, get_track
from competition.modeling.tracking import require_reporter
from competition.rules.data import Splits, load_splits, split_paths
from competition.rules.errors import ConfigError
from competition.rules.files import atomic_path, write_text_atomic
from competition.rules.metric import DEFAULT_ANALYZER, compute_rouge
from competition.rules.predictions import PredictionMeta, fill_empty, fill_in_counts, write_predictions
from competition.rules.submission import default_submissions_dir
from kfold.folds import assign_folds, assignment_hash, fold_split, pool_rows, stratification_topics

PREDICTION_SPLITS = ("dev", "test", "oof")  # real dev, real test, the fold's held-out training rows
FOLDS_FILE = "folds.csv"
ENSEMBLE_DIR = "ensemble"
IN_SAMPLE_WARNING = ("include_dev: dev rows were folded into training, so every dev score below is IN-SAMPLE "
                     "(each fold model trained on most of dev); it does not estimate the leaderboard")


def load_track_api(track: str) -> Track:
    """The track (competition.harness.tracks): its config, `train` and `predict`; K-fold needs all three."""
    api = get_track(track)
    if api.predict is None:
        raise ConfigError(f"track '{track}' has no predict function; K-fold needs it for dev, test and out-of-fold")
    return api


@dataclass
class KFoldSettings:
    """One K-fold run: which track and preset, which data, how to fold, where outputs go."""

    track: str
    preset: str
    data_dir: Path
    out_dir: Path
    k: int = 5
    seed: int = 42  # fold assignment (training seeds come from the track config)
    include_dev: bool = False
    config_path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    demo: bool = False
    name: str | None = None
    ensemble_method: str = "default"  # the ensembler's default; with include_dev, plain mbr (nothing fitted on dev)
    submissions_dir: Path = field(default_factory=default_submissions_dir)

    @property
    def kfold_dir(self) -> Path:
        """`<out>/<track>-<preset>-k<K>[-with-dev]` unless a name is given (fixed, so a rerun finds it)."""
        default = f"{self.track}-{self.preset}-k{self.k}" + ("-with-dev" if self.include_dev else "")
        return self.out_dir / (self.name or default)

    def fold_dir(self, fold: int) -> Path:
        """The run folder of fold `fold` (0-based); its name is unique across K-fold runs for the ensembler."""
        return self.kfold_dir / f"{self.kfold_dir.name}-fold{fold + 1}"


@dataclass
class FoldPlan:
    """The rows to fold, each row's evaluation fold, and the real splits."""

    pool: pd.DataFrame
    folds: list[int]
    splits: Splits  # train, dev, test as read
    stratified: bool

    @property
    def hash(self) -> str:
        return assignment_hash(list(self.pool["fname"]), self.folds)


def plan_folds(settings: KFoldSettings) -> FoldPlan:
    """Read and validate train/dev/test, pool train (and dev with include_dev), assign folds."""
    # with include_dev, dev is folded in on purpose (IN_SAMPLE_WARNING says so): only a test overlap is news
    overlap_with = ("test",) if settings.include_dev else ("dev", "test")
    splits = load_splits(settings.data_dir, required=("train", "dev", "test"), optional=(), overlap_with=overlap_with)
    pool = pool_rows(splits["train"], splits["dev"] if settings.include_dev else None)
    topics = stratification_topics(pool)
    folds = assign_folds(len(pool), settings.k, settings.seed, topics)
    return FoldPlan(pool, folds, splits, stratified=topics is not None)


def check_same_run(kfold_dir: Path, config_id: str, folds_id: str) -> None:
    """A rerun into an existing K-fold folder must have its settings; otherwise resuming would mix two runs."""
    if not (kfold_dir / RUN_INFO_FILE).is_file():
        return
    info = load_run_info(kfold_dir)
    saved = (info.get("config_hash"), info.get("kfold", {}).get("fold_assignment_hash"))
    if saved != (config_id, folds_id):
        raise ConfigError(f"{kfold_dir}: holds a K-fold run with other settings (config hash {saved[0]}, fold "
                          f"assignment {saved[1]}; this command: {config_id}, {folds_id}); rerun the same command "
                          f"to resume it, or give --name for a new folder")


def kfold_info(settings: KFoldSettings, plan: FoldPlan, **extra: Any) -> dict[str, Any]:
    """The K-fold section of run.json (also in every fold's run.json)."""
    return {"k": settings.k, "seed": settings.seed, "include_dev": settings.include_dev,
            "dev_in_sample": settings.include_dev, "stratified_by_topic": plan.stratified,
            "fold_assignment_hash": plan.hash, "rows": len(plan.pool), "kfold_dir": str(settings.kfold_dir), **extra}


def say(message: str) -> None:
    """Print once (rank 0) under torchrun."""
    if is_main_process():
        print(message, flush=True)


def fold_finished(fold_dir: Path) -> bool:
    """A fold is finished when its run.json says done and all its predictions exist."""
    if not all((fold_dir / f"preds_{s}.csv").is_file() for s in PREDICTION_SPLITS):
        return False
    try:
        return bool(load_run_info(fold_dir).get("done"))
    except (OSError, json.JSONDecodeError):
        return False


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """A competition CSV (the `references` helper column dropped), atomically."""
    with atomic_path(path) as temp:
        frame.drop(columns=["references"], errors="ignore").to_csv(temp, index=False)
    return path


def write_fold_data(fold_dir: Path, train: pd.DataFrame, held_out: pd.DataFrame, test: pd.DataFrame) -> Path:
    """`fold_dir/data/` with train.csv (the other folds), dev.csv (this fold) and test.csv (for the token set)."""
    data_dir = fold_dir / "data"
    for name, frame in (("train", train), ("dev", held_out), ("test", test)):
        write_csv(frame, data_dir / f"{name}.csv")
    return data_dir


def predict_rows(api: Any, checkpoint: Path, dialogues: Sequence[str], config: Any,
                 desc: str) -> tuple[list[str], int]:
    """Summaries in input order, sharded over ranks under torchrun; empty ones become the first utterance (counted)."""
    summaries = distributed_map(lambda share: list(api.predict(checkpoint, share, config)), list(dialogues))
    summaries, empty = fill_empty(summaries, dialogues)
    if empty:
        say(f"warning: {desc}: {empty} of {len(dialogues)} empty summaries replaced by the dialogue's first utterance")
    return summaries, empty


def dev_score(predictions: Sequence[str], frame: pd.DataFrame, config: Any) -> float:
    """Competition score (0-100) of predictions against a frame's references."""
    analyzer = getattr(config, "analyzer", DEFAULT_ANALYZER)
    return compute_rouge(list(predictions), list(frame["references"]), analyzer=analyzer).final


def prepare_fold(config: Any, settings: KFoldSettings, plan: FoldPlan, fold: int,
                 held_out: pd.DataFrame, train: pd.DataFrame) -> None:
    """Write the fold's data, config.yaml and run.json ("done": false)."""
    fold_dir = settings.fold_dir(fold)
    extra = {"track": settings.track, "kfold": kfold_info(settings, plan, fold=fold + 1), "done": False}
    if is_main_process():
        data_dir = write_fold_data(fold_dir, train, held_out, plan.splits["test"])
        write_run_files(fold_dir, config, split_paths(data_dir).values(), extra)
    barrier()


def save_fold_outputs(config: Any, settings: KFoldSettings, fold: int, frames: dict[str, pd.DataFrame],
                      predictions: dict[str, list[str]], fill_ins: dict[str, int], summary: dict[str, Any]) -> None:
    """preds_{dev,test,oof}.csv with sidecars, then run.json "done": true (rank 0; the others wait)."""
    fold_dir = settings.fold_dir(fold)
    if is_main_process():
        extra = {"kfold_fold": fold + 1, "dev_in_sample": settings.include_dev}
        for split, frame in frames.items():
            metadata = PredictionMeta(split, str(fold_dir), settings.track, settings.preset, config_hash(config),
                                      summary["best_checkpoint"], fill_ins=fill_ins[split], extra=extra)
            write_predictions(fold_dir / f"preds_{split}.csv", list(frame["fname"]), predictions[split], metadata)
        finish_run(fold_dir, {"fold": summary, "done": True})
    barrier()


def run_fold(api: Any, config: Any, settings: KFoldSettings, plan: FoldPlan, fold: int) -> dict[str, Any]:
    """Train fold `fold` on the other folds (best checkpoint picked on this fold), predict dev, test and the
    held-out rows; return its summary. A finished fold is skipped; an unfinished one resumes its training."""
    fold_dir, label = settings.fold_dir(fold), f"fold {fold + 1}/{settings.k}"
    if broadcast_from_main(lambda: fold_finished(fold_dir)):
        say(f"{label}: finished ({fold_dir / RUN_INFO_FILE} says done), skipped")
        return load_run_info(fold_dir)["fold"]
    train, held_out = fold_split(plan.pool, plan.folds, fold)
    prepare_fold(config, settings, plan, fold, held_out, train)
    say(f"{label}: training on {len(train)} rows, best checkpoint picked on {len(held_out)} held-out rows")
    result = api.train(config, fold_dir / "data", fold_dir)  # resumes from fold_dir's last checkpoint, if any
    frames = {"dev": plan.splits["dev"], "test": plan.splits["test"], "oof": held_out}
    predicted = {s: predict_rows(api, Path(result.best_checkpoint), list(f["dialogue"]), config, f"{label} {s}")
                 for s, f in frames.items()}
    predictions = {split: summaries for split, (summaries, _) in predicted.items()}
    fill_ins = {split: filled for split, (_, filled) in predicted.items()}
    summary = {"fold": fold + 1, "run_dir": str(fold_dir), "train_rows": len(train), "heldout_rows": len(held_out),
               "best_checkpoint": str(result.best_checkpoint), "checkpoint_score": float(result.best_dev_score),
               "oof_score": dev_score(predictions["oof"], held_out, config),
               "dev_score": dev_score(predictions["dev"], plan.splits["dev"], config),
               "dev_in_sample": settings.include_dev}
    save_fold_outputs(config, settings, fold, frames, predictions, fill_ins, summary)
    in_sample = " (in-sample)" if settings.include_dev else ""
    say(f"{label}: held-out fold {summary['oof_score']:.2f}, dev{in_sample} {summary['dev_score']:.2f}")
    return summary


def ensemble_config(settings: KFoldSettings) -> Any:
    """The ensembler's config for the fold ensemble (checked before any training)."""
    from ensemble.pipeline import EnsembleConfig

    method = settings.ensemble_method
    if settings.include_dev and method == "default":
        method = "mbr"  # methods fitted on dev would be fitted on rows the models trained on
    return resolve_config(EnsembleConfig, Layer("--ensemble-method", {"method": method}))


def ensemble_folds(settings: KFoldSettings, plan: FoldPlan) -> Any:
    """The ensembler over the K fold runs (its Python API): scored on the real dev, written to `ensemble/`."""
    from ensemble.pipeline import load_inputs, run_ensemble, write_outputs

    config = ensemble_config(settings)
    files = [settings.fold_dir(f) / f"preds_{s}.csv" for f in range(settings.k) for s in ("dev", "test")]
    inputs = load_inputs(files, None, plan.splits.paths["dev"], plan.splits.paths["test"])
    result = run_ensemble(config, inputs, progress=False)
    if settings.include_dev:
        result.notes.append(IN_SAMPLE_WARNING)
    out = settings.kfold_dir / ENSEMBLE_DIR
    write_outputs(result, inputs, out)
    if settings.include_dev:  # the ensembler's run.json does not know; say it there too
        info = load_run_info(out)
        write_text_atomic(out / RUN_INFO_FILE, json.dumps({**info, "dev_in_sample": True}, ensure_ascii=False,
                                                          indent=2))
    return result


def kfold_finished(settings: KFoldSettings) -> bool:
    """Every fold finished, the ensemble written and run.json done: a rerun has nothing left to do."""
    kfold_dir = settings.kfold_dir
    if not ((kfold_dir / RUN_INFO_FILE).is_file() and (kfold_dir / ENSEMBLE_DIR / "preds_test.csv").is_file()):
        return False
    folds_done = all(fold_finished(settings.fold_dir(f)) for f in range(settings.k))
    return folds_done and bool(load_run_info(kfold_dir).get("done"))


def report_finished(settings: KFoldSettings) -> None:
    """Print the stored result of a finished K-fold run (no new submission)."""
    info = load_run_info(settings.kfold_dir)
    ensemble = info["ensemble"]
    in_sample = " (IN-SAMPLE: include_dev)" if settings.include_dev else ""
    say(f"{settings.kfold_dir}: already finished; fold ensemble ({ensemble['method']}) dev score{in_sample}: "
        f"{ensemble['dev_score']:.2f}; submission: {ensemble['submission']}")


def summary_markdown(settings: KFoldSettings, folds: list[dict[str, Any]], ensemble: dict[str, Any]) -> str:
    """summary.md of the K-fold folder: per-fold and ensemble scores."""
    lines = [f"# K-fold: {settings.track} {settings.preset}, K={settings.k}", ""]
    if settings.include_dev:
        lines += [f"**Warning: {IN_SAMPLE_WARNING}.**", ""]
    lines += ["| fold | train rows | held-out rows | checkpoint score | held-out fold | dev |", "|---|---|---|---|---|---|"]
    lines += [f"| {f['fold']} | {f['train_rows']} | {f['heldout_rows']} | {f['checkpoint_score']:.2f} | "
              f"{f['oof_score']:.2f} | {f['dev_score']:.2f} |" for f in folds]
    lines += ["", "checkpoint score: the track's selection score of the best checkpoint on the held-out fold during "
              "training; held-out fold: its predictions of every held-out row (preds_oof.csv); dev: the real dev."]
    cv = ensemble.get("cv_dev_score")
    lines += ["", f"Ensemble ({ensemble['method']}): dev {ensemble['dev_score']:.2f}"
              + (f" (cross-validated over dev {cv:.2f})" if cv is not None else ""),
              f"Submission: {ensemble['submission']}", ""]
    return "\n".join(lines)


def run_kfold(settings: KFoldSettings, api: Any | None = None) -> Path:
    """The whole K-fold run; returns the K-fold folder."""
    ensure_process_group()  # no-op unless launched by torchrun (GPUS>1)
    api = api or load_track_api(settings.track)
    config = api.config(settings.preset, settings.config_path, settings.overrides, settings.demo)
    ensemble_config(settings)  # a bad --ensemble-method fails now, not after K trainings
    require_reporter(getattr(config, "report_to", "none"))  # a missing wandb/mlflow too
    plan = plan_folds(settings)
    kfold_dir = settings.kfold_dir
    check_same_run(kfold_dir, config_hash(config), plan.hash)
    if settings.include_dev:
        say(f"warning: {IN_SAMPLE_WARNING}")
    if broadcast_from_main(lambda: kfold_finished(settings)):
        report_finished(settings)
        return kfold_dir
    info = {"track": settings.track, "preset": settings.preset, "kfold": kfold_info(settings, plan),
            "dev_in_sample": settings.include_dev, "done": False}
    if is_main_process():
        write_csv(pd.DataFrame({"fname": plan.pool["fname"], "fold": [f + 1 for f in plan.folds]}),
                  kfold_dir / FOLDS_FILE)
        write_run_files(kfold_dir, config, plan.splits.paths.values(), info)
    folds = [run_fold(api, config, settings, plan, fold) for fold in range(settings.k)]
    if is_main_process():
        finish_kfold(config, settings, plan, folds, info)
    return kfold_dir


def finish_kfold(config: Any, settings: KFoldSettings, plan: FoldPlan, folds: list[dict[str, Any]],
                 info: dict[str, Any]) -> None:
    """The fold ensemble, its submission (source runs: the folds), run.json "done" and summary.md; print scores."""
    kfold_dir = settings.kfold_dir
    result = ensemble_folds(settings, plan)
    test = plan.splits["test"]
    fill_ins = {f"fold{k + 1} {split}": counts for k in range(settings.k) for split, counts in fill_in_counts(
        {s: settings.fold_dir(k) / f"preds_{s}.csv" for s in ("dev", "test")}).items()}
    blocked = submission_blocked(fill_ins, config)
    submission = None if blocked else submit_once(
        kfold_dir, list(test["fname"]), result.summaries["test"], plan.splits.paths["test"], settings.submissions_dir,
        result.dev_score, config_hash(config), label=f"kfold-{kfold_dir.name}",
        source_runs=[f["run_dir"] for f in folds])
    ensemble = {"method": result.method, "dev_score": result.dev_score, "cv_dev_score": result.cv_score,
                "dir": str(kfold_dir / ENSEMBLE_DIR), "submission": str(submission) if submission else None}
    finish_run(kfold_dir, {"folds": folds, "ensemble": ensemble, "fill_ins": fill_ins, "submission_blocked": blocked,
                           "submission": ensemble["submission"], "done": True})
    write_text_atomic(kfold_dir / "summary.md", summary_markdown(settings, folds, ensemble))
    in_sample = " (IN-SAMPLE: include_dev)" if settings.include_dev else ""
    for fold in folds:
        print(f"fold {fold['fold']}: dev{in_sample} {fold['dev_score']:.2f}")
    print(f"fold ensemble ({result.method}) dev score{in_sample}: {result.dev_score:.2f}")
    if result.cv_score is not None:  # fitted methods: the honest number beside the in-sample one
        print(f"  cross-validated over dev{in_sample}: {result.cv_score:.2f}")
    print(f"submission: {submission}")
