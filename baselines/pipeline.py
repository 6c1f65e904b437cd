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
from competition.predictions import FILL_INS, fill_empty, write_predictions
from competition.presets import get_preset
from competition.runs import StageClock, finish_run, new_run_dir, report_and_submit, start_run, update_run_info
from competition.submission import default_submissions_dir
from competition.truncation import truncation_report, write_truncation_report

log = logging.getLogger(__name__)


def prediction_metadata(config: BaselineConfig, run_dir: Path, checkpoint: Path, split: str) -> dict:
    """What the ensembler needs to trace a predictions file back to its run."""
    return {"preset": config.preset, "track": TRACK, "config_hash": config_hash(config), "checkpoint": str(checkpoint),
            "run_dir": str(run_dir), "split": split}


def encoder_truncation_report(checkpoint: Path, data_dir: Path | str, config: BaselineConfig, run_dir: Path) -> dict:
    """truncation.json/md/png in the run folder: dialogues longer than max_source_length with this tokenizer."""
    tokenizer = load_tokenizer(checkpoint)  # the trained tokenizer, data tokens included
    preset = get_preset(config.preset, TRACK)
    report = truncation_report(tokenizer, preset, data_dir, [config.max_source_length], progress=False,
                               tokenizer_source=str(checkpoint))
    write_truncation_report(report, run_dir)
    return {split: section["by_max_length"][str(config.max_source_length)]
            for split, section in report.report["splits"].items()}


def predict_sharded(checkpoint: Path, dialogues: list[str], config: BaselineConfig, desc: str) -> tuple[list[str], int]:
    """`predict` over this rank's share of the dialogues, gathered back in input order on every rank.

    An empty summary (a model that emits EOS at once) becomes the dialogue's first utterance; returns the summaries
    and how many were filled in that way.
    """
    summaries = distributed_map(lambda share: predict(checkpoint, share, config, desc=desc), dialogues)
    return fill_empty(summaries, dialogues)


def run(config: BaselineConfig, data_dir: Path | str, out_dir: Path | str, run_dir: Path | str | None = None,
        submissions_dir: Path | str | None = None) -> Path:
    """Train, predict dev and test, report and submit; returns the run folder.

    Pass `run_dir` (an earlier run folder) to resume it: training continues from its last checkpoint, and a
    finished run is not submitted again. Submissions go to `submissions_dir` (default: $SUBMISSIONS or
    submissions/); a run whose fill-ins exceed `max_fill_in_share` does not submit unless `submit_despite_fill_ins`.
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
    clock = StageClock()
    with clock.stage("train"):  # model loading included
        result = train(config, data_dir, run_dir)
    log.info("best dev ROUGE during training: %.2f (%s)", result.best_dev_score, result.best_checkpoint)

    frames = {split: read_split(paths[split], split) for split in ("train", "dev", "test") if split in paths}
    predicted = {}
    for split in ("dev", "test"):
        if split in frames:
            with clock.stage(f"predict_{split}"):  # loads the best checkpoint, generates, fills in empty ones
                predicted[split] = predict_sharded(result.best_checkpoint, list(frames[split]["dialogue"]), config,
                                                   f"predict {split}")
    if not is_main_process():  # every rank generated its share; rank 0 writes everything
        return run_dir
    update_run_info(run_dir, {"training_speed": result.speed, **clock.record()})  # kept if submitting fails
    with clock.stage("report_and_submit"):
        results = _report_and_submit(config, data_dir, paths, frames, predicted, result, run_dir,
                                     submissions_dir or default_submissions_dir())
    finish_run(run_dir, {"train": result.to_dict(), **results, "training_speed": result.speed, **clock.record()})
    return run_dir


def _report_and_submit(config: BaselineConfig, data_dir: Path | str, paths: dict, frames: dict, predicted: dict,
                       result, run_dir: Path, submissions_dir: Path | str) -> dict:
    """Truncation report, predictions files, dev ROUGE report and the submission (rank 0); returns their results."""
    truncation = encoder_truncation_report(result.best_checkpoint, data_dir, config, run_dir)
    for split, (summaries, filled) in predicted.items():
        write_predictions(run_dir / f"preds_{split}.csv", list(frames[split]["fname"]), summaries,
                          {**prediction_metadata(config, run_dir, result.best_checkpoint, split), FILL_INS: filled})
    results = report_and_submit(run_dir, frames, {split: summaries for split, (summaries, _) in predicted.items()},
                                paths.get("test", ""), submissions_dir, config, title=f"Dev ROUGE: {run_dir.name}",
                                analyzer=config.analyzer)
    log.info("dev ROUGE (full dev, %s): %.2f; submission: %s", config.analyzer, results["dev_score"],
             results["submission"])
    return {**results, "truncation": truncation}
