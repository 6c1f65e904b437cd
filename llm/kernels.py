"""Fused training kernels from liger-kernel: RMSNorm, SwiGLU, RoPE and the fused linear cross-entropy.

The Trainer applies them (`TrainingArguments.use_liger_kernel` / `liger_kernel_config`) to the families liger
patches (llama — SOLAR too —, qwen2, qwen3, mistral, gemma2, ...). The fused linear cross-entropy computes the
loss from the last hidden states and the LM head in chunks, so the [tokens, vocabulary] logits of a step are never
held in memory; the model then computes the loss itself (`fused_loss`), from the collator's `shift_labels`.

`fused_kernels: auto` (the default) turns them on where they run: a CUDA GPU (they are Triton kernels), liger
installed (`pip install -e ".[gpu]"`), a supported family. `liger` asks for them and fails with the reason where
they cannot run; `off` keeps transformers' own modules. On a CPU `auto` is `off`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from contextlib import contextmanager
from typing import Iterator

import torch

from competition.rules.errors import ConfigError

log = logging.getLogger(__name__)

# What the Trainer patches (liger_kernel_config). The LM head stays one fused loss: no logits are materialized.
LIGER_KERNEL_CONFIG = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False,
                       "fused_linear_cross_entropy": True}


def liger_unavailable(model_type: str) -> str | None:
    """Why liger's kernels cannot run for this model type here (None: they can)."""
    if not torch.cuda.is_available():
        return "no CUDA GPU (liger's kernels are Triton kernels)"
    if importlib.util.find_spec("liger_kernel") is None:
        return 'liger-kernel is not installed (pip install -e ".[gpu]")'
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        return f"liger has no kernels for model type '{model_type}'"
    return None


def liger_kernel_config(setting: str, model) -> dict[str, bool] | None:
    """`liger_kernel_config` for the Trainer, or None to train with transformers' modules (`setting`: the config's
    `fused_kernels`, llm.config.FusedKernels).

    `model` may be wrapped by peft; its base config names the family."""
    if setting == "off":
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    model_type = base.config.model_type
    reason = liger_unavailable(model_type)
    if reason is None:
        kernels = dict(LIGER_KERNEL_CONFIG)
        if _has_trainable_tokens(model):  # the fused loss reads lm_head.weight, bypassing peft's new-token rows
            kernels["fused_linear_cross_entropy"] = False
        log.info("fused kernels: liger (%s) on %s", ", ".join(k for k, on in kernels.items() if on), model_type)
        return kernels
    if setting == "liger":
        raise ConfigError(f"fused_kernels=liger: {reason}; use fused_kernels=auto or off")
    log.info("fused kernels off: %s", reason)
    return None


def fused_loss(kernels: dict[str, bool] | None) -> bool:
    """Whether the model computes the loss itself (liger's fused linear cross-entropy)."""
    return bool(kernels and kernels.get("fused_linear_cross_entropy"))


def _has_trainable_tokens(model) -> bool:
    """Whether peft trains rows of added tokens (add_data_tokens): their deltas live outside the weight matrices."""
    return any("TrainableTokens" in type(module).__name__ for module in model.modules())


@contextmanager
def liger_patches_undone(families: tuple[str, ...] = ("llama", "qwen2", "qwen3", "mistral", "gemma2")) -> Iterator[None]:
    """Undo liger's module-level swaps (RoPE function, RMSNorm and MLP classes) of these transformers families on
    exit, so a later model in the same process runs transformers' own code (benchmarks and tests compare both)."""
    modules = [importlib.import_module(f"transformers.models.{name}.modeling_{name}") for name in families]
    saved = [dict(vars(module)) for module in modules]
    try:
        yield
    finally:
        for module, before in zip(modules, saved):
            vars(module).update(before)
