"""The competition metric: ROUGE-1/2/L F1 on Korean morphemes, averaged over references.

This is the one place the score is defined. Every track, the scoring CLI, the report and
the ensembler call into it; none re-implements it.

Formula (leaderboard): for each prediction, compute ROUGE-1/2/L F1 against EACH of its
references and average over the references (mean, not max); average those over samples;
``final = mean(rouge1, rouge2, rougeL) * 100``.

Analyzers (how text becomes tokens):
  * ``mecab`` (default): python-mecab-ko morphemes. rouge_score's own tokenizer deletes
    Hangul, which is why we always pass a tokenizer object to ``RougeScorer``.
  * ``okt`` / ``komoran``: konlpy morphemes (start a JVM on first use; slow, cached).
  * ``whitespace``: ``str.split``.
  * ``baseline``: the official baseline notebook's local metric (pltrdy ``rouge`` package on
    whitespace tokens after removing ``<usr> <s> </s> <pad>``). It disagrees with the
    leaderboard (ROUGE-L is summary-level, text is split on '.'), kept only for comparison.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Literal, Sequence, get_args

import numpy as np
from rouge_score import rouge_scorer
from tqdm import tqdm

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
Analyzer = Literal["mecab", "okt", "komoran", "whitespace", "baseline"]  # a setting type: configs check it
ANALYZERS: tuple[str, ...] = get_args(Analyzer)
MORPHEME_ANALYZERS = ANALYZERS[:-1]  # all but the baseline notebook's whitespace ROUGE
DEFAULT_ANALYZER = "mecab"
# The baseline notebook's `inference.remove_tokens`.
BASELINE_REMOVE_TOKENS = ("<usr>", "<s>", "</s>", "<pad>")
_TOKEN_CACHE_SIZE = 1 << 18


@dataclass(frozen=True, eq=False)
class RougeResult:
    """Corpus scores plus per-sample F1s (each already averaged over that sample's references).

    ``rouge1``/``rouge2``/``rougeL`` are F1 in 0-1; ``final`` is their mean x 100.
    ``per_sample`` has shape (n_samples, 3): columns rouge1, rouge2, rougeL in 0-1.
    """

    rouge1: float
    rouge2: float
    rougeL: float
    final: float
    analyzer: str
    per_sample: np.ndarray

    @property
    def sample_final(self) -> np.ndarray:
        """Per-sample final score (mean of the three F1s x 100), shape (n_samples,)."""
        if len(self.per_sample) == 0:
            return np.zeros(0)
        return self.per_sample.mean(axis=1) * 100.0

    def as_dict(self) -> dict[str, float]:
        """The four headline numbers, the exact keys of ``score --json``."""
        return {"rouge1": self.rouge1, "rouge2": self.rouge2, "rougeL": self.rougeL, "final": self.final}


# ---------------------------------------------------------------- tokenizers


def _check_analyzer(analyzer: str) -> None:
    if analyzer not in ANALYZERS:
        raise ValueError(f"unknown analyzer {analyzer!r}; known analyzers: {', '.join(ANALYZERS)}")


def _mecab_morphs() -> Callable[[str], list[str]]:
    """MeCab().morphs, minus building a Feature object per morpheme (over half its time).

    Same tagger and lattice as python-mecab-ko's `parse`; falls back to the public API if those
    internals change. tests/test_metric.py checks the result against `MeCab().morphs`.
    """
    from mecab import MeCab

    mecab = MeCab()
    try:
        from mecab.mecab import MeCabError
        from mecab.utils import create_lattice

        tagger = mecab._tagger
    except (ImportError, AttributeError):
        return mecab.morphs

    def surfaces(text: str) -> list[str]:
        lattice = create_lattice(text)
        if not tagger.parse(lattice):
            raise MeCabError(tagger.what())
        return [node.surface for _span, node in lattice]

    return surfaces


def _konlpy_morphs(class_name: str) -> Callable[[str], list[str]]:
    import konlpy.tag

    analyzer = getattr(konlpy.tag, class_name)()  # starts the JVM once per process
    return analyzer.morphs


_MORPH_FACTORIES: dict[str, Callable[[], Callable[[str], list[str]]]] = {
    "mecab": _mecab_morphs,
    "okt": lambda: _konlpy_morphs("Okt"),
    "komoran": lambda: _konlpy_morphs("Komoran"),
    "whitespace": lambda: str.split,
}


class CachedTokenizer:
    """A ``rouge_score`` tokenizer (has ``.tokenize``) that memoizes text -> tuple of tokens.

    A prediction is scored against three references and the ensembler compares the same
    candidates many times, so each distinct text is analyzed once.
    """

    def __init__(self, analyzer: str, morphs: Callable[[str], list[str]]):
        self.analyzer = analyzer
        self._morphs = morphs
        self.tokenize = functools.lru_cache(maxsize=_TOKEN_CACHE_SIZE)(self._tokenize_uncached)

    def _tokenize_uncached(self, text: str) -> tuple[str, ...]:
        if not text or not text.strip():  # komoran raises on empty input; all give no tokens
            return ()
        return tuple(self._morphs(text))


@functools.lru_cache(maxsize=None)
def get_tokenizer(analyzer: str = DEFAULT_ANALYZER) -> CachedTokenizer:
    """The process-wide cached tokenizer for a morpheme analyzer (created lazily)."""
    _check_analyzer(analyzer)
    if analyzer not in _MORPH_FACTORIES:
        raise ValueError(f"analyzer {analyzer!r} has no tokenizer; tokenizing analyzers: {', '.join(MORPHEME_ANALYZERS)}")
    return CachedTokenizer(analyzer, _MORPH_FACTORIES[analyzer]())


@functools.lru_cache(maxsize=None)
def _scorer(analyzer: str) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=get_tokenizer(analyzer))


def clear_caches() -> None:
    """Drop cached analyzers, scorers and tokenizations (benchmarks use it to time cold runs)."""
    for cached in (get_tokenizer, _scorer, _text_stats):
        cached.cache_clear()


# ---------------------------------------------------------------- corpus score


def pair_f1(prediction: str, reference: str, analyzer: str = DEFAULT_ANALYZER) -> tuple[float, float, float]:
    """ROUGE-1/2/L F1 (0-1) of one prediction against one reference."""
    _check_analyzer(analyzer)
    if analyzer == "baseline":
        return _baseline_pair_f1(prediction, reference)
    scores = _scorer(analyzer).score(reference, prediction)  # rouge_score takes (target, prediction)
    return (scores["rouge1"].fmeasure, scores["rouge2"].fmeasure, scores["rougeL"].fmeasure)


def _validate_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} reference lists")
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str):
            raise ValueError(f"prediction {i} must be a string, got {type(pred).__name__}")
        if isinstance(refs, str) or len(refs) == 0 or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references {i} must be a non-empty list of strings, got {refs!r}")


def compute_rouge(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    analyzer: str = DEFAULT_ANALYZER,
    progress: bool = False,
) -> RougeResult:
    """Score predictions against their reference lists with the competition formula.

    ``references[i]`` is the list of reference summaries of sample i (1 for dev, 3 for test).
    An empty prediction scores 0 for that sample. ``progress`` shows a tqdm bar on stderr.
    """
    _check_analyzer(analyzer)
    _validate_inputs(predictions, references)
    per_sample = np.zeros((len(predictions), len(ROUGE_TYPES)))
    pairs = tqdm(zip(predictions, references), total=len(predictions), desc=f"rouge[{analyzer}]",
                 disable=not progress, leave=False)
    for i, (pred, refs) in enumerate(pairs):
        per_sample[i] = np.mean([pair_f1(pred, ref, analyzer) for ref in refs], axis=0)
    means = per_sample.mean(axis=0) if len(per_sample) else np.zeros(len(ROUGE_TYPES))
    return RougeResult(
        rouge1=float(means[0]),
        rouge2=float(means[1]),
        rougeL=float(means[2]),
        final=float(means.mean() * 100.0),
        analyzer=analyzer,
        per_sample=per_sample,
    )


# ---------------------------------------------------------------- fast pairwise similarity (MBR)


@dataclass(frozen=True)
class _TextStats:
    """Everything a pairwise ROUGE needs about one text, computed once."""

    tokens: tuple[str, ...]
    unigrams: Counter
    bigrams: Counter
    # token -> bitmask of its positions; drives the bit-parallel LCS below.
    position_masks: dict[str, int]


@functools.lru_cache(maxsize=_TOKEN_CACHE_SIZE)
def _text_stats(text: str, analyzer: str) -> _TextStats:
    tokens = get_tokenizer(analyzer).tokenize(text)
    masks: dict[str, int] = {}
    for i, token in enumerate(tokens):
        masks[token] = masks.get(token, 0) | (1 << i)
    return _TextStats(tokens, Counter(tokens), Counter(zip(tokens, tokens[1:])), masks)


def _ngram_f1(a: Counter, b: Counter, a_total: int, b_total: int) -> float:
    """F1 of clipped n-gram overlap; equals rouge_score's 2PR/(P+R) = 2*overlap/(|a|+|b|)."""
    if a_total == 0 or b_total == 0:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    overlap = 0
    for gram, count in a.items():  # cheaper than building `a & b` for short texts
        other = b.get(gram)
        if other:
            overlap += count if count < other else other
    return 2.0 * overlap / (a_total + b_total)


def _lcs_length(a: _TextStats, b: _TextStats) -> int:
    """LCS length by the bit-parallel algorithm (Hyyro 2004): O(len(b)) big-int ops."""
    full = (1 << len(a.tokens)) - 1
    v = full
    for token in b.tokens:
        u = v & a.position_masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a.tokens) - v.bit_count()


