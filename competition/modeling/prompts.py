"""Prompt building for the decoder-only track, in one place: template, token budget, labels, padding.

The prompt is `head + dialogue + tail`: `head` holds the chat scaffolding and the instruction, `tail` closes
the user turn and opens the assistant turn (the "assistant header"). The template is rendered ONCE per
tokenizer and style with a placeholder where the dialogue goes; head, tail and the turn terminator are
tokenized once and cached, and each dialogue is tokenized turn by turn.

Token budget (the rule every caller relies on): the instruction, the scaffolding, the assistant header and,
in training, the summary up to `max_target_length` are never cut. Only the dialogue is cut:
- `middle`: keep whole turns from both ends, drop the middle ones, mark the gap with `cut_marker`;
- `keep_end` / `keep_start`: keep whole turns from the end / start;
- a dialogue whose kept end has no whole turn that fits is cut token by token.
Every cut is counted (`Encoded.dialogue_tokens_cut`, `Encoded.target_tokens_cut`).

The prompt budget is the same in training and generation (`max_length - max_target_length - suffix`), so the
generation prompt of a dialogue is exactly the training prompt the model learned from.

Pieces are tokenized as continuations (after a special-token anchor, or a newline for SentencePiece tokenizers
that mark every segment's start), which matches the tokenization of the fully rendered text wherever pieces meet
at a special or added token or a newline; `tests/test_prompts.py` checks the equality, and
`tests/test_real_models.py` with every real tokenizer and template.

Template variables are part of the style, so a saved style rebuilds the same prompt on any day: `date_string`
(Llama 3.1/3.2 write "Today Date") and `disable_thinking` (Qwen3 `enable_thinking=False`; DeepSeek-R1's open
`<think>` is closed empty in the prompt, so the training target is the summary alone).
"""

from __future__ import annotations

import dataclasses
import json
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from competition.modeling.loading import ensure_pad_token
from competition.modeling.tokens import IGNORE_INDEX, pad_rows
from competition.rules.errors import ConfigError
from competition.rules.files import write_text_atomic
from competition.rules.submission import MODEL_TOKEN

if TYPE_CHECKING:
    from competition.harness.presets import Preset

CutMode = Literal["middle", "keep_end", "keep_start"]
CUT_MODES: tuple[str, ...] = ("middle", "keep_end", "keep_start")
PROMPT_STYLE_FILE = "prompt_style.json"
DEFAULT_INSTRUCTION = "다음 대화를 요약하세요."
DEFAULT_FALLBACK_TEMPLATE = "### 지시:\n{instruction}\n\n### 대화:\n{dialogue}\n\n### 요약:\n"
DEFAULT_USER_TEMPLATE = "{instruction}\n\n{dialogue}"
DEFAULT_CUT_MARKER = "...\n"
# Llama 3.1/3.2 templates write "Today Date: <date_string>" (today, unless given): pinned, so a model trained one
# day and predicted another sees one prompt. This is the templates' own fallback date.
DEFAULT_DATE_STRING = "26 Jul 2024"
SENTENCEPIECE_SPACE = "\u2581"  # "▁", SentencePiece's word-start mark
_PLACEHOLDER = "\u2063DIALOGUE\u2063"  # invisible separator: never in real text, survives jinja rendering
_EXAMPLE_PLACEHOLDER = "\u2063EX{part}{index}\u2063"  # a few-shot example's dialogue (D) or summary (S)
_ANY_PLACEHOLDER = re.compile("\u2063(EX[DS]\\d+|DIALOGUE)\u2063")
EXAMPLE_SEPARATOR = "\n\n"  # after a few-shot example's summary in the fallback template
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPTY_THINK_CLOSE = "\n\n</think>\n\n"  # after an open "<think>": the empty block Qwen3 writes with thinking off
_THINK_BLOCK = re.compile(re.escape(THINK_OPEN) + ".*?" + re.escape(THINK_CLOSE), re.DOTALL)


