"""What a run measures of itself (competition/harness/runs.py): stage seconds, peak GPU memory, real training tokens/s.

Run: `.venv/bin/python -m pytest -q tests/test_run_measures.py` (a few seconds: a toy model through the Trainer).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from competition.harness.runs import StageClock, TrainResult
from competition.modeling.trainer import REAL_TOKENS_KEY, counting_trainer, training_speed_callback


def test_stage_clock_records_each_stage_in_order_and_adds_up_repeats():
    clock = StageClock()
    with clock.stage("train"):
        time.sleep(0.01)
    with clock.stage("predict_dev"):
        pass
    with clock.stage("train"):
        time.sleep(0.01)
    record = clock.record()
    assert list(record["stage_seconds"]) == ["train", "predict_dev"]
    assert record["stage_seconds"]["train"] >= 0.02
    assert record["peak_gpu_memory_gib"] is None or set(record["peak_gpu_memory_gib"]) == {"allocated", "reserved"}


class ToyLM(torch.nn.Module):
    """Embedding + linear head with a loss: enough for the Trainer."""

    def __init__(self):
        super().__init__()
        self.embed, self.head = torch.nn.Embedding(16, 8), torch.nn.Linear(8, 16)

    def forward(self, input_ids, labels=None):
        logits = self.head(self.embed(input_ids))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 16), labels.reshape(-1), ignore_index=-100)
        return {"loss": loss, "logits": logits}


def pad_collate(features):
    width = max(len(f["input_ids"]) for f in features) + 3  # padding the count must leave out
    ids = torch.tensor([f["input_ids"] + [0] * (width - len(f["input_ids"])) for f in features])
    labels = torch.tensor([f["input_ids"] + [-100] * (width - len(f["input_ids"])) for f in features])
    return {"input_ids": ids, "labels": labels}


def real_length(feature) -> int:
    return len(feature["input_ids"])


@pytest.mark.integration
@pytest.mark.parametrize("workers", [0, 2])
def test_training_speed_counts_real_train_tokens_and_leaves_evaluations_out(tmp_path, workers):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    train = [{"input_ids": [1] * n} for n in (3, 5, 7, 2, 4, 6)]
    dev = [{"input_ids": [2] * 9} for _ in range(4)]
    seen_keys = set()

    class SlowEvaluation(TrainerCallback):  # stands in for the dev generation of an evaluation
        def on_evaluate(self, args, state, control, **kwargs):
            time.sleep(0.3)

    speed = training_speed_callback(real_length)
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=2,
                             per_device_eval_batch_size=2, eval_strategy="steps", eval_steps=1, save_strategy="no",
                             report_to="none", use_cpu=True, logging_steps=100, remove_unused_columns=False,
                             disable_tqdm=True, dataloader_num_workers=workers)
    model = ToyLM()
    model.register_forward_pre_hook(lambda module, args, kwargs: seen_keys.update(kwargs), with_kwargs=True)
    trainer = counting_trainer(Trainer, speed)(model=model, args=args, train_dataset=train, eval_dataset=dev,
                                               data_collator=speed.counting(pad_collate),
                                               callbacks=[SlowEvaluation(), speed])
    trainer.train()
    figures = speed.figures()
    assert trainer.state.global_step == 6  # 6 evaluations of 0.3 s each, none of them in the step time
    assert figures["train_tokens"] == 2 * sum(len(row["input_ids"]) for row in train)  # no padding, no dev rows
    assert seen_keys == {"input_ids", "labels"}  # the count never reaches the model, in training or evaluation
    assert REAL_TOKENS_KEY not in seen_keys
    assert 0 < figures["train_step_seconds"] < 6 * 0.3
    assert figures["real_tokens_per_s"] == pytest.approx(figures["train_tokens"] / figures["train_step_seconds"],
                                                         rel=0.1)  # the seconds are rounded to milliseconds


def test_train_result_keeps_the_speed_and_loads_files_written_before_it(tmp_path):
    result = TrainResult(tmp_path / "best", 12.5, speed={"train_tokens": 10, "real_tokens_per_s": 5.0})
    result.save(tmp_path)
    assert TrainResult.load(tmp_path).speed == {"train_tokens": 10, "real_tokens_per_s": 5.0}
    (tmp_path / "train_result.json").write_text('{"best_checkpoint": "b", "best_dev_score": 1.0}', encoding="utf-8")
    assert TrainResult.load(tmp_path).speed == {}


def test_both_tracks_train_without_a_gpu_sync_per_step(tmp_path):
    """No NaN/inf loss filter (it reads every step's loss back) and batches copied to the GPU without blocking."""
    from baselines.config import load_config as baseline_config
    from baselines.train import training_arguments as baseline_arguments
    from llm.config import load_config as llm_config
    from llm.train import training_arguments as llm_arguments

    for arguments in (baseline_arguments(baseline_config("tiny-bart"), tmp_path / "b"),
                      llm_arguments(llm_config("tiny-llama"), tmp_path / "l", use_bf16=False, use_fp16=False)):
        assert arguments.logging_nan_inf_filter is False and arguments.accelerator_config.non_blocking is True
        assert arguments.dataloader_pin_memory or arguments.use_cpu  # non_blocking copies need pinned batches


def test_baseline_compile_setting_reaches_the_trainer_on_cuda_only(tmp_path, monkeypatch):
    """torch_compile_mode: off/default/a mode name become TrainingArguments' torch_compile(_mode); the CPU stays eager."""
    import baselines.train as train
    from baselines.config import load_config as baseline_config

    kobart = baseline_config("kobart", Path(__file__).parents[1] / "baselines" / "configs" / "kobart.yaml")
    assert kobart.torch_compile_mode == "reduce-overhead"  # the official recipe compiles on a GPU
    monkeypatch.setattr(train.torch.cuda, "is_available", lambda: False)
    assert train.compile_arguments("reduce-overhead") == {"torch_compile": False}
    monkeypatch.setattr(train.torch.cuda, "is_available", lambda: True)
    assert train.compile_arguments("off") == {"torch_compile": False}
    assert train.compile_arguments("default") == {"torch_compile": True, "torch_compile_mode": None}
    assert train.compile_arguments("reduce-overhead") == {"torch_compile": True, "torch_compile_mode": "reduce-overhead"}


def test_regional_compilation_reaches_accelerate_when_the_trainer_is_built(tmp_path, monkeypatch):
    """torch_compile_regional: a Trainer built inside `compile_scope` gets accelerate's regional compilation (on
    CUDA with compiling on), and the environment is as before afterwards."""
    from accelerate.utils import TorchDynamoPlugin

    import baselines.train as train
    from baselines.config import load_config as baseline_config

    kobart = baseline_config("kobart", Path(__file__).parents[1] / "baselines" / "configs" / "kobart.yaml")
    assert kobart.torch_compile_regional  # on by default: it compiled faster and trained faster on an H200
    monkeypatch.delenv(train.REGIONAL_COMPILATION_ENV, raising=False)
    monkeypatch.setattr(train.torch.cuda, "is_available", lambda: True)
    for mode, regional, expected in (("reduce-overhead", True, True), ("reduce-overhead", False, False),
                                     ("off", True, False)):
        config = baseline_config("tiny-bart", overrides={"torch_compile_mode": mode, "torch_compile_regional": regional})
        with train.compile_scope(config):
            assert TorchDynamoPlugin(backend="inductor").use_regional_compilation is expected
        assert train.REGIONAL_COMPILATION_ENV not in train.os.environ
