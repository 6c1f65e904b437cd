"""Prompt building and truncation safety. Run: `.venv/bin/python -m pytest -q tests/test_prompts.py`.

The property test draws dialogues, summaries, budgets and cut modes and checks, against independent
tokenizations, that the instruction, scaffolding, assistant header and summary are never cut and that the
cut counts are exact.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
from helpers.data import sample_frames
from helpers.prompts import assert_only_the_dialogue_is_cut, examples, plain_ids, sample_words
from hypothesis import HealthCheck, given, settings

from competition.harness.presets import get_preset
from competition.modeling.prompts import (
    CUT_MODES,
    PromptStyle,
    clean_generated,
    cut_dialogue_to_budget,
    encode_continuations,
    encode_for_generation,
    left_pad_batch,
    load_prompt_style,
    prepare_tokenizer,
    prompt_style_for,
    render_prompt_text,
    save_prompt_style,
    scaffold_for,
    split_turns,
    strip_think,
)
from competition.modeling.tiny import ensure_tiny_checkpoint
from competition.rules.data import data_special_tokens, read_split
from competition.rules.errors import ConfigError

FAMILIES = ("tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-neox")
# The assistant header as each template writes it (what generation must start right after).
ASSISTANT_HEADERS = {
    "tiny-llama": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "tiny-qwen2": "<|im_start|>assistant\n",
    "tiny-qwen3": "<|im_start|>assistant\n",
    "tiny-gemma2": "<start_of_turn>model\n",
    "tiny-neox": "### 요약:\n",
}


@functools.lru_cache(maxsize=None)
def prepared_tokenizer(preset_name: str):
    """The tiny preset's tokenizer with the data tokens and end marker added, as the track prepares it."""
    from transformers import AutoTokenizer

    preset = get_preset(preset_name)
    tokenizer = AutoTokenizer.from_pretrained(str(ensure_tiny_checkpoint(preset)))
    prepare_tokenizer(tokenizer, prompt_style_for(preset), data_special_tokens(sample_frames()))
    return tokenizer


# ---------------------------------------------------------------- full-render equality

@pytest.mark.parametrize("preset_name", FAMILIES)
def test_pieces_equal_the_tokenized_full_render(preset_name):
    """Uncut prompts equal the tokenization of the template rendered with the whole dialogue."""
    tokenizer = prepared_tokenizer(preset_name)
    style = prompt_style_for(get_preset(preset_name), max_length=4096)
    for dialogue in sample_frames()[1]["dialogue"][:40]:
        encoded = encode_for_generation(tokenizer, style, dialogue)
        assert encoded.dialogue_tokens_cut == 0
        assert encoded.input_ids == plain_ids(tokenizer, render_prompt_text(tokenizer, style, dialogue))


@pytest.mark.parametrize("preset_name", FAMILIES)
@pytest.mark.parametrize("cut", CUT_MODES)
def test_whole_turn_cuts_equal_the_full_render_of_the_kept_text(preset_name, cut):
    """After dropping whole turns the prompt still equals the full render of the kept turns and the marker."""
    tokenizer = prepared_tokenizer(preset_name)
    style = prompt_style_for(get_preset(preset_name), max_length=150, max_target_length=20, cut=cut)
    scaffold = scaffold_for(tokenizer, style)
    checked = 0
    for dialogue in sample_frames()[1]["dialogue"][:40]:
        turns = split_turns(dialogue)
        result = cut_dialogue_to_budget(encode_continuations(tokenizer, turns), scaffold.dialogue_budget(style),
                                        cut, scaffold.cut_marker_ids, scaffold.end_cut_marker_ids)
        if not result.tokens_cut or result.kept_turns is None:
            continue
        kept_text = kept_turns_text(turns, result.kept_turns, cut, style.cut_marker)
        encoded = encode_for_generation(tokenizer, style, dialogue)
        assert encoded.input_ids == plain_ids(tokenizer, render_prompt_text(tokenizer, style, kept_text))
        checked += 1
    assert checked >= 5


