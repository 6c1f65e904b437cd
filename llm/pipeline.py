"""The LLM track, top-down: load the splits -> open the run folder -> train (QLoRA/LoRA) -> predict dev and test
(after the merged export, with predict_with=merged) -> report (dev ROUGE, summary.json) and submit. `llm.run` is
the CLI over `run`; `baselines.pipeline` has the same stages.

On several GPUs (`make llm GPUS=N`) every rank trains (DDP; QLoRA loads the 4-bit model onto each rank's own GPU)
and generates its share of dev and test; rank 0 alone creates the run folder and writes every file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from competition.harness.distributed import barrier, broadcast_from_main, ensure_process_group, is_main_process
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
from competition.modeling.oom import recorded_in_run
from competition.modeling.tracking import log_run_summary, require_reporter, run_summary
from competition.rules.data import Splits, load_splits
from competition.rules.files import write_text_atomic
from competition.rules.submission import default_submissions_dir
from llm.config import TRACK, LLMConfig
from llm.generate import predict_to_file
from llm.merge import export_merged
from llm.model import load_checkpoint
from llm.train import train

log = logging.getLogger(__name__)


def run(config: LLMConfig, data_dir: Path | str, out_dir: Path | str, run_dir: Path | str | None = None,
        submissions_dir: Path | str | None = None, run_info: dict | None = None) -> Path:
    """Train, predict dev and test, write the report and a submission; return the run folder.

    Submissions go to `submissions_dir` (default: $SUBMISSIONS or submissions/), once per run (a finished run that
    is resumed does not submit again); fill-ins over `max_fill_in_share` stop the submission unless
    `submit_despite_fill_ins`.

    Under torchrun every rank calls this: rank 0 creates the run folder and writes every file, all ranks train and
    generate their shares, and each returns the same folder once rank 0 is done.
    `run_info` (the card and the fitted settings, from the CLI) goes into run.json.
    """
    require_reporter(config.report_to)  # a missing wandb/mlflow fails before any work
    ensure_process_group()  # before the Trainer sets up its own distributed state
    splits = load_splits(data_dir)  # every input validated before any work
    resumed = run_dir is not None
    run_dir = open_run(out_dir, TRACK, config, splits.paths.values(), run_dir, extra=run_info)
    log.info("run folder: %s", run_dir)
    # a failure before training leaves no folder, Ctrl-C names RESUME; out-of-memory fallbacks go into run.json
    with guard_run(run_dir, TRACK, resumed), recorded_in_run(run_dir):
        clock = StageClock()
        with clock.stage("train"):  # model loading included
            result = train(config, splits, run_dir)
        predictions = predict_splits(config, splits, result.best_checkpoint, run_dir, clock)
        if is_main_process():
            report(config, splits, result, predictions, run_dir, submissions_dir or default_submissions_dir(), clock)
        barrier()  # every rank returns once the run's files exist
    return run_dir


def predict_splits(config: LLMConfig, splits: Splits, checkpoint: Path, run_dir: Path,
                   clock: StageClock) -> dict[str, list[str]]:
    """Dev and test summaries (from the merged export with predict_with=merged), every rank generating its share;
    rank 0 writes `preds_<split>.csv` and its sidecar. A resumed run regenerates only the missing rows."""
    if config.predict_with == "merged":
        with clock.stage("export_merged"):
            checkpoint = broadcast_from_main(lambda: export_merged(checkpoint, run_dir / "merged", config))
    with clock.stage("load_for_prediction"):
        model, tokenizer, style, _ = load_checkpoint(checkpoint, config)
    predictions = {}
    for split in ("dev", "test"):
        if split not in splits:
            continue
        frame = splits[split]
        with clock.stage(f"predict_{split}"):
            predictions[split] = predict_to_file(model, tokenizer, style, list(frame["fname"]),
                                                 list(frame["dialogue"]), run_dir / f"preds_{split}.csv", config,
                                                 prediction_meta(config, TRACK, run_dir, checkpoint, split))
    return predictions


def report(config: LLMConfig, splits: Splits, result: TrainResult, predictions: dict[str, list[str]],
           run_dir: Path, submissions_dir: Path | str, clock: StageClock) -> None:
    """Rank 0: the dev ROUGE report, the submission (when test.csv exists) and summary.json, then the finished
    run.json."""
    update_run_info(run_dir, {"training_speed": result.speed, **clock.record()})  # kept if submitting fails
    with clock.stage("report_and_submit"):
        summary = {**report_and_submit(run_dir, splits, predictions, submissions_dir, config,
                                       title=f"LLM {config.preset} dev ROUGE"),
                   "best_checkpoint_dev_score": result.best_dev_score, "global_step": result.global_step,
                   "cuts": result.cuts}
        write_text_atomic(run_dir / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2))
    print(f"dev score {summary['dev_score']:.2f} | run {run_dir}"
          + (f" | submission {summary['submission']}" if summary["submission"] else ""))
    finish_run(run_dir, {**summary, "training_speed": result.speed, **clock.record()})
    log_run_summary(config, run_dir, run_summary(summary, result.speed, clock.seconds), result.global_step)
