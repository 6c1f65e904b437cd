"""A memory model of both tracks, and the execution settings it fits to a GPU's free memory.

Pure functions of a preset's `Architecture` and the resolved settings (no torch): `llm_training_gib`,
`llm_generation_gib`, `seq2seq_training_gib`, `seq2seq_generation_gib` estimate a peak of allocated GPU memory in
GiB. The per-token constants are calibrated on measured peaks (`tests/test_memory.py` holds the table:
llama3.2-ko-3b with and without checkpointing, liger or not, qwen3-14b's run, KoBART's training and beam search).

`fit_llm` / `fit_seq2seq` keep the recipe (tokens or rows per optimizer step, learning rate, lengths, decoding)
and change only how a step runs, and only where the settings as resolved would not fit: the micro-batch with
gradient accumulation making up the same step, gradient checkpointing, generation batch sizes and
`predict_with`. A key the user set (`explicit`) is never changed; if it makes the estimate exceed the card, the fit
warns. A card too small for the preset at all raises ConfigError naming the smallest card it needs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from competition.harness.presets import Architecture, get_preset
from competition.rules.errors import ConfigError

GIB = 1024 ** 3
HEADROOM = 1.15  # free memory / this = what the estimate may use (allocator fragmentation, reserved vs allocated)
CONTEXT_GIB = 1.5  # a CUDA context and libraries' workspaces, outside torch's allocator
FIXED_GIB = 1.0  # CUDA workspaces, allocator slack, small buffers
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit weights + double-quantized block constants (blocks of 64)
WEIGHT_BYTES = {"nf4": NF4_BYTES, "int8": 1.0, "none": 2.0}  # per quantized parameter; embeddings stay 16-bit
LORA_STATE_BYTES = {"paged_adamw_8bit": 10, "adamw_torch": 16}  # fp32 weight + fp32 grad + optimizer states
RECOMPUTE_FACTOR = 2.8  # checkpointing: one layer's recomputed activations + their gradients, at the peak
LIGER_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma2")  # families with liger kernels (llm/kernels.py)
MIN_GRAPH_BEAM_BATCH = 64  # seq2seq: a smaller beam-search batch beside CUDA-graph pools -> compile off instead
MIN_NO_CHECKPOINT_TOKENS = 8192  # below this, checkpointing with larger micro-batches is the faster way to fit (the 3B on an H100: 4,096 tokens x 4 unchecked 3.7k tokens/s)
GENERATION_PREFILL_TOKENS = 8192  # one prefill forward of the LLM's fast loop covers at most this many prompt tokens


@dataclass(frozen=True)
class Gpu:
    """The card a run fits to: its name, total and free memory (GiB) at start, and bf16 support."""

    name: str
    total_gib: float
    free_gib: float
    bf16: bool = True
    fused_kernels: bool = True  # liger-kernel installed (the GPU extras): the LLM track's fused kernels can run

    @property
    def label(self) -> str:
        """The source name of fitted settings, e.g. `gpu: NVIDIA GeForce RTX 3090, 23.6 GiB free`."""
        return f"gpu: {self.name}, {self.free_gib:.1f} GiB free"

    @property
    def usable_gib(self) -> float:
        return self.free_gib / HEADROOM


def prefer_expandable_segments() -> None:
    """Let PyTorch's CUDA allocator grow segments instead of caching fixed-size blocks (`expandable_segments`), so
    generation's KV caches of changing sizes do not fragment a small card; a user's allocator setting is kept. Must run
    before the process's first CUDA allocation."""
    if not {"PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF"} & set(os.environ):
        os.environ["PYTORCH_ALLOC_CONF"] = "expandable_segments:True"


