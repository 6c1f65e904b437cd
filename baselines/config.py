"""Settings of the encoder-decoder track, one dataclass, built in layers:
defaults (the official baseline) < preset < demo settings < YAML file (`--config`, else
`baselines/configs/<preset>.yaml`) < command-line KEY=VALUE overrides. Names follow Seq2SeqTrainingArguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import pydantic

from competition.harness.config import (
    REPORT_TO_HINT,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ReportTo,
    SchedulerName,
    SdpaBackend,
    Share,
    TrackSettings,
    setting,
)
from competition.harness.memory import fit_seq2seq
from competition.harness.presets import get_preset
from competition.rules.errors import ConfigError
from competition.rules.metric import DEFAULT_ANALYZER, Analyzer

TRACK = "baseline"  # the preset track, the tuning track and run folders `<out>/baseline-<preset>-<stamp>`
Precision = Literal["auto", "bf16", "fp16", "fp32"]
# YAML reads an unquoted `off` as the boolean false: taken as "off"
CompileMode = Annotated[Literal["off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                        pydantic.BeforeValidator(lambda value: "off" if value is False else value)]


@dataclass
class BaselineConfig:
    """Every setting of a seq2seq run. Defaults are the official baseline's values."""

    preset: str = setting("kobart", "model preset (competition/harness/presets.py); must match --model")
    seed: int = setting(42, "python/numpy/torch/Trainer seed")
    # lengths (tokens): source and target are separate budgets, so a long dialogue never eats the summary
    max_source_length: int = setting(512, "encoder tokens per dialogue (longer dialogues are cut)")
    max_target_length: int = setting(100, "summary tokens incl. </s> for training labels")
    # optimisation
    num_train_epochs: PositiveInt = setting(20, "upper bound; early stopping usually ends sooner")
    learning_rate: PositiveFloat = setting(1e-5, "peak learning rate")
    per_device_train_batch_size: PositiveInt = setting(50, "rows per device step")
    gradient_accumulation_steps: PositiveInt = setting(1, "device steps per optimizer step")
    warmup_ratio: Share = setting(0.1, "share of total steps with linear warmup")
    weight_decay: NonNegativeFloat = setting(0.01, "AdamW weight decay")
    lr_scheduler_type: SchedulerName = setting("cosine", "transformers scheduler name")
    label_smoothing_factor: float = setting(0.0, "label smoothing, e.g. 0.1")
    precision: Precision = setting("auto", "auto: bf16 if the GPU supports it, else fp16; fp32 on CPU")
    group_by_length: bool = setting(True, "batch dialogues of similar length")
    early_stopping_patience: NonNegativeInt = setting(3, "dev evaluations without a better dev ROUGE before stopping")
    max_train_samples: int | None = setting(None, "first N train rows (demo, smoke runs); null = all")
    max_eval_samples: int | None = setting(None, "first N dev rows scored at each evaluation; null = all")
    keep_checkpoints: bool = setting(False, "keep checkpoint-* folders after best/ is saved")
    full_determinism: bool = setting(False, "deterministic kernels (slower; used by the resume test)")
    sdpa_backend: SdpaBackend = setting("auto", "CUDA attention kernel: auto = any but cuDNN (it plans every new shape) | torch | cudnn | flash | efficient | math; CPU unaffected")
    torch_compile_mode: CompileMode = setting("off", "CUDA: TrainingArguments torch_compile_mode; reduce-overhead = a CUDA graph per padded shape, for long runs | off = eager; CPU unaffected")
    torch_compile_regional: bool = setting(True, "with torch_compile_mode: compile one encoder and one decoder layer and reuse them (accelerate's regional compilation): shorter compile")
    dataloader_num_workers: NonNegativeInt = setting(2, "CUDA: loader processes collating batches while the GPU trains (kept across epochs); CPU: 0, one process")
    sdpa_sync_free_masks: bool = setting(True, "CUDA, sdpa: always build padding masks instead of checking them on the host (a GPU sync per forward); CPU unaffected")
    report_to: ReportTo = setting("none", REPORT_TO_HINT)
    # generation (dev evaluation and prediction)
    num_beams: PositiveInt = setting(4, "beam search width")
    no_repeat_ngram_size: NonNegativeInt = setting(2, "baseline value; blocks repeated bigrams such as '#Person2# 는'")
    generation_max_length: PositiveInt = setting(100, "max decoder tokens incl. the start token, as the baseline's max_length")
    length_penalty: float = setting(1.0, ">1 favours longer beams, <1 shorter ones")
    beam_early_stopping: bool = setting(True, "stop a beam search when num_beams candidates are finished")
    max_new_tokens_by_length: list[list[int]] = setting(
        [], "[[min_dialogue_tokens, max_new_tokens], ...]: a budget per dialogue-length bucket; [] = max length")
    per_device_eval_batch_size: PositiveInt = setting(32, "generation batch for dev evaluation and prediction")
    # model loading
    model_path: str | None = setting(None, "local folder with the preset's files (config + tokenizer [+ weights]); null = the hub id")
    allow_bin_weights: bool = setting(True, "fall back to pytorch_model.bin when a hub model has no safetensors")
    mbart_lang: str = setting("ko_KR", "source and target language code for mBART presets")
    analyzer: Analyzer = setting(DEFAULT_ANALYZER, "metric tokenizer; the leaderboard uses morphemes")
    # submission
    max_fill_in_share: Share = setting(0.05, "share of empty summaries (replaced by the first utterance) above which the run does not submit")
    submit_despite_fill_ins: bool = setting(False, "submit even when fill-ins exceed max_fill_in_share")

    def __post_init__(self) -> None:
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ConfigError(f"max_train_samples={self.max_train_samples}; expected a positive row count (null = all)")
        if self.max_source_length < 8 or self.max_target_length < 4:
            raise ConfigError(f"max_source_length/max_target_length too small: "
                              f"{self.max_source_length}/{self.max_target_length}")
        if not 0.0 <= self.label_smoothing_factor < 1.0:
            raise ConfigError(f"label_smoothing_factor {self.label_smoothing_factor}; expected 0 <= value < 1")
        for bucket in self.max_new_tokens_by_length:
            if len(bucket) != 2:
                raise ConfigError(f"max_new_tokens_by_length item {bucket!r}; expected [min_dialogue_tokens, "
                                  "max_new_tokens]")