@dataclass(frozen=True)
class PromptStyle:
    """How prompts are built; saved beside every checkpoint (prompt_style.json) so inference rebuilds them."""

    instruction: str = DEFAULT_INSTRUCTION
    template: Literal["chat", "fallback"] = "chat"  # tokenizer chat template, or `fallback_template`
    fallback_template: str = DEFAULT_FALLBACK_TEMPLATE  # must hold {instruction} and {dialogue}
    cut: CutMode = "middle"
    max_length: int = 1184  # whole sequence budget: prompt + summary + end marker + terminator
    max_target_length: int = 160  # summary tokens kept in training; also reserved in every prompt budget
    end_marker: str | None = None  # appended after the summary in training; generation stops on it
    disable_thinking: bool = False  # reasoning off: enable_thinking=False (qwen3); an open <think> is closed empty
    date_string: str = DEFAULT_DATE_STRING  # the date the chat template writes (Llama 3.2 "Today Date")
    user_template: str = DEFAULT_USER_TEMPLATE  # the user message of the chat template
    cut_marker: str = DEFAULT_CUT_MARKER  # marks where dialogue was cut
    strip_think: bool = False  # remove <think>...</think> from generated text
    preset: str = ""  # preset the style came from (provenance only)

    def __post_init__(self) -> None:
        if self.template not in ("chat", "fallback"):
            raise ConfigError(f"prompt template '{self.template}': expected 'chat' or 'fallback'")
        if self.cut not in CUT_MODES:
            raise ConfigError(f"cut mode '{self.cut}': expected one of {', '.join(CUT_MODES)}")
        if not 0 < self.max_target_length < self.max_length:
            raise ConfigError(f"max_target_length {self.max_target_length} must be positive and below "
                              f"max_length {self.max_length}")
        for name in ("fallback_template", "user_template"):
            text = getattr(self, name)
            if "{instruction}" not in text or text.count("{dialogue}") != 1:
                raise ConfigError(f"{name} {text!r} must contain {{instruction}} and {{dialogue}} once")
        if not self.cut_marker.strip():
            raise ConfigError("cut_marker must be visible text, e.g. '...\\n'")


