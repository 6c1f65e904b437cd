"""LoRA targets and compute dtype for the decoder-only track.

The LoRA target modules come from the preset (`competition.harness.presets`, per architecture family);
`check_lora_targets` fails early, listing the model's linear layers, when a target does not exist (GPT-NeoX names
its layers `query_key_value`, `dense`, ... rather than `q_proj`, ...). The compute dtype follows the model's
config and the GPU, never a per-family guess.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from competition.harness.presets import Preset
from competition.modeling.loading import precision_dtype, resolve_precision
from competition.rules.errors import ConfigError


def config_dtype(model_config: Any) -> torch.dtype | None:
    """The dtype the checkpoint was saved in (`dtype`, or `torch_dtype` in older configs), if it says."""
    value = getattr(model_config, "dtype", None) or getattr(model_config, "torch_dtype", None)
    if isinstance(value, str):
        value = getattr(torch, value.removeprefix("torch."), None)
    return value if isinstance(value, torch.dtype) else None


def compute_dtype(model_config: Any, cuda: bool | None = None, bf16_supported: bool | None = None,
                  requested: str = "auto") -> torch.dtype:
    """bf16 where the GPU supports it, fp16 on other GPUs, fp32 on CPU; a checkpoint saved in fp16 stays fp16
    (`competition.modeling.loading.resolve_precision`). `requested` (the `precision` setting) forces one on a GPU.
    `cuda` and `bf16_supported` are parameters for tests."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    requested = requested if cuda else "auto"  # k-bit and 16-bit training need a GPU: the CPU computes in fp32
    return precision_dtype(resolve_precision(requested, config_dtype(model_config), cuda, bf16_supported))


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """Distinct short names of the model's linear layers (k-bit linears included), lm_head left out."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and name}
    names.discard("lm_head")
    return sorted(names)


def check_lora_targets(model: torch.nn.Module, targets: Iterable[str], preset_name: str = "") -> None:
    """Raise ConfigError naming the missing targets and the model's linear layers if a target does not exist."""
    available = linear_layer_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(
            f"LoRA target modules {missing} of preset '{preset_name}' are not linear layers of this model; "
            f"its linear layers are: {', '.join(available)}. Set lora_target_modules in the preset accordingly.")


def lora_config_for(preset: Preset, r: int = 16, alpha: int = 32, dropout: float = 0.05,
                    model: torch.nn.Module | None = None):
    """A peft LoraConfig on the preset's target modules (checked against `model` when given)."""
    from peft import LoraConfig, TaskType

    if not preset.lora_target_modules:
        raise ConfigError(f"preset '{preset.name}' has no lora_target_modules")
    if model is not None:
        check_lora_targets(model, preset.lora_target_modules, preset.name)
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                      target_modules=list(preset.lora_target_modules))