def detect_gpu() -> Gpu | None:
    """This process's GPU as `torch.cuda.mem_get_info` sees it now; None without CUDA (nothing is fitted).

    Under torchrun each rank asks its own GPU (LOCAL_RANK) and fits to its total memory less a CUDA context, so every
    rank of the run resolves the same settings."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    device = int(os.environ.get("LOCAL_RANK", "0"))
    free, total = torch.cuda.mem_get_info(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        free = total - CONTEXT_GIB * GIB
    return Gpu(torch.cuda.get_device_name(device), round(total / GIB, 2), round(free / GIB, 2),
               bool(torch.cuda.is_bf16_supported()), importlib.util.find_spec("liger_kernel") is not None)


@dataclass
class Fit:
    """What fitting did: the changed settings, the estimates (GiB) and any warning about explicit values."""

    gpu: Gpu
    values: dict[str, Any] = field(default_factory=dict)  # key -> fitted value (changed keys only)
    changes: dict[str, list[Any]] = field(default_factory=dict)  # key -> [from, to]
    estimates: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def change(self, key: str, before: Any, after: Any) -> None:
        if before != after:
            self.values[key] = after
            self.changes[key] = [before, after]

    def record(self) -> dict[str, Any]:
        """For run.json: the card and what was fitted."""
        return {"gpu": {"name": self.gpu.name, "total_gib": self.gpu.total_gib, "free_gib": self.gpu.free_gib,
                        "bf16": self.gpu.bf16, "fused_kernels": self.gpu.fused_kernels},
                "fitted": dict(self.changes), "memory_estimate_gib": dict(self.estimates)}

    def summary(self) -> str:
        """One comment line for `--print-config`."""
        figures = ", ".join(f"{k} {v:.1f} GiB" for k, v in self.estimates.items())
        return (f"# {self.gpu.label} (estimates may use {self.gpu.usable_gib:.1f}): {figures}; "
                f"fitted: {', '.join(f'{k} {a} -> {b}' for k, (a, b) in self.changes.items()) or 'nothing'}")


def architecture(preset_name: str, model_path: str | None = None) -> Architecture:
    """The model's shape: its own config.json (in `model_path`, else the hub cache) when there is one, else the
    preset registry's."""
    preset = get_preset(preset_name)
    declared = preset.arch
    path = Path(model_path) / "config.json" if model_path else cached_config(preset.hub_id)
    if path is None or not path.is_file():
        return declared
    config = json.loads(path.read_text(encoding="utf-8"))
    config = config.get("text_config", config)
    hidden = config.get("hidden_size") or config.get("d_model") or declared.hidden
    heads = config.get("num_attention_heads") or config.get("encoder_attention_heads") or config.get("num_heads")
    heads = heads or declared.heads
    return Architecture(
        layers=config.get("decoder_layers") or config.get("num_decoder_layers") or config.get("num_hidden_layers")
        or config.get("num_layers") or declared.layers,
        hidden=hidden,
        intermediate=config.get("intermediate_size") or config.get("decoder_ffn_dim") or config.get("d_ff")
        or declared.intermediate,
        heads=heads, kv_heads=config.get("num_key_value_heads") or heads,
        vocab=config.get("vocab_size") or declared.vocab,
        tied_embeddings=config.get("tie_word_embeddings", declared.tied_embeddings),
        head_dim=config.get("head_dim") or config.get("d_kv") or declared.head_dim,
        encoder_layers=config.get("encoder_layers") or (config.get("num_layers", 0) if declared.encoder_layers else 0),
        gated_mlp=declared.gated_mlp)


def cached_config(hub_id: str | None) -> Path | None:
    """The hub model's config.json when the local hub cache holds it (never downloads)."""
    if hub_id is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(hub_id, "config.json")
    return Path(found) if isinstance(found, str) else None


# ----------------------------------------------------------------------------------------------------------------
# LLM track (decoder-only, LoRA / QLoRA)

def _mlp_widths(arch: Architecture) -> int:
    return 3 if arch.gated_mlp else 2  # gate + up + down input vs up + down input


def llm_weights_gib(arch: Architecture, quantization: str) -> float:
    """Base weights: quantized layers, 16-bit embeddings and head."""
    layers = arch.layers * arch.layer_parameters()
    return (layers * WEIGHT_BYTES[quantization] + arch.embedding_parameters * 2) / GIB