def prompt_style_for(preset: Preset, **overrides: Any) -> PromptStyle:
    """The default style of a preset (its template source, lengths, end marker, thinking), with overrides."""
    fields = {
        "template": "fallback" if preset.chat_template == "fallback" else "chat",
        "max_length": preset.max_source_length + preset.max_target_length,
        "max_target_length": preset.max_target_length,
        "end_marker": preset.end_marker,
        "disable_thinking": preset.family == "qwen3" or preset.strip_think,  # the reasoning models
        "strip_think": preset.strip_think,
        "preset": preset.name,
    }
    known = {f.name for f in dataclasses.fields(PromptStyle)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown prompt style fields {unknown}; known: {sorted(known)}")
    return PromptStyle(**{**fields, **overrides})


def resolve_template(style: PromptStyle, tokenizer) -> PromptStyle:
    """The style to use with this tokenizer: `chat` becomes `fallback` when the tokenizer has no chat template."""
    if style.template == "chat" and not getattr(tokenizer, "chat_template", None):
        return dataclasses.replace(style, template="fallback")
    return style


def save_prompt_style(style: PromptStyle, directory: Path | str) -> Path:
    """Write `prompt_style.json` into a checkpoint folder (atomically)."""
    text = json.dumps(dataclasses.asdict(style), ensure_ascii=False, indent=2)
    return write_text_atomic(Path(directory) / PROMPT_STYLE_FILE, text)


def load_prompt_style(directory: Path | str) -> PromptStyle:
    """Read the prompt style saved beside a checkpoint; a missing or malformed file is a ConfigError."""
    path = Path(directory) / PROMPT_STYLE_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not found; a checkpoint of the LLM track must carry its prompt style")
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
        return PromptStyle(**fields)
    except (json.JSONDecodeError, TypeError) as err:
        raise ConfigError(f"{path}: not a valid prompt style ({err})") from None


# ---------------------------------------------------------------- tokenizer preparation

def prepare_tokenizer(tokenizer, style: PromptStyle, data_tokens: Sequence[str] = ()) -> int:
    """Add the data's speaker/mask tags (normal tokens) and the end marker (special token); set a pad token.

    Returns how many tokens were added: the caller resizes the model's embeddings when it is not zero.
    """
    added = tokenizer.add_tokens(list(data_tokens))
    if style.end_marker:  # one unsplittable token, so generation can stop on its id
        added += tokenizer.add_special_tokens({"extra_special_tokens": [style.end_marker]},
                                              replace_extra_special_tokens=False)
    ensure_pad_token(tokenizer)
    return added


# ---------------------------------------------------------------- scaffold (rendered once)

@dataclass(frozen=True)
class Scaffold:
    """The fixed token pieces of a style for one tokenizer."""

    head_ids: tuple[int, ...]  # scaffolding + instruction, up to the dialogue
    tail_ids: tuple[int, ...]  # rest of the user turn + assistant header
    terminator_ids: tuple[int, ...]  # closes the assistant turn after the summary (turn end or eos)
    end_marker_ids: tuple[int, ...]
    cut_marker_ids: tuple[int, ...]  # between kept parts ("...\n")
    end_cut_marker_ids: tuple[int, ...]  # after kept start, when the end is cut ("...")
    head_text: str
    tail_text: str

    @property
    def suffix_ids(self) -> tuple[int, ...]:
        """What follows the summary in training."""
        return self.end_marker_ids + self.terminator_ids

    def dialogue_budget(self, style: PromptStyle) -> int:
        """Tokens left for the dialogue once everything that is never cut has its room."""
        return (style.max_length - style.max_target_length - len(self.suffix_ids)
                - len(self.head_ids) - len(self.tail_ids))


_SCAFFOLDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def scaffold_for(tokenizer, style: PromptStyle) -> Scaffold:
    """The cached scaffold of a style; rebuilt when tokens were added to the tokenizer since."""
    per_tokenizer = _SCAFFOLDS.setdefault(tokenizer, {})
    key = (len(tokenizer), style)
    if key not in per_tokenizer:
        per_tokenizer[key] = _build_scaffold(tokenizer, style)
    return per_tokenizer[key]


def render_prompt_text(tokenizer, style: PromptStyle, dialogue: str,
                       examples: Sequence[tuple[str, str]] = ()) -> str:
    """The full prompt text for a dialogue (the template rendered with it), ending with the assistant header.

    `examples` (few-shot, (dialogue, summary) pairs) come first, each as the task asked and answered: with a chat
    template, earlier user/assistant turns, the way chat models are few-shot prompted; with the fallback template,
    the template filled in and followed by its summary.
    """
    if style.template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("prompt template 'chat' but the tokenizer has no chat template; "
                              "use template=fallback (see resolve_template)")
        messages = []
        for shown, summary in (*examples, (dialogue, None)):
            content = style.user_template.format(instruction=style.instruction, dialogue=shown)
            messages.append({"role": "user", "content": content})
            if summary is not None:
                messages.append({"role": "assistant", "content": summary})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                             **template_kwargs(style))
        if style.disable_thinking and text.rstrip().endswith(THINK_OPEN):  # DeepSeek-R1 opens the block itself
            text = text.rstrip() + EMPTY_THINK_CLOSE
        lead = _leading_special_text(tokenizer)  # SOLAR's template omits the <s> its tokenizer puts before text
        return text if text.startswith(lead) else lead + text
    shown = "".join(style.fallback_template.format(instruction=style.instruction, dialogue=d) + s + EXAMPLE_SEPARATOR
                    for d, s in examples)
    return _leading_special_text(tokenizer) + shown + style.fallback_template.format(
        instruction=style.instruction, dialogue=dialogue)


def template_kwargs(style: PromptStyle) -> dict[str, Any]:
    """Variables every chat-template render gets: the pinned date and, with thinking off, enable_thinking=False."""
    return {"date_string": style.date_string, **({"enable_thinking": False} if style.disable_thinking else {})}


def _leading_special_text(tokenizer) -> str:
    """The bos text a tokenizer puts in front of plain text (fallback template), or ''."""
    with_specials = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    starts = [i for i in range(len(with_specials) - len(plain) + 1) if with_specials[i:i + len(plain)] == plain]
    lead = with_specials[: starts[0]] if starts else []
    return "".join(tokenizer.convert_ids_to_tokens(lead))


