"""Settings of the decoder-only (LLM) track, layered: defaults < preset < (demo) < YAML file < KEY=VALUE overrides.

Every setting is one field of `LLMConfig` with a one-line hint (the shipped YAMLs in `llm/configs/` are written
from these hints). `load_config("llama3.2-ko-3b", yaml_path, {"learning_rate": 1e-4})` builds one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from competition.cli import ConfigError
from competition.config import load_yaml, resolve_config
from competition.presets import Preset, get_preset

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"

QUANTIZATIONS = ("nf4", "int8", "none")
FINETUNES = ("lora", "full")
BATCHINGS = ("packed", "grouped", "padded")
SELECT_BY = ("score", "loss")
CUTS = ("middle", "keep_end", "keep_start")
PREDICT_WITH = ("adapter", "merged")
DECODINGS = ("fast", "generate")


def _setting(default: Any, hint: str) -> Any:
    """A dataclass field with a one-line hint (shown in the shipped YAMLs)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"hint": hint})
    return field(default=default, metadata={"hint": hint})


@dataclass
class LLMConfig:
    """All settings of one LLM run (training, prompt, generation, pipeline)."""

    preset: str = _setting("llama3.2-ko-3b", "model preset (competition/presets.py)")
    seed: int = _setting(42, "seed for python, numpy, torch and the Trainer")
    # --- model loading ---
    quantization: str = _setting("nf4", "nf4 = QLoRA 4-bit double-quant | int8 | none (plain LoRA); GPU only, CPU uses none")
    finetune: str = _setting("lora", "lora | full (full fine-tune: tiny models only)")
    kbit_fp32_norms: bool = _setting(False, "k-bit: cast embeddings and norms to fp32 (peft's prepare_model_for_kbit_training; ~40% slower) | false: keep bf16")
    gradient_checkpointing: bool = _setting(True, "recompute activations in backward: less memory, ~30% slower")
    attn_implementation: str = _setting("sdpa", "sdpa | eager | flash_attention_2 (packed batches need one of these)")
    sdpa_backend: str = _setting("auto", "CUDA attention kernel (competition/attention.py): auto = no cuDNN | torch | cudnn | flash | efficient | math; CPU unaffected")
    add_data_tokens: bool = _setting(False, "add #PersonN#/mask tags as whole tokens, rows trained (resume not exact)")
    trust_remote_code: bool = _setting(False, "opt in to remote code, only for presets that need it")
    # --- LoRA ---
    lora_r: int = _setting(16, "LoRA rank")
    lora_alpha: int = _setting(32, "LoRA scaling alpha")
    lora_dropout: float = _setting(0.05, "dropout on the LoRA path")
    # --- prompt ---
    instruction: str | None = _setting(None, "instruction text; null = the preset's default")
    cut: str = _setting("middle", "how an over-long dialogue is cut: middle | keep_end | keep_start")
    max_length: int = _setting(0, "max prompt tokens (scaffolding+instruction+dialogue); 0 = the preset's")
    max_target_length: int = _setting(0, "max summary tokens in training; 0 = the preset's")
    # --- training ---
    epochs: float = _setting(3.0, "training epochs (early stopping may end sooner)")
    learning_rate: float = _setting(2e-4, "peak learning rate")
    batch_size: int = _setting(4, "sequences per device per step")
    grad_accum: int = _setting(4, "gradient accumulation steps")
    batch_tokens: int = _setting(0, "tokens per batch (padding included): batches of similar length up to this budget, batch_size ignored; 0 = off")
    warmup_ratio: float = _setting(0.03, "share of steps spent warming up the learning rate")
    weight_decay: float = _setting(0.0, "AdamW weight decay")
    lr_scheduler: str = _setting("cosine", "learning-rate schedule (transformers name)")
    optim: str = _setting("auto", "auto = paged_adamw_8bit on CUDA, adamw_torch on CPU; or any transformers optim")
    max_grad_norm: float = _setting(1.0, "gradient clipping norm")
    batching: str = _setting("grouped", "grouped (by length) | padded (random) | packed (padding-free; quadratic mask under sdpa, use with flash_attention_2)")
    eval_every: int = _setting(0, "optimizer steps between dev evaluations; 0 = once per epoch")
    select_by: str = _setting("score", "pick the best checkpoint by dev score (generates) or eval loss: score | loss")
    dev_subset: int = _setting(100, "dev rows generated at each evaluation; 0 = all")
    early_stopping_patience: int = _setting(2, "evaluations without improvement before stopping; 0 = never")
    save_total_limit: int = _setting(2, "checkpoints kept (the best one is always kept)")
    train_limit: int = _setting(0, "use only the first N train rows; 0 = all")
    logging_steps: int = _setting(10, "optimizer steps between loss logs")
    # --- generation ---
    num_beams: int = _setting(1, "1 = greedy, >1 = beam search")
    max_new_tokens: int = _setting(128, "generated tokens per summary at most")
    min_new_tokens: int = _setting(0, "generated tokens per summary at least (stop tokens are held back until then)")
    repetition_penalty: float = _setting(1.0, "1.0 = off")
    no_repeat_ngram_size: int = _setting(0, "0 = off")
    gen_batch_size: int = _setting(16, "dialogues per generation batch (length-sorted)")
    decoding: str = _setting("fast", "fast = greedy with a static cache (+ CUDA graph on GPU; beams and penalties use generate) | generate")
    cache_implementation: str | None = _setting(None, "decoding=generate only: null = dynamic KV cache | static")
    predict_with: str = _setting("adapter", "adapter = base + adapter | merged = export merged 16-bit model first")
    # --- pipeline ---
    resume: str | None = _setting(None, "run folder to continue after an interrupt (training and predictions)")

    def __post_init__(self) -> None:
        choices = {"quantization": QUANTIZATIONS, "finetune": FINETUNES, "batching": BATCHINGS,
                   "select_by": SELECT_BY, "cut": CUTS, "predict_with": PREDICT_WITH, "decoding": DECODINGS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}; expected one of {list(allowed)}")
        positive = ("batch_size", "grad_accum", "gen_batch_size", "num_beams", "max_new_tokens", "lora_r")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}; expected a positive integer")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise ConfigError(f"epochs={self.epochs}, learning_rate={self.learning_rate}; expected positive numbers")