def lora_parameters(arch: Architecture, r: int) -> int:
    """LoRA A and B of every linear layer of every layer (the track wraps all of them)."""
    h, i = arch.hidden, arch.intermediate
    if arch.gated_mlp:
        widths = (h + arch.attention_dim) * 2 + (h + arch.kv_dim) * 2 + (h + i) * 3
    else:
        widths = (h + 3 * h) + 2 * h + (h + i) * 2
    return r * arch.layers * widths


def llm_layer_activation_bytes(arch: Architecture, fused: bool, lora_dropout: bool) -> int:
    """Bytes saved for backward per token per layer (16-bit), calibrated on llama3.2-ko-3b."""
    h, i = arch.hidden, arch.intermediate * _mlp_widths(arch) / 3
    saved = 2 * (7 * h + 3 * i)
    if lora_dropout:  # each LoRA input is a dropped-out copy
        saved += 2 * (5 * h + i)
    if not fused:  # liger's RMSNorm and SwiGLU recompute what the unfused modules keep
        saved += 2 * (2 * h + 2 * i)
    return int(saved)


def llm_training_gib(arch: Architecture, tokens: int, *, quantization: str = "nf4", lora_r: int = 16,
                     checkpointing: bool = True, fused: bool = True, lora_dropout: bool = True,
                     target_share: float = 0.135, optim: str = "paged_adamw_8bit") -> float:
    """Peak allocated GiB of one training micro-batch of `tokens` (padding included)."""
    static = llm_weights_gib(arch, quantization) + lora_parameters(arch, lora_r) * LORA_STATE_BYTES.get(
        optim, 16) / GIB + FIXED_GIB
    outside_layers = tokens * 24 * arch.hidden / GIB  # embeddings, final norm, loss inputs
    layer_set = tokens * llm_layer_activation_bytes(arch, fused, lora_dropout) / GIB
    logits = 0.0 if fused else tokens * target_share * arch.vocab * 6 / GIB  # kept logits, 16-bit + fp32 upcast
    if checkpointing:
        saved = tokens * arch.layers * 2 * arch.hidden / GIB  # each layer's input
        return static + outside_layers + saved + max(logits, RECOMPUTE_FACTOR * layer_set)
    return static + outside_layers + arch.layers * layer_set + logits


def llm_generation_gib(arch: Architecture, rows: int, prompt_tokens: int, new_tokens: int, *,
                       weights: str = "nf4", lora_r: int = 16, batch_tokens: int = 0,
                       prefill_tokens: int = GENERATION_PREFILL_TOKENS) -> float:
    """Peak allocated GiB of generating a batch of `rows` prompts of up to `prompt_tokens` each.

    `weights`: the base as predicted from: nf4 / int8 (+ adapter) or `none` (16-bit: dequantized or plain).
    `batch_tokens` (generation_batch_tokens, 0 = off) caps rows x longest prompt; `prefill_tokens` caps one prefill
    forward (the fast loop's chunks).
    """
    prompt_total = rows * prompt_tokens if batch_tokens <= 0 else min(rows * prompt_tokens, max(batch_tokens,
                                                                                                  prompt_tokens))
    chunk = min(prompt_total, prefill_tokens)  # one prefill forward
    part = chunk if prompt_total > prefill_tokens else 0  # several chunks: each fills a cache of its own first
    cached = prompt_total + rows * new_tokens + part
    kv = cached * 2 * arch.layers * arch.kv_dim * 2 / GIB
    prefill = chunk * 2 * (2 * arch.hidden + 2 * arch.intermediate) / GIB  # one layer's working set
    logits = rows * arch.vocab * 4 * 2 / GIB
    adapter = lora_parameters(arch, lora_r) * 4 / GIB
    dequantize = arch.layer_parameters() * 2 / GIB if weights != "none" else 0.0  # one layer at a time
    return llm_weights_gib(arch, weights) + adapter + dequantize + kv + prefill + logits + FIXED_GIB