def _build_scaffold(tokenizer, style: PromptStyle) -> Scaffold:
    rendered = render_prompt_text(tokenizer, style, _PLACEHOLDER)
    if rendered.count(_PLACEHOLDER) != 1:
        raise ConfigError("the chat template changed or repeated the dialogue placeholder; use template=fallback")
    head_text, tail_text = rendered.split(_PLACEHOLDER)
    marker_end = style.cut_marker.rstrip("\n") or style.cut_marker
    return Scaffold(
        head_ids=tuple(_encode(tokenizer, head_text)),
        tail_ids=tuple(encode_continuation(tokenizer, tail_text)),
        terminator_ids=tuple(_terminator_ids(tokenizer, style)),
        end_marker_ids=tuple(encode_continuation(tokenizer, style.end_marker) if style.end_marker else ()),
        cut_marker_ids=tuple(encode_continuation(tokenizer, style.cut_marker)),
        end_cut_marker_ids=tuple(encode_continuation(tokenizer, marker_end)),
        head_text=head_text,
        tail_text=tail_text,
    )


def _terminator_ids(tokenizer, style: PromptStyle) -> list[int]:
    """What closes the assistant turn: the chat template's turn end (up to its first added token), else eos."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if style.template != "chat":
        return eos
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PLACEHOLDER}],
        tokenize=False, **template_kwargs(style))
    after = rendered.split(_PLACEHOLDER)[-1] if _PLACEHOLDER in rendered else ""
    ids = encode_continuation(tokenizer, after) if after else []
    # turn ends (<|eot_id|>, <|im_end|>, <end_of_turn>) are added tokens, not always flagged special
    added = set(tokenizer.added_tokens_decoder) | set(tokenizer.all_special_ids)
    for position, token in enumerate(ids):
        if token in added:
            return ids[: position + 1]
    return eos


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _anchor_id(tokenizer) -> int:
    anchor = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.all_special_ids[0]
    return anchor


def encode_continuation(tokenizer, text: str) -> list[int]:
    """Tokens of `text` as they appear inside a sequence, not at its start.

    SentencePiece-like tokenizers mark the start of a text (a leading '▁'); tokenizing after an anchor (see
    `continuation_anchor`), then dropping the anchor, gives the in-sequence tokens.
    """
    return encode_continuations(tokenizer, [text])[0]


def encode_continuations(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """`encode_continuation` for many texts in one tokenizer call."""
    if not texts:
        return []
    anchor_text, anchor_ids = continuation_anchor(tokenizer)
    encoded = tokenizer([anchor_text + text for text in texts], add_special_tokens=False)["input_ids"]
    width = len(anchor_ids)
    if any(ids[:width] != anchor_ids for ids in encoded):
        return [_encode(tokenizer, text) for text in texts]
    return [ids[width:] for ids in encoded]


_ANCHORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def continuation_anchor(tokenizer) -> tuple[str, list[int]]:
    """The text pieces are tokenized after, and its ids: a special token; for SentencePiece tokenizers that mark
    the start of every segment, even after a special token (Metaspace `prepend_scheme=always`: SOLAR, Llama 2), a
    newline, since inside a prompt a piece follows plain text (a turn's newline), not a special token."""
    key = len(tokenizer)
    cached = _ANCHORS.get(tokenizer)
    if cached is None or cached[0] != key:
        special = tokenizer.convert_ids_to_tokens(_anchor_id(tokenizer))
        after = _encode(tokenizer, special + "\n")[1:]
        marks_start = bool(after) and tokenizer.convert_ids_to_tokens(after[0]) == SENTENCEPIECE_SPACE
        anchor = ("\n", _encode(tokenizer, "\n")) if marks_start else (special, [_anchor_id(tokenizer)])
        cached = _ANCHORS[tokenizer] = (key, anchor)
    return cached[1]


# ---------------------------------------------------------------- dialogue cutting

def split_turns(dialogue: str) -> list[str]:
    """Lines of a dialogue, each keeping its newline, so joining them gives the dialogue back exactly."""
    return dialogue.splitlines(keepends=True) or [dialogue]


@dataclass(frozen=True)
class CutDialogue:
    """The dialogue tokens that fit, and how many were cut."""

    ids: list[int]
    tokens_cut: int  # dialogue tokens dropped (the cut marker is not counted)
    kept_turns: tuple[int, ...] | None  # indices of whole turns kept; None after a token-level cut


def cut_dialogue_to_budget(turn_ids: Sequence[Sequence[int]], budget: int, mode: CutMode,
                           marker: Sequence[int], end_marker: Sequence[int]) -> CutDialogue:
    """Fit tokenized turns into `budget` tokens by `mode`; whole turns first, token-level as a last resort."""
    total = sum(len(t) for t in turn_ids)
    if total <= budget:
        return CutDialogue([i for t in turn_ids for i in t], 0, tuple(range(len(turn_ids))))
    room = budget - max(len(marker), len(end_marker))  # room for kept tokens, whichever marker is used
    if room <= 0:
        raise ConfigError(f"dialogue budget of {budget} tokens cannot hold the cut marker; raise max_length")
    kept = _whole_turns_that_fit(turn_ids, room, mode)
    if kept:
        ids = _join_kept(turn_ids, kept, mode, marker, end_marker)
        return CutDialogue(ids, total - sum(len(turn_ids[k]) for k in kept), tuple(kept))
    flat = [i for t in turn_ids for i in t]
    if mode == "keep_start":
        ids = flat[:room] + list(end_marker)
    elif mode == "keep_end":
        ids = list(marker) + flat[len(flat) - room:]
    else:
        first = (room + 1) // 2
        ids = flat[:first] + list(marker) + flat[len(flat) - (room - first):]
    return CutDialogue(ids, total - room, None)


def _whole_turns_that_fit(turn_ids: Sequence[Sequence[int]], room: int, mode: CutMode) -> list[int]:
    """Indices of whole turns kept: from the start, from the end, or alternately from both ends (middle)."""
    n = len(turn_ids)
    if mode == "keep_start":
        order = list(range(n))
    elif mode == "keep_end":
        order = list(range(n - 1, -1, -1))
    else:
        order = [i for pair in zip(range(n), range(n - 1, -1, -1)) for i in pair]
        order = list(dict.fromkeys(order))  # start, end, start+1, end-1, ...
    kept: list[int] = []
    used = 0
    for index in order:
        if used + len(turn_ids[index]) > room:
            break
        kept.append(index)
        used += len(turn_ids[index])
    return sorted(kept)


def _join_kept(turn_ids: Sequence[Sequence[int]], kept: list[int], mode: CutMode,
               marker: Sequence[int], end_marker: Sequence[int]) -> list[int]:
    ids: list[int] = []
    if mode == "keep_end":
        ids.extend(marker)
    for position, index in enumerate(kept):
        if mode == "middle" and position and index != kept[position - 1] + 1:
            ids.extend(marker)
        ids.extend(turn_ids[index])
    if mode == "keep_start":
        ids.extend(end_marker)
    elif mode == "middle" and kept[-1] != len(turn_ids) - 1:  # only start turns fit
        ids.extend(end_marker)
    return ids


# ---------------------------------------------------------------- encoding

@dataclass
class Encoded:
    """One encoded example: ids, labels (training only) and the cut counts."""

    input_ids: list[int]
    labels: list[int] | None
    dialogue_tokens_cut: int
    target_tokens_cut: int
    prompt_length: int = 0  # tokens before the summary (where the labels start)


def encode_prompt(tokenizer, style: PromptStyle, dialogue: str) -> tuple[list[int], int]:
    """Prompt ids (head + cut dialogue + tail) and the number of dialogue tokens cut."""
    scaffold = scaffold_for(tokenizer, style)
    budget = scaffold.dialogue_budget(style)
    if budget <= len(scaffold.cut_marker_ids):
        raise ConfigError(
            f"max_length {style.max_length} leaves no room for the dialogue: scaffolding and instruction take "
            f"{len(scaffold.head_ids) + len(scaffold.tail_ids)} tokens, summary {style.max_target_length}, "
            f"end marker/terminator {len(scaffold.suffix_ids)}; raise max_length")
    turn_ids = encode_continuations(tokenizer, split_turns(dialogue))
    cut = cut_dialogue_to_budget(turn_ids, budget, style.cut, scaffold.cut_marker_ids,
                                 scaffold.end_cut_marker_ids)
    return list(scaffold.head_ids) + cut.ids + list(scaffold.tail_ids), cut.tokens_cut


def encode_for_generation(tokenizer, style: PromptStyle, dialogue: str) -> Encoded:
    """The generation prompt of a dialogue, ending with the assistant header."""
    ids, dialogue_cut = encode_prompt(tokenizer, style, dialogue)
    return Encoded(ids, None, dialogue_cut, 0, len(ids))


def encode_for_training(tokenizer, style: PromptStyle, dialogue: str, summary: str) -> Encoded:
    """Prompt + summary (cut to max_target_length) + end marker + terminator; loss on what follows the prompt."""
    scaffold = scaffold_for(tokenizer, style)
    prompt, dialogue_cut = encode_prompt(tokenizer, style, dialogue)
    summary_ids = encode_continuation(tokenizer, summary)
    target_cut = max(0, len(summary_ids) - style.max_target_length)
    target = summary_ids[: style.max_target_length] + list(scaffold.suffix_ids)
    labels = [IGNORE_INDEX] * len(prompt) + target
    return Encoded(prompt + target, labels, dialogue_cut, target_cut, len(prompt))


# ---------------------------------------------------------------- few-shot prompts (screening base models)

@dataclass(frozen=True)
class FewShotScaffold:
    """The fixed pieces of a prompt with `k` examples: head, the 2k joints (after each example's dialogue, after its
    summary) and the tail (assistant header); the examples and the dialogue go between them."""

    head_ids: tuple[int, ...]
    joint_ids: tuple[tuple[int, ...], ...]
    tail_ids: tuple[int, ...]

    @property
    def fixed_length(self) -> int:
        return len(self.head_ids) + sum(len(j) for j in self.joint_ids) + len(self.tail_ids)


@dataclass(frozen=True)
class FewShotPrompt:
    """A generation prompt with few-shot examples, and what was cut to fit the budget."""

    input_ids: list[int]
    dialogue_tokens_cut: int
    examples_used: int  # examples in the prompt, whole or shortened
    examples_dropped: int  # whole examples left out
    example_tokens_cut: int  # tokens cut from the one example kept when even it did not fit whole


def few_shot_scaffold(tokenizer, style: PromptStyle, k: int) -> FewShotScaffold:
    """The cached pieces of a `k`-example prompt, split out of the template rendered with placeholders."""
    per_tokenizer = _SCAFFOLDS.setdefault(tokenizer, {})
    key = (len(tokenizer), style, "few-shot", k)
    if key not in per_tokenizer:
        examples = [(_EXAMPLE_PLACEHOLDER.format(part="D", index=i), _EXAMPLE_PLACEHOLDER.format(part="S", index=i))
                    for i in range(k)]
        parts = _ANY_PLACEHOLDER.split(render_prompt_text(tokenizer, style, _PLACEHOLDER, examples))
        texts, names = parts[0::2], parts[1::2]
        if names != [f"EX{p}{i}" for i in range(k) for p in "DS"] + ["DIALOGUE"]:
            raise ConfigError("the chat template reordered or repeated the few-shot turns; use template=fallback")
        per_tokenizer[key] = FewShotScaffold(tuple(_encode(tokenizer, texts[0])),
                                             tuple(tuple(encode_continuation(tokenizer, t)) for t in texts[1:-1]),
                                             tuple(encode_continuation(tokenizer, texts[-1])))
    return per_tokenizer[key]


def encode_few_shot_prompt(tokenizer, style: PromptStyle, dialogue: str,
                           examples: Sequence[tuple[str, str]]) -> FewShotPrompt:
    """The generation prompt of a dialogue after `examples` ((dialogue, summary) pairs, best first), within the
    prompt budget of `encode_prompt`: whole examples are dropped from the last, then the one left is shortened (its
    dialogue cut like any dialogue, its summary never), and only with no example left is the dialogue cut. The
    instruction and the assistant header are never cut; without examples this is `encode_prompt`."""
    scaffold = scaffold_for(tokenizer, style)
    budget = scaffold.dialogue_budget(style) + len(scaffold.head_ids) + len(scaffold.tail_ids)
    turn_ids = encode_continuations(tokenizer, split_turns(dialogue))
    dialogue_ids = [i for turn in turn_ids for i in turn]
    encoded = [(encode_continuations(tokenizer, split_turns(d)), encode_continuation(tokenizer, s))
               for d, s in examples]
    markers = (scaffold.cut_marker_ids, scaffold.end_cut_marker_ids)
    for k in range(len(encoded), 0, -1):
        pieces = few_shot_scaffold(tokenizer, style, k)
        room = budget - pieces.fixed_length - len(dialogue_ids)  # for the k examples' dialogues and summaries
        shown = [([i for turn in turns for i in turn], summary) for turns, summary in encoded[:k]]
        cut = 0
        if sum(len(d) + len(s) for d, s in shown) > room:
            example_room = room - len(shown[0][1])
            if k > 1 or example_room <= max(len(m) for m in markers):
                continue  # drop the last example; the one left is shortened only when something of it fits
            shortened = cut_dialogue_to_budget(encoded[0][0], example_room, style.cut, *markers)
            shown, cut = [(shortened.ids, shown[0][1])], shortened.tokens_cut
        ids = list(pieces.head_ids)
        for index, (example_dialogue, summary) in enumerate(shown):
            ids += example_dialogue + list(pieces.joint_ids[2 * index]) + summary + list(pieces.joint_ids[2 * index + 1])
        ids += dialogue_ids + list(pieces.tail_ids)
        return FewShotPrompt(ids, 0, k, len(encoded) - k, cut)
    ids, dialogue_cut = encode_prompt(tokenizer, style, dialogue)
    return FewShotPrompt(ids, dialogue_cut, 0, len(encoded), 0)


def left_pad_batch(tokenizer, batch_of_input_ids: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Left-padded `input_ids` and `attention_mask` tensors for batched generation."""
    input_ids, attention_mask = pad_rows(batch_of_input_ids, _pad_id(tokenizer), "left")
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


# ---------------------------------------------------------------- generation helpers

def stop_token_ids(tokenizer, style: PromptStyle) -> list[int]:
    """Token ids generation stops on: eos, the assistant-turn terminator and the end marker."""
    scaffold = scaffold_for(tokenizer, style)
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids += list(scaffold.terminator_ids[-1:])
    if len(scaffold.end_marker_ids) == 1:
        ids += list(scaffold.end_marker_ids)
    return list(dict.fromkeys(ids))


def clean_generated(text: str, style: PromptStyle) -> str:
    """A generated summary as scored: cut at the end marker, <think> blocks and model tokens written as text removed
    (`MODEL_TOKEN`), whitespace trimmed."""
    if style.end_marker and style.end_marker in text:
        text = text.split(style.end_marker, 1)[0]
    if style.strip_think:
        text = strip_think(text)
    if MODEL_TOKEN.search(text):
        text = " ".join(MODEL_TOKEN.sub(" ", text).split())
    return text.strip()


def strip_think(text: str) -> str:
    """Remove `<think>` reasoning from generated text; the one rule for both tracks and the ensembler.

    A closed `<think>...</think>` block becomes a space. Text before a lone `</think>` is reasoning (the template
    opened the block in the prompt). An unclosed `<think>` (generation stopped while reasoning) is cut with all
    that follows it, unless nothing precedes it: then only the tag goes, so the output never becomes empty.
    """
    text = _THINK_BLOCK.sub(" ", text)
    if THINK_CLOSE in text:
        text = text.split(THINK_CLOSE, 1)[1]
    if THINK_OPEN in text:
        before, after = text.split(THINK_OPEN, 1)
        text = before if before.strip() else after
    return text
