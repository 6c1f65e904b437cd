"""Tests for the fast greedy loop (`llm.decode`): it must pick exactly `model.generate`'s greedy tokens.

They cover the static cache, the masks, position ids under left padding, the packed-GQA attention, stopping and
min_new_tokens, on every tiny family the fast path accepts, plain and LoRA-wrapped. Models run in fp32, so on a GPU
(`pytest tests/test_llm_decode.py` there) they also check the CUDA-graph replay token for token.

Run: .venv/bin/python -m pytest tests/test_llm_decode.py -q
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from competition.modeling.prompts import encode_for_generation, left_pad_batch
from llm.config import load_config
from llm.decode import fast_greedy_generate, fast_greedy_unsupported
from llm.generate import generate_summaries, stop_token_ids
from llm.model import load_for_training

NEW_TOKENS = 16
COMPILED = pytest.param(True, marks=pytest.mark.integration)  # torch.compile builds kernels with a C++ compiler


def _model(preset: str, finetune: str = "full"):
    """A tiny model with large random weights: its greedy tokens vary with the prompt and the position (the
    library's small initial weights make an untrained tiny model repeat one token, which would prove nothing)."""
    torch.manual_seed(0)
    model, tokenizer, style, _ = load_for_training(load_config(preset, overrides={"finetune": finetune}), [])
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0, 0.5)
    return model.float().eval(), tokenizer, style  # fp32 on a GPU too: bf16 kernel rounding may flip near-ties


def _batch(model, tokenizer, style, sample_dir, rows: int = 6):
    dialogues = pd.read_csv(sample_dir / "test.csv", dtype=str, keep_default_na=False)["dialogue"].head(rows)
    # different lengths, so the batch is left-padded
    batch = left_pad_batch(tokenizer, [encode_for_generation(tokenizer, style, d).input_ids for d in dialogues])
    return {k: v.to(model.device) for k, v in batch.items()}  # on a GPU the fast loop replays a CUDA graph


def _greedy_pair(model, batch, stops: list[int], pad: int, min_new: int,
                 compile_step: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        reference = model.generate(**batch, max_new_tokens=NEW_TOKENS, min_new_tokens=min_new, do_sample=False,
                                   eos_token_id=stops, pad_token_id=pad)[:, batch["input_ids"].shape[1]:]
    fast = fast_greedy_generate(model, batch["input_ids"], batch["attention_mask"], NEW_TOKENS, stops, pad, min_new,
                                compile_step=compile_step)
    return reference, fast


def _assert_same_tokens(reference: torch.Tensor, fast: torch.Tensor, pad: int) -> None:
    # generate stops once every row has stopped; the fast loop checks every few tokens, so it may run on (padded)
    width = reference.shape[1]
    assert torch.equal(fast[:, :width], reference)
    assert bool((fast[:, width:] == pad).all())


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-neox"])
@pytest.mark.parametrize("min_new", [0, 6])
def test_fast_greedy_equals_generate_with_early_stops(preset, min_new, sample_dir):
    model, tokenizer, style = _model(preset)
    assert fast_greedy_unsupported(model) is None
    batch = _batch(model, tokenizer, style, sample_dir)
    stops = stop_token_ids(model, tokenizer, style)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    free, _ = _greedy_pair(model, batch, stops, pad, 0)
    # an untrained model rarely emits its EOS: also stop on tokens it emits just after min_new, so rows end early
    stops = stops + sorted(set(free[:, min_new + 2].tolist()))
    reference, fast = _greedy_pair(model, batch, stops, pad, min_new)
    ended = torch.isin(reference, torch.tensor(stops, device=reference.device)).any(-1)
    assert ended.any(), "the test needs rows that stop early"
    if min_new:
        assert not torch.isin(reference[:, :min_new], torch.tensor(stops, device=reference.device)).any()
    _assert_same_tokens(reference, fast, pad)


def test_fast_greedy_equals_generate_through_a_lora_adapter(sample_dir):
    model, tokenizer, style = _model("tiny-llama", finetune="lora")
    assert any("lora_B" in name for name, _ in model.named_parameters())  # _model randomised it: the path counts
    batch = _batch(model, tokenizer, style, sample_dir)
    stops = stop_token_ids(model, tokenizer, style)
    before = model.get_base_model().config._attn_implementation  # sdpa; on CUDA its sync-free variant
    reference, fast = _greedy_pair(model, batch, stops, stops[0], 0)
    _assert_same_tokens(reference, fast, stops[0])
    assert model.get_base_model().config._attn_implementation == before  # restored after decoding


def test_the_prefill_is_causal_without_a_mask_and_the_steps_are_masked(sample_dir, monkeypatch):
    """The prompts are prefilled right-aligned with no padding mask (SDPA's causal kernel) and every one-token step
    gets its 4D mask; the first new token comes from a step that feeds the last prompt token."""
    import llm.decode as decode

    model, tokenizer, style = _model("tiny-llama")
    batch = _batch(model, tokenizer, style, sample_dir)
    calls: list[tuple[int, bool]] = []
    packed = decode.gqa_decode_sdpa

    def spy(module, query, key, value, attention_mask, *args, **kwargs):
        calls.append((query.shape[2], attention_mask is None))
        return packed(module, query, key, value, attention_mask, *args, **kwargs)

    monkeypatch.setattr(decode, "gqa_decode_sdpa", spy)
    stops = stop_token_ids(model, tokenizer, style)
    fast_greedy_generate(model, batch["input_ids"], batch["attention_mask"], 3, stops, stops[0], 3)
    layers = model.config.num_hidden_layers
    width = batch["input_ids"].shape[1]
    assert calls == [(width - 1, True)] * layers + [(1, False)] * (3 * layers)


def test_right_aligned_bodies_start_every_prompt_at_column_zero():
    from llm.decode import _right_aligned_bodies

    ids = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 9], [0, 0, 0, 0, 8]])
    bodies = _right_aligned_bodies(ids, torch.tensor([3, 5, 1]))
    assert bodies[0, :2].tolist() == [5, 6] and bodies[1].tolist() == [1, 2, 3, 4]
    assert bodies.shape == (3, 4)  # a one-token prompt has no body: its row is all filler, masked later