def _halvings(value: int, smallest: int) -> list[int]:
    """value, value/2, ... while whole and at least `smallest` (always value itself)."""
    out = [value]
    while out[-1] % 2 == 0 and out[-1] // 2 >= smallest:
        out.append(out[-1] // 2)
    return out


def _shrinking(value: int) -> list[int]:
    """value, then halves rounded up, down to 1: generation batches need not divide anything."""
    out = [value]
    while out[-1] > 1:
        out.append((out[-1] + 1) // 2)
    return out


def generation_sizes(rows: int, batch_tokens: int, prompt_tokens: int) -> list[tuple[int, int]]:
    """(rows, token budget) of a generation batch, largest first: the token budget halves first, down to one longest
    prompt (the batch keeps its rows for short prompts), then the rows halve. A budget of 0 (off) starts at rows x
    the longest prompt."""
    sizes = [(rows, batch_tokens)]
    budget = batch_tokens or rows * prompt_tokens
    while budget // 2 >= prompt_tokens:
        budget //= 2
        sizes.append((rows, budget))
    sizes += [(smaller, min(budget, smaller * prompt_tokens)) for smaller in _shrinking(rows)[1:]]
    return sizes


def _divisors_down(value: int) -> list[int]:
    return [d for d in range(value, 0, -1) if value % d == 0]


def fit_llm(values: Mapping[str, Any], explicit: set[str], gpu: Gpu) -> Fit:
    """The LLM track's execution settings fitted to `gpu` (see the module docstring)."""
    fit = Fit(gpu)
    arch = architecture(values["preset"], values.get("model_path"))
    quantization = values["quantization"] if values.get("finetune", "lora") == "lora" else "none"
    longest_row = values["max_source_length"] + values["max_target_length"]
    family = get_preset(values["preset"]).family
    fused = values["fused_kernels"] != "off" and gpu.fused_kernels and family in LIGER_FAMILIES
    common = dict(quantization=quantization, lora_r=values["lora_r"], fused=fused,
                  lora_dropout=values["lora_dropout"] > 0,
                  optim="paged_adamw_8bit" if values["optim"] == "auto" else values["optim"])
    usable = gpu.usable_gib

    # training: the micro-batch (tokens or rows) x accumulation stays the recipe's step
    by_tokens = values["batch_tokens"] > 0
    size_key = "batch_tokens" if by_tokens else "per_device_train_batch_size"
    size, accumulation = values[size_key], values["gradient_accumulation_steps"]
    step = size * accumulation

    def micro_tokens(micro: int) -> int:
        return micro if by_tokens else micro * longest_row

    micros = _halvings(step, longest_row) if by_tokens else _divisors_down(step)
    if {size_key, "gradient_accumulation_steps"} & explicit:
        micros = [size]
    micros = [m for m in micros if m <= size] or [size]
    shipped_ckpt = values["gradient_checkpointing"]
    modes = [shipped_ckpt] if "gradient_checkpointing" in explicit else [shipped_ckpt, True]
    candidates = [(ckpt, m) for ckpt in dict.fromkeys(modes) for m in micros
                  if ckpt or m == size or micro_tokens(m) >= MIN_NO_CHECKPOINT_TOKENS]

    def training(ckpt: bool, micro: int) -> float:
        return llm_training_gib(arch, micro_tokens(micro), checkpointing=ckpt, **common)

    chosen = next(((c, m) for c, m in candidates if training(c, m) <= usable), None)
    if chosen is None:
        smallest = max(llm_training_gib(arch, longest_row, checkpointing=True, **common),
                       llm_generation_gib(arch, 1, longest_row, 0, weights=quantization, lora_r=values["lora_r"]))
        if smallest > usable:
            raise _too_small(values["preset"], smallest, gpu)
        chosen = candidates[-1]
        fit.warnings.append(f"training estimate {training(*chosen):.1f} GiB exceeds {usable:.1f} GiB usable of "
                            f"{gpu.free_gib:.1f} GiB free on {gpu.name}; the settings you set may run out of memory")
    ckpt, micro = chosen
    fit.change("gradient_checkpointing", shipped_ckpt, ckpt)
    fit.change(size_key, size, micro)
    fit.change("gradient_accumulation_steps", accumulation, step // micro)
    fit.estimates["training"] = round(training(ckpt, micro), 2)

    # generation: dev evaluation beside the training state, then prediction from the checkpoint
    prompt, new = values["max_source_length"], values["max_new_tokens"]
    rows, gen_tokens = values["per_device_eval_batch_size"], values["generation_batch_tokens"]
    lora_state = lora_parameters(arch, values["lora_r"]) * 6 / GIB  # grads and optimizer states besides weights

    def generation(weights: str, batch_rows: int, batch_tokens: int) -> float:
        return llm_generation_gib(arch, batch_rows, prompt, new, weights=weights, lora_r=values["lora_r"],
                                  batch_tokens=batch_tokens)

    def fits(weights: str, batch_rows: int, batch_tokens: int) -> bool:
        during_training = generation(quantization, batch_rows, batch_tokens) + lora_state
        return max(generation(weights, batch_rows, batch_tokens), during_training) <= usable

    predict_with = values["predict_with"]
    predict_weights = "none" if predict_with in ("dequantized", "merged") else quantization
    sizes = generation_sizes(rows, gen_tokens, prompt)
    if {"per_device_eval_batch_size", "generation_batch_tokens"} & explicit:
        sizes = [(rows, gen_tokens)]
    demotable = predict_with == "dequantized" and quantization != "none" and "predict_with" not in explicit
    # the 16-bit base only where it keeps the batch's rows: more, smaller batches are slower than the k-bit base's
    tried = [(r, t) for r, t in sizes if r == rows] if demotable else sizes
    chosen_gen = next(((r, t) for r, t in tried if fits(predict_weights, r, t)), None)
    if chosen_gen is None and demotable:
        predict_with, predict_weights = "adapter", quantization
        chosen_gen = next(((r, t) for r, t in sizes if fits(predict_weights, r, t)), None)
    if chosen_gen is None:
        chosen_gen = sizes[-1]
        fit.warnings.append(f"generation estimate {generation(predict_weights, *chosen_gen):.1f} GiB exceeds "
                            f"{usable:.1f} GiB usable of {gpu.free_gib:.1f} GiB free on {gpu.name}; lower "
                            "per_device_eval_batch_size or use predict_with=adapter")
    fit.change("predict_with", values["predict_with"], predict_with)
    fit.change("per_device_eval_batch_size", rows, chosen_gen[0])
    fit.change("generation_batch_tokens", gen_tokens, chosen_gen[1])
    fit.estimates["generation"] = round(max(generation(predict_weights, *chosen_gen),
                                            generation(quantization, *chosen_gen) + lora_state), 2)
    return fit


def _too_small(preset: str, smallest_gib: float, gpu: Gpu) -> ConfigError:
    needed = smallest_gib * HEADROOM
    return ConfigError(f"preset '{preset}' does not fit {gpu.name} with {gpu.free_gib:.1f} GiB free: even its "
                       f"smallest settings need about {smallest_gib:.1f} GiB; it needs a card with at least "
                       f"{math.ceil(needed)} GiB free")


# ----------------------------------------------------------------------------------------------------------------
# seq2seq track (full fine-tune in mixed precision, beam search)

SEQ2SEQ_STATE_BYTES = 4 + 4 + 8 + 2  # fp32 weight, fp32 grad, AdamW's two states, autocast's 16-bit copy


def seq2seq_activation_gib(arch: Architecture, rows: int, source: int, target: int) -> float:
    """Activations and logits of a training batch (dropout masks included), calibrated on KoBART."""
    h, i = arch.hidden, arch.intermediate * (1.5 if arch.gated_mlp else 1)
    encoder = rows * source * arch.encoder_layers * 2 * (13 * h + 2 * i)
    decoder = rows * target * arch.layers * 2 * (17 * h + 2 * i)
    logits = rows * target * arch.vocab * 10  # 16-bit logits, fp32 log-softmax and its gradient
    return (encoder + decoder + logits) / GIB


def seq2seq_training_gib(arch: Architecture, rows: int, source: int, target: int, graphs: bool = False) -> float:
    """Peak allocated GiB of a training step of `rows` dialogues (CUDA graphs add pools of the same size)."""
    activations = seq2seq_activation_gib(arch, rows, source, target)
    return arch.parameters * SEQ2SEQ_STATE_BYTES / GIB + FIXED_GIB + activations * (1.05 if graphs else 1.0)


def seq2seq_generation_gib(arch: Architecture, rows: int, beams: int, source: int, length: int,
                           graph_pools_gib: float = 0.0) -> float:
    """Peak allocated GiB of a beam search over `rows` dialogues beside the training state.

    The cross-attention keys and values are held once per dialogue (shared across beams, `baselines.model`); the
    self-attention cache grows per beam and is copied when beams are reordered.
    """
    width = arch.kv_dim
    cross = rows * source * arch.layers * 2 * width * 2
    encoder_out = rows * source * arch.hidden * 2
    self_cache = rows * beams * length * arch.layers * 2 * width * 2 * 2
    logits = rows * beams * arch.vocab * 4 * 3
    state = arch.parameters * SEQ2SEQ_STATE_BYTES / GIB
    return state + FIXED_GIB + graph_pools_gib + (cross + encoder_out + self_cache + logits) / GIB


def fit_seq2seq(values: Mapping[str, Any], explicit: set[str], gpu: Gpu) -> Fit:
    """The seq2seq track's execution settings fitted to `gpu`: rows per device step (accumulation keeps the
    optimizer step's rows) and the beam-search batch."""
    fit = Fit(gpu)
    arch = architecture(values["preset"], values.get("model_path"))
    source, target = values["max_source_length"], values["max_target_length"]
    graphs = values.get("torch_compile_mode") == "reduce-overhead"
    usable = gpu.usable_gib
    size, accumulation = values["per_device_train_batch_size"], values["gradient_accumulation_steps"]
    step = size * accumulation
    micros = [size] if {"per_device_train_batch_size", "gradient_accumulation_steps"} & explicit else [
        m for m in _divisors_down(step) if m <= size]

    def training(rows: int) -> float:
        return seq2seq_training_gib(arch, rows, source, target, graphs)

    micro = next((m for m in micros if training(m) <= usable), None)
    if micro is None:
        if training(1) > usable and len(micros) > 1:
            raise _too_small(values["preset"], training(1), gpu)
        micro = micros[-1]
        fit.warnings.append(f"training estimate {training(micro):.1f} GiB exceeds {usable:.1f} GiB usable of "
                            f"{gpu.free_gib:.1f} GiB free on {gpu.name}")
    fit.change("per_device_train_batch_size", size, micro)
    fit.change("gradient_accumulation_steps", accumulation, step // micro)
    fit.estimates["training"] = round(training(micro), 2)

    rows = values["per_device_eval_batch_size"]
    sizes = [rows] if "per_device_eval_batch_size" in explicit else _shrinking(rows)
    pools = seq2seq_activation_gib(arch, micro, source, target) * 1.05

    def generation(batch: int, with_graphs: bool) -> float:
        return seq2seq_generation_gib(arch, batch, values["num_beams"], source, values["generation_max_length"],
                                      pools if with_graphs else 0.0)

    chosen = next((r for r in sizes if generation(r, graphs) <= usable), sizes[-1])
    if graphs and "torch_compile_mode" not in explicit and chosen < min(rows, MIN_GRAPH_BEAM_BATCH):
        graphs = False  # the CUDA-graph pools leave too little for beam search: run eagerly instead
        fit.change("torch_compile_mode", values["torch_compile_mode"], "off")
        fit.estimates["training"] = round(seq2seq_training_gib(arch, micro, source, target, False), 2)
        chosen = next((r for r in sizes if generation(r, False) <= usable), sizes[-1])
    if generation(chosen, graphs) > usable:
        fit.warnings.append(f"beam-search estimate {generation(chosen, graphs):.1f} GiB exceeds {usable:.1f} GiB "
                            f"usable of {gpu.free_gib:.1f} GiB free on {gpu.name}; lower per_device_eval_batch_size")
    fit.change("per_device_eval_batch_size", rows, chosen)
    fit.estimates["generation"] = round(generation(chosen, graphs), 2)
    return fit
