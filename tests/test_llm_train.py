"""Tests for LLM training (`llm.train`, `llm.model`): packing correctness, memorisation integrity, resume.

Run: .venv/bin/python -m pytest tests/test_llm_train.py -q     (integration ones: -m integration; `make test` runs them)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from competition.modeling.prompts import IGNORE_INDEX, encode_continuation, scaffold_for
from competition.rules.data import load_splits
from competition.rules.metric import compute_rouge
from llm.config import load_config
from llm.generate import predict
from llm.model import load_for_training
from llm.train import (
    PackedCollator,
    PaddedCollator,
    encode_rows,
    make_collator,
    summary_token_loss,
    token_budget_buckets,
    train,
)

# Settings under which a random-init tiny Llama memorises 16 summaries in ~40 s on 2 free cores: short prompts
# (the opening of each dialogue identifies it), full fine-tune, no evaluation until the end.
MEMORISE = dict(finetune="full", max_source_length=64, cut="keep_start", num_train_epochs=60, learning_rate=5e-3, per_device_train_batch_size=8,
                gradient_accumulation_steps=1, warmup_ratio=0.0, select_by="loss", max_eval_samples=0, early_stopping_patience=0,
                eval_steps=10_000, save_total_limit=1, logging_steps=20, max_new_tokens=64)


def write_data(folder: Path, train: pd.DataFrame, dev: pd.DataFrame, test: pd.DataFrame | None = None) -> Path:
    """A data folder with the given splits (in-memory rows of the bundled sample)."""
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    dev.to_csv(folder / "dev.csv", index=False)
    if test is not None:
        test.to_csv(folder / "test.csv", index=False)
    return folder


@pytest.fixture
def sixteen(tmp_path, sample_dir) -> Path:
    """16 sample dialogues as both train and dev."""
    rows = pd.read_csv(sample_dir / "train.csv", dtype=str, keep_default_na=False).head(16)
    return write_data(tmp_path / "data16", rows, rows)


def test_packed_batch_gives_the_same_loss_as_padded(sixteen):
    """Padding-free packing must not let rows attend across their seams (position_ids restart per row)."""
    config = load_config("tiny-llama", overrides={"finetune": "full", "max_source_length": 96})
    model, tokenizer, style, _ = load_for_training(config, [])
    examples, _ = encode_rows(tokenizer, style, load_splits(sixteen)["train"].head(3))
    model.eval()
    with torch.no_grad():
        packed = model(**PackedCollator()(examples)).loss
        padded_batch = PaddedCollator(tokenizer.pad_token_id)(examples)
        padded = model(**padded_batch).loss
        separate = [model(**PaddedCollator(tokenizer.pad_token_id)([e])).loss for e in examples]
    assert packed.item() == pytest.approx(padded.item(), abs=1e-4)
    counts = [sum(1 for x in e["labels"][1:] if x != IGNORE_INDEX) for e in examples]
    weighted = sum(loss.item() * c for loss, c in zip(separate, counts)) / sum(counts)
    assert packed.item() == pytest.approx(weighted, abs=1e-4)


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-neox"])
@pytest.mark.parametrize("batching", ["padded", "packed"])
def test_logits_at_target_positions_only_give_the_models_own_loss(preset, batching, sixteen):
    """The training collator keeps only target positions' logits; the loss must equal the full-logits loss."""
    overrides = {"finetune": "full", "max_source_length": 96, "batching": batching}
    if preset == "tiny-gemma2":
        overrides["attn_implementation"] = "eager"
    config = load_config(preset, overrides=overrides)
    model, tokenizer, style, _ = load_for_training(config, [])
    examples, _ = encode_rows(tokenizer, style, load_splits(sixteen)["train"].head(4))
    inner = PackedCollator() if batching == "packed" else PaddedCollator(tokenizer.pad_token_id)
    model.eval()
    with torch.no_grad():
        full = model(**inner(examples)).loss
        batch = make_collator(config, tokenizer)(examples)
        labels = batch.pop("labels")
        outputs = model(**batch)
        kept = summary_token_loss(outputs, labels, num_items_in_batch=None)
    targets = sum(1 for e in examples for x in e["labels"][1:] if x != IGNORE_INDEX)
    assert outputs.logits.shape[1] < batch["input_ids"].shape[1] / 2  # most positions skipped
    assert int((labels[:, 1:] != IGNORE_INDEX).sum()) == int((labels != IGNORE_INDEX).sum()) == targets
    assert kept.item() == pytest.approx(full.item(), rel=1e-5)


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-neox"])
def test_a_model_computing_its_own_loss_from_shift_labels_gives_summary_token_loss(preset, sixteen):
    """The route liger's fused linear cross-entropy takes (model gets labels + shift_labels + the Trainer's count)
    has the reduction of `summary_token_loss`, so switching the fused loss on changes no number but rounding."""
    overrides = {"finetune": "full", "max_source_length": 96}
    if preset == "tiny-gemma2":
        overrides["attn_implementation"] = "eager"
    config = load_config(preset, overrides=overrides)
    model, tokenizer, style, _ = load_for_training(config, [])
    examples, _ = encode_rows(tokenizer, style, load_splits(sixteen)["train"].head(4))
    model.eval()
    batch = make_collator(config, tokenizer, model_loss=True)(examples)
    count = int((batch["labels"] != IGNORE_INDEX).sum())  # what the Trainer passes as num_items_in_batch
    assert batch["shift_labels"].shape == (batch["labels"].shape[0], batch["labels"].shape[1] - 1)
    with torch.no_grad():
        own = model(**batch, num_items_in_batch=torch.tensor(count)).loss
        labels = batch.pop("labels")
        del batch["shift_labels"]
        reference = summary_token_loss(model(**batch), labels, num_items_in_batch=torch.tensor(count))
    assert own.item() == pytest.approx(reference.item(), rel=1e-6)


