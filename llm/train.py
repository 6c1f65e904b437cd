"""LoRA/QLoRA fine-tuning with the transformers Trainer: packed or length-grouped batches, dev-score checkpoint
selection, early stopping, resume after an interrupt.

`train(config, splits, run_dir, on_evaluate=None)` is the track-contract entry point. At each evaluation the
model generates summaries for a fixed dev subset and `eval_score` (competition ROUGE) joins the metrics, so the
Trainer keeps the best checkpoint by score (or by `eval_loss` with select_by=loss). The best one is saved to
`run_dir/best/` with its tokenizer and prompt style.

Under torchrun every rank trains (the Trainer's DDP), the dev subset is generated in shares and scored once
(rank 0's score is every rank's, so early stopping and the best checkpoint agree), and only rank 0 writes files.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from competition.harness.distributed import barrier, broadcast_from_main, ensure_process_group, is_main_process
from competition.harness.runs import BEST_DIR, TrainResult, seed_everything
from competition.harness.tracks import OnEvaluate
from competition.modeling.checkpoints import disk_full_as_os_error, last_complete_checkpoint, mark_complete_callback
from competition.modeling.oom import row_slices, split_rows
from competition.modeling.prompts import encode_for_training
from competition.modeling.tokens import IGNORE_INDEX, pad_rows, padded_width, token_sum_loss
from competition.modeling.tracking import DEV_SCORE_KEY, rouge_metrics, tracked_training, tracking_arguments
from competition.modeling.trainer import NO_STEP_SYNC_ARGUMENTS, counting_trainer, training_speed_callback
from competition.rules.data import Splits, data_special_tokens, load_splits
from competition.rules.errors import ConfigError
from competition.rules.metric import compute_rouge
from llm.config import LLMConfig
from llm.generate import generate_summaries
from llm.kernels import fused_loss, liger_kernel_config
from llm.model import has_cuda, load_for_training, save_checkpoint

log = logging.getLogger(__name__)

PAD_TO_MULTIPLE_OF = 8  # padded widths (collator and token budget) round up to this
OOM_HINT = "set gradient_checkpointing=true, a smaller batch_tokens or max_source_length, or quantization=nf4"


def encode_rows(tokenizer, style, frame: pd.DataFrame) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Training examples (first reference as target) and how many dialogues/targets had to be cut."""
    examples, cuts = [], {"rows": len(frame), "dialogues_cut": 0, "targets_cut": 0}
    for dialogue, references in zip(frame["dialogue"], frame["references"]):
        encoded = encode_for_training(tokenizer, style, dialogue, references[0])
        examples.append({"input_ids": list(encoded.input_ids), "labels": list(encoded.labels)})
        cuts["dialogues_cut"] += int(encoded.dialogue_tokens_cut > 0)
        cuts["targets_cut"] += int(encoded.target_tokens_cut > 0)
    return examples, cuts


class PaddedCollator:
    """Right-pad input_ids (pad id) and labels (-100) to the longest row (multiple of 8), with no attention mask.

    Padding sits after every real token, so the causal mask alone already hides it from them, and the padded
    positions carry no label. Without a padding mask SDPA runs its causal flash kernel instead of the slower
    masked one; the loss is the same (tests/test_llm_train.py checks it against unpadded rows).
    """

    def __init__(self, pad_token_id: int, multiple: int = PAD_TO_MULTIPLE_OF):
        self.pad_token_id, self.multiple = pad_token_id, multiple

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, _ = pad_rows([f["input_ids"] for f in features], self.pad_token_id, multiple=self.multiple)
        labels, _ = pad_rows([f["labels"] for f in features], IGNORE_INDEX, multiple=self.multiple)
        return {"input_ids": ids, "labels": labels}


class PackedCollator:
    """Padding-free batches: rows concatenated into one sequence with restarting position_ids.

    The attention implementations (flash_attention_2, and sdpa/eager through transformers' packed-sequence mask)
    keep each row attending only to itself; the first label of every row is -100 so no row predicts across a seam.
    """

    def __init__(self):
        from transformers import DataCollatorWithFlattening

        self.flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.flatten([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])