def kept_turns_text(turns: list[str], kept: tuple[int, ...], cut: str, marker: str) -> str:
    """The dialogue text a whole-turn cut should produce, built independently from the turn list."""
    parts = [marker] if cut == "keep_end" else []
    for position, index in enumerate(kept):
        if position and index != kept[position - 1] + 1:
            parts.append(marker)
        parts.append(turns[index])
    if kept[-1] != len(turns) - 1 and cut != "keep_end":
        parts.append(marker.rstrip("\n"))
    return "".join(parts)


# ---------------------------------------------------------------- the property test

@pytest.mark.parametrize("preset_name", ["tiny-llama", "tiny-neox", "tiny-qwen3"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=examples())
def test_nothing_but_the_dialogue_is_ever_cut(preset_name, example):
    dialogue, summary, max_target, max_length, cut = example
    style = prompt_style_for(get_preset(preset_name), max_length=max_length, max_target_length=max_target, cut=cut)
    assert_only_the_dialogue_is_cut(prepared_tokenizer(preset_name), style, dialogue, summary,
                                    ASSISTANT_HEADERS[preset_name])


# ---------------------------------------------------------------- the rest of the API

def test_prompt_style_round_trips_beside_a_checkpoint(tmp_path):
    style = prompt_style_for(get_preset("polyglot-ko-1.3b"), cut="keep_end")
    save_prompt_style(style, tmp_path / "best")
    assert load_prompt_style(tmp_path / "best") == style
    assert [p.name for p in (tmp_path / "best").iterdir()] == ["prompt_style.json"]
    with pytest.raises(ConfigError, match="prompt_style.json: not found"):
        load_prompt_style(tmp_path)


def test_preset_defaults_and_bad_overrides():
    assert prompt_style_for(get_preset("qwen3-14b")).disable_thinking
    assert prompt_style_for(get_preset("deepseek-r1-qwen-32b")).strip_think
    polyglot = prompt_style_for(get_preset("polyglot-ko-1.3b"))
    assert polyglot.template == "fallback" and polyglot.end_marker == "<|endofsummary|>"
    with pytest.raises(ConfigError, match="unknown prompt style fields"):
        prompt_style_for(get_preset("tiny-llama"), max_len=3)
    with pytest.raises(ConfigError, match="cut mode 'tail'"):
        prompt_style_for(get_preset("tiny-llama"), cut="tail")
    with pytest.raises(ConfigError, match="max_target_length"):
        PromptStyle(max_length=100, max_target_length=100)


def test_too_small_budget_is_a_clear_error():
    tokenizer = prepared_tokenizer("tiny-llama")
    style = prompt_style_for(get_preset("tiny-llama"), max_length=30, max_target_length=10)
    with pytest.raises(ConfigError, match="leaves no room for the dialogue"):
        encode_for_generation(tokenizer, style, "#Person1#: 안녕하세요")


def test_single_long_turn_is_cut_token_by_token():
    tokenizer = prepared_tokenizer("tiny-llama")
    dialogue = "#Person1#: " + " ".join(sample_words()[:300])
    for cut in CUT_MODES:
        style = prompt_style_for(get_preset("tiny-llama"), max_length=120, max_target_length=20, cut=cut)
        encoded = encode_for_generation(tokenizer, style, dialogue)
        assert encoded.dialogue_tokens_cut > 0 and len(encoded.input_ids) <= 120 - 20 - 1
        text = tokenizer.decode(encoded.input_ids)
        assert ("#Person1#" in text) == (cut != "keep_end")  # keep_end keeps the end of the only turn


def test_qwen3_thinking_is_disabled_in_the_template():
    """A Qwen3-style template opens an empty think block when enable_thinking is false; the header keeps it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_tiny_checkpoint(get_preset("tiny-qwen3"))))
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "<|im_start|>assistant\n{% endif %}",
        "<|im_start|>assistant\n{% if enable_thinking is defined and not enable_thinking %}"
        "<think>\n\n</think>\n\n{% endif %}{% endif %}")
    thinking_off = prompt_style_for(get_preset("tiny-qwen3"))
    thinking_on = dataclasses.replace(thinking_off, disable_thinking=False)
    off = tokenizer.decode(encode_for_generation(tokenizer, thinking_off, "#Person1#: 안녕").input_ids)
    on = tokenizer.decode(encode_for_generation(tokenizer, thinking_on, "#Person1#: 안녕").input_ids)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n")


def test_tokenizer_without_pad_gets_eos_and_batches_pad_left():
    tokenizer = prepared_tokenizer("tiny-llama")  # llama3 ships without a pad token
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    style = prompt_style_for(get_preset("tiny-llama"))
    short = encode_for_generation(tokenizer, style, "#Person1#: 네").input_ids
    long = encode_for_generation(tokenizer, style, "#Person1#: 네 알겠습니다 고맙습니다").input_ids
    batch = left_pad_batch(tokenizer, [short, long])
    width = len(long)
    assert batch["input_ids"].shape == (2, width)
    assert batch["input_ids"][0, width - len(short):].tolist() == short
    assert batch["attention_mask"][0].tolist() == [0] * (width - len(short)) + [1] * len(short)
    assert batch["input_ids"][0, : width - len(short)].tolist() == [tokenizer.pad_token_id] * (width - len(short))


def test_clean_generated_cuts_marker_and_thinking():
    style = PromptStyle(end_marker="<|endofsummary|>", strip_think=True)
    assert clean_generated("<think>음...</think> 요약입니다.<|endofsummary|> 쓰레기", style) == "요약입니다."
    assert clean_generated("생각 중</think>\n요약", style) == "요약"
    assert clean_generated(" 그대로 ", PromptStyle()) == "그대로"


def test_clean_generated_drops_model_tokens_decoded_as_text_so_the_submission_validates(tmp_path):
    """Qwen's BPE holds "<unk>" as an ordinary token: `skip_special_tokens` keeps it, the validator refuses it."""
    from competition.rules.submission import MODEL_TOKEN

    text = clean_generated("#Person1#이 <unk> 표를 <|im_end|>샀다 </s>", PromptStyle())
    assert text == "#Person1#이 표를 샀다" and not MODEL_TOKEN.search(text)
    assert clean_generated("줄 바꿈은\n그대로", PromptStyle()) == "줄 바꿈은\n그대로"


@pytest.mark.parametrize("raw, expected", [
    ("<think>음</think>요약이다.", " 요약이다."),
    ("앞<think>a</think>뒤", "앞 뒤"),
    ("생각 중</think>요약", "요약"),  # the template opened the block in the prompt
    ("요약이다. <think>더 생각하면", "요약이다. "),  # unfinished reasoning after the summary goes
    ("<think>끝나지 않은 생각", "끝나지 않은 생각"),  # nothing else: only the tag goes, never empty
    ("그대로", "그대로"),
])
def test_strip_think(raw: str, expected: str) -> None:
    assert strip_think(raw) == expected


@pytest.mark.integration
def test_real_dialogues_render_equal(real_data_dir):
    """On the real dev dialogues (when present) uncut prompts equal the full render, token for token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_tiny_checkpoint(get_preset("tiny-llama"))))
    frame = read_split(real_data_dir / "dev.csv", "dev")
    style = prompt_style_for(get_preset("tiny-llama"), max_length=8192)
    prepare_tokenizer(tokenizer, style, data_special_tokens([frame]))
    for dialogue in frame["dialogue"][:100]:
        assert (encode_for_generation(tokenizer, style, dialogue).input_ids
                == plain_ids(tokenizer, render_prompt_text(tokenizer, style, dialogue)))
