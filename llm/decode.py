"""Fast greedy decoding for left-padded batches: a static KV cache, masks built here, and on CUDA the one-token
decode step captured once as a CUDA graph and replayed.

`model.generate` pays Python and kernel-launch overhead for every new token and, with grouped-query attention and
a padding mask, copies the whole KV cache per layer per token (`repeat_kv`). This loop keeps the same model
forward and picks the same greedy tokens, but:
- the KV cache is preallocated (transformers' `StaticCache`), so nothing grows or is copied;
- the attention masks are built once per batch as 4D boolean tensors (transformers uses a 4D mask as given);
- at a one-token step the query heads sharing a KV head are packed as query rows of one SDPA call, so the cache
  is read once per KV head (`GQA_DECODE_ATTENTION`);
- on CUDA the step (forward, argmax, bookkeeping) is replayed as a CUDA graph, with no host sync except a
  stop check every `STOP_CHECK_EVERY` tokens;
- with `compile_step` the prefill and the step are compiled once per process (`torch.compile`, dynamic shapes: one
  compile serves every batch; the step before it is captured), so the norms, rotary embedding and activations run
  as a few fused kernels;
- on CUDA in bf16/fp16 the prefill and the steps run cuDNN's attention over the grouped KV heads
  (`decode_attention`), the steps near the memory bound.

`fast_greedy_unsupported(model, ...)` says why a model or setting needs `model.generate` instead (beam search,
logits processors, logit soft-capping, sliding-window layers).
"""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from competition.errors import ConfigError
from llm.config import DecodeAttention

log = logging.getLogger(__name__)

GQA_DECODE_ATTENTION = "harness_gqa_sdpa"
CUDNN_DECODE_ATTENTION = "harness_gqa_cudnn"
STOP_CHECK_EVERY = 16
_GRAPH_WARMUP_STEPS = 2  # eager steps before capture (allocator and cuBLAS workspaces settle)


def gqa_decode_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None,
                    **kwargs):
    """transformers' SDPA attention, except one-token steps with grouped KV heads: the query heads of each KV head
    become that head's query rows ([B, H, 1, D] -> [B, KV, H/KV, D]), so the cache is not repeated per head."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if query.shape[2] != 1 or groups == 1 or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    batch, heads, _, dim = query.shape
    packed = query.reshape(batch, heads // groups, groups, dim)  # head h reads KV head h // groups (repeat_kv order)
    out = F.scaled_dot_product_attention(packed, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def cudnn_decode_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      is_causal=None, **kwargs):
    """The fast loop's attention through cuDNN's kernel, over the grouped KV heads as they are (`enable_gqa`), for
    the prefill and the one-token steps. On an H200 (3B shape, bf16): a one-token step over a 128 x 1,098-slot
    cache took 146 us a layer, 92% of the memory bound (289 us for the packed rows through the memory-efficient
    kernel); the masked prefill of 128 x 1,018 tokens 5.4 ms a layer (14.9 ms for transformers' repeated KV through
    the memory-efficient kernel). cuDNN plans each new shape on the host: once per batch here."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if kwargs.get("softcap") is not None:
        return gqa_decode_sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                               is_causal=is_causal, **kwargs)
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling,
                                             enable_gqa=key.shape[1] != query.shape[1])
    return out.transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(GQA_DECODE_ATTENTION, gqa_decode_sdpa)
    AttentionInterface.register(CUDNN_DECODE_ATTENTION, cudnn_decode_sdpa)


@functools.cache
def _cudnn_decode_runs(device: torch.device, dtype: torch.dtype, heads: int, kv_heads: int, dim: int) -> bool:
    """Whether cuDNN's attention takes a masked one-token step of this shape and dtype here (no fp32 kernel)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if device.type != "cuda":
        return False
    query = torch.zeros((2, heads, 1, dim), device=device, dtype=dtype)
    cache = torch.zeros((2, kv_heads, 24, dim), device=device, dtype=dtype)
    mask = torch.ones((2, 1, 1, 24), device=device, dtype=torch.bool)
    try:
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            F.scaled_dot_product_attention(query, cache, cache, attn_mask=mask, enable_gqa=kv_heads != heads)
        return True
    except RuntimeError:
        return False


def decode_attention_name(model, choice: DecodeAttention, device: torch.device) -> str:
    """The attention implementation of the fast loop: cuDNN's kernel (`cudnn`, or `auto` where it runs) or the
    packed GQA rows of one-token steps in PyTorch's SDPA order (`packed`)."""
    if choice == "packed":
        return GQA_DECODE_ATTENTION
    config = _text_config(model)
    heads = config.num_attention_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    runs = _cudnn_decode_runs(device, model.dtype, heads, getattr(config, "num_key_value_heads", None) or heads, dim)
    if choice == "cudnn" and not runs:
        raise ConfigError(f"decode_attention=cudnn: cuDNN's attention does not run for {model.dtype} on {device}; "
                          "use auto or packed")
    return CUDNN_DECODE_ATTENTION if runs else GQA_DECODE_ATTENTION