class LabelledLogitsCollator:
    """Wraps a collator so the model computes logits only where a target exists (the summary tokens).

    The batch gains `logits_to_keep` (the positions where some row has a next-token target; transformers' causal
    LMs apply the LM head only there) and its `labels` become [B, K + 1]: column k + 1 is the target of kept
    position k and column 0 is ignored, the same shift as causal-LM labels, so the Trainer's label count is
    unchanged. With a 128k vocabulary the full [tokens, vocab] logits are most of a step's memory; a summary is a
    fraction of each row. `summary_token_loss` is the matching loss. With `shift_labels` the batch also holds the
    [B, K] targets themselves, for a model that computes its loss (`llm.kernels.fused_loss`).
    """

    def __init__(self, collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]], shift_labels: bool = False):
        self.collate, self.shift_labels = collate, shift_labels

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collate(features)
        targets = batch["labels"][:, 1:]
        positions = (targets != IGNORE_INDEX).any(0).nonzero().flatten()
        batch["logits_to_keep"] = positions
        batch["labels"] = torch.nn.functional.pad(targets[:, positions], (1, 0), value=IGNORE_INDEX)
        if self.shift_labels:
            batch["shift_labels"] = targets[:, positions].contiguous()
        return batch


def summary_token_loss(outputs, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None):
    """Cross-entropy of the kept logits against `LabelledLogitsCollator` labels, summed over target tokens and
    divided by the Trainer's target count (the same reduction as transformers' causal-LM loss)."""
    return token_sum_loss(outputs.logits.float(), labels[:, 1:], num_items_in_batch)


def loss_function(kernels: dict[str, bool] | None):
    """The Trainer's `compute_loss_func`: `summary_token_loss`, or None where the model computes the loss itself
    (liger's fused linear cross-entropy: the same sum over target tokens divided by the Trainer's count)."""
    return None if fused_loss(kernels) else summary_token_loss


class BucketCollator:
    """Collates a token-budget bucket (`{"bucket": [examples]}`, one per Trainer batch) or plain examples."""

    def __init__(self, collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]):
        self.collate = collate

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if features and "bucket" in features[0]:
            features = [example for feature in features for example in feature["bucket"]]
        return self.collate(features)


