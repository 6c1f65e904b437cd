"""Tests for competition.rules.metric (the competition ROUGE).

Run: .venv/bin/python -m pytest tests/test_metric.py -q
The okt/komoran tests start a JVM (a few seconds, marked `integration`: `make test` runs them, `make test-fast` not).
The agreement test on the real dev set runs only when ../shared/data/competition/dev.csv exists.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from mecab import MeCab

from competition.rules.data import read_gold
from competition.rules.metric import ANALYZERS, compute_rouge, get_tokenizer, pair_f1, similarity

REPO = Path(__file__).resolve().parents[1]
SHARED_DEV = REPO.parent / "shared/data/competition/dev.csv"
SAMPLE_DEV = REPO / "data/sample/dev.csv"
SAMPLE_TEST = REPO / "data/sample/test.csv"
SAMPLE_TEST_REFS = REPO / "data/sample/test_refs.csv"

KOREAN_PRED = "#Person1#은 Jimmy에게 오늘 3시 30분에 운동하러 가자고 합니다."
KOREAN_REF = "#Person1#는 Jimmy를 운동하러 초대하고 팔과 복근 운동을 하도록 설득합니다."
JVM_MISSING = shutil.which("java") is None and not os.environ.get("JAVA_HOME")
needs_jvm = pytest.mark.skipif(JVM_MISSING, reason="konlpy okt/komoran need a Java runtime (no java on PATH, no JAVA_HOME)")


def analyzer_param(name: str):
    """okt/komoran start a JVM: mark them integration and skip only when Java is absent."""
    if name in ("okt", "komoran"):
        return pytest.param(name, marks=[pytest.mark.integration, needs_jvm])
    return name


ALL_ANALYZERS = [analyzer_param(name) for name in ANALYZERS]
MORPHEME_ANALYZERS = [analyzer_param(name) for name in ("mecab", "okt", "komoran", "whitespace")]


def test_mecab_keeps_hangul():
    tokens = get_tokenizer("mecab").tokenize(KOREAN_REF)
    assert tokens, "mecab produced no tokens for a Korean sentence"
    assert any("\uac00" <= ch <= "\ud7a3" for token in tokens for ch in token)
    assert "운동" in tokens


def test_mecab_tokenizer_equals_public_mecab_morphs():
    texts = [KOREAN_PRED, KOREAN_REF, "#PhoneNumber#로 전화 주세요. 3시 30분!", "Hello, 세계 123"]
    if SHARED_DEV.is_file():
        texts += list(read_gold(SHARED_DEV)["dialogue"][:50])
    mecab = MeCab()
    for text in texts:
        assert list(get_tokenizer("mecab").tokenize(text)) == mecab.morphs(text)


def test_korean_score_counts_the_shared_morphemes():
    """mecab cuts the pair into 20 and 23 morphemes: 10 shared, in the same order, and 6 shared bigrams."""
    result = compute_rouge([KOREAN_PRED], [[KOREAN_REF]])
    assert result.rouge1 == pytest.approx(2 * 10 / (20 + 23))
    assert result.rouge2 == pytest.approx(2 * 6 / (19 + 22))
    assert result.rougeL == pytest.approx(2 * 10 / (20 + 23))
    assert result.final == pytest.approx((2 * 20 / 43 + 12 / 41) / 3 * 100)


@pytest.mark.parametrize("analyzer", ALL_ANALYZERS)
def test_every_analyzer_scores_identical_100_and_disjoint_0(analyzer):
    same = compute_rouge([KOREAN_REF], [[KOREAN_REF]], analyzer=analyzer)
    assert same.final == pytest.approx(100.0, abs=1e-5)  # pltrdy (baseline) adds a 1e-8 epsilon
    disjoint = compute_rouge(["사과 바나나 포도"], [["자동차 비행기 기차"]], analyzer=analyzer)
    assert disjoint.final == 0.0
    partial = compute_rouge([KOREAN_PRED], [[KOREAN_REF]], analyzer=analyzer)
    expected = independent_final([KOREAN_PRED], [[KOREAN_REF]], analyzer_tokens(analyzer))  # a partial overlap
    assert partial.final == pytest.approx(expected[3], abs=1e-5)


def test_multi_reference_is_mean_over_references_not_max():
    result = compute_rouge(["가방 을 샀다"], [["가방 을 샀다", "자동차 비행기 기차"]], analyzer="whitespace")
    assert result.final == pytest.approx(50.0)  # max would give 100
    assert result.per_sample[0] == pytest.approx([0.5, 0.5, 0.5])


def test_corpus_score_is_mean_over_samples_of_reference_means():
    predictions = [KOREAN_PRED, "오늘 날씨가 좋다"]
    references = [[KOREAN_REF, "운동하러 가자"], ["날씨가 좋다", "비가 온다"]]
    result = compute_rouge(predictions, references)
    by_hand = np.mean([np.mean([pair_f1(p, r) for r in refs], axis=0) for p, refs in zip(predictions, references)],
                      axis=0)
    assert [result.rouge1, result.rouge2, result.rougeL] == pytest.approx(list(by_hand))
    assert result.final == pytest.approx(by_hand.mean() * 100)
    assert result.sample_final == pytest.approx(result.per_sample.mean(axis=1) * 100)
    assert set(result.as_dict()) == {"rouge1", "rouge2", "rougeL", "final"}


@pytest.mark.parametrize("analyzer", ALL_ANALYZERS)
@pytest.mark.parametrize("empty", ["", "   ", "\n"])
def test_empty_prediction_scores_zero(analyzer, empty):
    result = compute_rouge([empty, KOREAN_REF], [[KOREAN_REF], [KOREAN_REF]], analyzer=analyzer)
    assert result.per_sample[0].tolist() == [0.0, 0.0, 0.0]
    assert result.sample_final[1] == pytest.approx(100.0, abs=1e-5)


def test_unknown_analyzer_error_lists_known_names():
    with pytest.raises(ValueError, match="unknown analyzer 'kiwi'") as err:
        compute_rouge(["a"], [["a"]], analyzer="kiwi")
    for name in ANALYZERS:
        assert name in str(err.value)


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="2 predictions but 1 reference"):
        compute_rouge(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="non-empty list of strings"):
        compute_rouge(["a"], [[]])
    with pytest.raises(ValueError, match="non-empty list of strings"):
        compute_rouge(["a"], ["a"])  # a bare string, not a list of references


def test_baseline_removes_special_tokens():
    decoded = "<s>오늘 날씨가 좋다</s><pad><pad>"
    reference = "<usr>오늘 날씨가 좋다"
    assert compute_rouge([decoded], [[reference]], analyzer="baseline").final == pytest.approx(100.0, abs=1e-5)
    # Without the removal the glued tokens ("<s>오늘", "좋다</s><pad><pad>") would not match.
    assert compute_rouge([decoded], [[reference]], analyzer="whitespace").final < 50.0


@pytest.mark.parametrize("hypothesis", ["", "...", "<pad><pad>", "<s></s>"])
def test_baseline_scores_empty_hypotheses_zero(hypothesis):
    result = compute_rouge([hypothesis, "오늘 날씨가 좋다"], [["오늘 날씨가 좋다"]] * 2, analyzer="baseline")
    assert result.per_sample[0].tolist() == [0.0, 0.0, 0.0]
    assert result.per_sample[1] == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)


def test_baseline_matches_pltrdy_with_reference_mean():
    from rouge import Rouge

    prediction, references = "철수 는 학교 에 갔다 . 영희 는 집 에 있다", ["철수 는 학교 에 갔다", "영희 는 집 에 갔다"]
    scores = [Rouge().get_scores(prediction, ref)[0] for ref in references]
    expected = [np.mean([s[key]["f"] for s in scores]) for key in ("rouge-1", "rouge-2", "rouge-l")]
    result = compute_rouge([prediction], [references], analyzer="baseline")
    assert [result.rouge1, result.rouge2, result.rougeL] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("analyzer", ["mecab", "whitespace"])
def test_similarity_equals_mean_pair_f1_and_is_symmetric(analyzer):
    texts = [KOREAN_PRED, KOREAN_REF, "오늘 오늘 오늘 날씨", "날씨 오늘 오늘", "", "오늘", "운동 운동 하러 가자 운동"]
    if SHARED_DEV.is_file():
        texts += list(read_gold(SHARED_DEV)["references"].str[0][:25])
    for a in texts:
        for b in texts:
            expected = float(np.mean(pair_f1(a, b, analyzer)))
            assert similarity(a, b, analyzer) == pytest.approx(expected, abs=1e-12)
            assert similarity(a, b, analyzer) == pytest.approx(similarity(b, a, analyzer), abs=1e-12)


# ------------------------------------------------ agreement with an independent implementation


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _f1(overlap: int, predicted: int, reference: int) -> float:
    if overlap == 0 or predicted == 0 or reference == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / reference
    return 2 * precision * recall / (precision + recall)


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def analyzer_tokens(analyzer: str) -> Callable[[str], list[str]]:
    """Tokens for the from-scratch formula: public mecab's morphs, whitespace words for `whitespace` and for pltrdy's
    `baseline`, else the analyzer's own tokenizer (konlpy's)."""
    if analyzer == "mecab":
        return MeCab().morphs
    if analyzer in ("whitespace", "baseline"):
        return str.split
    return lambda text: list(get_tokenizer(analyzer).tokenize(text))


def independent_final(predictions: list[str], references: list[list[str]],
                      tokens: Callable[[str], list[str]] | None = None) -> tuple[float, float, float, float]:
    """The leaderboard formula written from scratch: mecab morphs (or the given tokens), own n-grams and LCS."""
    tokens = tokens or MeCab().morphs
    per_sample = []
    for prediction, refs in zip(predictions, references):
        p = tokens(prediction) if prediction.strip() else []
        ref_scores = []
        for ref in refs:
            r = tokens(ref)
            r1 = _f1(sum((_ngrams(p, 1) & _ngrams(r, 1)).values()), len(p), len(r))
            r2 = _f1(sum((_ngrams(p, 2) & _ngrams(r, 2)).values()), max(len(p) - 1, 0), max(len(r) - 1, 0))
            rl = _f1(_lcs(p, r), len(p), len(r))
            ref_scores.append((r1, r2, rl))
        per_sample.append([sum(s[k] for s in ref_scores) / len(ref_scores) for k in range(3)])
    means = [sum(s[k] for s in per_sample) / len(per_sample) for k in range(3)]
    return means[0], means[1], means[2], sum(means) / 3 * 100


def first_utterance(dialogue: str) -> str:
    """The trivial predictor: the dialogue's first line."""
    return dialogue.strip().split("\n")[0]


