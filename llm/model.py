"""Loading decoder-only models for training and inference: QLoRA (NF4, double quant), 8-bit, plain LoRA, full.

The same `from_pretrained` code loads hub ids and the local tiny checkpoints. A trained checkpoint folder holds the
adapter (or full/merged weights), the tokenizer, the prompt style and `llm_checkpoint.json`, which says how to
rebuild the model: `load_checkpoint(folder, config)` is the only reader.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from competition.harness.presets import Preset, get_preset
from competition.modeling.attention import configure_attention
from competition.modeling.loading import load_tokenizer, model_source
from competition.rules.errors import ConfigError
from llm.config import LLMConfig
from llm.lora import compute_dtype

log = logging.getLogger(__name__)

CHECKPOINT_INFO = "llm_checkpoint.json"


@dataclass
class CheckpointInfo:
    """How a saved checkpoint was made: `kind` is adapter (base + LoRA), full or merged (standalone weights)."""

    preset: str
    base_source: str
    kind: str
    quantization: str = "none"
    added_tokens: list[str] = field(default_factory=list)

    def save(self, folder: Path) -> None:
        (Path(folder) / CHECKPOINT_INFO).write_text(json.dumps(self.__dict__, ensure_ascii=False, indent=2),
                                                    encoding="utf-8")

    @classmethod
    def load(cls, folder: Path | str) -> "CheckpointInfo":
        path = Path(folder) / CHECKPOINT_INFO
        if not path.is_file():
            raise ConfigError(f"{folder}: not an LLM checkpoint (no {CHECKPOINT_INFO})")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def has_cuda() -> bool:
    """Whether a CUDA GPU is usable (bitsandbytes k-bit and bf16 training need one)."""
    return torch.cuda.is_available()


def effective_quantization(config: LLMConfig) -> str:
    """The quantization actually used: k-bit needs CUDA, so CPU falls back to plain (LoRA) weights."""
    if config.quantization != "none" and not has_cuda():
        log.warning("quantization=%s needs a CUDA GPU (bitsandbytes); no GPU here: falling back to plain LoRA in "
                    "fp32 on CPU", config.quantization)
        return "none"
    return config.quantization


def quantization_config(quantization: str, dtype: torch.dtype):
    """BitsAndBytesConfig for nf4 (double quant, compute in `dtype`) or int8; None for plain weights."""
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=dtype)


def build_prompt_style(config: LLMConfig, tokenizer, preset: Preset | None = None):
    """The preset's prompt style with the config's instruction, cut mode and lengths, fitted to the tokenizer.

    `max_source_length` counts the prompt; the style's budget is prompt + summary. `preset`: the config's, when
    the caller has already looked it up.
    """
    from competition.modeling.prompts import prompt_style_for, resolve_template

    preset = preset or get_preset(config.preset, "llm")
    overrides: dict[str, Any] = {"cut": config.cut, "max_target_length": config.max_target_length,
                                 "max_length": config.max_source_length + config.max_target_length}
    if config.instruction:
        overrides["instruction"] = config.instruction
    return resolve_template(prompt_style_for(preset, **overrides), tokenizer)


def add_data_tokens(tokenizer, style, tokens: list[str]) -> list[str]:
    """Add speaker/mask tags (normal tokens) and the end marker (special); return the tokens that were new."""
    from competition.modeling.prompts import prepare_tokenizer

    before = set(tokenizer.get_vocab())
    prepare_tokenizer(tokenizer, style, tokens)
    return [t for t in tokenizer.get_vocab() if t not in before]


def fit_embeddings(model, tokenizer) -> None:
    """Grow the embeddings to the tokenizer; never shrink (some models ship padded embedding matrices)."""
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)


def load_base_model(source: str | Path, config: LLMConfig, quantization: str, dtype: torch.dtype | None = None):
    """`AutoModelForCausalLM.from_pretrained` with the quantization, dtype and attention implementation asked
    (and the attention settings: `configure_attention`)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_config = AutoConfig.from_pretrained(str(source), trust_remote_code=config.trust_remote_code)
    dtype = dtype or compute_dtype(model_config, requested=config.precision)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": config.attn_implementation,
                              "use_safetensors": True, "trust_remote_code": config.trust_remote_code}
    bnb = quantization_config(quantization, dtype)
    if bnb is not None:  # a k-bit model cannot be moved after loading: load all of it onto this process's GPU
        kwargs.update(quantization_config=bnb, device_map={"": this_process_gpu()})
    model = AutoModelForCausalLM.from_pretrained(str(source), **kwargs)
    if bnb is None and has_cuda():
        model.to(f"cuda:{this_process_gpu()}")
    configure_attention(model, config)
    return model


def load_base_for_prediction(config: LLMConfig):
    """(model, tokenizer, prompt style, source) of the preset's base model as it ships, in eval mode, loaded as prediction
    loads a trained adapter's base (the config's quantization, `predict_with=dequantized` honoured; 4-bit falls back
    to plain weights without a GPU). No tokens are added (their embedding rows would be untrained), so a preset's end
    marker is a stop string, not a token."""
    preset = get_preset(config.preset, "llm")
    source = model_source(preset, config.model_path)
    tokenizer = load_tokenizer(source, config.trust_remote_code)
    style = build_prompt_style(config, tokenizer, preset)
    quantization = effective_quantization(config)
    dtype = _inference_dtype(source, config)
    model = load_base_model(source, config, quantization, dtype=dtype)
    if config.predict_with == "dequantized" and quantization != "none":
        model = model.dequantize(dtype=dtype)
    model.eval()
    return model, tokenizer, style, source