def split_batch_rows(batch: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """A collated batch cut into row pieces after an out-of-memory error: a padded one by rows (`oom.split_rows`), a
    packed one (rows in one sequence, position_ids restarting at 0) at the seams between its rows, each piece with
    the kept logits and labels its own rows would have been collated with."""
    if "position_ids" not in batch or batch["input_ids"].shape[0] != 1:
        return split_rows(batch, parts)
    positions = batch["position_ids"][0]
    starts = (positions == 0).nonzero().flatten().tolist() + [positions.numel()]
    targets = torch.full_like(positions, IGNORE_INDEX)[None]  # [1, T]: the next-token target of each position
    targets[0, batch["logits_to_keep"]] = batch["labels"][0, 1:]
    packed = ("input_ids", "position_ids", "labels", "logits_to_keep", "shift_labels")
    pieces = []
    for rows in row_slices(len(starts) - 1, parts):
        begin, end = starts[rows.start], starts[rows.stop]
        piece_targets = targets[:, begin:end]
        kept = (piece_targets[0] != IGNORE_INDEX).nonzero().flatten()
        piece = {key: value for key, value in batch.items() if key not in packed}
        piece.update(input_ids=batch["input_ids"][:, begin:end], position_ids=batch["position_ids"][:, begin:end],
                     logits_to_keep=kept,
                     labels=torch.nn.functional.pad(piece_targets[:, kept], (1, 0), value=IGNORE_INDEX))
        if "shift_labels" in batch:
            piece["shift_labels"] = piece_targets[:, kept].contiguous()
        pieces.append(piece)
    return pieces


def real_tokens(feature: dict[str, Any]) -> int:
    """Prompt + summary tokens of a train feature (an example or a token-budget bucket of them), no padding."""
    return sum(len(example["input_ids"]) for example in feature.get("bucket", [feature]))


def make_collator(config: LLMConfig, tokenizer, model_loss: bool = False):
    """The collator of `config.batching`, computing logits only at target positions, accepting buckets
    (`model_loss`: for a model that computes the loss itself from `shift_labels`)."""
    if config.batching == "packed":
        if config.attn_implementation not in ("sdpa", "eager", "flash_attention_2"):
            raise ConfigError("batching=packed needs attn_implementation sdpa, eager or flash_attention_2")
        collate = PackedCollator()
    else:
        collate = PaddedCollator(tokenizer.pad_token_id)
    return BucketCollator(LabelledLogitsCollator(collate, shift_labels=model_loss))


def token_budget_buckets(lengths: list[int], budget: int, padded: bool, seed: int) -> list[list[int]]:
    """Row indices in batches of similar length holding at most `budget` tokens each (padding to the longest row,
    rounded up to 8, counted when `padded`); a row longer than the budget is a batch of its own.

    Rows are ordered by length (ties in a seeded random order) and cut greedily; the Trainer shuffles the batches.
    """
    shuffled = list(range(len(lengths)))
    random.Random(seed).shuffle(shuffled)
    order = sorted(shuffled, key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    current: list[int] = []
    tokens = 0  # real tokens in `current`
    for index in order:
        # longest first: the bucket's first row sets its padded width
        width = padded_width(lengths[current[0] if current else index], PAD_TO_MULTIPLE_OF)
        cost = width * (len(current) + 1) if padded else tokens + lengths[index]
        if current and cost > budget:
            buckets.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += lengths[index]
    if current:
        buckets.append(current)
    return buckets


def training_dataset(examples: list[dict[str, list[int]]], config: LLMConfig) -> list[dict[str, Any]]:
    """The Trainer's train dataset: the examples, or token-budget buckets of them when batch_tokens > 0."""
    if config.batch_tokens <= 0:
        return examples
    buckets = token_budget_buckets([len(e["input_ids"]) for e in examples], config.batch_tokens,
                                   padded=config.batching != "packed", seed=config.seed)
    log.info("train: %d rows in %d batches of at most %d tokens", len(examples), len(buckets), config.batch_tokens)
    return [{"bucket": [examples[i] for i in bucket]} for bucket in buckets]


def dev_subset_indices(n_rows: int, subset: int, seed: int) -> list[int]:
    """A fixed random subset of dev rows (all when subset is 0 or larger than dev), in file order."""
    if subset <= 0 or subset >= n_rows:
        return list(range(n_rows))
    return sorted(random.Random(seed).sample(range(n_rows), subset))


def _dev_score_callback(config: LLMConfig, tokenizer, style, dev: pd.DataFrame, on_evaluate: OnEvaluate | None):
    """A TrainerCallback adding `eval_score` (dev ROUGE of generated summaries) to each evaluation's metrics, and
    logging it with its ROUGE-1/2/L through `callback.trainer` (set once the Trainer exists) to `report_to`'s tool."""
    from transformers import TrainerCallback

    class DevScoreCallback(TrainerCallback):
        trainer = None

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            metrics = metrics if metrics is not None else {}
            if config.select_by == "score":
                summaries = generate_summaries(model, tokenizer, style, list(dev["dialogue"]), config,
                                               desc=f"dev@{state.global_step}")  # shared out over the ranks
                rouge = broadcast_from_main(lambda: compute_rouge(summaries, list(dev["references"])))
                metrics[f"eval_{DEV_SCORE_KEY}"] = score = rouge.final
                if self.trainer is not None:  # the Trainer logged this evaluation before calling back: add the score
                    self.trainer.log(rouge_metrics(rouge, "eval_"))
            else:
                score = -float(metrics["eval_loss"])
            # kept in the Trainer's state, so it is saved with every checkpoint and survives a resume
            state.log_history.append({"step": state.global_step, "epoch": float(state.epoch or 0),
                                      "dev_score": score, "eval_loss": float(metrics.get("eval_loss", "nan"))})
            log.info("step %d: dev %s %.4f", state.global_step, config.select_by, score)
            if on_evaluate is not None:
                on_evaluate(state.global_step, score)  # may raise (e.g. optuna.TrialPruned): propagates

    return DevScoreCallback()


def mixed_precision(dtype: torch.dtype) -> dict[str, bool]:
    """The Trainer's flags for the model's compute dtype: bf16 autocast, or fp16 with loss scaling (GPUs without
    bf16, or precision=fp16); neither in fp32."""
    return {"use_bf16": dtype == torch.bfloat16, "use_fp16": dtype == torch.float16}


def training_arguments(config: LLMConfig, output_dir: Path, use_bf16: bool, use_fp16: bool,
                       liger: dict[str, bool] | None = None):
    """TrainingArguments from the config (checkpointing aligned with evaluation so the best can be kept);
    `liger`: the fused kernels the Trainer applies (`llm.kernels.liger_kernel_config`), None = none;
    `output_dir`: `<run>/checkpoints`, the run folder names the run in `report_to`'s tool."""
    from transformers import TrainingArguments

    strategy = "steps" if config.eval_steps > 0 else "epoch"
    optim = config.optim if config.optim != "auto" else ("paged_adamw_8bit" if has_cuda() else "adamw_torch")
    return TrainingArguments(
        output_dir=str(output_dir), seed=config.seed, data_seed=config.seed,
        num_train_epochs=config.num_train_epochs, learning_rate=config.learning_rate,
        per_device_train_batch_size=1 if config.batch_tokens > 0 else config.per_device_train_batch_size,  # a bucket is a batch
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay, lr_scheduler_type=config.lr_scheduler_type, optim=optim,
        max_grad_norm=config.max_grad_norm, bf16=use_bf16, fp16=use_fp16, use_cpu=not has_cuda(),
        eval_strategy=strategy, save_strategy=strategy,
        eval_steps=config.eval_steps or None, save_steps=config.eval_steps or None,
        logging_steps=config.logging_steps, save_total_limit=config.save_total_limit,
        load_best_model_at_end=True, metric_for_best_model="eval_score" if config.select_by == "score" else "eval_loss",
        greater_is_better=config.select_by == "score", restore_callback_states_from_checkpoint=True,
        train_sampling_strategy="group_by_length" if config.batching == "grouped" and config.batch_tokens <= 0
        else "random",
        remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=0,
        **tracking_arguments(config.report_to, Path(output_dir).parent),
        # DDP only: every trainable (LoRA or full) weight takes part in each step, so skip the unused-weight
        # search (the Trainer would turn it on for a PeftModel; it also clashes with gradient checkpointing)
        ddp_find_unused_parameters=False,
        use_liger_kernel=liger is not None, liger_kernel_config=liger, **NO_STEP_SYNC_ARGUMENTS,
    )


def train(config: LLMConfig, splits: Splits | Path | str, run_dir: Path | str,
          on_evaluate: OnEvaluate | None = None) -> TrainResult:
    """Fine-tune per `config` on the train split, evaluating on dev; resumes from run_dir's checkpoints.

    `splits`: the loaded splits, or a data folder to load them from.

    Under torchrun, every rank calls this with the same run_dir; each returns once rank 0 has saved `best/`.
    """
    from transformers import EarlyStoppingCallback, Trainer

    ensure_process_group()
    run_dir = Path(run_dir)
    finished = broadcast_from_main(lambda: TrainResult.load(run_dir))
    if finished is not None and finished.best_checkpoint.is_dir():
        log.info("%s: training already finished; best checkpoint %s", run_dir, finished.best_checkpoint)
        return finished
    seed_everything(config.seed)
    splits = load_splits(splits)
    train_frame = splits["train"].head(config.max_train_samples) if config.max_train_samples else splits["train"]
    model, tokenizer, style, info = load_for_training(config, data_special_tokens(splits.frames.values()))
    train_examples, cuts = encode_rows(tokenizer, style, train_frame)
    log.info("train: %d rows, %d dialogues cut to fit, %d summaries cut to max_target_length",
             cuts["rows"], cuts["dialogues_cut"], cuts["targets_cut"])
    dev = splits["dev"].iloc[dev_subset_indices(len(splits["dev"]), config.max_eval_samples or 0, config.seed)]
    dev_examples, _ = encode_rows(tokenizer, style, dev)
    speed = training_speed_callback(real_tokens)
    dev_score = _dev_score_callback(config, tokenizer, style, dev, on_evaluate)
    callbacks = [dev_score, mark_complete_callback()]
    if config.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    callbacks.append(speed)  # last: the dev generation of each evaluation is not training time
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    kernels = liger_kernel_config(config.fused_kernels, model)
    args = training_arguments(config, run_dir / "checkpoints", **mixed_precision(dtype), liger=kernels)
    trainer = counting_trainer(Trainer, speed, OOM_HINT, split_batch_rows)(
        model=model, args=args, train_dataset=training_dataset(train_examples, config), eval_dataset=dev_examples,
        data_collator=speed.counting(make_collator(config, tokenizer, fused_loss(kernels))),
        compute_loss_func=loss_function(kernels), processing_class=tokenizer, callbacks=callbacks)
    dev_score.trainer = trainer
    last = last_complete_checkpoint(run_dir / "checkpoints")  # a checkpoint cut short is skipped
    if last:
        log.info("resuming training from %s", last)
    with tracked_training(trainer, config, run_dir), disk_full_as_os_error(run_dir / "checkpoints"):
        trainer.train(resume_from_checkpoint=last)
    result = TrainResult(run_dir / BEST_DIR, _best_score(trainer, config),
                         history=[e for e in trainer.state.log_history if "dev_score" in e],
                         global_step=trainer.state.global_step, resumed_from=last, cuts=cuts,
                         speed=speed.figures())
    if is_main_process():
        with disk_full_as_os_error(result.best_checkpoint):
            save_checkpoint(trainer.model, tokenizer, style, info, result.best_checkpoint)  # best weights loaded at end
        result.save(run_dir)
    barrier()  # the other ranks load best/ next
    return result


def _best_score(trainer, config: LLMConfig) -> float:
    best = trainer.state.best_metric
    if best is None:
        return float("nan")
    return float(best) if config.select_by == "score" else -float(best)
