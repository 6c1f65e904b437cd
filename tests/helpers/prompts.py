"""The prompt budget rule as one assertion, checked against independent tokenizations, and the random
dialogues, summaries, budgets and cut modes the property tests draw (tiny and real tokenizers alike)."""

from __future__ import annotations

import functools

from hypothesis import strategies as st

from competition.modeling.prompts import (
    CUT_MODES,
    IGNORE_INDEX,
    PromptStyle,
    encode_continuation,
    encode_continuations,
    encode_for_generation,
    encode_for_training,
    render_prompt_text,
    scaffold_for,
    split_turns,
    stop_token_ids,
)
from helpers.data import sample_frames


def plain_ids(tokenizer, text: str) -> list[int]:
    """The token ids of `text` alone, no special tokens added."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@functools.lru_cache(maxsize=None)
def sample_words() -> tuple[str, ...]:
    """Words of the first 50 bundled train dialogues, speaker tags left out."""
    words = {w for text in sample_frames()[0]["dialogue"][:50] for w in text.split()}
    return tuple(sorted(w for w in words if not w.startswith("#")))


turn_strategy = st.tuples(st.integers(1, 3), st.lists(st.integers(0, 10_000), min_size=0, max_size=40))


@st.composite
def examples(draw):
    """(dialogue, summary, max_target_length, max_length, cut mode) from the sample's words."""
    words = sample_words()
    turns = draw(st.lists(turn_strategy, min_size=1, max_size=25))
    dialogue = "\n".join(f"#Person{speaker}#: " + " ".join(words[i % len(words)] for i in picks)
                         for speaker, picks in turns)
    summary_words = draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=80))
    summary = "#Person1#은 " + " ".join(words[i % len(words)] for i in summary_words)
    max_target = draw(st.integers(4, 60))
    max_length = draw(st.integers(max_target + 60, max_target + 400))
    return dialogue, summary, max_target, max_length, draw(st.sampled_from(CUT_MODES))


def assert_only_the_dialogue_is_cut(tokenizer, style: PromptStyle, dialogue: str, summary: str,
                                    assistant_header: str) -> None:
    """The budget rule, checked against independent tokenizations."""
    max_target, max_length, cut = style.max_target_length, style.max_length, style.cut
    scaffold = scaffold_for(tokenizer, style)
    header_text = render_prompt_text(tokenizer, style, "\x00").split("\x00")
    instruction_head = plain_ids(tokenizer, header_text[0])  # independent tokenization of the rendered head

    generation = encode_for_generation(tokenizer, style, dialogue)
    training = encode_for_training(tokenizer, style, dialogue, summary)
    prompt = generation.input_ids

    # the instruction and scaffolding come whole, first
    assert prompt[: len(instruction_head)] == instruction_head
    assert style.instruction in tokenizer.decode(instruction_head)
    # the prompt ends with the whole assistant header
    tail = encode_continuation(tokenizer, header_text[1])
    assert prompt[len(prompt) - len(tail):] == tail
    assert tokenizer.decode(tail).endswith(assistant_header)
    # training = the same prompt + summary (up to max_target) + end marker + terminator; loss only there
    summary_ids = encode_continuation(tokenizer, summary)
    target = summary_ids[:max_target] + list(scaffold.end_marker_ids) + list(scaffold.terminator_ids)
    assert training.input_ids == prompt + target
    assert training.labels == [IGNORE_INDEX] * len(prompt) + target
    assert training.target_tokens_cut == max(0, len(summary_ids) - max_target)
    if style.end_marker:
        assert tokenizer.convert_tokens_to_ids(style.end_marker) in training.labels
    assert training.labels[-1] in stop_token_ids(tokenizer, style)
    # the budget holds and the dialogue cut is exact: kept = a prefix + a suffix of the dialogue tokens
    assert len(training.input_ids) <= max_length
    assert training.dialogue_tokens_cut == generation.dialogue_tokens_cut
    dialogue_ids = [i for turn in encode_continuations(tokenizer, split_turns(dialogue)) for i in turn]
    region = prompt[len(instruction_head): len(prompt) - len(tail)]
    budget = max_length - max_target - len(scaffold.suffix_ids) - len(instruction_head) - len(tail)
    cut_count = generation.dialogue_tokens_cut
    if len(dialogue_ids) <= budget:
        assert cut_count == 0 and region == dialogue_ids
    else:
        assert cut_count > 0
        assert is_prefix_marker_suffix(region, dialogue_ids, len(dialogue_ids) - cut_count,
                                       [list(scaffold.cut_marker_ids), list(scaffold.end_cut_marker_ids)], cut)


def is_prefix_marker_suffix(region, dialogue_ids, kept, markers, cut) -> bool:
    """region == dialogue[:a] + marker + dialogue[n-b:] with a + b == kept (a == 0 for keep_end, b == 0 keep_start)."""
    n = len(dialogue_ids)
    starts = {"keep_end": [0], "keep_start": [kept]}.get(cut, range(kept + 1))
    for a in starts:
        for marker in markers:
            if region == dialogue_ids[:a] + marker + dialogue_ids[n - (kept - a):]:
                return True
    return False
