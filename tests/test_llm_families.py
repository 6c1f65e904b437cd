"""Every tiny LLM family: LoRA lands on the preset's modules and a training step runs on an encoded batch.

Run: `.venv/bin/python -m pytest -q tests/test_llm_families.py`.
"""

from __future__ import annotations

import pytest
import torch
from helpers import SAMPLE_DIR

from competition.harness.presets import GPT_NEOX_LINEARS, LLAMA_LIKE_LINEARS, get_preset, preset_names
from competition.modeling.prompts import IGNORE_INDEX, encode_for_training, prepare_tokenizer, prompt_style_for
from competition.modeling.tiny import ensure_tiny_checkpoint
from competition.rules.data import data_special_tokens, read_split
from competition.rules.errors import ConfigError
from llm.lora import check_lora_targets, compute_dtype, linear_layer_names, lora_config_for
from llm.train import PaddedCollator

TINY_FAMILIES = {"tiny-llama": "llama", "tiny-qwen2": "qwen2", "tiny-qwen3": "qwen3", "tiny-gemma2": "gemma2",
                 "tiny-neox": "gpt_neox"}


def load_tiny(preset_name: str):
    """Tokenizer (data tags + end marker added) and model of a tiny preset, loaded as hub models are."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    preset = get_preset(preset_name, "llm")
    source = str(ensure_tiny_checkpoint(preset))
    tokenizer = AutoTokenizer.from_pretrained(source)
    style = prompt_style_for(preset, max_length=160, max_target_length=32)
    frames = [read_split(SAMPLE_DIR / "dev.csv", "dev")]
    prepare_tokenizer(tokenizer, style, data_special_tokens(frames))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return tokenizer, model, style, frames[0]


def test_every_tiny_family_has_a_preset():
    assert {get_preset(name).family for name in TINY_FAMILIES} == set(TINY_FAMILIES.values())
    assert set(TINY_FAMILIES) <= set(preset_names("llm"))


@pytest.mark.parametrize("preset_name", sorted(TINY_FAMILIES))
def test_lora_attaches_and_one_training_step_runs(preset_name):
    from peft import get_peft_model

    tokenizer, model, style, frame = load_tiny(preset_name)
    preset = get_preset(preset_name)
    assert model.config.model_type == preset.family
    model = get_peft_model(model, lora_config_for(preset, r=4, alpha=8, dropout=0.0, model=model))

    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    wrapped = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert wrapped == set(preset.lora_target_modules)
    expected = GPT_NEOX_LINEARS if preset.family == "gpt_neox" else LLAMA_LIKE_LINEARS
    assert set(preset.lora_target_modules) == set(expected)
    layers = model.base_model.model.config.num_hidden_layers
    assert len(trainable) == 2 * layers * len(preset.lora_target_modules)

    examples = [encode_for_training(tokenizer, style, d, s) for d, s in zip(frame["dialogue"][:2], frame["summary"][:2])]
    batch = PaddedCollator(tokenizer.pad_token_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
    assert (batch["labels"][0, : examples[0].prompt_length] == IGNORE_INDEX).all()
    model.train()
    output = model(**batch)
    assert torch.isfinite(output.loss)
    # the loss is the mean cross-entropy over summary positions only (labels -100 on the prompt)
    logits = output.logits[:, :-1].reshape(-1, output.logits.shape[-1])
    targets = batch["labels"][:, 1:].reshape(-1)
    assert torch.allclose(output.loss, torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX),
                          atol=1e-5)
    output.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if ".lora_B." in n)  # B starts at zero: it learns first
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert frozen == []


def test_wrong_lora_targets_list_the_models_linear_layers():
    _, model, _, _ = load_tiny("tiny-neox")
    assert linear_layer_names(model) == sorted(GPT_NEOX_LINEARS)
    with pytest.raises(ConfigError, match="not linear layers of this model; its linear layers are: dense, "
                                          "dense_4h_to_h, dense_h_to_4h, query_key_value"):
        check_lora_targets(model, LLAMA_LIKE_LINEARS, "tiny-neox")


class FakeConfig:
    def __init__(self, dtype):
        self.dtype = dtype


@pytest.mark.parametrize(("saved", "cuda", "bf16", "expected"), [
    (torch.bfloat16, False, False, torch.float32),  # CPU: always fp32
    (torch.bfloat16, True, True, torch.bfloat16),
    (torch.bfloat16, True, False, torch.float16),  # GPU without bf16 (T4, V100)
    ("float32", True, True, torch.bfloat16),
    (None, True, False, torch.float16),
    ("float16", True, True, torch.float16),  # an fp16 checkpoint stays fp16
])
def test_compute_dtype_follows_config_and_gpu(saved, cuda, bf16, expected):
    assert compute_dtype(FakeConfig(saved), cuda=cuda, bf16_supported=bf16) == expected


@pytest.mark.parametrize(("requested", "cuda", "bf16", "expected"), [
    ("fp16", True, True, torch.float16),  # precision=fp16 forces the no-bf16 path on any GPU
    ("auto", True, False, torch.float16),
    ("fp16", False, False, torch.float32),  # the CPU computes in fp32 whatever is asked
    ("bf16", True, True, torch.bfloat16),
])
def test_the_precision_setting_decides_the_compute_dtype_and_the_trainers_loss_scaling(requested, cuda, bf16, expected):
    """fp16 compute means NF4 compute/storage in fp16 and the Trainer's fp16 flag (loss scaling), never bf16."""
    from llm.model import quantization_config
    from llm.train import mixed_precision

    dtype = compute_dtype(FakeConfig(torch.bfloat16), cuda=cuda, bf16_supported=bf16, requested=requested)
    assert dtype == expected
    flags = mixed_precision(dtype)
    assert flags == {"use_bf16": dtype == torch.bfloat16, "use_fp16": dtype == torch.float16}
    if dtype != torch.float32:
        nf4 = quantization_config("nf4", dtype)
        assert nf4.bnb_4bit_compute_dtype == dtype and nf4.bnb_4bit_quant_storage == dtype


def test_baseline_precision_flags_fall_back_to_fp16_without_bf16():
    from baselines.train import precision_flags

    assert precision_flags("auto", cuda=True, bf16_supported=False) == {"bf16": False, "fp16": True}
    assert precision_flags("auto", cuda=True, bf16_supported=True) == {"bf16": True, "fp16": False}
    assert precision_flags("auto", cuda=False) == {"bf16": False, "fp16": False}


def test_every_llm_presets_lora_targets_are_the_linear_layers_of_its_family():
    """LoRA lands on every linear layer (lm_head aside) of the family's model: checked on its tiny build."""
    layers = {family: linear_layer_names(load_tiny(name)[1]) for name, family in TINY_FAMILIES.items()}
    for name in preset_names("llm"):
        preset = get_preset(name)
        assert sorted(preset.lora_target_modules) == layers[preset.family], name
