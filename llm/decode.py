"""Fast greedy decoding for left-padded batches: a static KV cache, a causal prefill without a padding mask, and on
CUDA the one-token decode step captured once as a CUDA graph and replayed.

`model.generate` pays Python and kernel-launch overhead for every new token and, with grouped-query attention and
a padding mask, copies the whole KV cache per layer per token (`repeat_kv`). This loop keeps the same model
forward and picks the same greedy tokens, but:
- the KV cache is preallocated (transformers' `StaticCache`), so nothing grows or is copied;
- the prefill reads each prompt right-aligned to slot 0, all but its last token: the causal mask alone then keeps
  every real token from the padding after it, so the prefill runs SDPA's causal kernel with no mask at all. The
  last prompt token is the first decode step, at one slot shared by the batch (positions stay per row);
- prompts of very different lengths are prefilled in groups of similar length, each as wide as its longest
  prompt and cut into chunks of at most PREFILL_CHUNK_TOKENS (`_prefill_groups`), so the prefill computes little
  padding and its activations stay small; the batch then decodes as one;
- the steps' masks are built once per batch as 4D boolean tensors (transformers uses a 4D mask as given);
- at a one-token step the query heads sharing a KV head are packed as query rows of one SDPA call, so the cache
  is read once per KV head (`GQA_DECODE_ATTENTION`);
- on CUDA the step (forward, argmax, bookkeeping) is replayed as a CUDA graph, with no host sync except a
  stop check every `STOP_CHECK_EVERY` tokens; the capture neither waits for the GPU nor empties the allocator's
  cache, so the host records it while the prefill runs;
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

from competition.harness.memory import GENERATION_PREFILL_TOKENS
from competition.rules.errors import ConfigError
from llm.config import DecodeAttention

log = logging.getLogger(__name__)

GQA_DECODE_ATTENTION = "harness_gqa_sdpa"
CUDNN_DECODE_ATTENTION = "harness_gqa_cudnn"
STOP_CHECK_EVERY = 16
# A prefill group ends before a prompt shorter than this share of the group's longest, once it has this many rows
# (fewer rows would recompile a compiled prefill and waste the matrix units). 499 test prompts, Llama-3 tokens, the
# track's batches of 128 rows / 49,152 tokens: 178,312 prefilled tokens in 5 batches -> 140,824 in 16 groups.
PREFILL_GROUP_SHORTER = 0.9
PREFILL_GROUP_MIN_ROWS = 8
PREFILL_CHUNK_TOKENS = GENERATION_PREFILL_TOKENS
_GRAPH_WARMUP_STEPS = 2  # eager steps before capture (allocator and cuBLAS workspaces settle)


def gqa_decode_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None,
                    **kwargs):
    """transformers' SDPA attention, except one-token steps with grouped KV heads: the query heads of each KV head
    become that head's query rows ([B, H, 1, D] -> [B, KV, H/KV, D]), so the cache is not repeated per head.
    Without a mask (the prefill) it is causal over the first query-length cache slots."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if attention_mask is None:
        key, value = _filled_slots(query, key, value)
    if query.shape[2] != 1 or groups == 1 or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    batch, heads, _, dim = query.shape
    packed = query.reshape(batch, heads // groups, groups, dim)  # head h reads KV head h // groups (repeat_kv order)
    out = F.scaled_dot_product_attention(packed, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def cudnn_decode_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      is_causal=None, **kwargs):
    """The fast loop's attention through cuDNN's kernel, over the grouped KV heads as they are (`enable_gqa`): the
    one-token steps (masked), and the prefill (causal, no mask; flash where cuDNN cannot take it). Near the memory
    bound on Hopper (figures in docs/performance.md); cuDNN plans each new shape on the host, once per batch here."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if kwargs.get("softcap") is not None:
        return gqa_decode_sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                               is_causal=is_causal, **kwargs)
    if attention_mask is None:
        key, value = _filled_slots(query, key, value)
        backends = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.MATH]
    else:
        backends = [SDPBackend.CUDNN_ATTENTION]
    with sdpa_kernel(backends, set_priority=True):
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling,
                                             is_causal=attention_mask is None,
                                             enable_gqa=key.shape[1] != query.shape[1])
    return out.transpose(1, 2).contiguous(), None


def _filled_slots(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The prefill's keys and values: the static cache's first query-length slots (square causal attention)."""
    length = query.shape[2]
    return key[:, :, :length], value[:, :, :length]


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


class _DecodeState:
    """The static tensors one decode step reads and advances (a CUDA graph replays on these same addresses)."""

    def __init__(self, last_prompt_tokens: torch.Tensor, lengths: torch.Tensor, key_ok: torch.Tensor,
                 first_slot: int, new_tokens: int, stop_ids: torch.Tensor, forbid_stop: bool):
        batch, device = last_prompt_tokens.shape[0], last_prompt_tokens.device
        self.tokens = last_prompt_tokens.view(batch, 1).clone()    # the next step's input: last prompt or emitted token
        self.positions = (lengths - 1).view(batch, 1)              # its rotary position (per row)
        self.slot = torch.tensor([first_slot], device=device)      # its KV-cache slot (shared by the batch)
        self.key_ok = key_ok                                       # [B, L]: cache slots each row may attend
        self.first_slot = first_slot
        self.out = torch.empty((batch, new_tokens), dtype=torch.long, device=device)
        self.stop_ids = stop_ids
        self.stop_penalty = torch.full((batch, len(stop_ids)), float("-inf") if forbid_stop else 0.0, device=device)

    def step(self, model, cache) -> None:
        """Feed `tokens`, write the argmax into `out` and advance: one new token per row (graph-capturable)."""
        self.key_ok.index_fill_(1, self.slot, True)
        logits = model(input_ids=self.tokens, attention_mask=self.key_ok[:, None, None, :],
                       position_ids=self.positions, past_key_values=cache, use_cache=True).logits[:, -1].float()
        logits.index_add_(1, self.stop_ids, self.stop_penalty)
        chosen = logits.argmax(-1)
        self.out.index_copy_(1, self.slot - self.first_slot, chosen[:, None])
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

    Same tokens as `model.generate(do_sample=False, eos_token_id=stop_ids, min_new_tokens=...)`. On CUDA the step is
    replayed as a CUDA graph when `cuda_graph` (a 4-bit base too: bitsandbytes launches its kernels on the capturing
    stream); any capture failure falls back to the eager loop.
    `compile_step` compiles the prefill and the one-token step (the first batch of a process pays the compile).
    `decode_attention` picks the attention kernel (`decode_attention_name`).
    """
    from transformers import StaticCache

    batch, width = input_ids.shape
    device = input_ids.device
    body = width - 1  # every prompt token but the last, right-aligned to slot 0; the last is fed at slot `body`
    lengths = attention_mask.sum(-1)
    cache = StaticCache(config=model.config, max_cache_len=width + max_new_tokens - 1)
    key_ok = torch.zeros((batch, width + max_new_tokens - 1), dtype=torch.bool, device=device)
    key_ok[:, :body] = torch.arange(body, device=device) < (lengths - 1)[:, None]
    stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    with _attention(model, decode_attention_name(model, decode_attention, device)):
        if body:
            _grouped_prefill(model, _right_aligned_bodies(input_ids, lengths), (lengths - 1).tolist(), cache,
                             _compiled_prefill() if compile_step else _prefill)
        if compile_step:
            _unguard_cache_addresses(cache)
        state = _DecodeState(input_ids[:, -1], lengths, key_ok, body, max_new_tokens, stops,
                             forbid_stop=min_new_tokens > 0)
        use_graph = cuda_graph and device.type == "cuda"
        step = _compiled_step() if compile_step else _eager_step
        with torch.cuda.device(device) if use_graph else nullcontext():  # capture on the model's GPU (DDP ranks)
            _decode(model, cache, state, max_new_tokens, min_new_tokens, use_graph, step)
    return _pad_after_stop(state.out, stops, pad_token_id)


def _right_aligned_bodies(input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, W - 1]: each left-padded row's prompt without its last token, moved to start at column 0. The columns
    after a shorter row's tokens repeat its tokens: the causal mask hides them from the real ones, and the steps'
    masks hide their cache slots."""
    width = input_ids.shape[1]
    source = (width - lengths)[:, None] + torch.arange(width - 1, device=input_ids.device)
    return input_ids.gather(1, source.clamp(max=width - 1))


def _prefill(model, bodies: torch.Tensor, cache) -> None:
    """Fill cache slots 0..W-2 with the right-aligned prompt bodies: causal attention, no padding mask, positions
    from 0 (the logits of one position are computed and dropped: `logits_to_keep=0` would mean all of them)."""
    positions = torch.arange(bodies.shape[1], device=bodies.device).expand_as(bodies)
    model(input_ids=bodies, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1)


def _prefill_groups(body_lengths: Sequence[int]) -> list[list[int]]:
    """Row indices in prefill groups, longest body first: a group ends before a body shorter than
    PREFILL_GROUP_SHORTER x its longest once it holds PREFILL_GROUP_MIN_ROWS rows; a smaller last group joins the one
    before it. A group over PREFILL_CHUNK_TOKENS (rows x its longest body) is cut into row chunks under it, so one
    forward's activations stay small beside the KV cache."""
    order = sorted(range(len(body_lengths)), key=lambda i: -body_lengths[i])
    groups = [order[:1]]
    for index in order[1:]:
        group = groups[-1]
        if len(group) >= PREFILL_GROUP_MIN_ROWS and body_lengths[index] < PREFILL_GROUP_SHORTER * body_lengths[group[0]]:
            groups.append([index])
        else:
            group.append(index)
    if len(groups) > 1 and len(groups[-1]) < PREFILL_GROUP_MIN_ROWS:
        tail = groups.pop()
        groups[-1] += tail
    chunks = []
    for group in groups:
        rows = max(1, PREFILL_CHUNK_TOKENS // max(1, body_lengths[group[0]]))
        chunks += [group[start:start + rows] for start in range(0, len(group), rows)]
    return chunks


def _grouped_prefill(model, bodies: torch.Tensor, body_lengths: list[int], cache, prefill: Callable) -> None:
    """Fill the cache's slots 0..W-2 with the right-aligned `bodies`: at once when they form one group, else group
    by group (`_prefill_groups`), each into a cache of its own width whose keys and values are then copied into
    its rows (the batch cache takes its dtype from the first group's, as on a first update)."""
    from transformers import StaticCache

    groups = _prefill_groups(body_lengths)
    if len(groups) == 1:
        prefill(model, bodies, cache)
        return
    for group in groups:
        width = body_lengths[group[0]]
        if width == 0:  # one-token prompts: nothing to prefill
            continue
        rows = torch.tensor(group, device=bodies.device)
        part = StaticCache(config=model.config, max_cache_len=width)
        prefill(model, bodies[rows, :width], part)
        for layer, filled in zip(cache.layers, part.layers):
            if not layer.is_initialized:
                batch_shaped = (len(body_lengths), -1, -1, -1)
                layer.lazy_initialization(filled.keys[:1].expand(batch_shaped), filled.values[:1].expand(batch_shaped))
            layer.keys[:, :, :width].index_copy_(0, rows, filled.keys)
            layer.values[:, :, :width].index_copy_(0, rows, filled.values)
    for layer in cache.layers:
        layer.cumulative_length.fill_(bodies.shape[1])  # the steps write from slot W-1 on


@functools.cache
def _compiled_prefill() -> Callable:
    """The prefill compiled once for the process (dynamic shapes): its norms, rotary embedding and activations
    fused (a large share of a long prefill's GPU time)."""
    return torch.compile(_prefill, dynamic=True)


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
    """Emit tokens 0..max_new_tokens-1, one step each (the first feeds the last prompt token), stopping early once
    every row has emitted a stop token."""
    graph = None
    emitted = 0
    while emitted < max_new_tokens:
        if emitted == min_new_tokens and min_new_tokens > 0:
            state.stop_penalty.zero_()  # token `min_new_tokens` (0-based) is the first that may stop
        if use_graph and graph is None and emitted >= _GRAPH_WARMUP_STEPS:
            graph = _capture(model, cache, state, step)
            use_graph = graph is not None
        if graph is not None:
            graph.replay()
        else:
            step(state, model, cache)
        emitted += 1
        if emitted % STOP_CHECK_EVERY == 0 and emitted >= min_new_tokens and _all_stopped(state, emitted):
            state.out = state.out[:, :emitted]
            return


def _capture(model, cache, state: _DecodeState, step: StepFn = _eager_step):
    """A CUDA graph of one decode step (capture records, it does not run the step); None if capture fails.

    `torch.cuda.graph` would first wait for the GPU and empty the allocator's cache, which returns the last batch's
    KV cache to the driver only for this batch's to allocate it again; capturing on a side stream that waits for the
    main one needs neither, so the host records while the GPU still runs the prefill."""
    graph = torch.cuda.CUDAGraph()
    main = torch.cuda.current_stream()
    side = _capture_stream(main.device)
    side.wait_stream(main)
    try:
        with torch.cuda.stream(side):
            graph.capture_begin()  # a private memory pool, freed with the graph
            try:
                step(state, model, cache)
            finally:
                graph.capture_end()
    except torch.OutOfMemoryError:
        raise  # the caller splits the batch; a smaller one captures its own graph and cache
    except RuntimeError as err:  # an op that syncs with the host cannot be captured
        log.warning("decode step could not be captured as a CUDA graph (%s); decoding eagerly", err)
        return None
    finally:
        main.wait_stream(side)
    return graph


@functools.cache
def _capture_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device)


def _all_stopped(state: _DecodeState, steps: int) -> bool:
    return bool(torch.isin(state.out[:, :steps], state.stop_ids).any(-1).all())


def _pad_after_stop(tokens: torch.Tensor, stops: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Keep each row up to and including its first stop token; pad the rest (as `generate` does)."""
    is_stop = torch.isin(tokens, stops).long()
    after_stop = (is_stop.cumsum(-1) - is_stop) > 0
    return tokens.masked_fill(after_stop, pad_token_id)
