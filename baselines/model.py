"""Loading seq2seq models and turning text into the token layout each family expects.

The layouts (what the pretrained checkpoints saw: KoBART `<s> dialogue </s>`, labels `<s> summary </s>`, decoder
start `</s>`; t5; mbart) are defined once in `competition.modeling.tokens.seq2seq_layout`, which the truncation report
counts with too. The model shifts labels right behind the decoder start token, so the decoder learns to emit
exactly the label sequence; generation starts from the same token, and decoding drops the model's special tokens
while keeping the data tokens (#Person1#, #PhoneNumber#, ...) that were added as normal tokens.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from competition.modeling.attention import SYNC_FREE_SDPA
from competition.modeling.loading import load_tokenizer
from competition.modeling.tokens import TokenLayout, seq2seq_layout

log = logging.getLogger(__name__)


def load_pretrained(source: str | Path, allow_bin_weights: bool = True, trust_remote_code: bool = False):
    """Tokenizer and seq2seq model from a hub id or folder, preferring safetensors weights.

    Some hub models (e.g. digit82/kobart-summarization) ship only pytorch_model.bin; with allow_bin_weights
    we fall back to it with a clear log line (transformers loads .bin with torch's weights_only loader).
    """
    from transformers import AutoModelForSeq2SeqLM

    tokenizer = load_tokenizer(source, trust_remote_code)
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(source, use_safetensors=True, trust_remote_code=trust_remote_code)
    except OSError as err:
        if not allow_bin_weights:
            raise OSError(f"{source}: no safetensors weights and allow_bin_weights=false ({err})") from err
        log.warning("%s has no safetensors weights; falling back to pytorch_model.bin (weights_only load)", source)
        log.info("%s has no safetensors weights; loading pytorch_model.bin instead", source)
        model = AutoModelForSeq2SeqLM.from_pretrained(source, use_safetensors=False, trust_remote_code=trust_remote_code)
    share_cross_attention_across_beams(model)
    return tokenizer, model


def share_cross_attention_across_beams(model) -> None:
    """Make beam search reorder only the decoder's self-attention cache at each step, and, where the attention can
    take it, keep one cross-attention row per dialogue instead of one per beam.

    `generate` moves every beam's cache to the beam it continues, for every layer and both caches. The beams of one
    dialogue only ever continue beams of that same dialogue, and their cross-attention keys and values are copies of
    that dialogue's encoder output: reordering them copies identical rows (2 x layers copies of
    [dialogues x beams, heads, source length, head size] a step). Skipping it gives the same output.
    With `SYNC_FREE_SDPA` (CUDA) the copies go too: after the first step the cross-attention cache keeps each
    dialogue's first beam, and `grouped_kv_sdpa_forward` lets the beams share it (the same attention per beam; a
    step reads the encoder keys once, not once per beam).
    `generate` calls a model's `_reorder_cache` when it has one (its hook for models with special caches), and
    `_expand_inputs_for_generation` tells how many rows each dialogue became.
    """
    beams = BeamSharedCrossAttention(model.config, model._expand_inputs_for_generation)
    model._expand_inputs_for_generation = beams.expand_inputs
    model._reorder_cache = beams.reorder_cache


class BeamSharedCrossAttention:
    """The two `generate` hooks of `share_cross_attention_across_beams`: the library's expand, then the beam count
    it was given; the model's config tells whether its attention shares the cross rows."""

    def __init__(self, config, expand_inputs):
        self.config, self.expand, self.beams = config, expand_inputs, 1

    def expand_inputs(self, expand_size: int = 1, **kwargs):
        self.beams = expand_size
        return self.expand(expand_size=expand_size, **kwargs)

    def reorder_cache(self, cache, beam_idx: torch.Tensor):
        """Beam-search reorder of an encoder-decoder cache, leaving the cross-attention part as it is (one row per
        dialogue from the first reorder on, where the attention shares it)."""
        from transformers import EncoderDecoderCache

        if not isinstance(cache, EncoderDecoderCache):
            cache.reorder_cache(beam_idx)
            return cache
        cache.self_attention_cache.reorder_cache(beam_idx)
        cross = cache.cross_attention_cache
        if self._holds_a_row_per_beam(cross, beam_idx.shape[0]):
            cross.batch_select_indices(torch.arange(0, beam_idx.shape[0], self.beams, device=beam_idx.device))
        return cache

    def _holds_a_row_per_beam(self, cross, rows: int) -> bool:
        """Whether `cross` still has one filled row per beam and the model's attention can share one per dialogue."""
        from transformers import DynamicCache

        return (self.beams > 1 and self.config._attn_implementation == SYNC_FREE_SDPA and isinstance(cross, DynamicCache)
                and bool(cross.layers) and cross.layers[0].is_initialized and cross.layers[0].keys.shape[0] == rows)


def add_data_tokens(tokenizer, model, tokens: Sequence[str]) -> int:
    """Add speaker tags and masks as normal tokens (kept by skip_special_tokens decoding); resize embeddings."""
    added = tokenizer.add_tokens(list(tokens))
    if len(tokenizer) != model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return added


def configure_family(tokenizer, model, family: str, mbart_lang: str = "ko_KR") -> TokenLayout:
    """Set decoder start / forced BOS for the family and return the token layout used for inputs and labels."""
    layout = seq2seq_layout(tokenizer, family, mbart_lang)
    # mBART must start with the language code; the others' labels already start with the right token
    model.generation_config.forced_bos_token_id = layout.label_prefix[0] if family == "mbart" else None
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id = layout.decoder_start
        cfg.pad_token_id = tokenizer.pad_token_id
        cfg.eos_token_id = layout.eos
        if getattr(cfg, "forced_eos_token_id", None) is not None:  # KoBART's config forces id 2 (<usr>), not </s>
            cfg.forced_eos_token_id = layout.eos
    return layout


def wrap(content_ids: Sequence[int], prefix: Sequence[int], eos: int, max_len: int) -> tuple[list[int], int]:
    """`prefix + content + [eos]` cut to max_len by dropping content tail; returns (ids, tokens cut)."""
    budget = max_len - len(prefix) - 1
    cut = max(0, len(content_ids) - budget)
    return [*prefix, *content_ids[:budget], eos], cut


def encode_texts(tokenizer, texts: Sequence[str], prefix: Sequence[int], eos: int,
                 max_len: int) -> tuple[list[list[int]], list[int]]:
    """Tokenize texts without the tokenizer's own specials, wrap them in the layout, cut to max_len.

    Returns the ids and, per text, its full content length (for truncation reports).
    """
    content = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [wrap(ids, prefix, eos, max_len)[0] for ids in content], [len(ids) for ids in content]


def generation_kwargs(config: Any) -> dict[str, Any]:
    """Beam-search settings shared by dev evaluation and prediction (beam-only flags only when beams > 1)."""
    kwargs: dict[str, Any] = {"num_beams": config.num_beams, "no_repeat_ngram_size": config.no_repeat_ngram_size}
    if config.num_beams > 1:
        kwargs.update(length_penalty=config.length_penalty, early_stopping=config.beam_early_stopping)
    return kwargs


def decode(tokenizer, sequences) -> list[str]:
    """Generated ids -> text without model special tokens (<s>, </s>, <pad>, lang codes); data tags stay."""
    texts = tokenizer.batch_decode(sequences, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return [" ".join(text.split()) for text in texts]