def similarity(a: str, b: str, analyzer: str = DEFAULT_ANALYZER) -> float:
    """Mean of ROUGE-1/2/L F1 (0-1) between two texts; symmetric, cached per text.

    Equals ``mean(pair_f1(a, b, analyzer))`` for morpheme analyzers (a test checks it) but
    avoids re-tokenizing and uses a bit-parallel LCS, because MBR calls it ~50k times.
    """
    if analyzer == "baseline":
        return float(np.mean(_baseline_pair_f1(a, b)))
    _check_analyzer(analyzer)
    sa, sb = _text_stats(a, analyzer), _text_stats(b, analyzer)
    if not sa.tokens or not sb.tokens:
        return 0.0
    na, nb = len(sa.tokens), len(sb.tokens)
    r1 = _ngram_f1(sa.unigrams, sb.unigrams, na, nb)
    r2 = _ngram_f1(sa.bigrams, sb.bigrams, na - 1, nb - 1)
    lcs = _lcs_length(sa, sb)
    rl = 2.0 * lcs / (na + nb)
    return (r1 + r2 + rl) / 3.0


def sample_scores(predictions: Sequence[str], references: Sequence[Sequence[str]],
                  analyzer: str = DEFAULT_ANALYZER) -> np.ndarray:
    """Per-sample competition score (0-100): mean over references of mean ROUGE-1/2/L F1.

    Equals `compute_rouge(...).sample_final` (tests check it) but uses the cached pairwise `similarity`,
    so the ensembler scores many rule/method variants on dev fast.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists")
    return np.array([np.mean([similarity(p, r, analyzer) for r in refs]) * 100.0
                     for p, refs in zip(predictions, references)])


# ---------------------------------------------------------------- baseline notebook metric


@functools.lru_cache(maxsize=1)
def _pltrdy_rouge():
    from rouge import Rouge

    return Rouge()


def _remove_baseline_tokens(text: str) -> str:
    for token in BASELINE_REMOVE_TOKENS:
        text = text.replace(token, " ")
    return text


def _baseline_pair_f1(prediction: str, reference: str) -> tuple[float, float, float]:
    """pltrdy ROUGE f of one pair, as the baseline notebook computes it; empty -> 0."""
    hyp, ref = _remove_baseline_tokens(prediction), _remove_baseline_tokens(reference)
    if not hyp.split() or not ref.split():
        return (0.0, 0.0, 0.0)
    try:
        scores = _pltrdy_rouge().get_scores(hyp, ref)[0]
    except ValueError:
        # pltrdy raises "Hypothesis is empty." when only '.' separators remain (e.g. "...").
        return (0.0, 0.0, 0.0)
    return (scores["rouge-1"]["f"], scores["rouge-2"]["f"], scores["rouge-l"]["f"])