def preset_layer(preset_name: str) -> dict[str, Any]:
    """The settings a preset implies: its lengths and generation defaults (unknown preset: ConfigError)."""
    preset = get_preset(preset_name, TRACK)
    generation = preset.generation
    layer: dict[str, Any] = {"preset": preset.name, "max_source_length": preset.max_source_length,
                             "max_target_length": preset.max_target_length}
    for source, target in (("num_beams", "num_beams"), ("no_repeat_ngram_size", "no_repeat_ngram_size"),
                           ("max_length", "generation_max_length"), ("early_stopping", "beam_early_stopping"),
                           ("length_penalty", "length_penalty")):
        if source in generation:
            layer[target] = generation[source]
    return layer


# Small settings for the CPU demo: a few epochs of the tiny model, greedy-ish short generation.
DEMO_LAYER: dict[str, Any] = {
    "num_train_epochs": 4, "learning_rate": 1e-3, "per_device_train_batch_size": 16, "warmup_ratio": 0.05,
    "num_beams": 2, "generation_max_length": 40, "per_device_eval_batch_size": 30, "early_stopping_patience": 2,
}

# Keys of earlier versions, so an old YAML fails with the new name instead of "unknown key".
RENAMED = {"encoder_max_len": "max_source_length", "decoder_max_len": "max_target_length",
           "label_smoothing": "label_smoothing_factor", "max_dev_samples": "max_eval_samples",
           "eval_batch_size": "per_device_eval_batch_size"}

# What `make predict` may change on a finished run: decoding and its batch, never what the model learned or reads.
GENERATION_KEYS = frozenset({"num_beams", "no_repeat_ngram_size", "generation_max_length", "length_penalty",
                             "beam_early_stopping", "max_new_tokens_by_length", "per_device_eval_batch_size"})
SETTINGS = TrackSettings(track=TRACK, config_class=BaselineConfig,
                         configs_dir=Path(__file__).resolve().parent / "configs",
                         preset_layer=preset_layer, demo_layer=DEMO_LAYER, renamed=RENAMED, fit=fit_seq2seq)


def load_config(preset_name: str, yaml_path: Path | str | None = None,
                overrides: Mapping[str, Any] | None = None, demo: bool = False) -> BaselineConfig:
    """defaults < preset < demo < YAML (`yaml_path`, else the shipped one) < overrides; bad input -> ConfigError."""
    return SETTINGS.resolve(SETTINGS.layers(preset_name, yaml_path, overrides, demo))