@pytest.mark.integration
def test_the_trainer_takes_the_same_steps_when_the_model_computes_the_loss(sixteen, tmp_path):
    """Through the Trainer (gradient accumulation, its target count passed to the model): LoRA weights after two
    optimizer steps are the same with `summary_token_loss` and with the model's own loss (the fused-loss route)."""
    from transformers import Trainer

    from llm.train import loss_function, training_arguments

    config = load_config("tiny-llama", overrides={"quantization": "none", "lora_dropout": 0.0,
                                                  "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2,
                                                  "max_source_length": 96, "batching": "padded", "optim": "sgd",
                                                  "learning_rate": 0.5, "max_grad_norm": 0.0, "warmup_ratio": 0.0})
    trained = {}  # plain SGD without clipping: a wrongly scaled loss would move the weights differently
    for model_loss in (False, True):
        torch.manual_seed(0)
        model, tokenizer, style, _ = load_for_training(config, [])
        examples, _ = encode_rows(tokenizer, style, load_splits(sixteen)["train"].head(8))
        args = training_arguments(config, tmp_path / str(model_loss), use_bf16=False, use_fp16=False)
        args.max_steps, args.eval_strategy, args.save_strategy, args.load_best_model_at_end = 2, "no", "no", False
        kernels = {"fused_linear_cross_entropy": True} if model_loss else None  # what liger's config says
        Trainer(model=model, args=args, train_dataset=examples, data_collator=make_collator(config, tokenizer, model_loss),
                compute_loss_func=loss_function(kernels), processing_class=tokenizer).train()
        trained[model_loss] = {n: w.detach().clone() for n, w in model.named_parameters() if w.requires_grad}
    assert trained[False].keys() == trained[True].keys()
    for name, weight in trained[False].items():
        torch.testing.assert_close(trained[True][name], weight, rtol=1e-5, atol=1e-7, msg=name)


def test_fused_kernels_auto_is_off_without_cuda_and_liger_refuses_with_the_reason(monkeypatch):
    from competition.rules.errors import ConfigError
    from llm.kernels import liger_kernel_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = type("M", (torch.nn.Module,), {})()
    model.config = type("C", (), {"model_type": "llama"})()
    assert liger_kernel_config("auto", model) is None
    assert liger_kernel_config("off", model) is None
    with pytest.raises(ConfigError, match="fused_kernels=liger: no CUDA GPU"):
        liger_kernel_config("liger", model)


