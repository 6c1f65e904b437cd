"""Post-processing rules for generated summaries: pure functions plus an ordered, configurable pipeline.

Every rule has the signature ``rule(summary, dialogue) -> summary`` (``dialogue`` may be None when unknown) and
never turns a non-empty summary into an empty one. The tracks may call the rules directly; the ensembler runs
`apply_pipeline` over every candidate and measures each rule on dev (see `measure_rules`).

Rules, in default order (`DEFAULT_RULES`):
  strip_special_tokens     model special tokens (<s>, </s>, <pad>, <|eot_id|>, <end_of_turn>, ...) and <think> blocks
  normalize_whitespace     whitespace runs, space before punctuation, doubled punctuation
  normalize_speaker_tags   "# Person1 #", "#person1#", "#Person 1#", "Person1" -> "#Person1#" (and masks)
  remove_repeated_sentences  later exact repeats of a sentence (generation loops)
  cut_unfinished_sentence  a trailing fragment without end punctuation (max-length cut-offs)
Available but off by default: restore_speaker_tags (names the model used instead of #PersonN#). On the real dev set
the references keep self-introduced names (e.g. "루시"), so replacing them with tags lowers the score.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from competition.modeling.prompts import strip_think
from competition.rules.data import KNOWN_MASKS
from competition.rules.submission import MODEL_TOKEN

Rule = Callable[[str, "str | None"], str]

# ---------------------------------------------------------------- special tokens and <think> blocks

# Chat-template role headers left after removing <|start_header_id|>...<|end_header_id|>.
_ROLE_HEADER = re.compile(r"^\s*(?:assistant|model)\s*\n", re.IGNORECASE)


def strip_special_tokens(summary: str, dialogue: str | None = None) -> str:
    """Remove model special tokens and <think> reasoning (`competition.modeling.prompts.strip_think`)."""
    text = strip_think(summary)
    text = MODEL_TOKEN.sub(" ", text)
    text = _ROLE_HEADER.sub("", text)
    return _keep_non_empty(summary, text.strip())


# ---------------------------------------------------------------- whitespace and punctuation

_SPACE_RUN = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?])")
_DOUBLED_PUNCT = re.compile(r"([,!?])\1+|(?<!\.)\.\.(?!\.)")  # keep a "..." ellipsis
# Only after Hangul ("간다.온다"), so abbreviations such as "L.A.로" stay intact.
_MISSING_SPACE_AFTER = re.compile(r"(?<=[가-힣])([.!?,])(?=[가-힣A-Za-z#])")


def normalize_whitespace(summary: str, dialogue: str | None = None) -> str:
    """Collapse whitespace (newlines too), drop spaces before . , ! ?, collapse doubled , ! ? and "..",
    and put one space after sentence punctuation that runs into the next word."""
    text = _SPACE_RUN.sub(" ", summary).strip()
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _DOUBLED_PUNCT.sub(lambda m: m.group(1) or ".", text)
    text = _MISSING_SPACE_AFTER.sub(r"\1 ", text)
    return _keep_non_empty(summary, text)


# ---------------------------------------------------------------- #PersonN# tags

_LOOSE_SPEAKER_TAG = re.compile(r"#\s*person\s*(\d+)\s*#", re.IGNORECASE)
# Latin/digit neighbours only: a Korean particle may follow directly ("Person1은").
_HALF_SPEAKER_TAG = re.compile(r"(?<![#A-Za-z0-9])(?:#\s?)?person\s?(\d+)(?:\s?#)?(?![A-Za-z0-9#])", re.IGNORECASE)
_MASK_NAMES = tuple(mask.strip("#") for mask in KNOWN_MASKS)
_LOOSE_MASK = re.compile(r"#\s*(" + "|".join(_MASK_NAMES) + r")\s*#", re.IGNORECASE)
_MASK_CASE = {name.lower(): name for name in _MASK_NAMES}


def normalize_speaker_tags(summary: str, dialogue: str | None = None) -> str:
    """Write speaker tags and masks exactly as the data does: ``#Person1#``, ``#PhoneNumber#``.

    Handles spaces inside the tag, lower case, and a missing leading or trailing ``#`` (also a bare ``Person1``).
    """
    text = _LOOSE_SPEAKER_TAG.sub(lambda m: f"#Person{int(m.group(1))}#", summary)
    text = _HALF_SPEAKER_TAG.sub(lambda m: f"#Person{int(m.group(1))}#", text)
    text = _LOOSE_MASK.sub(lambda m: f"#{_MASK_CASE[m.group(1).lower()]}#", text)
    return text


_UTTERANCE = re.compile(r"^\s*(#Person\d+#)\s*:\s*(.*)$", re.MULTILINE)
_NAME = r"([가-힣]{2,4}?|[A-Z][a-z]{1,15})"
# Self-introductions only ("제 이름은 민수예요", "저는 민수입니다", "나 민수야"): a vocative or a third person
# mentioned by name is ambiguous, so it is never used.
_SELF_INTRODUCTION = re.compile(
    r"(?:^|[\s,.!?])(?:제 이름은|내 이름은|저는|나는|난|전|나)\s+" + _NAME
    + r"(?:이에요|예요|입니다|이야|야|이라고 합니다|라고 합니다|라고 해요|이라고 해요)(?=$|[\s,.!?~])"
)
_PARTICLE_AFTER = r"(?=[은는이가을를의와과에도만께]|에게|한테|$|[\s,.!?])"


def introduced_names(dialogue: str) -> dict[str, str]:
    """Name -> speaker tag for names a speaker introduces as their own; names claimed by two speakers are dropped."""
    claims: dict[str, set[str]] = {}
    for match in _UTTERANCE.finditer(dialogue):
        tag, text = match.groups()
        for intro in _SELF_INTRODUCTION.finditer(text):
            claims.setdefault(intro.group(1), set()).add(tag)
    return {name: next(iter(tags)) for name, tags in claims.items() if len(tags) == 1}


def restore_speaker_tags(summary: str, dialogue: str | None = None) -> str:
    """Replace a self-introduced name by its speaker tag, only when the summary never uses that tag.

    Conservative on purpose: needs the dialogue, an unambiguous self-introduction, and a name followed by a
    particle or punctuation (so "민수" never changes inside "민수네").
    """
    if not dialogue:
        return summary
    text = summary
    for name, tag in introduced_names(dialogue).items():
        if tag in text:
            continue
        text = re.sub(r"(?<![가-힣A-Za-z])" + re.escape(name) + _PARTICLE_AFTER, tag, text)
    return text


# ---------------------------------------------------------------- sentences

_SENTENCE_END = re.compile(r"(?<=[.!?。])[\"'”’)\]]*\s+")
_FINISHED = re.compile(r"(?:[.!?。…]|다)[\"'”’)\]]*\s*$")
_LAST_END = re.compile(r"^(.*[.!?。][\"'”’)\]]*)", re.DOTALL)


def split_sentences(text: str) -> list[str]:
    """Split after . ! ? (and closing quotes/brackets) followed by whitespace."""
    return [part for part in _SENTENCE_END.split(text.strip()) if part]


def _sentence_key(sentence: str) -> str:
    return _SPACE_RUN.sub(" ", sentence).strip().rstrip(".!?。").strip()


def remove_repeated_sentences(summary: str, dialogue: str | None = None) -> str:
    """Drop every later sentence equal to an earlier one (ignoring spacing and end punctuation)."""
    seen: set[str] = set()
    kept = []
    for sentence in split_sentences(summary):
        key = _sentence_key(sentence)
        if key in seen:
            continue
        seen.add(key)
        kept.append(sentence)
    return _keep_non_empty(summary, " ".join(kept)) if len(kept) < len(split_sentences(summary)) else summary


def cut_unfinished_sentence(summary: str, dialogue: str | None = None) -> str:
    """Cut a trailing fragment that lacks end punctuation (. ! ? … or a final "다"), back to the last complete
    sentence; leave the summary alone when it has no complete sentence (never cut to empty)."""
    if not summary.strip() or _FINISHED.search(summary):
        return summary
    match = _LAST_END.match(summary.rstrip())
    return match.group(1).strip() if match and match.group(1).strip() else summary


# ---------------------------------------------------------------- pipeline

def _keep_non_empty(original: str, result: str) -> str:
    """A rule may not empty a summary that had text."""
    return result if result.strip() or not original.strip() else original


RULES: dict[str, Rule] = {
    "strip_special_tokens": strip_special_tokens,
    "normalize_whitespace": normalize_whitespace,
    "normalize_speaker_tags": normalize_speaker_tags,
    "restore_speaker_tags": restore_speaker_tags,
    "remove_repeated_sentences": remove_repeated_sentences,
    "cut_unfinished_sentence": cut_unfinished_sentence,
}
DEFAULT_RULES = (
    "strip_special_tokens", "normalize_whitespace", "normalize_speaker_tags",
    "remove_repeated_sentences", "cut_unfinished_sentence",
)


def check_rule_names(names: Sequence[str]) -> list[str]:
    """Validate rule names (ValueError listing the known ones) and return them as a list."""
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise ValueError(f"unknown post-processing rules {unknown}; known rules: {', '.join(RULES)}")
    return list(names)


def apply_rules(summary: str, dialogue: str | None, names: Sequence[str]) -> str:
    """Run the named rules, in order, on one summary."""
    for name in names:
        summary = RULES[name](summary, dialogue)
    return summary


def apply_pipeline(summaries: Sequence[str], dialogues: Sequence[str] | None, names: Sequence[str]) -> list[str]:
    """Run the named rules on every summary (``dialogues`` aligned with ``summaries``, or None)."""
    check_rule_names(names)
    if dialogues is not None and len(dialogues) != len(summaries):
        raise ValueError(f"{len(dialogues)} dialogues for {len(summaries)} summaries")
    return [apply_rules(s, dialogues[i] if dialogues is not None else None, names) for i, s in enumerate(summaries)]
