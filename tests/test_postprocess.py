"""Tests for ensemble.postprocess: each rule at its boundaries, and the pipeline.

Run: .venv/bin/python -m pytest tests/test_postprocess.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ensemble.postprocess import (
    DEFAULT_RULES,
    RULES,
    apply_pipeline,
    apply_rules,
    check_rule_names,
    cut_unfinished_sentence,
    introduced_names,
    normalize_speaker_tags,
    normalize_whitespace,
    remove_repeated_sentences,
    restore_speaker_tags,
    split_sentences,
    strip_special_tokens,
)


@pytest.mark.parametrize("raw, expected", [
    ("<s>#Person1#은 집에 간다.</s><pad><pad>", "#Person1#은 집에 간다."),
    ("#Person1#은 간다.<|eot_id|>", "#Person1#은 간다."),
    ("#Person1#은 간다.<|im_end|>\n<|endoftext|>", "#Person1#은 간다."),
    ("#Person1#은 간다.<end_of_turn>", "#Person1#은 간다."),
    ("<usr> 요약이다. <unk>", "요약이다."),
    ("<think>생각\n중이다</think>\n결론이다.", "결론이다."),
    ("앞<think>a</think>뒤다.", "앞 뒤다."),
    ("생각이 끝났다.</think>\n결론이다.", "결론이다."),  # the opening tag was part of the prompt
    ("<think>끝나지 않은 생각", "끝나지 않은 생각"),  # unclosed: only the tag goes, never empty
    ("a < b 이고 c > d 이다.", "a < b 이고 c > d 이다."),  # angle brackets that are not tokens stay
    ("<person>은 간다.", "<person>은 간다."),  # unknown tag-like text stays
    ("</s>", "</s>"),  # nothing else: the summary may not become empty
    ("", ""),
])
def test_strip_special_tokens(raw: str, expected: str) -> None:
    assert strip_special_tokens(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("  a  b\n\n c  ", "a b c"),
    ("간다 . 온다 !", "간다. 온다!"),
    ("정말?? 그래,, 좋다!!", "정말? 그래, 좋다!"),
    ("그래서..", "그래서."),
    ("그래서...", "그래서..."),  # an ellipsis is kept
    ("간다.온다.", "간다. 온다."),
    ("3.5배와 1,000원이다.", "3.5배와 1,000원이다."),  # numbers untouched
    ("L.A.로 떠난다.", "L.A.로 떠난다."),  # abbreviations untouched
    ("   ", ""),  # whitespace only: nothing to keep
])
def test_normalize_whitespace(raw: str, expected: str) -> None:
    assert normalize_whitespace(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("# Person1 #은 간다.", "#Person1#은 간다."),
    ("#person1#은 간다.", "#Person1#은 간다."),
    ("#Person 1#은 간다.", "#Person1#은 간다."),
    ("#PERSON2#와 #Person1#", "#Person2#와 #Person1#"),
    ("Person1은 간다.", "#Person1#은 간다."),
    ("간다. Person2는 온다.", "간다. #Person2#는 온다."),  # the space before the tag stays
    ("#Person1은 간다.", "#Person1#은 간다."),
    ("#Person12#는 간다.", "#Person12#는 간다."),
    ("# phonenumber #로 전화한다.", "#PhoneNumber#로 전화한다."),
    ("Personal 정보와 person 이다.", "Personal 정보와 person 이다."),  # no number: not a tag
    ("#Person1##Person2#", "#Person1##Person2#"),
])
def test_normalize_speaker_tags(raw: str, expected: str) -> None:
    assert normalize_speaker_tags(raw) == expected


DIALOGUE = "#Person1#: 안녕, 나 민수야.\n#Person2#: 안녕 민수, 저는 지영입니다. 반가워요."


def test_introduced_names_reads_self_introductions_only() -> None:
    assert introduced_names(DIALOGUE) == {"민수": "#Person1#", "지영": "#Person2#"}
    # A name claimed by two speakers is ambiguous and dropped.
    assert introduced_names("#Person1#: 저는 민수입니다.\n#Person2#: 저는 민수예요.") == {}
    # Vocatives and third persons are not introductions.
    assert introduced_names("#Person1#: 민수야, 지영이 왔어.\n#Person2#: 그래.") == {}


@pytest.mark.parametrize("summary, dialogue, expected", [
    ("민수는 지영에게 인사한다.", DIALOGUE, "#Person1#는 #Person2#에게 인사한다."),
    ("민수네 집에 간다.", DIALOGUE, "민수네 집에 간다."),  # not followed by a particle
    ("#Person1#은 민수와 간다.", DIALOGUE, "#Person1#은 민수와 간다."),  # tag already used: leave the name
    ("민수는 간다.", None, "민수는 간다."),  # no dialogue: nothing to restore from
    ("김민수는 간다.", DIALOGUE, "김민수는 간다."),  # part of a longer name
])
def test_restore_speaker_tags(summary: str, dialogue: str | None, expected: str) -> None:
    assert restore_speaker_tags(summary, dialogue) == expected


@pytest.mark.parametrize("raw, expected", [
    ("A를 샀다. B를 샀다. A를 샀다.", "A를 샀다. B를 샀다."),
    ("A를 샀다. A를  샀다", "A를 샀다."),  # spacing and end punctuation ignored when comparing
    ("A를 샀다. A를 샀다고 했다.", "A를 샀다. A를 샀다고 했다."),  # a different sentence stays
    ("A를 샀다.", "A를 샀다."),
    ("A를 샀다! A를 샀다!", "A를 샀다!"),
])
def test_remove_repeated_sentences(raw: str, expected: str) -> None:
    assert remove_repeated_sentences(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("#Person1#은 간다. #Person2#는 그에게", "#Person1#은 간다."),
    ("간다. 온다? 그리고", "간다. 온다?"),
    ("그가 \"좋다.\" 라고 말하고", "그가 \"좋다.\""),
    ("#Person1#은 간다", "#Person1#은 간다"),  # ends in 다: finished
    ("간다. 온다.", "간다. 온다."),
    ("끝나지 않은 유일한 문장", "끝나지 않은 유일한 문장"),  # nothing complete: never cut to empty
    ("말줄임…", "말줄임…"),
    ("", ""),
])
def test_cut_unfinished_sentence(raw: str, expected: str) -> None:
    assert cut_unfinished_sentence(raw) == expected


def test_split_sentences_keeps_punctuation() -> None:
    assert split_sentences("가다. 오다? 보다!") == ["가다.", "오다?", "보다!"]


def test_pipeline_applies_rules_in_order_and_rejects_unknown() -> None:
    raw = "<s># Person1 #은 간다 .  # Person1 #은 간다. 그리고</s>"
    assert apply_rules(raw, None, DEFAULT_RULES) == "#Person1#은 간다."
    assert apply_pipeline([raw, "x다."], None, []) == [raw, "x다."]
    with pytest.raises(ValueError, match="known rules"):
        check_rule_names(["strip_special_tokens", "nope"])
    with pytest.raises(ValueError, match="dialogues"):
        apply_pipeline(["a"], ["d1", "d2"], DEFAULT_RULES)
    assert set(DEFAULT_RULES) <= set(RULES)


def test_rules_never_empty_a_summary() -> None:
    for text in ("</s>", "<pad> <pad>", "<think>", "   다", "A. A. A."):
        for name, rule in RULES.items():
            assert rule(text, DIALOGUE).strip(), (name, text)


REAL_DEV = Path(__file__).resolve().parents[1].parent / "shared/data/competition/dev.csv"


@pytest.mark.skipif(not REAL_DEV.is_file(), reason=f"real competition data not present at {REAL_DEV}")
def test_default_rules_leave_real_references_almost_unchanged() -> None:
    """Well-formed summaries are what the rules aim for: on the real dev references they change almost nothing."""
    from competition.rules.data import read_gold
    from competition.rules.metric import sample_scores

    gold = read_gold(REAL_DEV)
    references = list(gold["references"])
    cleaned = apply_pipeline([r[0] for r in references], list(gold["dialogue"]), DEFAULT_RULES)
    changed = sum(a != b[0] for a, b in zip(cleaned, references))
    assert changed <= 3
    assert sample_scores(cleaned, references).mean() > 99.9