def test_token_budget_buckets_cover_every_row_once_within_the_budget():
    lengths = [37, 400, 12, 250, 251, 90, 91, 92, 700, 30, 31, 33]
    buckets = token_budget_buckets(lengths, budget=512, padded=True, seed=1)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    for bucket in buckets:
        width = -(-max(lengths[i] for i in bucket) // 8) * 8
        assert len(bucket) == 1 or width * len(bucket) <= 512
    assert [8] in buckets  # longer than the budget: alone
    packed = token_budget_buckets(lengths, budget=512, padded=False, seed=1)
    assert all(len(b) == 1 or sum(lengths[i] for i in b) <= 512 for b in packed)
    assert len(packed) <= len(buckets)
    assert token_budget_buckets(lengths, 512, True, seed=1) == buckets  # seeded


def test_labels_cover_exactly_the_summary_and_its_terminator(sixteen):
    config = load_config("tiny-llama", overrides={"max_source_length": 64, "cut": "keep_start"})
    _, tokenizer, style, _ = load_for_training(config, [])
    frame = load_splits(sixteen)["train"].head(2)
    examples, cuts = encode_rows(tokenizer, style, frame)
    assert cuts["dialogues_cut"] == 2  # 64 prompt tokens cannot hold these dialogues
    for example, summary in zip(examples, frame["summary"]):
        learned = [t for t in example["labels"] if t != IGNORE_INDEX]
        expected = encode_continuation(tokenizer, summary)[: style.max_target_length]
        assert learned == expected + list(scaffold_for(tokenizer, style).suffix_ids)
        assert example["labels"][-len(learned) - 1] == IGNORE_INDEX


@pytest.mark.integration
def test_tiny_llm_memorises_sixteen_summaries(sixteen, tmp_path):
    """Integrity: train -> save -> reload -> batched generation reproduces the summaries (score >= 90).

    Wrong label masking, template, stop tokens or decoding (prompt echoed, text after the end) break it.
    """
    config = load_config("tiny-llama", overrides=MEMORISE)
    result = train(config, sixteen, tmp_path / "run")
    dev = pd.read_csv(sixteen / "dev.csv", dtype=str, keep_default_na=False)
    predictions = predict(result.best_checkpoint, list(dev["dialogue"]), config)
    score = compute_rouge(predictions, [[s] for s in dev["summary"]]).final
    assert score >= 90, list(zip(predictions[:3], dev["summary"][:3]))
    assert sum(p == s for p, s in zip(predictions, dev["summary"])) >= 12


LORA_QUICK = dict(num_train_epochs=2, learning_rate=2e-3, per_device_train_batch_size=4, gradient_accumulation_steps=1, warmup_ratio=0.0, select_by="score",
                  max_eval_samples=4, early_stopping_patience=0, eval_steps=2, save_total_limit=3, logging_steps=1,
                  max_new_tokens=8, max_source_length=96, add_data_tokens=False)


class Interrupt(Exception):
    """Stands in for a killed process."""


@pytest.mark.integration
def test_lora_training_resumes_from_its_last_checkpoint(sixteen, tmp_path):
    """Interrupted after its 2nd evaluation, a rerun continues from checkpoint-2 and ends where an
    uninterrupted run ends (same steps, same evaluations, same adapter weights)."""
    config = load_config("tiny-llama", overrides=LORA_QUICK)
    full = train(config, sixteen, tmp_path / "full")
    assert full.best_checkpoint == tmp_path / "full" / "best"
    assert (full.best_checkpoint / "adapter_config.json").is_file()
    assert (full.best_checkpoint / "prompt_style.json").is_file()

    seen: list[tuple[int, float]] = []

    def kill_at_second_evaluation(step: int, score: float) -> None:
        seen.append((step, score))
        if len(seen) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, sixteen, tmp_path / "cut", on_evaluate=kill_at_second_evaluation)
    checkpoints = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-2"]  # the 2nd evaluation's checkpoint was never written
    partial = tmp_path / "cut" / "checkpoints" / "checkpoint-4"  # as if its save had been cut short
    partial.mkdir()
    (partial / "adapter_config.json").write_text("{")
    resumed_steps: list[int] = []
    resumed = train(config, sixteen, tmp_path / "cut", on_evaluate=lambda step, _: resumed_steps.append(step))
    assert resumed_steps == [4, 6, 8]  # steps before the checkpoint are not redone
    assert resumed.global_step == full.global_step == 8
    assert [h["step"] for h in resumed.history] == [h["step"] for h in full.history] == [2, 4, 6, 8]
    assert resumed.history[0]["dev_score"] == pytest.approx(seen[0][1])
    assert resumed.best_dev_score == pytest.approx(full.best_dev_score, abs=1e-6)
    from safetensors.torch import load_file

    a = load_file(full.best_checkpoint / "adapter_model.safetensors")
    b = load_file(resumed.best_checkpoint / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    # a finished run is not retrained
    assert train(config, sixteen, tmp_path / "cut").global_step == 8


@pytest.mark.integration
def test_token_budget_batches_are_the_trainers_steps(sixteen, tmp_path):
    """batch_tokens: one optimizer step per token-budget bucket, every row trained once per epoch."""
    config = load_config("tiny-llama", overrides={**LORA_QUICK, "num_train_epochs": 1, "eval_steps": 0, "batch_tokens": 600})
    result = train(config, sixteen, tmp_path / "run")
    model, tokenizer, style, _ = load_for_training(config, [])
    examples, _ = encode_rows(tokenizer, style, load_splits(sixteen)["train"])
    buckets = token_budget_buckets([len(e["input_ids"]) for e in examples], 600, padded=True, seed=config.seed)
    assert 1 < len(buckets) < len(examples) // 2
    assert result.global_step == len(buckets)
    assert result.history and all(h["dev_score"] == h["dev_score"] for h in result.history)  # evaluated, not NaN
