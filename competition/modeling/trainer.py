"""Glue between both tracks and transformers' Trainer: TrainingArguments that avoid per-step GPU syncs, and the
real-token training speed (a callback, a counting collator and a Trainer subclass)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

# Both tracks' TrainingArguments, against GPU syncs at every step, which drain the queue a host-bound step needs: the
# Trainer's NaN/inf filter of the logged loss reads each step's loss back (without it a NaN loss is logged as NaN),
# and a blocking copy of a batch to the GPU waits for the GPU (non_blocking copies from the pinned batch instead).
NO_STEP_SYNC_ARGUMENTS = {"logging_nan_inf_filter": False, "accelerator_config": {"non_blocking": True}}
# transformers' defaults, for the benchmarks' comparison rows
STEP_SYNC_ARGUMENTS = {"logging_nan_inf_filter": True, "accelerator_config": {"non_blocking": False}}

REAL_TOKENS_KEY = "harness_real_tokens"  # a training batch's real-token count, from its collator to the Trainer


def training_speed_callback(row_tokens: Callable[[Any], int]):
    """A TrainerCallback measuring real training tokens/s; after training `callback.figures()` gives
    `train_tokens`, `train_step_seconds` and `real_tokens_per_s` (TrainResult.speed).

    Tokens: `row_tokens(feature)` of every feature of the training batches (real tokens, no padding). The
    collator counts them (`callback.counting(collator)`, so loader workers may collate) and puts the count into
    the batch; a Trainer class made by `counting_trainer` takes it out of every batch, adding the training ones.
    Seconds: the training steps' wall time, evaluations (dev generation included) and checkpoint saves left out;
    CUDA is synchronised only before those, so the steps keep their CPU/GPU overlap. One process: under DDP these
    are one GPU's figures. Add it last, after the callbacks whose evaluation work must be left out.
    """
    from transformers import TrainerCallback

    class TrainingSpeed(TrainerCallback):
        def __init__(self) -> None:
            self.tokens: int | None = None
            self.seconds = 0.0
            self.mark = time.perf_counter()

        def counting(self, collate: Callable[[list[Any]], dict]) -> Callable[[list[Any]], dict]:
            """`collate`, with the batch's real-token count under REAL_TOKENS_KEY (picklable for loader workers)."""
            return _CountingCollator(collate, row_tokens)

        def add_tokens(self, count: int) -> None:
            self.tokens = (self.tokens or 0) + count

        def on_train_begin(self, args, state, control, **kwargs):
            self.mark = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self._add_steps(sync=control.should_evaluate or control.should_save or control.should_training_stop)

        def on_epoch_end(self, args, state, control, **kwargs):
            self._add_steps(sync=True)

        def on_evaluate(self, args, state, control, **kwargs):
            self.mark = time.perf_counter()

        def on_save(self, args, state, control, **kwargs):
            self.mark = time.perf_counter()

        def _add_steps(self, sync: bool) -> None:
            if sync:
                _cuda_synchronize()
            now = time.perf_counter()
            self.seconds += now - self.mark
            self.mark = now

        def figures(self) -> dict[str, float | None]:
            per_s = self.tokens / self.seconds if self.tokens is not None and self.seconds > 0 else None
            return {"train_tokens": self.tokens, "train_step_seconds": round(self.seconds, 3),
                    "real_tokens_per_s": round(per_s, 1) if per_s is not None else None}

    return TrainingSpeed()


@dataclass
class _CountingCollator:
    collate: Callable[[list[Any]], dict]
    row_tokens: Callable[[Any], int]

    def __call__(self, features: list[Any]) -> dict:
        batch = self.collate(features)
        batch[REAL_TOKENS_KEY] = sum(self.row_tokens(feature) for feature in features)
        return batch


def counting_trainer(trainer_class: type, speed) -> type:
    """`trainer_class` taking REAL_TOKENS_KEY out of every batch before the model sees it, and adding the count
    of each training batch to `speed` (a training_speed_callback)."""

    class CountingTrainer(trainer_class):
        def get_batch_samples(self, epoch_iterator, num_batches, device):  # the training loop's batches only
            batches, items = super().get_batch_samples(epoch_iterator, num_batches, device)
            for batch in batches:
                speed.add_tokens(int(batch.get(REAL_TOKENS_KEY, 0)))
            return batches, items

        def _prepare_inputs(self, inputs):  # training and evaluation batches alike
            inputs.pop(REAL_TOKENS_KEY, None)
            return super()._prepare_inputs(inputs)

    CountingTrainer.__name__ = CountingTrainer.__qualname__ = f"Counting{trainer_class.__name__}"
    return CountingTrainer


def _cuda_synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