def _text_config(model):
    return model.config.get_text_config(decoder=True)


def fast_greedy_unsupported(model, num_beams: int = 1, repetition_penalty: float = 1.0,
                            no_repeat_ngram_size: int = 0, stop_strings: Sequence[str] | None = None) -> str | None:
    """Why this model/setting needs `model.generate` (None: the fast loop gives the same greedy tokens)."""
    config = _text_config(model)
    if num_beams > 1:
        return "beam search"
    if repetition_penalty != 1.0 or no_repeat_ngram_size:
        return "repetition penalty / no-repeat n-grams"
    if stop_strings:
        return "a multi-token end marker (stop strings)"
    if getattr(config, "attn_logit_softcapping", None) or getattr(config, "final_logit_softcapping", None):
        return "logit soft-capping"
    if any(kind != "full_attention" for kind in (getattr(config, "layer_types", None) or [])):
        return "sliding-window or non-standard attention layers"
    if getattr(config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    return None


@contextmanager
def _attention(model, name: str) -> Iterator[None]:
    """Switch the model's attention implementation for the duration (restored afterwards). The config setter
    is enough: attention layers look the function up by that name at every call (`set_attn_implementation`
    would re-validate the whole model for every batch)."""
    config = model.config
    before = config._attn_implementation
    _register_attention()
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


def _is_quantized(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "is_quantized", False) or getattr(base.config, "quantization_config", None) is not None


class _DecodeState:
    """The static tensors one decode step reads and advances (a CUDA graph replays on these same addresses)."""

    def __init__(self, first_tokens: torch.Tensor, last_positions: torch.Tensor, key_ok: torch.Tensor,
                 prompt_width: int, new_tokens: int, stop_ids: torch.Tensor, forbid_stop: bool):
        batch, device = first_tokens.shape[0], first_tokens.device
        self.tokens = first_tokens.view(batch, 1).clone()          # last emitted token, the next step's input
        self.positions = (last_positions + 1).view(batch, 1)       # its rotary position (left padding aware)
        self.slot = torch.tensor([prompt_width], device=device)    # its KV-cache slot
        self.key_ok = key_ok                                       # [B, L]: cache slots each row may attend
        self.prompt_width = prompt_width
        self.out = torch.empty((batch, new_tokens), dtype=torch.long, device=device)
        self.out[:, 0] = first_tokens
        self.stop_ids = stop_ids
        self.stop_penalty = torch.full((batch, len(stop_ids)), float("-inf") if forbid_stop else 0.0, device=device)

    def step(self, model, cache) -> None:
        """Feed `tokens`, write the argmax into `out` and advance: one new token per row (graph-capturable)."""
        self.key_ok.index_fill_(1, self.slot, True)
        logits = model(input_ids=self.tokens, attention_mask=self.key_ok[:, None, None, :],
                       position_ids=self.positions, past_key_values=cache, use_cache=True).logits[:, -1].float()
        logits.index_add_(1, self.stop_ids, self.stop_penalty)
        chosen = logits.argmax(-1)
        self.out.index_copy_(1, self.slot - self.prompt_width + 1, chosen[:, None])
        self.tokens.copy_(chosen[:, None])
        self.positions.add_(1)
        self.slot.add_(1)


StepFn = Callable[["_DecodeState", object, object], None]


def _eager_step(state: "_DecodeState", model, cache) -> None:
    state.step(model, cache)


@functools.cache
def _compiled_step() -> StepFn:
    """One compiled decode step for the process (dynamic shapes: batch size and cache length vary per batch)."""
    return torch.compile(_eager_step, dynamic=True)


@torch.inference_mode()
def fast_greedy_generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                         stop_ids: Sequence[int], pad_token_id: int, min_new_tokens: int = 0,
                         cuda_graph: bool = True, compile_step: bool = False,
                         decode_attention: DecodeAttention = "auto") -> torch.Tensor:
    """Greedy continuations of a left-padded batch: [B, n] new token ids, `pad_token_id` after each row's stop.

    Same tokens as `model.generate(do_sample=False, eos_token_id=stop_ids, min_new_tokens=...)`. A CUDA graph is
    used on CUDA for unquantized models when `cuda_graph`; any capture failure falls back to the eager loop.
    `compile_step` compiles the prefill and the one-token step (the first batch of a process pays the compile).
    `decode_attention` picks the attention kernel (`decode_attention_name`).
    """
    from transformers import StaticCache

    batch, width = input_ids.shape
    device = input_ids.device
    cache = StaticCache(config=model.config, max_cache_len=width + max_new_tokens)
    prompt_ok = attention_mask.bool()
    key_ok = torch.zeros((batch, width + max_new_tokens), dtype=torch.bool, device=device)
    key_ok[:, :width] = prompt_ok
    positions = (prompt_ok.long().cumsum(-1) - 1).clamp(min=0)
    stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    if compile_step:
        _unguard_cache_addresses(cache)
    with _attention(model, decode_attention_name(model, decode_attention, device)):
        prefill = _compiled_prefill() if compile_step else _prefill
        first = prefill(model, input_ids, _prefill_mask(key_ok, width), positions, cache)
        if min_new_tokens > 0:
            first[:, stops] = float("-inf")
        state = _DecodeState(first.argmax(-1), positions[:, -1], key_ok, width, max_new_tokens, stops,
                             forbid_stop=min_new_tokens > 1)
        use_graph = cuda_graph and device.type == "cuda" and not _is_quantized(model)
        step = _compiled_step() if compile_step else _eager_step
        with torch.cuda.device(device) if use_graph else nullcontext():  # capture on the model's GPU (DDP ranks)
            _decode(model, cache, state, max_new_tokens, min_new_tokens, use_graph, step)
    return _pad_after_stop(state.out, stops, pad_token_id)