def this_process_gpu() -> int:
    """The GPU this process owns: its local rank under torchrun (DDP: one model per GPU), else the current one."""
    from competition.harness.distributed import local_rank, world_size

    return local_rank() if world_size() > 1 else torch.cuda.current_device()


def load_for_training(config: LLMConfig, data_tokens: list[str]):
    """(model, tokenizer, prompt style, CheckpointInfo) for training; the model is LoRA-wrapped unless
    finetune=full. The end marker is always added; the data tags when add_data_tokens."""
    preset = get_preset(config.preset, "llm")
    source = model_source(preset, config.model_path)
    quantization = effective_quantization(config) if config.finetune == "lora" else "none"
    tokenizer = load_tokenizer(source, config.trust_remote_code)
    style = build_prompt_style(config, tokenizer, preset)
    added = add_data_tokens(tokenizer, style, data_tokens if config.add_data_tokens else [])
    model = load_base_model(source, config, quantization)
    fit_embeddings(model, tokenizer)
    model.config.use_cache = False  # the cache is useless in training and clashes with gradient checkpointing
    if config.finetune == "full":
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        return model, tokenizer, style, CheckpointInfo(preset.name, source, "full", "none", added)
    model = attach_lora(model, tokenizer, config, preset, quantization, added)
    return model, tokenizer, style, CheckpointInfo(preset.name, source, "adapter", quantization, added)


def attach_lora(model, tokenizer, config: LLMConfig, preset: Preset, quantization: str, added: list[str]):
    """prepare_model_for_kbit_training (k-bit with kbit_fp32_norms only) and wrap with LoRA on the family's linear
    layers.

    Rows of added tokens are trained too (peft trainable tokens), so the new tags get real embeddings.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    from llm.lora import lora_config_for

    if quantization != "none" and config.kbit_fp32_norms:  # peft casts embeddings and norms to fp32
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora_config = lora_config_for(preset, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                                  model=model)
    if added:
        lora_config.trainable_token_indices = trainable_token_targets(model, tokenizer.convert_tokens_to_ids(added))
    model = get_peft_model(model, lora_config)
    if log.isEnabledFor(logging.INFO):
        trainable, total = model.get_nb_trainable_parameters()
        log.info("LoRA on %s: %d trainable of %d parameters", list(lora_config.target_modules), trainable, total)
    return model


def trainable_token_targets(model, token_ids: list[int]) -> dict[str, list[int]]:
    """peft trainable-token targets for new tokens: the input embedding rows, and the output rows when untied
    (else an untied model could never learn to emit the new tags or the end marker)."""
    names = {id(module): name.rsplit(".", 1)[-1] for name, module in model.named_modules() if name}
    targets = {names[id(model.get_input_embeddings())]: list(token_ids)}
    output = model.get_output_embeddings()
    if output is not None and output.weight is not model.get_input_embeddings().weight:
        targets[names[id(output)]] = list(token_ids)
    return targets


def save_checkpoint(model, tokenizer, style, info: CheckpointInfo, folder: Path | str) -> Path:
    """Save weights (adapter or full), tokenizer, prompt style and CheckpointInfo into `folder`."""
    from competition.modeling.prompts import save_prompt_style

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    save_prompt_style(style, folder)
    info.save(folder)
    return folder


def load_checkpoint(folder: Path | str, config: LLMConfig, for_merge: bool = False):
    """Rebuild (model, tokenizer, prompt style, info) from a saved checkpoint, in eval mode.

    An adapter is applied to the base loaded as in training (same quantization), or in 16-bit when `for_merge`.
    With `predict_with=dequantized` a k-bit base is dequantized to 16-bit tensors first and the adapter applied to it
    unmerged: training's arithmetic (dequantized base matmul + LoRA), with no rounding of a merged sum to 16 bits.
    """
    from competition.modeling.prompts import load_prompt_style

    folder = Path(folder)
    info = CheckpointInfo.load(folder)
    style = load_prompt_style(folder)
    tokenizer = load_tokenizer(folder, config.trust_remote_code)
    if info.kind in ("full", "merged"):
        model = load_base_model(folder, config, "none", dtype=_inference_dtype(folder, config))
    else:
        from peft import PeftModel

        quantization = "none" if for_merge else effective_quantization(config)
        dtype = _inference_dtype(info.base_source, config)
        base = load_base_model(info.base_source, config, quantization, dtype=dtype)
        if config.predict_with == "dequantized" and quantization != "none":
            base = base.dequantize(dtype=dtype)  # the very weights training saw, as 16-bit tensors
        fit_embeddings(base, tokenizer)
        model = PeftModel.from_pretrained(base, folder)
    model.eval()
    return model, tokenizer, style, info


def _inference_dtype(source: str | Path, config: LLMConfig) -> torch.dtype:
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(str(source), trust_remote_code=config.trust_remote_code)
    return compute_dtype(model_config, requested=config.precision)
