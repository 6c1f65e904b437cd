"""Settings of the encoder-decoder track, one dataclass, built in layers:
defaults (the official baseline) < preset < demo settings < YAML file < command-line KEY=VALUE overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from competition.cli import ConfigError
from competition.config import load_yaml, resolve_config
from competition.presets import Preset, get_preset

TRACK = "baseline"  # run folders are `<out>/baseline-<preset>-<stamp>`
PRESET_TRACK = "seq2seq"
Precision = Literal["auto", "bf16", "fp16", "fp32"]


@dataclass
class BaselineConfig:
    """Every setting of a seq2seq run. Defaults are the official baseline's values."""

    preset: str = "kobart"
    seed: int = 42
    # lengths (tokens): source and target are separate budgets, so a long dialogue never eats the summary
    encoder_max_len: int = 512
    decoder_max_len: int = 100
    # optimisation
    num_train_epochs: int = 20
    learning_rate: float = 1e-5
    per_device_train_batch_size: int = 50
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    lr_scheduler_type: str = "cosine"
    label_smoothing: float = 0.0
    precision: Precision = "auto"  # auto: bf16 if the GPU supports it, else fp16; fp32 on CPU
    group_by_length: bool = True
    early_stopping_patience: int = 3  # dev evaluations without improvement before stopping
    max_train_samples: int | None = None  # first N train rows (demo, smoke runs)
    max_dev_samples: int | None = None  # first N dev rows scored during training and in the report
    keep_checkpoints: bool = False  # keep checkpoint-* folders after `best/` is saved
    full_determinism: bool = False  # deterministic kernels (slower; used by the resume test)
    sdpa_backend: str = "auto"  # CUDA attention kernel (competition/attention.py): auto = no cuDNN | torch | cudnn | flash | efficient | math; CPU unaffected
    # generation (dev evaluation and prediction)
    num_beams: int = 4
    no_repeat_ngram_size: int = 2
    generation_max_length: int = 100  # max decoder tokens (incl. the start token), as the baseline's max_length
    length_penalty: float = 1.0
    beam_early_stopping: bool = True
    # [[min_dialogue_tokens, max_new_tokens], ...]: a budget per dialogue-length bucket (empty: use max length)
    max_new_tokens_by_length: list[list[int]] = field(default_factory=list)
    eval_batch_size: int = 32  # generation batch for dev evaluation and prediction
    # model loading
    allow_bin_weights: bool = True  # fall back to pytorch_model.bin when a hub model has no safetensors
    mbart_lang: str = "ko_KR"  # source and target language code for mBART presets
    analyzer: str = "mecab"  # metric tokenizer; the leaderboard uses morphemes

    def __post_init__(self) -> None:
        if self.encoder_max_len < 8 or self.decoder_max_len < 4:
            raise ConfigError(f"encoder_max_len/decoder_max_len too small: {self.encoder_max_len}/{self.decoder_max_len}")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise ConfigError(f"precision '{self.precision}'; expected auto, bf16, fp16 or fp32")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing {self.label_smoothing}; expected 0 <= value < 1")
        for bucket in self.max_new_tokens_by_length:
            if not (isinstance(bucket, (list, tuple)) and len(bucket) == 2 and all(isinstance(v, int) for v in bucket)):
                raise ConfigError(f"max_new_tokens_by_length item {bucket!r}; expected [min_dialogue_tokens, max_new_tokens]")


def preset_layer(preset: Preset) -> dict[str, Any]:
    """The settings a preset implies: its lengths and generation defaults."""
    generation = preset.generation
    layer: dict[str, Any] = {"preset": preset.name, "encoder_max_len": preset.max_source_length,
                             "decoder_max_len": preset.max_target_length}
    for source, target in (("num_beams", "num_beams"), ("no_repeat_ngram_size", "no_repeat_ngram_size"),
                           ("max_length", "generation_max_length"), ("early_stopping", "beam_early_stopping"),
                           ("length_penalty", "length_penalty")):
        if source in generation:
            layer[target] = generation[source]
    return layer


# Small settings for the CPU demo: a few epochs of the tiny model, greedy-ish short generation.
DEMO_LAYER: dict[str, Any] = {
    "num_train_epochs": 4, "learning_rate": 1e-3, "per_device_train_batch_size": 16, "warmup_ratio": 0.05,
    "num_beams": 2, "generation_max_length": 40, "eval_batch_size": 30, "early_stopping_patience": 2,
}


def load_config(preset_name: str, yaml_path: Path | str | None = None,
                overrides: Mapping[str, Any] | None = None, demo: bool = False) -> BaselineConfig:
    """Resolve a config: defaults < preset < demo < YAML < overrides. Unknown preset or key -> ConfigError."""
    preset = get_preset(preset_name, PRESET_TRACK)
    layers: list[Mapping[str, Any]] = [preset_layer(preset)]
    if demo:
        layers.append(DEMO_LAYER)
    if yaml_path is not None:
        file_layer = load_yaml(yaml_path)
        if file_layer.get("preset", preset.name) != preset.name:
            raise ConfigError(f"{yaml_path}: preset '{file_layer['preset']}' but --model is '{preset.name}'")
        layers.append(file_layer)
    if overrides:
        if overrides.get("preset", preset.name) != preset.name:
            raise ConfigError("change the preset with --model, not preset=...")
        layers.append(dict(overrides))
    return resolve_config(BaselineConfig, *layers)
