"""The encoder-decoder track, top-down: load the splits -> open the run folder -> train -> predict dev and test ->
report (truncation, dev ROUGE) and submit. `baselines.run` is the CLI over `run`; `llm.pipeline` has the same stages.

Under torchrun every rank trains and generates its share of dev and test; rank 0 alone writes the run's files.
"""

from __future__ import annotations

import logging
from pathlib import Path

from baselines.config import TRACK, BaselineConfig
from baselines.predict import predict
from baselines.train import train
from competition.harness.distributed import barrier, distributed_map, ensure_process_group, is_main_process
from competition.harness.presets import get_preset
from competition.harness.runs import (
    StageClock,
    TrainResult,
    finish_run,
    guard_run,
    open_run,
    prediction_meta,
    report_and_submit,
    update_run_info,
)
from competition.modeling.loading import load_tokenizer
from competition.modeling.oom import recorded_in_run
from competition.modeling.tracking import log_run_summary, require_reporter, run_summary
from competition.rules.data import Splits, load_splits
from competition.rules.predictions import fill_empty, write_predictions
from competition.rules.submission import default_submissions_dir
from competition.truncation import truncation_report, write_truncation_report

log = logging.getLogger(__name__)


def run(config: BaselineConfig, data_dir: Path | str, out_dir: Path | str, run_dir: Path | str | None = None,
        submissions_dir: Path | str | None = None, run_info: dict | None = None) -> Path:
    """Train, predict dev and test, report and submit; returns the run folder.

    Pass `run_dir` (an earlier run folder) to resume it: training continues from its last checkpoint, and a
    finished run is not submitted again. Submissions go to `submissions_dir` (default: $SUBMISSIONS or
    submissions/); a run whose fill-ins exceed `max_fill_in_share` does not submit unless `submit_despite_fill_ins`.
    `run_info` (the card and the fitted settings, from the CLI) goes into run.json.
    """
    require_reporter(config.report_to)  # a missing wandb/mlflow fails before any work
    ensure_process_group()  # no-op unless launched by torchrun (GPUS>1)
    splits = load_splits(data_dir)  # every input validated before any work
    resumed = run_dir is not None
    run_dir = open_run(out_dir, TRACK, config, splits.paths.values(), run_dir, extra=run_info)
    # a failure before training leaves no folder, Ctrl-C names RESUME; out-of-memory fallbacks go into run.json
    with guard_run(run_dir, TRACK, resumed), recorded_in_run(run_dir):
        clock = StageClock()
        with clock.stage("train"):  # model loading included
            result = train(config, splits, run_dir)
        log.info("best dev ROUGE during training: %.2f (%s)", result.best_dev_score, result.best_checkpoint)
        predictions = predict_splits(config, splits, result.best_checkpoint, run_dir, clock)
        if is_main_process():
            report(config, splits, result, predictions, run_dir, submissions_dir or default_submissions_dir(), clock)
        barrier()  # every rank returns once the run's files exist
    return run_dir


def predict_splits(config: BaselineConfig, splits: Splits, checkpoint: Path, run_dir: Path,
                   clock: StageClock) -> dict[str, list[str]]:
    """Dev and test summaries from the best checkpoint, every rank generating its share; rank 0 writes
    `preds_<split>.csv` and its sidecar. An empty summary becomes the dialogue's first utterance (counted)."""
    predictions = {}
    for split in ("dev", "test"):
        if split not in splits:
            continue
        frame = splits[split]
        with clock.stage(f"predict_{split}"):  # loads the best checkpoint, generates, fills in empty ones
            summaries, filled = predict_sharded(checkpoint, list(frame["dialogue"]), config, f"predict {split}")
        if is_main_process():
            write_predictions(run_dir / f"preds_{split}.csv", list(frame["fname"]), summaries,
                              prediction_meta(config, TRACK, run_dir, checkpoint, split, fill_ins=filled))
        predictions[split] = summaries
    return predictions


def predict_sharded(checkpoint: Path, dialogues: list[str], config: BaselineConfig, desc: str) -> tuple[list[str], int]:
    """`predict` over this rank's share of the dialogues, gathered back in input order on every rank, with empty
    summaries filled in; returns the summaries and how many were filled in."""
    summaries = distributed_map(lambda share: predict(checkpoint, share, config, desc=desc), dialogues)
    return fill_empty(summaries, dialogues)


def report(config: BaselineConfig, splits: Splits, result: TrainResult, predictions: dict[str, list[str]],
           run_dir: Path, submissions_dir: Path | str, clock: StageClock) -> None:
    """Rank 0: the truncation report, the dev ROUGE report and the submission, then the finished run.json."""
    update_run_info(run_dir, {"training_speed": result.speed, **clock.record()})  # kept if submitting fails
    with clock.stage("report_and_submit"):
        truncation = encoder_truncation_report(result.best_checkpoint, splits, config, run_dir)
        results = report_and_submit(run_dir, splits, predictions, submissions_dir, config,
                                    title=f"Dev ROUGE: {run_dir.name}", analyzer=config.analyzer)
    log.info("dev ROUGE (full dev, %s): %.2f; submission: %s", config.analyzer, results["dev_score"],
             results["submission"])
    finish_run(run_dir, {"train": result.to_dict(), **results, "truncation": truncation,
                         "training_speed": result.speed, **clock.record()})
    log_run_summary(config, run_dir, run_summary(results, result.speed, clock.seconds), result.global_step)


def encoder_truncation_report(checkpoint: Path, splits: Splits, config: BaselineConfig, run_dir: Path) -> dict:
    """truncation.json/md/png in the run folder: dialogues longer than max_source_length with this tokenizer."""
    tokenizer = load_tokenizer(checkpoint)  # the trained tokenizer, data tokens included
    measured = truncation_report(tokenizer, get_preset(config.preset, TRACK), splits, [config.max_source_length],
                                 progress=False, tokenizer_source=str(checkpoint))
    write_truncation_report(measured, run_dir)
    return {split: section["by_max_length"][str(config.max_source_length)]
            for split, section in measured.report["splits"].items()}
