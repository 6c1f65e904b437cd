"""liger's fused kernels (`llm.kernels`) against transformers' own modules: same loss and LoRA gradients.

They run on a CUDA GPU with liger-kernel installed (Triton kernels) and skip elsewhere; the CPU half of the
contract (the model-computed loss from `shift_labels` equals `summary_token_loss`) is in tests/test_llm_train.py.

Tolerances: fp32 weights, loss within 1e-5 relative and every gradient within 1e-4 of the largest one; NF4 with
bf16 compute (the shipped QLoRA path, with and without kbit_fp32_norms), loss within 1% and each LoRA gradient's
cosine to the unfused one above 0.99 (bf16 kernels round differently).

Run on a GPU: python -m pytest tests/test_llm_kernels.py -q
"""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
import torch

from competition.harness.presets import get_preset
from competition.modeling.loading import model_source
from competition.modeling.prompts import IGNORE_INDEX
from llm.config import load_config
from llm.kernels import fused_loss, liger_kernel_config, liger_patches_undone
from llm.model import attach_lora, build_prompt_style, load_base_model
from llm.train import encode_rows, make_collator, summary_token_loss

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="liger's kernels need a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="liger-kernel not installed"),
]


def _loss_and_grads(preset: str, overrides: dict, fused: bool, dtype: torch.dtype, rows: pd.DataFrame):
    from transformers.integrations.liger import apply_liger_kernel

    from competition.modeling.loading import load_tokenizer

    config = load_config(preset, overrides={**overrides, "lora_dropout": 0.0, "max_source_length": 128})
    source = model_source(get_preset(preset))
    tokenizer = load_tokenizer(source)
    style = build_prompt_style(config, tokenizer)
    torch.manual_seed(0)
    model = load_base_model(source, config, config.quantization, dtype=dtype)
    model.config.use_cache = False
    model = attach_lora(model, tokenizer, config, get_preset(preset), config.quantization, [])
    for name, weight in model.named_parameters():  # LoRA B starts at zero: give both factors gradients
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.02, generator=torch.Generator(weight.device).manual_seed(1))
    kernels = liger_kernel_config("liger" if fused else "off", model)
    if kernels:
        apply_liger_kernel(model, kernels)  # module-level swaps undone by the autouse fixture
    examples, _ = encode_rows(tokenizer, style, rows)
    batch = {k: v.cuda() for k, v in make_collator(config, tokenizer, fused_loss(kernels))(examples).items()}
    count = (batch["labels"] != IGNORE_INDEX).sum()
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype != torch.float32):
        if fused_loss(kernels):
            loss = model(**batch, num_items_in_batch=count).loss
        else:
            labels = batch.pop("labels")
            loss = summary_token_loss(model(**batch), labels, num_items_in_batch=count)
    loss.backward()
    grads = {n: w.grad.float() for n, w in model.named_parameters() if w.requires_grad}
    return loss.item(), grads


@pytest.fixture(autouse=True)
def unpatched_transformers():
    """liger swaps module-level RoPE/RMSNorm/MLP code: later tests see transformers' own again."""
    with liger_patches_undone():
        yield


@pytest.fixture
def rows(sample_dir) -> pd.DataFrame:
    frame = pd.read_csv(sample_dir / "train.csv", dtype=str, keep_default_na=False).head(6)
    return frame.assign(references=[[s] for s in frame["summary"]])


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen3"])
def test_liger_gives_the_unfused_loss_and_gradients_in_fp32(preset, rows):
    overrides = {"quantization": "none", "finetune": "lora"}
    plain, plain_grads = _loss_and_grads(preset, overrides, False, torch.float32, rows)
    fused, fused_grads = _loss_and_grads(preset, overrides, True, torch.float32, rows)
    assert fused == pytest.approx(plain, rel=1e-5)
    scale = max(g.abs().max().item() for g in plain_grads.values())
    for name, grad in plain_grads.items():
        assert (fused_grads[name] - grad).abs().max().item() <= 1e-4 * scale, name


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")
@pytest.mark.parametrize("fp32_norms", [False, True])
def test_liger_gives_the_unfused_loss_and_gradients_under_qlora(fp32_norms, rows):
    overrides = {"quantization": "nf4", "finetune": "lora", "kbit_fp32_norms": fp32_norms,
                 "gradient_checkpointing": True}
    plain, plain_grads = _loss_and_grads("tiny-llama", overrides, False, torch.bfloat16, rows)
    fused, fused_grads = _loss_and_grads("tiny-llama", overrides, True, torch.bfloat16, rows)
    assert fused == pytest.approx(plain, rel=1e-2)
    for name, grad in plain_grads.items():
        cosine = torch.nn.functional.cosine_similarity(fused_grads[name].flatten(), grad.flatten(), dim=0)
        assert cosine.item() > 0.99, name
