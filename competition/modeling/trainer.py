"""Glue between both tracks and transformers' Trainer: TrainingArguments that avoid per-step GPU syncs, the
real-token training speed (a callback, a counting collator and a Trainer subclass), and the subclass's recovery
from out-of-memory errors (`competition.modeling.oom`)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable

# Both tracks' TrainingArguments, against GPU syncs at every step, which drain the queue a host-bound step needs: the
# Trainer's NaN/inf filter of the logged loss reads each step's loss back (without it a NaN loss is logged as NaN),
# and a blocking copy of a batch to the GPU waits for the GPU (non_blocking copies from the pinned batch instead).
NO_STEP_SYNC_ARGUMENTS = {"logging_nan_inf_filter": False, "accelerator_config": {"non_blocking": True}}

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


def counting_trainer(trainer_class: type, speed, oom_hint: str = "use a smaller batch",
                     split_batch: Callable[[dict, int], list[dict]] | None = None) -> type:
    """`trainer_class` taking REAL_TOKENS_KEY out of every batch before the model sees it, adding the count of each
    training batch to `speed` (a training_speed_callback), and recovering from out-of-memory errors.

    Out of memory in a training step: the step's gradients so far are dropped and its micro-batches run again, each
    cut into row pieces (`split_batch(batch, parts)`, default `oom.split_rows`); the loss is summed over targets and
    divided by the Trainer's count of the whole step's targets (`num_items_in_batch`, both tracks' losses), so the
    pieces' gradients add up to the same step. Later steps keep the pieces. Evaluation batches split on their own
    count, never the training one. One row that does not fit raises `oom.OutOfMemory` naming `oom_hint`.
    """
    from competition.modeling import oom

    split = split_batch or oom.split_rows

    class CountingTrainer(trainer_class):
        def get_batch_samples(self, epoch_iterator, num_batches, device):  # the training loop's batches only
            batches, items = super().get_batch_samples(epoch_iterator, num_batches, device)
            for batch in batches:
                speed.add_tokens(int(batch.get(REAL_TOKENS_KEY, 0)))
            return batches, items

        def _prepare_inputs(self, inputs):  # training and evaluation batches alike
            inputs.pop(REAL_TOKENS_KEY, None)
            return super()._prepare_inputs(inputs)

        def training_step(self, model, inputs, num_items_in_batch=None):
            import torch

            splitter = _attribute(self, "_train_split", lambda: oom.SplitOnOom("training", oom_hint))
            earlier = _attribute(self, "_step_batches", list)  # this optimizer step's finished micro-batches
            parent = super(CountingTrainer, self)

            def attempt(parts: int, retry: bool):
                if retry:  # the failed attempt may have added part of its gradients: redo the whole step so far
                    model.zero_grad(set_to_none=True)
                    for batch in earlier:
                        for piece in split(batch, parts):
                            with self.accelerator.no_sync(model):
                                parent.training_step(model, piece, num_items_in_batch)
                if parts == 1:
                    return parent.training_step(model, inputs, num_items_in_batch)
                pieces = split(inputs, parts)
                losses = []
                for index, piece in enumerate(pieces):  # only the last piece may synchronise DDP gradients
                    with self.accelerator.no_sync(model) if index < len(pieces) - 1 else contextlib.nullcontext():
                        losses.append(parent.training_step(model, piece, num_items_in_batch))
                return torch.stack(losses).sum()

            loss = splitter.run(attempt, oom.batch_rows(inputs), step=self.state.global_step + 1)
            earlier.append(inputs)
            if self.accelerator.sync_gradients:  # the optimizer step follows: a new step starts next
                earlier.clear()
            return loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **kwargs):
            splitter = _attribute(self, "_eval_split", lambda: oom.SplitOnOom("evaluation", oom_hint))
            parent = super(CountingTrainer, self)

            def attempt(parts: int, retry: bool):
                if parts == 1:
                    return parent.prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys,
                                                  **kwargs)
                pieces = split(inputs, parts)
                counts = [_target_count(piece) for piece in pieces]
                outputs = [parent.prediction_step(model, piece, prediction_loss_only, ignore_keys=ignore_keys,
                                                  **kwargs) for piece in pieces]
                return _joined_predictions(outputs, counts)

            return splitter.run(attempt, oom.batch_rows(inputs), step=self.state.global_step)

    CountingTrainer.__name__ = CountingTrainer.__qualname__ = f"Counting{trainer_class.__name__}"
    return CountingTrainer


def _attribute(owner: Any, name: str, make: Callable[[], Any]) -> Any:
    """`owner.name`, set to `make()` the first time (the Trainer's __init__ is left alone)."""
    if not hasattr(owner, name):
        setattr(owner, name, make())
    return getattr(owner, name)


def _target_count(batch: dict) -> int:
    labels = batch.get("labels")
    return int((labels != -100).sum()) if labels is not None else int(batch["input_ids"].shape[0])


def _joined_predictions(outputs: list[tuple], counts: list[int]) -> tuple:
    """One (loss, predictions, labels) of a batch from its pieces': the loss their target-weighted mean (each piece's
    is the mean over its own targets), predictions and labels stacked, padded with -100 to the widest piece."""
    losses = [out[0] for out in outputs]
    loss = None
    if all(value is not None for value in losses):
        loss = sum(value.float() * count for value, count in zip(losses, counts)) / max(sum(counts), 1)
    return loss, _stacked([out[1] for out in outputs]), _stacked([out[2] for out in outputs])


def _stacked(tensors: list) -> Any:
    import torch

    if any(t is None for t in tensors):
        return None
    if isinstance(tensors[0], (tuple, list)):  # e.g. several logits tensors
        return type(tensors[0])(_stacked(list(group)) for group in zip(*tensors))
    if tensors[0].dim() < 2:
        return torch.cat(tensors)
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, width - t.shape[1]), value=-100)
                      for t in tensors])


def _cuda_synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