def test_prefill_groups_split_long_from_short_prompts():
    from llm.decode import _prefill_groups

    lengths = [100, 40, 98, 99, 39, 97, 38, 37, 12]
    assert _prefill_groups(lengths) == [[0, 3, 2, 5, 1, 4, 6, 7, 8]]  # fewer than 8 rows after the split: one group
    wide = [100] * 8 + [50] * 8 + [49] * 3
    assert _prefill_groups(wide) == [list(range(8)), list(range(8, 19))]  # a small tail joins the group before


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen3"])
@pytest.mark.parametrize("compile_step", [False, COMPILED])
def test_a_grouped_prefill_picks_the_same_tokens_as_generate(preset, compile_step, sample_dir, monkeypatch):
    """Prompts prefilled in groups of similar length (forced here: a new group at every shorter prompt after two
    rows), each group as wide as its longest body, give generate's tokens; eager and compiled."""
    import llm.decode as decode

    monkeypatch.setattr(decode, "PREFILL_GROUP_MIN_ROWS", 2)
    monkeypatch.setattr(decode, "PREFILL_GROUP_SHORTER", 1.0)
    model, tokenizer, style = _model(preset)
    batch = _batch(model, tokenizer, style, sample_dir, rows=8)
    bodies = (batch["attention_mask"].sum(-1) - 1).tolist()
    groups = decode._prefill_groups(bodies)
    assert len(groups) >= 3 and len({bodies[g[0]] for g in groups}) == len(groups)
    widths: list[int] = []
    packed = decode.gqa_decode_sdpa

    def spy(module, query, key, value, attention_mask, *args, **kwargs):
        if attention_mask is None and module.layer_idx == 0:
            widths.append(query.shape[2])
        return packed(module, query, key, value, attention_mask, *args, **kwargs)

    if not compile_step:
        monkeypatch.setattr(decode, "gqa_decode_sdpa", spy)
    stops = stop_token_ids(model, tokenizer, style)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    reference, fast = _greedy_pair(model, batch, stops, pad, 4, compile_step)
    _assert_same_tokens(reference, fast, pad)
    if not compile_step:
        assert widths == [bodies[g[0]] for g in groups]


def test_a_prefill_cut_into_row_chunks_picks_the_same_tokens_as_generate(sample_dir, monkeypatch):
    """A group over PREFILL_CHUNK_TOKENS is prefilled a few rows at a time (forced: two longest prompts' worth)."""
    import llm.decode as decode

    model, tokenizer, style = _model("tiny-llama")
    batch = _batch(model, tokenizer, style, sample_dir, rows=8)
    bodies = (batch["attention_mask"].sum(-1) - 1).tolist()
    monkeypatch.setattr(decode, "PREFILL_CHUNK_TOKENS", 2 * max(bodies))
    chunks = decode._prefill_groups(bodies)
    assert len(chunks) >= 4 and all(len(c) * bodies[c[0]] <= 2 * max(bodies) for c in chunks)
    assert sorted(i for c in chunks for i in c) == list(range(len(bodies)))
    stops = stop_token_ids(model, tokenizer, style)
    reference, fast = _greedy_pair(model, batch, stops, stops[0], 0)
    _assert_same_tokens(reference, fast, stops[0])


