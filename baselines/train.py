"""Fine-tuning with Seq2SeqTrainer: dev ROUGE (mecab) by generation every epoch, best checkpoint by that score,
early stopping, length-grouped batches, and resume from the last checkpoint of an interrupted run.

Stages: load data -> load model and add data tokens -> tokenize -> train (resuming if checkpoints exist)
-> save `best/` -> drop checkpoints. A run folder whose `best/` is complete is not trained again.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from unittest.mock import patch

import torch

from baselines.config import TRACK, BaselineConfig
from baselines.model import (
    add_data_tokens,
    configure_family,
    decode,
    encode_texts,
    generation_kwargs,
    load_pretrained,
)
from competition.harness.distributed import barrier, is_main_process
from competition.harness.presets import Preset, get_preset
from competition.harness.runs import BEST_DIR, TrainResult, seed_everything
from competition.harness.tracks import OnEvaluate
from competition.modeling.attention import configure_attention
from competition.modeling.checkpoints import disk_full_as_os_error, last_complete_checkpoint, mark_complete_callback
from competition.modeling.loading import model_source, resolve_precision
from competition.modeling.tokens import IGNORE_INDEX, TokenLayout, token_sum_loss
from competition.modeling.tracking import DEV_SCORE_KEY, rouge_metrics, tracked_training, tracking_arguments
from competition.modeling.trainer import NO_STEP_SYNC_ARGUMENTS, counting_trainer, training_speed_callback
from competition.rules.data import Splits, data_special_tokens, load_splits
from competition.rules.files import write_text_atomic
from competition.rules.metric import compute_rouge

CHECKPOINTS_DIR = "checkpoints"
TRACK_INFO = "track.json"  # beside the best checkpoint: how to rebuild inputs for it
REGIONAL_COMPILATION_ENV = "ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION"  # read by accelerate's TorchDynamoPlugin
SCORE_KEY = DEV_SCORE_KEY  # compute_metrics key; the Trainer logs it as eval_score, as the LLM track does
# On a GPU, batches are padded to a multiple of this many tokens (masked, so the loss is the same): aligned shapes
# pick faster kernels (a KoBART epoch about 15% faster on an H200). CPU: no padding.
GPU_PAD_TO_MULTIPLE_OF = 64
OOM_HINT = "set a smaller max_source_length or per_device_eval_batch_size, or precision=bf16"  # one row did not fit

log = logging.getLogger(__name__)


class Seq2SeqRows(torch.utils.data.Dataset):
    """Tokenized rows as plain dicts (input_ids, attention_mask, labels)."""

    def __init__(self, inputs: list[list[int]], labels: list[list[int]]):
        self.rows = [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": lab}
                     for ids, lab in zip(inputs, labels)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


def real_tokens(row: dict[str, list[int]]) -> int:
    """Encoder + decoder tokens of a train row, no padding."""
    return len(row["input_ids"]) + len(row["labels"])


def build_rows(tokenizer, layout: TokenLayout, dialogues: Sequence[str], summaries: Sequence[str],
               config: BaselineConfig) -> Seq2SeqRows:
    """Encoder inputs and labels in the family layout, each cut to its own budget."""
    inputs, _ = encode_texts(tokenizer, dialogues, layout.encoder_prefix, layout.eos, config.max_source_length)
    labels, _ = encode_texts(tokenizer, summaries, layout.label_prefix, layout.eos, config.max_target_length)
    return Seq2SeqRows(inputs, labels)


def precision_flags(precision: str, cuda: bool | None = None, bf16_supported: bool | None = None) -> dict[str, bool]:
    """bf16/fp16 flags: `auto` picks bf16 where the GPU supports it, else fp16 (the Trainer's loss scaling); fp32
    without a GPU. `cuda` and `bf16_supported` default to this machine (parameters for tests)."""
    precision = resolve_precision(precision, cuda=cuda, bf16_supported=bf16_supported)
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def pad_to_multiple_of() -> int | None:
    """The collator's `pad_to_multiple_of`: GPU_PAD_TO_MULTIPLE_OF on CUDA, None (no extra padding) on the CPU."""
    return GPU_PAD_TO_MULTIPLE_OF if torch.cuda.is_available() else None


def training_frames(splits: Splits, config: BaselineConfig):
    """Train and dev frames: their first N rows when max_train_samples / max_eval_samples is set."""
    train, dev = splits["train"], splits["dev"]
    if config.max_train_samples:
        train = train.head(config.max_train_samples)
    if config.max_eval_samples:
        dev = dev.head(config.max_eval_samples)
    return train, dev


def make_compute_metrics(tokenizer, dev_rows: Seq2SeqRows, references: Sequence[list[str]], analyzer: str):
    """compute_metrics for generated dev predictions against their references.

    The Trainer may reorder the eval set (group_by_length also groups eval batches), so each prediction is
    matched to its references through its label ids, never through its position.
    """
    import numpy as np

    by_labels = {}
    for row, refs in zip(dev_rows.rows, references):
        by_labels.setdefault(tuple(row["labels"]), refs)

    def compute_metrics(eval_prediction) -> dict[str, float]:
        sequences = np.asarray(eval_prediction.predictions)
        sequences = np.where(sequences < 0, tokenizer.pad_token_id, sequences)  # -100 padding between batches
        padding = {IGNORE_INDEX, tokenizer.pad_token_id}  # label padding: IGNORE_INDEX from the collator, pad from the Trainer
        matched = [by_labels.get(tuple(int(t) for t in labels if t not in padding))
                   for labels in eval_prediction.label_ids]
        if any(refs is None for refs in matched):
            raise RuntimeError("dev predictions could not be matched to their references by label ids")
        return rouge_metrics(compute_rouge(decode(tokenizer, sequences), matched, analyzer=analyzer))

    return compute_metrics


def hook_callback(on_evaluate: OnEvaluate | None):
    """A TrainerCallback that logs each dev score and calls `on_evaluate(epoch, dev_score)`.

    Exceptions from the hook (e.g. optuna.TrialPruned) propagate out of `train`.
    """
    from transformers import TrainerCallback

    class EvaluateHook(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not metrics or f"eval_{SCORE_KEY}" not in metrics:
                return
            epoch, score = int(round(state.epoch or 0)), float(metrics[f"eval_{SCORE_KEY}"])
            log.info("epoch %d: dev ROUGE %.2f", epoch, score)
            if on_evaluate is not None:
                on_evaluate(epoch, score)

    return EvaluateHook()


def seq2seq_loss(label_smoothing: float) -> Callable[..., torch.Tensor]:
    """The Trainer's `compute_loss_func`: `token_sum_loss` of the decoder's logits against the labels.

    BART, mBART and T5 accept `**kwargs` but take the mean over their own batch, so the Trainer, reading that as a
    loss normalised by its target count, would neither divide by the accumulation steps nor undo its scaling by the
    DDP world size: 6 accumulation steps gave gradients 6x too large, 2 ranks 2x.
    """
    def loss(outputs, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        return token_sum_loss(outputs.logits, labels, num_items_in_batch, label_smoothing)

    return loss


def training_arguments(config: BaselineConfig, output_dir: Path):
    """Seq2SeqTrainingArguments from the config: evaluate and save every epoch, best by dev ROUGE; `output_dir` is
    `<run>/checkpoints`, the run folder names the run in `report_to`'s tool."""
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=config.num_train_epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps in transformers 5
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler_type,
        label_smoothing_factor=config.label_smoothing_factor,
        **precision_flags(config.precision),
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=SCORE_KEY,
        greater_is_better=True,
        save_total_limit=2,  # the best checkpoint is always kept, plus the latest for resuming
        predict_with_generate=True,
        generation_max_length=config.generation_max_length,
        generation_num_beams=config.num_beams,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        seed=config.seed,
        full_determinism=config.full_determinism,
        **tracking_arguments(config.report_to, Path(output_dir).parent),
        **loader_arguments(config.dataloader_num_workers),
        use_cpu=not torch.cuda.is_available(),
        **compile_arguments(config.torch_compile_mode),
        **NO_STEP_SYNC_ARGUMENTS,
    )


def loader_arguments(workers: int) -> dict[str, Any]:
    """TrainingArguments' loader settings: `workers` persistent collating processes on CUDA, none on the CPU."""
    workers = workers if torch.cuda.is_available() else 0
    return {"dataloader_num_workers": workers, "dataloader_persistent_workers": workers > 0}


def compile_arguments(mode: str) -> dict[str, Any]:
    """TrainingArguments' torch_compile and torch_compile_mode for a `torch_compile_mode` setting (CUDA only)."""
    if mode == "off" or not torch.cuda.is_available():
        return {"torch_compile": False}
    return {"torch_compile": True, "torch_compile_mode": None if mode == "default" else mode}


@contextmanager
def compile_scope(config: BaselineConfig) -> Iterator[None]:
    """Build a Trainer inside this block: its accelerator reads `torch_compile_regional` from accelerate's
    environment variable when it is created (TrainingArguments has no field for it)."""
    regional = config.torch_compile_regional and compile_arguments(config.torch_compile_mode)["torch_compile"]
    with patch.dict(os.environ, {REGIONAL_COMPILATION_ENV: str(regional).lower()}):  # restored afterwards
        yield


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest complete checkpoint-* folder of an interrupted run (incomplete ones skipped), or None."""
    return last_complete_checkpoint(checkpoint_dir)


def save_best(trainer, tokenizer, config: BaselineConfig, preset: Preset, run_dir: Path, best_score: float) -> Path:
    """Write the best model, tokenizer and track info into `run_dir/best` (complete or absent).

    Under DDP every rank calls this (the Trainer's save needs them all); only rank 0 touches files.
    """
    best, building = run_dir / BEST_DIR, run_dir / f".{BEST_DIR}.building"
    if is_main_process():
        shutil.rmtree(building, ignore_errors=True)
    barrier()
    trainer.save_model(str(building))  # writes on the main process only
    if is_main_process():
        tokenizer.save_pretrained(str(building))
        info = {"preset": preset.name, "family": preset.family, "mbart_lang": config.mbart_lang,
                "best_dev_score": best_score, "source_checkpoint": trainer.state.best_model_checkpoint}
        write_text_atomic(building / TRACK_INFO, json.dumps(info, indent=2))
        shutil.rmtree(best, ignore_errors=True)
        building.rename(best)
    barrier()
    return best


def finished_result(run_dir: Path) -> TrainResult | None:
    """The stored result of a run whose training already completed."""
    return TrainResult.load(run_dir) if (run_dir / BEST_DIR / TRACK_INFO).is_file() else None


def train(config: BaselineConfig, splits: Splits | Path | str, run_dir: Path | str,
          on_evaluate: OnEvaluate | None = None) -> TrainResult:
    """Fine-tune the preset on the train split, score dev every epoch, keep the best checkpoint in `run_dir/best`.

    `splits`: the loaded splits, or a data folder to load them from.

    If `run_dir/checkpoints` holds checkpoints of an interrupted run, training resumes from the newest one
    and reaches the same result as an uninterrupted run. A completed run returns its stored result.
    """
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, Seq2SeqTrainer

    run_dir = Path(run_dir)
    if (done := finished_result(run_dir)) is not None:
        return done
    seed_everything(config.seed)
    preset = get_preset(config.preset, TRACK)
    splits = load_splits(splits)
    train_frame, dev_frame = training_frames(splits, config)
    tokenizer, model = load_pretrained(model_source(preset, config.model_path), config.allow_bin_weights)
    configure_attention(model, config)
    add_data_tokens(tokenizer, model, data_special_tokens(splits.frames.values()))
    layout = configure_family(tokenizer, model, preset.family, config.mbart_lang)
    if config.num_beams == 1:  # a checkpoint's beam-only flags would make the generation config invalid
        model.generation_config.early_stopping = False
    model.generation_config.update(**generation_kwargs(config), max_length=config.generation_max_length)

    train_rows = build_rows(tokenizer, layout, train_frame["dialogue"], train_frame["summary"], config)
    dev_rows = build_rows(tokenizer, layout, dev_frame["dialogue"], dev_frame["summary"], config)

    checkpoint_dir = run_dir / CHECKPOINTS_DIR
    resume_from = last_checkpoint(checkpoint_dir)
    speed = training_speed_callback(real_tokens)
    with compile_scope(config):
        trainer = counting_trainer(Seq2SeqTrainer, speed, OOM_HINT)(
            model=model, args=training_arguments(config, checkpoint_dir),
            data_collator=speed.counting(DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=IGNORE_INDEX,
                                                                pad_to_multiple_of=pad_to_multiple_of())),
            train_dataset=train_rows, eval_dataset=dev_rows, processing_class=tokenizer,
            compute_loss_func=seq2seq_loss(config.label_smoothing_factor),
            compute_metrics=make_compute_metrics(tokenizer, dev_rows, list(dev_frame["references"]), config.analyzer),
            callbacks=[EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience),
                       hook_callback(on_evaluate), mark_complete_callback(), speed],  # speed last: after evaluations
        )
    try:
        if resume_from:
            log.info("resuming from %s", resume_from)
        with tracked_training(trainer, config, run_dir), disk_full_as_os_error(checkpoint_dir):
            trainer.train(resume_from_checkpoint=resume_from)
        best_score = float(trainer.state.best_metric)
        with disk_full_as_os_error(run_dir / f".{BEST_DIR}.building"):
            best = save_best(trainer, tokenizer, config, preset, run_dir, best_score)
        full_history = [{"epoch": int(round(e["epoch"])), "dev_score": e[f"eval_{SCORE_KEY}"], "loss": e["eval_loss"]}
                        for e in trainer.state.log_history if f"eval_{SCORE_KEY}" in e]
        result = TrainResult(best, best_score, history=full_history, global_step=trainer.state.global_step,
                             resumed_from=resume_from, speed=speed.figures())
        if is_main_process():
            result.save(run_dir)
            if not config.keep_checkpoints:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
        barrier()
        return result
    finally:
        # Free the model even when the hook raised (e.g. a pruned Optuna trial keeps the traceback alive).
        trainer.model = None
        del trainer, model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