def _prefill(model, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
    """Fill the cache with the prompts; [B, vocab] fp32 logits of each row's last prompt token."""
    return model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                 use_cache=True, logits_to_keep=1).logits[:, -1].float()


@functools.cache
def _compiled_prefill() -> Callable:
    """The prefill compiled once for the process (dynamic shapes): its norms, rotary embedding and activations
    fused, which were about 40% of a 128 x 1,018-token prefill's GPU time on an H200."""
    return torch.compile(_prefill, dynamic=True)


def _prefill_mask(key_ok: torch.Tensor, width: int) -> torch.Tensor:
    """[B, 1, width, L] boolean: causal over the real prompt tokens; a padding query sees only itself (a fully
    masked row would give NaN, which the cache would then carry)."""
    length = key_ok.shape[1]
    query = torch.arange(width, device=key_ok.device)[:, None]
    key = torch.arange(length, device=key_ok.device)[None, :]
    allowed = ((key <= query)[None] & key_ok[:, None, :]) | (key == query)[None]
    return allowed[:, None]


def _unguard_cache_addresses(cache) -> None:
    """transformers marks a static cache's tensors as static addresses that compiled code guards on, so every new
    cache (one per batch) would recompile; keep them static but unguarded (the graph is captured per batch anyway)."""
    for layer in cache.layers:
        for name in ("keys", "values", "cumulative_length"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                torch._dynamo.mark_static_address(tensor, guard=False)


def _decode(model, cache, state: _DecodeState, max_new_tokens: int, min_new_tokens: int, use_graph: bool,
            step: StepFn = _eager_step) -> None:
    """Run steps 1..max_new_tokens-1, stopping early once every row has emitted a stop token."""
    graph = None
    done_steps = 1
    while done_steps < max_new_tokens:
        if done_steps == min_new_tokens and min_new_tokens > 1:
            state.stop_penalty.zero_()  # token `min_new_tokens` (0-based) is the first that may stop
        if use_graph and graph is None and done_steps > _GRAPH_WARMUP_STEPS:
            graph = _capture(model, cache, state, step)
            use_graph = graph is not None
        if graph is not None:
            graph.replay()
        else:
            step(state, model, cache)
        done_steps += 1
        if done_steps % STOP_CHECK_EVERY == 0 and done_steps >= min_new_tokens and _all_stopped(state, done_steps):
            state.out = state.out[:, :done_steps]
            return


def _capture(model, cache, state: _DecodeState, step: StepFn = _eager_step):
    """A CUDA graph of one decode step (capture records, it does not run the step); None if capture fails."""
    try:
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            step(state, model, cache)
        return graph
    except RuntimeError as err:  # an op that syncs with the host cannot be captured
        log.warning("decode step could not be captured as a CUDA graph (%s); decoding eagerly", err)
        return None


def _all_stopped(state: _DecodeState, steps: int) -> bool:
    return bool(torch.isin(state.out[:, :steps], state.stop_ids).any(-1).all())


def _pad_after_stop(tokens: torch.Tensor, stops: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Keep each row up to and including its first stop token; pad the rest (as `generate` does)."""
    is_stop = torch.isin(tokens, stops).long()
    after_stop = (is_stop.cumsum(-1) - is_stop) > 0
    return tokens.masked_fill(after_stop, pad_token_id)