def test_generate_summaries_gives_the_same_texts_either_way(sample_dir):
    model, tokenizer, style = _model("tiny-qwen3")
    dialogues = list(pd.read_csv(sample_dir / "dev.csv", dtype=str, keep_default_na=False)["dialogue"].head(5))
    texts = {}
    for decoding in ("fast", "generate"):
        config = load_config("tiny-qwen3", overrides={"decoding": decoding, "max_new_tokens": 12,
                                                      "min_new_tokens": 3, "per_device_eval_batch_size": 2})
        texts[decoding] = generate_summaries(model, tokenizer, style, dialogues, config)
    assert texts["fast"] == texts["generate"] and all(texts["fast"])


def test_settings_the_fast_loop_cannot_reproduce_fall_back_to_generate():
    model, _, _ = _model("tiny-llama")
    assert fast_greedy_unsupported(model, num_beams=4) == "beam search"
    assert "repetition" in fast_greedy_unsupported(model, repetition_penalty=1.2)
    assert "stop strings" in fast_greedy_unsupported(model, stop_strings=["<end>"])
    from transformers import Gemma2Config, Gemma2ForCausalLM

    gemma = Gemma2ForCausalLM(Gemma2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=8, vocab_size=64))
    assert fast_greedy_unsupported(gemma) == "logit soft-capping"


@pytest.mark.integration  # torch.compile builds kernels with a C++ compiler
@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen3"])
def test_compiled_decode_step_picks_the_same_tokens(preset, sample_dir):
    """compile_decode: one compiled step (dynamic shapes) serves batches of different widths and sizes, token for
    token equal to the eager step (on a GPU, inside the CUDA graph it is captured in)."""
    model, tokenizer, style = _model(preset)
    stops = stop_token_ids(model, tokenizer, style)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    for rows in (6, 3):  # a second shape must not need a second compile to stay equal
        batch = _batch(model, tokenizer, style, sample_dir, rows)
        eager = fast_greedy_generate(model, batch["input_ids"], batch["attention_mask"], NEW_TOKENS, stops, pad, 4)
        compiled = fast_greedy_generate(model, batch["input_ids"], batch["attention_mask"], NEW_TOKENS, stops, pad, 4,
                                        compile_step=True)
        assert torch.equal(compiled, eager)


def test_cudnn_decode_attention_is_refused_where_it_cannot_run():
    from competition.rules.errors import ConfigError
    from llm.decode import GQA_DECODE_ATTENTION, decode_attention_name

    model, _, _ = _model("tiny-llama")  # fp32: cuDNN's attention has no fp32 kernel, and the CPU none at all
    assert decode_attention_name(model, "auto", model.device) == GQA_DECODE_ATTENTION
    with pytest.raises(ConfigError, match="decode_attention=cudnn"):
        decode_attention_name(model, "cudnn", model.device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="cuDNN attention needs a CUDA GPU")
@pytest.mark.parametrize("queries", [1, 40])  # a one-token step; a prefill (causal over the left-padded prompt)
def test_cudnn_attention_matches_the_pytorch_path_against_fp32(queries):
    """Attention over a left-padded bf16 cache, 3 query heads per KV head: cuDNN's kernel and the path it replaces
    (packed rows for one token, transformers' SDPA for a prefill) each measured against the same values in fp32;
    cuDNN may be at most twice as far off."""
    from types import SimpleNamespace

    from llm.decode import cudnn_decode_sdpa, gqa_decode_sdpa

    torch.manual_seed(0)
    batch, kv_heads, groups, dim, slots = 16, 8, 3, 128, 300
    query = torch.randn(batch, kv_heads * groups, queries, dim, device="cuda", dtype=torch.bfloat16)
    key, value = (torch.randn(batch, kv_heads, slots, dim, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    starts = torch.randint(0, slots // 2, (batch,), device="cuda")
    slot, row = torch.arange(slots, device="cuda"), torch.arange(queries, device="cuda") + slots - queries
    mask = ((slot[None, None, :] >= starts[:, None, None]) & (slot[None, None, :] <= row[None, :, None])
            | (slot[None, None, :] == row[None, :, None]))[:, None]  # [B, 1, queries, slots]
    module = SimpleNamespace(num_key_value_groups=groups, training=False, is_causal=True)
    reference = torch.nn.functional.scaled_dot_product_attention(
        query.float(), key.float().repeat_interleave(groups, 1), value.float().repeat_interleave(groups, 1),
        attn_mask=mask).transpose(1, 2)
    pytorch, _ = gqa_decode_sdpa(module, query, key, value, mask)
    cudnn, _ = cudnn_decode_sdpa(module, query, key, value, mask)
    assert cudnn.shape == pytorch.shape == reference.shape
    pytorch_error = (pytorch.float() - reference).abs().max().item()
    assert (cudnn.float() - reference).abs().max().item() <= 2 * pytorch_error + 1e-3