IN_MEMORY_SET = {
    "dialogues": [
        "#Person1#: 안녕하세요, 오늘 기분이 어떠세요?\n#Person2#: 요즘 숨쉬기가 힘들어요.",
        "#Person1#: 주말에 같이 영화 보러 갈래?\n#Person2#: 좋아, 토요일 저녁 어때?",
        "#Person1#: 이 셔츠 환불할 수 있나요?\n#Person2#: 영수증이 있으면 가능합니다.",
    ],
    "references": [
        ["#Person2#는 숨쉬기 어려워합니다.", "#Person2#는 요즘 숨쉬기가 힘들다고 말합니다.", "의사가 #Person2#의 상태를 묻습니다."],
        ["#Person1#과 #Person2#는 토요일 저녁에 영화를 보기로 합니다.", "두 사람은 주말에 영화를 봅니다.",
         "#Person1#이 영화를 보자고 제안합니다."],
        ["#Person1#은 셔츠를 환불하려고 합니다.", "영수증이 있으면 환불이 가능합니다.", "손님이 환불을 문의합니다."],
    ],
}


def _assert_agreement(predictions: list[str], references: list[list[str]]) -> None:
    ours = compute_rouge(predictions, references, analyzer="mecab")
    theirs = independent_final(predictions, references)
    assert [ours.rouge1, ours.rouge2, ours.rougeL, ours.final] == pytest.approx(list(theirs), abs=1e-6)


