"""Prediction helpers and token layout of the encoder-decoder track (fast, no training).

Run: .venv/bin/python -m pytest -q tests/test_baselines_predict.py
"""

from __future__ import annotations

from helpers.data import sample_rows

from baselines.config import load_config
from baselines.model import add_data_tokens, configure_family, decode, encode_texts, load_pretrained, wrap
from baselines.predict import batches_by_length, summary_budget
from competition.harness.presets import get_preset
from competition.modeling.loading import model_source


def test_wrap_cuts_content_and_keeps_the_special_tokens() -> None:
    assert wrap([5, 6, 7, 8], (0,), 2, max_len=4) == ([0, 5, 6, 2], 2)
    assert wrap([5], (), 2, max_len=4) == ([5, 2], 0)


def test_summary_budget_per_length_bucket() -> None:
    config = load_config("kobart", overrides={"max_new_tokens_by_length": [[300, 100], [0, 60]]})
    assert summary_budget(10, config) == {"max_new_tokens": 60}
    assert summary_budget(300, config) == {"max_new_tokens": 100}
    assert summary_budget(10, load_config("kobart")) == {"max_length": 100}


def test_batches_group_by_budget_longest_first_and_cover_every_row() -> None:
    lengths = [5, 50, 20, 40, 10, 30]
    budgets = [{"max_new_tokens": 60 if n < 25 else 100} for n in lengths]
    batches = batches_by_length(lengths, budgets, batch_size=2)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 2 and len({budgets[i]["max_new_tokens"] for i in batch}) == 1
    assert batches[:2] == [[2, 4], [0]]  # budget 60 group, longest first; its last batch is not mixed


def test_bart_layout_and_decoding_keep_data_tags() -> None:
    """Encoder `<s> x </s>`, labels `<s> y </s>`, decoder starts at `</s>`; decoding drops only model specials."""
    tokenizer, model = load_pretrained(model_source(get_preset("tiny-bart")))
    add_data_tokens(tokenizer, model, ["#Person1#", "#Person2#"])
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    layout = configure_family(tokenizer, model, "bart")
    assert model.config.decoder_start_token_id == tokenizer.eos_token_id
    text = "#Person1#은 #Person2#에게 길을 묻습니다."
    (ids,), (content_length,) = encode_texts(tokenizer, [text], layout.label_prefix, layout.eos, 100)
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) == content_length + 2
    assert tokenizer.convert_tokens_to_ids("#Person1#") in ids  # one token, not split into pieces
    assert decode(tokenizer, [ids + [tokenizer.pad_token_id]]) == [text]


def _beam_search_case():
    """A tiny BART with large random weights (beams that differ and reorder at every step), 3 padded dialogues and
    beam-search settings."""
    import torch

    tokenizer, model = load_pretrained(model_source(get_preset("tiny-bart")))
    layout = configure_family(tokenizer, model, "bart")
    torch.manual_seed(0)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0, 0.5)
    model.eval()
    texts = list(sample_rows("test", 3)["dialogue"])
    inputs, _ = encode_texts(tokenizer, texts, layout.encoder_prefix, layout.eos, 128)
    batch = tokenizer.pad({"input_ids": inputs}, return_tensors="pt")
    settings = dict(num_beams=4, no_repeat_ngram_size=2, min_new_tokens=12, max_new_tokens=12, early_stopping=True)
    return model, batch, settings


def _spy_reorders(model) -> list:
    """Wrap the model's `_reorder_cache` hook; the list gets (beam_idx, cross-attention rows after it) per call."""
    calls = []
    hook = model._reorder_cache

    def spy(cache, beam_idx):
        cache = hook(cache, beam_idx)
        calls.append((beam_idx.clone(), cache.cross_attention_cache.layers[0].keys.shape[0]))
        return cache

    model._reorder_cache = spy
    return calls


def _library_generate(model, batch, settings):
    """`generate` with the library's own beam hooks (both caches reordered, one cross row per beam)."""
    del model._reorder_cache, model._expand_inputs_for_generation
    return model.generate(**batch, **settings)


def test_beam_search_without_reordering_the_cross_attention_cache_gives_the_same_summaries() -> None:
    """load_pretrained makes beam search reorder only the self-attention cache; the output must not move, and the
    hook must really be what generate calls (else the test would compare the library's path with itself)."""
    import torch

    model, batch, settings = _beam_search_case()
    calls = _spy_reorders(model)
    with torch.inference_mode():
        shared = model.generate(**batch, **settings)
        reordered = _library_generate(model, batch, settings)
    assert calls and any(not torch.equal(c, torch.arange(len(c))) for c, _ in calls)  # beams really moved
    assert {rows for _, rows in calls} == {3 * 4}  # `sdpa` (the CPU's): one cross row per beam, as before
    assert torch.equal(shared, reordered)


def test_beams_share_one_cross_attention_row_per_dialogue_with_the_same_summaries() -> None:
    """With the sync-free attention (CUDA's), the cross-attention cache keeps one row per dialogue after the first
    step, and the beams read it through grouped_kv_sdpa_forward: the same tokens as the library's path."""
    import torch

    from competition.modeling.attention import use_sync_free_masks

    model, batch, settings = _beam_search_case()
    assert use_sync_free_masks(model, cuda_only=False)
    calls = _spy_reorders(model)
    with torch.inference_mode():
        shared = model.generate(**batch, **settings)
        reordered = _library_generate(model, batch, settings)
    assert [rows for _, rows in calls] == [3] * settings["max_new_tokens"]  # a reorder after each token
    assert torch.equal(shared, reordered)