def preset_layer(preset: Preset) -> dict[str, Any]:
    """Settings a preset implies: lengths and generation defaults."""
    generation = preset.generation
    layer: dict[str, Any] = {"preset": preset.name, "max_length": preset.max_source_length,
                             "max_target_length": preset.max_target_length}
    for key in ("num_beams", "max_new_tokens", "repetition_penalty", "no_repeat_ngram_size"):
        if key in generation:
            layer[key] = generation[key]
    if preset.tiny:  # tiny models run on CPU: nothing to quantize, nothing to checkpoint
        layer.update(quantization="none", gradient_checkpointing=False, optim="adamw_torch")
    return layer


# `--demo`: a few minutes on two CPU cores, still the real pipeline.
DEMO_LAYER: dict[str, Any] = {
    "quantization": "none", "gradient_checkpointing": False, "epochs": 2, "learning_rate": 2e-3,
    "batch_size": 8, "grad_accum": 1, "train_limit": 64, "dev_subset": 16, "max_new_tokens": 48,
    "gen_batch_size": 16, "logging_steps": 2, "early_stopping_patience": 0, "warmup_ratio": 0.0,
}


def default_yaml_path(preset_name: str) -> Path:
    """The shipped YAML of a preset (`llm/configs/<preset>.yaml`)."""
    return CONFIGS_DIR / f"{preset_name}.yaml"


def load_config(preset_name: str, yaml_path: Path | str | None = None, overrides: dict[str, Any] | None = None,
                demo: bool = False) -> LLMConfig:
    """Resolve a config: defaults < preset < demo layer < YAML < overrides (unknown keys are an error)."""
    preset = get_preset(preset_name, "llm")
    yaml_layer = load_yaml(yaml_path) if yaml_path else {}
    if yaml_layer.get("preset", preset.name) != preset.name:
        raise ConfigError(f"{yaml_path}: preset '{yaml_layer['preset']}' but --model '{preset.name}'")
    config = resolve_config(LLMConfig, preset_layer(preset), DEMO_LAYER if demo else {}, yaml_layer,
                            overrides or {})
    if preset.trust_remote_code and not config.trust_remote_code:
        raise ConfigError(f"preset '{preset.name}' needs remote code; opt in with trust_remote_code=true")
    return config


def config_hints() -> dict[str, str]:
    """The one-line hint of every setting."""
    return {f.name: f.metadata.get("hint", "") for f in dataclasses.fields(LLMConfig)}


def yaml_text(config: LLMConfig, header: str) -> str:
    """A flat YAML of `config` with the hint of every key (how the shipped `llm/configs/*.yaml` are written)."""
    import yaml

    hints = config_hints()
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for key, value in dataclasses.asdict(config).items():
        if key == "resume":
            continue
        rendered = yaml.safe_dump({key: value}, allow_unicode=True, default_flow_style=True).strip()[1:-1]
        lines.append(f"{rendered:<40}  # {hints[key]}")
    return "\n".join(lines) + "\n"