def test_agreement_on_bundled_sample_or_in_memory_set():
    if SAMPLE_DEV.is_file():
        gold = read_gold(SAMPLE_DEV)
        _assert_agreement([first_utterance(d) for d in gold["dialogue"]], list(gold["references"]))
    else:  # bundled sample not generated: a small Korean set with 3 references each
        _assert_agreement([first_utterance(d) for d in IN_MEMORY_SET["dialogues"]], IN_MEMORY_SET["references"])


@pytest.mark.skipif(not SAMPLE_TEST_REFS.is_file(), reason=f"bundled sample missing: {SAMPLE_TEST_REFS}")
def test_agreement_on_bundled_sample_with_three_references():
    refs = read_gold(SAMPLE_TEST_REFS)
    test = pd.read_csv(SAMPLE_TEST)
    dialogues = dict(zip(test["fname"], test["dialogue"]))
    assert all(len(r) == 3 for r in refs["references"])
    _assert_agreement([first_utterance(dialogues[f]) for f in refs["fname"]], list(refs["references"]))


@pytest.mark.integration
@pytest.mark.skipif(not SHARED_DEV.is_file(), reason=f"real dev set not present at {SHARED_DEV}")
def test_agreement_on_real_dev_set_with_first_utterance_predictor():
    gold = read_gold(SHARED_DEV)
    assert len(gold) == 499
    _assert_agreement([first_utterance(d) for d in gold["dialogue"]], list(gold["references"]))


# ------------------------------------------------ the local `evaluate` module


@pytest.mark.integration
def test_evaluate_module_loads_offline_and_matches_compute_rouge(tmp_path):
    """evaluate.load of the local folder and of the script, hub and network off (fresh HF cache)."""
    import json
    import subprocess
    import sys

    from competition.hf_metric import KOREAN_ROUGE_PATH

    code = (
        "import json, evaluate\n"
        f"folder = {str(KOREAN_ROUGE_PATH)!r}\n"
        "out = {}\n"
        "multi = evaluate.load(folder)\n"
        f"out['multi'] = multi.compute(predictions=[{KOREAN_PRED!r}, ''], references=[[{KOREAN_REF!r}, '운동'], ['운동']])\n"
        "single = evaluate.load(folder + '/korean_rouge.py')\n"
        f"out['single'] = single.compute(predictions=[{KOREAN_PRED!r}], references=[{KOREAN_REF!r}], analyzer='whitespace')\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected_multi = compute_rouge([KOREAN_PRED, ""], [[KOREAN_REF, "운동"], ["운동"]]).as_dict()
    expected_single = compute_rouge([KOREAN_PRED], [[KOREAN_REF]], analyzer="whitespace").as_dict()
    assert out["multi"] == pytest.approx(expected_multi)
    assert out["single"] == pytest.approx(expected_single)
