"""The whole track, top-down: run folder -> train -> truncation report -> dev predictions and ROUGE report
-> test predictions -> validated submission. `baselines.run` is the CLI over `run`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from baselines.config import TRACK, BaselineConfig
from baselines.predict import predict
from baselines.train import train
from competition.config import config_hash
from competition.data import read_split, split_paths
from competition.distributed import broadcast_from_main, distributed_map, ensure_process_group, is_main_process
from competition.errors import DataError
from competition.modeling import load_tokenizer
from competition.predictions import fill_empty, write_predictions
from competition.presets import get_preset
from competition.report import write_rouge_report
from competition.runs import finish_run, new_run_dir, start_run
from competition.submission import SUBMISSIONS_DIR, write_submission
from competition.truncation import truncation_report, write_truncation_report

log = logging.getLogger(__name__)


def prediction_metadata(config: BaselineConfig, run_dir: Path, checkpoint: Path, split: str) -> dict:
    """What the ensembler needs to trace a predictions file back to its run."""
    return {"preset": config.preset, "track": TRACK, "config_hash": config_hash(config), "checkpoint": str(checkpoint),
            "run_dir": str(run_dir), "split": split}


def encoder_truncation_report(checkpoint: Path, data_dir: Path | str, config: BaselineConfig, run_dir: Path) -> dict:
    """truncation.json/md/png in the run folder: dialogues longer than encoder_max_len with this tokenizer."""
    tokenizer = load_tokenizer(checkpoint)  # the trained tokenizer, data tokens included
    preset = get_preset(config.preset, TRACK)
    report = truncation_report(tokenizer, preset, data_dir, [config.max_source_length], progress=False,
                               tokenizer_source=str(checkpoint))
    write_truncation_report(report, run_dir)
    return {split: section["by_max_length"][str(config.max_source_length)]
            for split, section in report.report["splits"].items()}


def predict_sharded(checkpoint: Path, dialogues: list[str], config: BaselineConfig, desc: str) -> list[str]:
    """`predict` over this rank's share of the dialogues, gathered back in input order on every rank.

    An empty summary (a model that emits EOS at once) becomes the dialogue's first utterance, with a warning.
    """
    summaries = distributed_map(lambda share: predict(checkpoint, share, config, desc=desc), dialogues)
    summaries, empty = fill_empty(summaries, dialogues)
    if empty and is_main_process():
        log.warning("%s: %d empty summaries replaced by the dialogue's first utterance", desc, empty)
    return summaries


def run(config: BaselineConfig, data_dir: Path | str, out_dir: Path | str, run_dir: Path | str | None = None,
        submissions_dir: Path | str = SUBMISSIONS_DIR) -> Path:
    """Train, predict dev and test, report and submit; returns the run folder.

    Pass `run_dir` (an earlier run folder) to resume it: training continues from its last checkpoint.
    """
    paths = split_paths(data_dir)
    missing = [f"{split}.csv" for split in ("train", "dev") if split not in paths]
    if missing:
        raise DataError(f"{data_dir}: missing {', '.join(missing)}; expected train.csv, dev.csv (and test.csv)")
    ensure_process_group()  # no-op unless launched by torchrun (GPUS>1)
    run_dir = Path(run_dir) if run_dir is not None else broadcast_from_main(
        lambda: new_run_dir(out_dir, TRACK, config.preset))
    if is_main_process():
        start_run(run_dir, config, paths.values(), TRACK)
    result = train(config, data_dir, run_dir)
    log.info("best dev ROUGE during training: %.2f (%s)", result.best_dev_score, result.best_checkpoint)

    frames = {split: read_split(paths[split], split) for split in ("train", "dev", "test") if split in paths}
    dev = frames["dev"]
    dev_predictions = predict_sharded(result.best_checkpoint, list(dev["dialogue"]), config, "predict dev")
    test_predictions = (predict_sharded(result.best_checkpoint, list(frames["test"]["dialogue"]), config,
                                        "predict test") if "test" in frames else None)
    if not is_main_process():  # every rank generated its share; rank 0 writes everything
        return run_dir
    truncation = encoder_truncation_report(result.best_checkpoint, data_dir, config, run_dir)
    write_predictions(run_dir / "preds_dev.csv", list(dev["fname"]), dev_predictions,
                      prediction_metadata(config, run_dir, result.best_checkpoint, "dev"))
    report = write_rouge_report(run_dir / "report", list(dev["fname"]), dev_predictions, list(dev["references"]),
                                topics=list(dev["topic"]) if "topic" in dev else None, dialogues=list(dev["dialogue"]),
                                analyzer=config.analyzer, title=f"Dev ROUGE: {run_dir.name}")
    log.info("dev ROUGE (full dev, %s): %.2f", config.analyzer, report.final)

    submission = None
    if test_predictions is not None:
        test = frames["test"]
        write_predictions(run_dir / "preds_test.csv", list(test["fname"]), test_predictions,
                          prediction_metadata(config, run_dir, result.best_checkpoint, "test"))
        submission = write_submission(list(test["fname"]), test_predictions, paths["test"], label=run_dir.name,
                                      out_dir=submissions_dir, source_runs=[str(run_dir)], dev_score=report.final,
                                      config_hash=config_hash(config))
        log.info("submission: %s", submission)
    finish_run(run_dir, {"train": result.to_dict(), "dev_score": report.final, "truncation": truncation,
                         "submission": str(submission) if submission else None})
    return run_dir
