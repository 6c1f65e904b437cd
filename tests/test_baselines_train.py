"""Training tests of the encoder-decoder track on tiny-bart (CPU, about 2-3 minutes in all).

Run: .venv/bin/python -m pytest -q tests/test_baselines_train.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.data import sample_rows, write_data_dir
from safetensors.torch import load_file

from baselines.config import TRACK, load_config
from baselines.model import configure_family, load_pretrained
from baselines.predict import predict
from baselines.train import CHECKPOINTS_DIR, build_rows, seq2seq_loss, train
from competition.harness.presets import get_preset
from competition.modeling.loading import model_source
from competition.modeling.tokens import IGNORE_INDEX
from competition.rules.metric import compute_rouge

pytestmark = pytest.mark.integration


def test_memorises_sixteen_dialogues(tmp_path: Path) -> None:
    """Integrity: a tiny model trained on 16 dialogues reproduces their summaries (score >= 90).

    Fails if labels (layout, shift), data tokens, decoding or the metric are wrong: any of them caps the score.
    """
    rows = sample_rows("train", 16)
    data = write_data_dir(tmp_path / "data", rows, rows, train_repeats=10)  # 10 steps per epoch
    # no_repeat_ngram_size=0: the baseline's 2 forbids the summaries' repeated bigrams ("#Person2# 는").
    config = load_config("tiny-bart", overrides={
        "num_train_epochs": 12, "learning_rate": 3e-3, "warmup_ratio": 0.0, "lr_scheduler_type": "linear",
        "per_device_train_batch_size": 16, "num_beams": 2, "no_repeat_ngram_size": 0, "generation_max_length": 48,
        "early_stopping_patience": 3})
    result = train(config, data, tmp_path / "run")
    predictions = predict(result.best_checkpoint, list(rows["dialogue"]), config)
    score = compute_rouge(predictions, [[s] for s in rows["summary"]], analyzer="mecab").final
    assert score >= 90, (score, predictions[:3])
    # the dev evaluation inside training scored the same model on the same rows
    assert score == pytest.approx(result.best_dev_score, abs=1.0)
    for prediction, summary in zip(predictions, rows["summary"]):
        for tag in ("#Person1#", "#Person2#"):
            assert (tag in prediction) or (tag not in summary), (prediction, summary)
    assert not (tmp_path / "run" / CHECKPOINTS_DIR).exists()  # dropped once best/ is saved


class Interrupt(Exception):
    """Stands in for a crash or Ctrl-C in the middle of training."""


def test_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    """Interrupted at the epoch-2 evaluation, then resumed: same history, same best weights as one run."""
    rows = sample_rows("train", 16)
    data = write_data_dir(tmp_path / "data", rows, sample_rows("dev", 8), train_repeats=3)
    config = load_config("tiny-bart", overrides={
        "num_train_epochs": 3, "learning_rate": 2e-3, "per_device_train_batch_size": 16, "num_beams": 1,
        "generation_max_length": 24, "full_determinism": True})

    straight = train(config, data, tmp_path / "straight")

    def interrupt_at_epoch_two(epoch: int, score: float) -> None:
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, data, tmp_path / "resumed", on_evaluate=interrupt_at_epoch_two)
    assert list((tmp_path / "resumed" / CHECKPOINTS_DIR).glob("checkpoint-*")), "nothing to resume from"
    partial = tmp_path / "resumed" / CHECKPOINTS_DIR / "checkpoint-999"  # a save cut short (full disk, kill)
    partial.mkdir()
    (partial / "config.json").write_text("{")
    resumed = train(config, data, tmp_path / "resumed")

    assert resumed.resumed_from is not None and not resumed.resumed_from.endswith("checkpoint-999")
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history == straight.history
    assert resumed.best_dev_score == straight.best_dev_score
    weights_a = load_file(straight.best_checkpoint / "model.safetensors")
    weights_b = load_file(resumed.best_checkpoint / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name


def test_on_evaluate_gets_every_epoch_and_its_exception_propagates(tmp_path: Path) -> None:
    """The tuner's hook sees (epoch, dev score) after each evaluation; raising from it stops training."""
    rows = sample_rows("train", 8)
    data = write_data_dir(tmp_path / "data", rows, sample_rows("dev", 4))
    config = load_config("tiny-bart", overrides={"num_train_epochs": 3, "per_device_train_batch_size": 8,
                                                 "num_beams": 1, "generation_max_length": 8})
    seen: list[tuple[int, float]] = []

    class Pruned(Exception):
        pass

    def hook(epoch: int, score: float) -> None:
        seen.append((epoch, score))
        if epoch == 2:
            raise Pruned

    with pytest.raises(Pruned):
        train(config, data, tmp_path / "run", on_evaluate=hook)
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert all(0.0 <= score <= 100.0 for _, score in seen)
    assert not (tmp_path / "run" / "best").exists()


def one_sgd_step(rows, batch: int, accumulation: int, work_dir: Path) -> dict[str, torch.Tensor]:
    """tiny-bart's weights after one plain SGD step (lr 1, no clipping) over `batch` x `accumulation` rows."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    config = load_config("tiny-bart")
    tokenizer, model = load_pretrained(model_source(get_preset("tiny-bart", TRACK)))
    layout = configure_family(tokenizer, model, "bart")
    args = Seq2SeqTrainingArguments(output_dir=str(work_dir), max_steps=1, per_device_train_batch_size=batch,
                                    gradient_accumulation_steps=accumulation, optim="sgd", learning_rate=1.0,
                                    lr_scheduler_type="constant", max_grad_norm=0.0, save_strategy="no",
                                    report_to="none", use_cpu=True, train_sampling_strategy="sequential")
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=build_rows(
        tokenizer, layout, rows["dialogue"], rows["summary"], config),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=IGNORE_INDEX),
        compute_loss_func=seq2seq_loss(label_smoothing=0.0))
    trainer.train()
    return {name: weight.detach().clone() for name, weight in model.named_parameters()}


def test_accumulated_batches_take_the_same_step_as_one_batch(tmp_path: Path) -> None:
    """8 rows as one batch or as 2 accumulated batches of 4 move the weights alike: the loss is summed over target
    tokens and divided by the step's count. BART's own loss (a mean per batch, which the Trainer does not divide by
    the accumulation steps since the model takes **kwargs) gave about twice the step."""
    rows = sample_rows("train", 8)
    whole = one_sgd_step(rows, batch=8, accumulation=1, work_dir=tmp_path / "whole")
    split = one_sgd_step(rows, batch=4, accumulation=2, work_dir=tmp_path / "split")
    start = load_pretrained(model_source(get_preset("tiny-bart", TRACK)))[1].state_dict()
    moved = sum(float((whole[name] - start[name]).abs().sum()) for name in whole)
    assert moved > 1.0  # the step did something
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-5, msg=name)
