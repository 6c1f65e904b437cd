"""Settings of the decoder-only (LLM) track, layered: defaults < preset < (demo) < YAML file (`--config`, else
`llm/configs/<preset>.yaml`) < KEY=VALUE overrides. Names follow TrainingArguments where one exists.

Every setting is one field of `LLMConfig` with a one-line hint; the shipped YAMLs hold only what differs from
defaults + preset. `load_config("llama3.2-ko-3b", overrides={"learning_rate": 1e-4})` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from competition.harness.config import (
    REPORT_TO_HINT,
    NonNegativeFloat,
    NonNegativeInt,
    OptimizerName,
    PositiveFloat,
    PositiveInt,
    ReportTo,
    SchedulerName,
    SdpaBackend,
    Share,
    TrackSettings,
    setting,
)
from competition.harness.memory import fit_llm
from competition.harness.presets import get_preset
from competition.rules.errors import ConfigError

TRACK = "llm"
Quantization = Literal["nf4", "int8", "none"]
Finetune = Literal["lora", "full"]
Batching = Literal["packed", "grouped", "padded"]
SelectBy = Literal["score", "loss"]
Cut = Literal["middle", "keep_end", "keep_start"]
PredictWith = Literal["adapter", "dequantized", "merged"]
Decoding = Literal["fast", "generate"]
DecodeAttention = Literal["auto", "packed", "cudnn"]  # llm/decode.py
FusedKernels = Literal["auto", "liger", "off"]  # llm/kernels.py
Precision = Literal["auto", "bf16", "fp16", "fp32"]
Optim = Literal["auto", OptimizerName]  # auto: paged_adamw_8bit on CUDA, adamw_torch on CPU


@dataclass
class LLMConfig:
    """All settings of one LLM run (training, prompt, generation, pipeline)."""

    preset: str = setting("llama3.2-ko-3b", "model preset (competition/harness/presets.py)")
    seed: int = setting(42, "seed for python, numpy, torch and the Trainer")
    # --- model loading ---
    quantization: Quantization = setting("nf4", "nf4 = QLoRA 4-bit double-quant | int8 | none (plain LoRA); GPU only, CPU uses none")
    precision: Precision = setting("auto", "GPU compute dtype (NF4 compute, LoRA autocast): auto = bf16 where the GPU has it, else fp16 with loss scaling | bf16 | fp16 (forces the no-bf16 path) | fp32; CPU: fp32")
    finetune: Finetune = setting("lora", "lora | full (full fine-tune: tiny models only)")
    kbit_fp32_norms: bool = setting(False, "k-bit: true = peft's fp32 upcast of embeddings and norms (markedly slower) | false = keep them in bf16")
    gradient_checkpointing: bool = setting(True, "recompute activations in backward: much less memory, slower; turn off when the batch fits without it")
    attn_implementation: str = setting("sdpa", "sdpa | eager | flash_attention_2 (packed batches need one of these)")
    fused_kernels: FusedKernels = setting("auto", "training kernels (llm/kernels.py): auto = liger's fused ones where they run (CUDA, liger, known family) | liger (required) | off")
    sdpa_backend: SdpaBackend = setting("auto", "CUDA attention kernel: auto = any but cuDNN (it plans every new shape) | torch | cudnn | flash | efficient | math; CPU unaffected")
    sdpa_sync_free_masks: bool = setting(True, "CUDA, sdpa: always build padding masks instead of checking them on the host (a GPU sync per forward); CPU unaffected")
    add_data_tokens: bool = setting(False, "add #PersonN#/mask tags as whole tokens, rows trained (resume not exact)")
    model_path: str | None = setting(None, "local folder with the preset's files (config + tokenizer [+ weights]); null = the hub id")
    trust_remote_code: bool = setting(False, "opt in to remote code, only for presets that need it")
    # --- LoRA ---
    lora_r: PositiveInt = setting(16, "LoRA rank")
    lora_alpha: PositiveInt = setting(32, "LoRA scaling alpha")
    lora_dropout: Share = setting(0.05, "dropout on the LoRA path")
    # --- prompt ---
    instruction: str | None = setting(None, "instruction text; null = the preset's default")
    cut: Cut = setting("middle", "how an over-long dialogue is cut: middle | keep_end | keep_start")
    max_source_length: int = setting(1024, "max prompt tokens (scaffolding+instruction+dialogue); the preset sets it")
    max_target_length: int = setting(160, "max summary tokens in training; the preset sets it")
    # --- training ---
    num_train_epochs: PositiveFloat = setting(3.0, "training epochs (early stopping may end sooner)")
    learning_rate: PositiveFloat = setting(2e-4, "peak learning rate")
    per_device_train_batch_size: PositiveInt = setting(4, "sequences per device per step")
    gradient_accumulation_steps: PositiveInt = setting(4, "gradient accumulation steps")
    batch_tokens: NonNegativeInt = setting(0, "tokens per batch (padding included): batches of similar length up to this budget, batch_size ignored; 0 = off")
    warmup_ratio: Share = setting(0.03, "share of steps spent warming up the learning rate")
    weight_decay: NonNegativeFloat = setting(0.0, "AdamW weight decay")
    lr_scheduler_type: SchedulerName = setting("cosine", "learning-rate schedule (transformers name)")
    optim: Optim = setting("auto", "auto = paged_adamw_8bit on CUDA, adamw_torch on CPU; or any transformers optim")
    max_grad_norm: NonNegativeFloat = setting(1.0, "gradient clipping norm")
    batching: Batching = setting("grouped", "grouped (by length) | padded (random) | packed (padding-free; quadratic mask under sdpa, use with flash_attention_2)")
    eval_steps: NonNegativeInt = setting(0, "optimizer steps between dev evaluations; 0 = once per epoch")
    select_by: SelectBy = setting("score", "pick the best checkpoint by dev score (generates) or eval loss: score | loss")
    max_eval_samples: int | None = setting(100, "dev rows (a fixed random subset) generated at each evaluation; null = all")
    early_stopping_patience: NonNegativeInt = setting(2, "evaluations without improvement before stopping; 0 = never")
    save_total_limit: PositiveInt = setting(2, "checkpoints kept (the best one is always kept)")
    max_train_samples: int | None = setting(None, "use only the first N train rows; null = all")
    logging_steps: PositiveInt = setting(10, "optimizer steps between loss logs")
    report_to: ReportTo = setting("none", REPORT_TO_HINT)
    # --- generation ---
    num_beams: PositiveInt = setting(1, "1 = greedy, >1 = beam search")
    max_new_tokens: PositiveInt = setting(128, "generated tokens per summary at most")
    min_new_tokens: NonNegativeInt = setting(0, "generated tokens per summary at least (stop tokens are held back until then)")
    repetition_penalty: PositiveFloat = setting(1.0, "1.0 = off")
    no_repeat_ngram_size: NonNegativeInt = setting(0, "0 = off")
    per_device_eval_batch_size: PositiveInt = setting(16, "dialogues per generation batch (length-sorted)")
    generation_batch_tokens: NonNegativeInt = setting(0, "end a generation batch before its dialogues x longest prompt pass this many tokens (less left padding); 0 = off")
    decoding: Decoding = setting("fast", "fast = greedy with a static cache (+ CUDA graph on GPU; beams and penalties use generate) | generate")
    decode_attention: DecodeAttention = setting("auto", "decoding=fast: cudnn = cuDNN over grouped KV heads (CUDA, bf16/fp16; faster) | packed = PyTorch's SDPA | auto = cudnn where it runs")
    compile_decode: bool = setting(False, "decoding=fast: torch.compile the prefill and step (fewer kernels); on when one process predicts many times, the compile takes minutes")
    cache_implementation: str | None = setting(None, "decoding=generate only: null = dynamic KV cache | static")
    predict_with: PredictWith = setting("dequantized", "dequantized = k-bit base as 16-bit, adapter unmerged (fastest; a card it does not fit gets adapter) | adapter = base as trained + adapter (least memory) | merged = export a merged model")
    # --- submission ---
    max_fill_in_share: Share = setting(0.05, "share of empty summaries (replaced by the first utterance) above which the run does not submit")
    submit_despite_fill_ins: bool = setting(False, "submit even when fill-ins exceed max_fill_in_share")

    def __post_init__(self) -> None:
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ConfigError(f"max_train_samples={self.max_train_samples}; expected a positive row count (null = all)")
        if self.max_source_length < 8 or self.max_target_length < 4:
            raise ConfigError(f"max_source_length/max_target_length too small: "
                              f"{self.max_source_length}/{self.max_target_length}")
        if get_preset(self.preset, TRACK).trust_remote_code and not self.trust_remote_code:
            raise ConfigError(f"preset '{self.preset}' needs remote code; opt in with trust_remote_code=true")


def preset_layer(preset_name: str) -> dict[str, Any]:
    """Settings a preset implies: lengths and generation defaults (unknown preset: ConfigError)."""
    preset = get_preset(preset_name, TRACK)
    generation = preset.generation
    layer: dict[str, Any] = {"preset": preset.name, "max_source_length": preset.max_source_length,
                             "max_target_length": preset.max_target_length}
    for key in ("num_beams", "max_new_tokens", "repetition_penalty", "no_repeat_ngram_size"):
        if key in generation:
            layer[key] = generation[key]
    if preset.tiny:  # tiny models run on CPU: nothing to quantize, nothing to checkpoint
        layer.update(quantization="none", gradient_checkpointing=False, optim="adamw_torch")
    return layer


# `--demo`: a few minutes on two CPU cores, still the real pipeline (the tiny presets' YAMLs say the same).
DEMO_LAYER: dict[str, Any] = {
    "quantization": "none", "gradient_checkpointing": False, "learning_rate": 2e-3,
    "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "max_eval_samples": 16, "logging_steps": 5,
}

# Keys of earlier versions, so an old YAML or command line fails with the new name instead of "unknown key".
RENAMED = {"epochs": "num_train_epochs", "batch_size": "per_device_train_batch_size",
           "grad_accum": "gradient_accumulation_steps", "lr_scheduler": "lr_scheduler_type",
           "train_limit": "max_train_samples", "dev_subset": "max_eval_samples", "eval_every": "eval_steps",
           "gen_batch_size": "per_device_eval_batch_size", "max_length": "max_source_length",
           "resume": "the --resume RUN_DIR option (make llm RESUME=RUN_DIR)"}

# What `make predict` may change on a finished run: decoding and its batches, never what the model learned or reads.
GENERATION_KEYS = frozenset({"num_beams", "max_new_tokens", "min_new_tokens", "repetition_penalty",
                             "no_repeat_ngram_size", "per_device_eval_batch_size", "generation_batch_tokens",
                             "decoding", "decode_attention", "compile_decode", "cache_implementation"})
SETTINGS = TrackSettings(track=TRACK, config_class=LLMConfig,
                         configs_dir=Path(__file__).resolve().parent / "configs",
                         preset_layer=preset_layer, demo_layer=DEMO_LAYER, renamed=RENAMED, fit=fit_llm)


def load_config(preset_name: str, yaml_path: Path | str | None = None, overrides: Mapping[str, Any] | None = None,
                demo: bool = False) -> LLMConfig:
    """defaults < preset < demo < YAML (`yaml_path`, else the shipped one) < overrides; bad input -> ConfigError."""
    return SETTINGS.resolve(SETTINGS.layers(preset_name, yaml_path, overrides, demo))
