"""Out-of-memory recovery (`competition.modeling.oom` and the Trainer glue): a batch that runs out of memory is run
in row pieces with the same result. OOMs are injected on the CPU: the model's forward raises torch.OutOfMemoryError
when it gets more rows than a limit (or at chosen calls), and the results must equal an unforced run's.

Run: .venv/bin/python -m pytest -q tests/test_oom.py      (the training ones: -m integration)
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from helpers.data import sample_rows, write_data_dir

from competition.modeling import oom


def force_oom(monkeypatch, model_class, max_rows: int, failing_calls: tuple[int, ...] = ()) -> dict[str, int]:
    """`model_class.forward` raising torch.OutOfMemoryError for more than `max_rows` rows and at the `failing_calls`
    (1-based) calls; returns the call counter."""
    original = model_class.forward
    calls = {"n": 0}

    @functools.wraps(original)
    def forward(self, *args, **kwargs):
        calls["n"] += 1
        rows = _rows(args, kwargs, packed=self.training)
        if rows > max_rows or calls["n"] in failing_calls:
            raise torch.OutOfMemoryError(f"injected: {rows} rows")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "forward", forward)
    return calls


def _rows(args, kwargs, packed: bool) -> int:
    """Rows of a forward's batch; in training, a packed sequence's rows (where its positions restart)."""
    positions = kwargs.get("position_ids")
    if packed and positions is not None and positions.shape[0] == 1:
        return int((positions == 0).sum())
    for key in ("input_ids", "decoder_input_ids", "inputs_embeds"):
        if kwargs.get(key) is not None:
            return int(kwargs[key].shape[0])
    return int(args[0].shape[0])


# ---------------------------------------------------------------- the splitting itself

def test_row_slices_cut_rows_in_order_into_near_equal_pieces():
    assert oom.row_slices(5, 2) == [slice(0, 3), slice(3, 5)]
    assert oom.row_slices(3, 8) == [slice(0, 1), slice(1, 2), slice(2, 3)]  # never an empty piece
    assert oom.row_slices(4, 1) == [slice(0, 4)]


def test_split_rows_slices_the_batch_tensors_and_keeps_the_rest():
    batch = {"input_ids": torch.arange(12).view(4, 3), "labels": torch.zeros(4, 2), "logits_to_keep": torch.arange(2),
             "count": 7}
    pieces = oom.split_rows(batch, 2)
    assert [p["input_ids"].tolist() for p in pieces] == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]
    assert all(p["labels"].shape == (2, 2) and p["logits_to_keep"] is batch["logits_to_keep"] and p["count"] == 7
               for p in pieces)


@pytest.mark.parametrize("batching", ["packed", "padded"])
@pytest.mark.parametrize("model_loss", [False, True])
def test_llm_batches_split_into_what_their_rows_collate_to(batching, model_loss):
    """A packed batch is cut at the seams between its rows, a padded one by rows (width kept): each piece holds the
    tokens, positions, kept logits and labels its rows have when collated alone."""
    from llm.train import LabelledLogitsCollator, PackedCollator, PaddedCollator, split_batch_rows

    examples = [{"input_ids": list(range(10, 10 + n)), "labels": [IGNORE] * (n - t) + list(range(50, 50 + t))}
                for n, t in ((7, 3), (5, 2), (9, 4))]
    collate = LabelledLogitsCollator(PackedCollator() if batching == "packed" else PaddedCollator(0, multiple=1),
                                     shift_labels=model_loss)
    pieces = split_batch_rows(collate(examples), 2)
    alone = [collate(examples[:2]), collate(examples[2:])]
    if batching == "padded":  # pieces keep the batch's width, so compare the padded batch's slices
        whole = collate(examples)
        alone = [{**whole, "input_ids": whole["input_ids"][rows], "labels": whole["labels"][rows],
                  **({"shift_labels": whole["shift_labels"][rows]} if model_loss else {})}
                 for rows in (slice(0, 2), slice(2, 3))]
    for piece, expected in zip(pieces, alone, strict=True):
        assert piece.keys() == expected.keys()
        for key in piece:
            assert torch.equal(piece[key], expected[key]), key


IGNORE = -100


def test_split_on_oom_doubles_the_pieces_keeps_them_and_records_each_fallback(capsys):
    splitter = oom.SplitOnOom("generation", "set less")
    seen = []

    def attempt(parts: int, retry: bool) -> int:
        seen.append((parts, retry))
        if parts < 4:
            raise torch.OutOfMemoryError("injected")
        return parts

    with oom.recording() as fallbacks:
        assert splitter.run(attempt, rows=8, batch="dev") == 4
        assert splitter.run(attempt, rows=8, batch="dev") == 4  # later batches start split
    assert seen == [(1, False), (2, True), (4, True), (4, False)]
    assert fallbacks == [{"stage": "generation", "batch": "dev", "rows": 8, "split": 2},
                         {"stage": "generation", "batch": "dev", "rows": 8, "split": 4}]
    assert capsys.readouterr().err.count("warning: out of memory in generation") == 2


def test_one_row_that_does_not_fit_ends_with_one_clear_error():
    def attempt(parts: int, retry: bool):
        raise torch.OutOfMemoryError("injected")

    with pytest.raises(oom.OutOfMemory, match=r"^out of memory in training \(step 3\) with one row at a time; "
                                              r"no GPU: set gradient_checkpointing=true$"):
        oom.SplitOnOom("training", "set gradient_checkpointing=true").run(attempt, rows=4, step=3)


# ---------------------------------------------------------------- training: the same steps

def _llm_trainer_run(config, data: Path, work_dir: Path) -> tuple[dict[str, torch.Tensor], list[float]]:
    """tiny-llama LoRA weights and per-step logged losses after 3 SGD steps through the counting Trainer."""
    from transformers import Trainer

    from competition.modeling.trainer import counting_trainer, training_speed_callback
    from competition.rules.data import load_splits
    from llm.model import load_for_training
    from llm.train import (
        OOM_HINT,
        encode_rows,
        loss_function,
        make_collator,
        real_tokens,
        split_batch_rows,
        training_arguments,
    )

    torch.manual_seed(0)
    model, tokenizer, style, _ = load_for_training(config, [])
    examples, _ = encode_rows(tokenizer, style, load_splits(data)["train"])
    args = training_arguments(config, work_dir, use_bf16=False, use_fp16=False)
    args.max_steps, args.eval_strategy, args.save_strategy, args.load_best_model_at_end = 3, "no", "no", False
    args.logging_steps = 1
    speed = training_speed_callback(real_tokens)
    trainer = counting_trainer(Trainer, speed, OOM_HINT, split_batch_rows)(
        model=model, args=args, train_dataset=examples, data_collator=speed.counting(make_collator(config, tokenizer)),
        compute_loss_func=loss_function(None), processing_class=tokenizer, callbacks=[speed])
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {n: w.detach().clone() for n, w in model.named_parameters() if w.requires_grad}, losses


@pytest.mark.integration
@pytest.mark.parametrize("batching", ["padded", "packed"])
def test_llm_training_split_after_an_oom_takes_the_same_steps(batching, tmp_path, monkeypatch):
    """4-row micro-batches, 2 accumulated per step: an OOM above 2 rows, and one more in the second micro-batch of a
    step (its first micro-batch is then run again), give the same losses and LoRA weights as an unforced run."""
    from transformers import LlamaForCausalLM

    from llm.config import load_config

    data = write_data_dir(tmp_path / "data", sample_rows("train", 24), sample_rows("dev", 4))
    config = load_config("tiny-llama", overrides={
        "quantization": "none", "lora_dropout": 0.0, "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2, "max_source_length": 96, "batching": batching, "optim": "sgd",
        "learning_rate": 0.5, "max_grad_norm": 0.0, "warmup_ratio": 0.0, "gradient_checkpointing": False})
    weights, losses = _llm_trainer_run(config, data, tmp_path / "whole")
    with oom.recording() as fallbacks:
        calls = force_oom(monkeypatch, LlamaForCausalLM, max_rows=4, failing_calls=(2,))
        split_weights, split_losses = _llm_trainer_run(config, data, tmp_path / "split")
    monkeypatch.undo()
    assert calls["n"] > 12  # 3 steps x 2 micro-batches x 2 pieces, plus the failed attempts and the rerun
    assert [(f["stage"], f["step"], f["split"]) for f in fallbacks] == [("training", 1, 2)]
    assert len(losses) == 3 and split_losses == pytest.approx(losses, rel=1e-5)
    assert max(float((weights[n] - split_weights[n]).abs().max()) for n in weights) < 1e-5
    moved = sum(float(w.abs().sum()) for n, w in weights.items() if "lora_B" in n)
    assert moved > 0  # the steps did something (LoRA B starts at zero)


@pytest.mark.integration
def test_baseline_training_and_prediction_split_after_an_oom_give_the_same_model_and_summaries(tmp_path, monkeypatch):
    """tiny-bart through the track's own train (batches of 8, dev generation every epoch) and predict: OOMs above
    2 rows split training, the dev evaluation and prediction; the history, best weights and summaries are the same."""
    from safetensors.torch import load_file
    from transformers import BartForConditionalGeneration

    from baselines.config import load_config
    from baselines.predict import predict
    from baselines.train import train

    dev = sample_rows("dev", 4)
    data = write_data_dir(tmp_path / "data", sample_rows("train", 8), dev)
    config = load_config("tiny-bart", overrides={"num_train_epochs": 2, "per_device_train_batch_size": 8,
                                                 "per_device_eval_batch_size": 4, "num_beams": 2,
                                                 "generation_max_length": 12, "learning_rate": 1e-3})
    results = {}
    for forced in (False, True):
        with oom.recording() as fallbacks:
            if forced:
                force_oom(monkeypatch, BartForConditionalGeneration, max_rows=2)
            result = train(config, data, tmp_path / f"run-{forced}")
            summaries = predict(result.best_checkpoint, list(dev["dialogue"]), config)
        monkeypatch.undo()
        results[forced] = result, summaries, load_file(result.best_checkpoint / "model.safetensors"), fallbacks
    (plain, plain_summaries, _, none), (split, split_summaries, _, fallbacks) = results.values()
    assert none == [] and {f["stage"] for f in fallbacks} == {"training", "evaluation", "generation"}
    assert [h["epoch"] for h in split.history] == [h["epoch"] for h in plain.history] == [1, 2]
    for ours, theirs in zip(split.history, plain.history):
        assert ours["dev_score"] == pytest.approx(theirs["dev_score"], abs=1e-6)
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
    assert split_summaries == plain_summaries  # (AdamW turns float-rounding gradients into lr-sized steps: the
    # weights are compared after plain SGD steps below)


@pytest.mark.integration
def test_baseline_training_split_after_an_oom_takes_the_same_sgd_steps(tmp_path, monkeypatch):
    """tiny-bart through the counting Seq2SeqTrainer: 8-row batches that run out of memory above 4 rows, and once
    more at the third forward call, give the same losses and weights after 2 plain SGD steps as unforced ones."""
    from transformers import BartForConditionalGeneration

    results = [_bart_sgd_steps(tmp_path / "whole")]
    with oom.recording() as fallbacks:
        force_oom(monkeypatch, BartForConditionalGeneration, max_rows=4, failing_calls=(3,))
        results.append(_bart_sgd_steps(tmp_path / "split"))
    (weights, losses), (split_weights, split_losses) = results
    assert [(f["stage"], f["step"], f["split"]) for f in fallbacks] == [("training", 1, 2), ("training", 1, 4)]
    assert len(losses) == 2 and split_losses == pytest.approx(losses, rel=1e-5)
    for name, weight in weights.items():
        torch.testing.assert_close(split_weights[name], weight, rtol=1e-4, atol=1e-5, msg=name)


def _bart_sgd_steps(work_dir: Path) -> tuple[dict[str, torch.Tensor], list[float]]:
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from baselines.config import TRACK, load_config
    from baselines.model import configure_family, load_pretrained
    from baselines.train import OOM_HINT, build_rows, real_tokens, seq2seq_loss
    from competition.harness.presets import get_preset
    from competition.modeling.loading import model_source
    from competition.modeling.tokens import IGNORE_INDEX
    from competition.modeling.trainer import counting_trainer, training_speed_callback

    rows = sample_rows("train", 16)
    tokenizer, model = load_pretrained(model_source(get_preset("tiny-bart", TRACK)))
    layout = configure_family(tokenizer, model, "bart")
    args = Seq2SeqTrainingArguments(output_dir=str(work_dir), max_steps=2, per_device_train_batch_size=8,
                                    optim="sgd", learning_rate=1.0, lr_scheduler_type="constant", max_grad_norm=0.0,
                                    save_strategy="no", logging_steps=1, report_to="none", use_cpu=True,
                                    train_sampling_strategy="sequential")
    speed = training_speed_callback(real_tokens)
    trainer = counting_trainer(Seq2SeqTrainer, speed, OOM_HINT)(
        model=model, args=args, callbacks=[speed],
        train_dataset=build_rows(tokenizer, layout, rows["dialogue"], rows["summary"], load_config("tiny-bart")),
        data_collator=speed.counting(DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=IGNORE_INDEX)),
        compute_loss_func=seq2seq_loss(label_smoothing=0.0))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {name: weight.detach().clone() for name, weight in model.named_parameters()}, losses


# ---------------------------------------------------------------- LLM generation and the dev evaluation

@pytest.mark.integration
@pytest.mark.parametrize("decoding", ["fast", "generate"])
def test_llm_generation_split_after_an_oom_gives_the_same_summaries(decoding, tmp_path, monkeypatch):
    from transformers import LlamaForCausalLM

    from llm.config import load_config
    from llm.generate import generate_summaries
    from llm.model import load_for_training

    config = load_config("tiny-llama", overrides={"quantization": "none", "decoding": decoding,
                                                  "per_device_eval_batch_size": 6, "max_new_tokens": 12})
    torch.manual_seed(0)
    model, tokenizer, style, _ = load_for_training(config, [])
    with torch.no_grad():  # random weights of a larger scale: varied tokens instead of one repeated token
        for weight in model.parameters():
            weight.normal_(0, 0.3)
    dialogues = list(sample_rows("dev", 9)["dialogue"])
    plain = generate_summaries(model, tokenizer, style, dialogues, config)
    with oom.recording() as fallbacks:
        force_oom(monkeypatch, LlamaForCausalLM, max_rows=2)
        split = generate_summaries(model, tokenizer, style, dialogues, config)
    assert split == plain and len(set(plain)) == len(plain)
    assert [(f["stage"], f["rows"], f["split"]) for f in fallbacks] == [("generation", 6, 2), ("generation", 6, 4)]


@pytest.mark.integration
def test_an_oom_in_the_dev_generation_leaves_the_training_batch_alone(tmp_path, monkeypatch):
    """LLM train(): generation batches of 8 run out of memory, training micro-batches of 2 rows fit; only the
    dev generation splits (transformers' auto_find_batch_size would shrink the training batch)."""
    from transformers import LlamaForCausalLM

    from llm.config import load_config
    from llm.train import train

    data = write_data_dir(tmp_path / "data", sample_rows("train", 8), sample_rows("dev", 8))
    config = load_config("tiny-llama", overrides={
        "num_train_epochs": 1, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
        "per_device_eval_batch_size": 8, "max_new_tokens": 8, "max_eval_samples": 8, "select_by": "score",
        "early_stopping_patience": 0, "quantization": "none"})
    force_oom(monkeypatch, LlamaForCausalLM, max_rows=3)
    with oom.recording() as fallbacks:
        result = train(config, data, tmp_path / "run")
    assert result.global_step == 4
    assert fallbacks and {f["stage"] for f in fallbacks} == {"generation"}


@pytest.mark.integration
def test_the_cli_ends_a_run_whose_single_row_does_not_fit_with_one_error_line(tmp_path, monkeypatch, capfd):
    from transformers import LlamaForCausalLM

    from competition.harness.runs import load_run_info
    from llm.run import main

    data = write_data_dir(tmp_path / "data", sample_rows("train", 4), sample_rows("dev", 4))
    force_oom(monkeypatch, LlamaForCausalLM, max_rows=0)
    code = main(["--model", "tiny-llama", "--data", str(data), "--out", str(tmp_path / "runs"),
                 "quantization=none", "per_device_train_batch_size=2", "num_train_epochs=1"])
    lines = capfd.readouterr().err.replace("\r", "\n").splitlines()  # a progress bar ends its lines with \r
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 2
    assert errors == ["error: out of memory in training (step 1) with one row at a time; no GPU: set "
                      "gradient_checkpointing=true, a smaller batch_tokens or max_source_length, or quantization=nf4"]
    run_dir = next((tmp_path / "runs").iterdir())
    assert [f["split"] for f in load_run_info(run_dir)["oom_fallbacks"]] == [2]
