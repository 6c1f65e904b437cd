"""The LLM track pipeline, top-down: train (QLoRA/LoRA) -> export -> predict dev and test -> dev ROUGE report ->
submission. `llm.run` is the CLI over `run`.

On several GPUs (`make llm GPUS=N`) every rank trains (DDP; QLoRA loads the 4-bit model onto each rank's own GPU)
and generates its share of dev and test; rank 0 alone creates the run folder and writes every file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from competition.config import config_hash
from competition.distributed import barrier, broadcast_from_main, ensure_process_group, is_main_process
from competition.files import write_text_atomic
from competition.runs import StageClock, finish_run, new_run_dir, report_and_submit, update_run_info
from competition.submission import default_submissions_dir
from llm.config import TRACK, LLMConfig
from llm.generate import predict_to_file
from llm.merge import export_merged
from llm.model import load_checkpoint
from llm.train import EvaluateHook, load_splits, train

log = logging.getLogger(__name__)


def run(config: LLMConfig, data_dir: Path | str, out_dir: Path | str, run_dir: Path | str | None = None,
        on_evaluate: EvaluateHook | None = None, submissions_dir: Path | str | None = None) -> Path:
    """Train, predict dev and test, write the report and a submission; return the run folder.

    Submissions go to `submissions_dir` (default: $SUBMISSIONS or submissions/), once per run (a finished run that
    is resumed does not submit again); fill-ins over `max_fill_in_share` stop the submission unless
    `submit_despite_fill_ins`.

    Under torchrun every rank calls this: rank 0 creates the run folder and writes every file, all ranks train and
    generate their shares, and each returns the same folder once rank 0 is done.
    """
    ensure_process_group()  # before the Trainer sets up its own distributed state
    frames = load_splits(data_dir)  # validate every input before any work
    run_dir = Path(run_dir) if run_dir is not None else broadcast_from_main(
        lambda: new_run_dir(out_dir, TRACK, config.preset))
    log.info("run folder: %s", run_dir)
    clock = StageClock()
    with clock.stage("train"):  # model loading included
        result = train(config, data_dir, run_dir, on_evaluate)
    checkpoint = result.best_checkpoint
    if config.predict_with == "merged":
        with clock.stage("export_merged"):
            checkpoint = broadcast_from_main(lambda: export_merged(checkpoint, run_dir / "merged", config))
    with clock.stage("load_for_prediction"):
        model, tokenizer, style, info = load_checkpoint(checkpoint, config)
    metadata = {"preset": config.preset, "track": TRACK, "config_hash": config_hash(config),
                "checkpoint": str(checkpoint), "run_dir": str(run_dir)}
    predictions: dict[str, list[str]] = {}
    for split in ("dev", "test"):
        if split in frames:
            frame = frames[split]
            with clock.stage(f"predict_{split}"):
                predictions[split] = predict_to_file(model, tokenizer, style, list(frame["fname"]),
                                                     list(frame["dialogue"]), run_dir / f"preds_{split}.csv",
                                                     config, {**metadata, "split": split})
    if is_main_process():
        update_run_info(run_dir, {"training_speed": result.speed, **clock.record()})  # kept if submitting fails
        with clock.stage("report_and_submit"):
            summary = _write_results(config, frames, predictions, result, data_dir, run_dir,
                                     submissions_dir or default_submissions_dir())
        finish_run(run_dir, {**summary, "training_speed": result.speed, **clock.record()})
    barrier()  # every rank returns once the run's files exist
    return run_dir


def _write_results(config: LLMConfig, frames, predictions: dict[str, list[str]], result, data_dir: Path | str,
                   run_dir: Path, submissions_dir: Path | str) -> dict:
    """Dev ROUGE report, a submission (when test.csv exists) and summary.json (rank 0 only); returns the summary."""
    summary = {**report_and_submit(run_dir, frames, predictions, Path(data_dir) / "test.csv", submissions_dir,
                                   config, title=f"LLM {config.preset} dev ROUGE"),
               "best_checkpoint_dev_score": result.best_dev_score, "global_step": result.global_step,
               "cuts": result.cuts}
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2))
    print(f"dev score {summary['dev_score']:.2f} | run {run_dir}"
          + (f" | submission {summary['submission']}" if summary["submission"] else ""))
    return summary
