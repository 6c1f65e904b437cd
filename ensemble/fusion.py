"""Sentence-level fusion: edit the plain-MBR pick with sentences and clauses taken from every candidate.

Per dialogue: start from the MBR pick (uniform weights, the competition similarity as utility), split into units
(sentences, then comma-separated clauses). The pool is every sentence and every clause of every candidate. A pass
walks the units: at each position it tries replacing the unit with any pool unit and deleting it, and keeps the
best move when it raises the objective; then it tries appending any pool unit. Two passes. The objective is the
summary's mean competition similarity (`competition.rules.metric.similarity`: mean ROUGE-1/2/L F1 on morphemes) to ALL
candidates, its own sources included (leaving them out scored worse). Nothing is fitted on dev.

Speed: a hypothesis is scored on the concatenation of its units' morphemes (each text tokenised once by the
metric's cached tokenizer), with the n-gram overlaps of a whole batch of hypotheses in numpy and the LCS against
all candidates in one bit-parallel pass over packed masks. MeCab on the joined text gives the same morphemes for
all but 3 of 1080 multi-sentence real dev summaries, so the final summary is checked with `similarity` on its
real text: it replaces the MBR pick only when its exact objective is higher.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from competition.rules.metric import DEFAULT_ANALYZER, MORPHEME_ANALYZERS, get_tokenizer, similarity
from ensemble.mbr import mbr_choices, similarity_tensor
from ensemble.methods import SplitData

PASSES = 2
# A sentence ends at . ! ? followed by a space, unless a Latin letter precedes it ("Mr. White" stays whole).
_SENTENCE_END = re.compile(r"(?<=[^A-Za-z][.!?])\s+")
_CLAUSE_END = re.compile(r"(?<=,)\s+")
_MIN_GAIN = 1e-12  # objective units; float noise never counts as an improvement
_MAX_BATCH_CELLS = 1 << 22  # hypotheses x candidates x n-gram vocabulary per numpy batch (memory bound)


def sentences(text: str) -> list[str]:
    """The sentences of a summary, punctuation kept."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def clauses(sentence: str) -> list[str]:
    """The comma-separated clauses of a sentence, commas kept."""
    return [c for c in _CLAUSE_END.split(sentence.strip()) if c]


def exact_objective(summary: str, candidates: Sequence[str], analyzer: str = DEFAULT_ANALYZER) -> float:
    """Mean competition similarity of ``summary`` to every candidate (the fusion objective on the real text)."""
    return float(np.mean([similarity(summary, c, analyzer) for c in candidates])) if candidates else 0.0


class _RowScorer:
    """Scores token-id sequences against one dialogue's candidates: mean similarity to all of them.

    Token ids: every token of the candidates gets an id below ``sink``; tokens no candidate has map to ``sink``,
    which counts toward a hypothesis' length but never overlaps.
    """

    def __init__(self, candidate_tokens: Sequence[tuple[str, ...]]):
        self.ids: dict[str, int] = {}
        for tokens in candidate_tokens:
            for token in tokens:
                self.ids.setdefault(token, len(self.ids))
        self.sink = len(self.ids)
        n_ids = self.sink + 1
        self.lengths = np.array([len(t) for t in candidate_tokens], dtype=float)
        self._block_masks = [(1 << len(t)) - 1 for t in candidate_tokens]
        coded = [np.array([self.ids[t] for t in tokens], dtype=np.int64) for tokens in candidate_tokens]
        self.unigrams = np.stack([np.bincount(c, minlength=n_ids)[:self.sink] for c in coded])
        bigram_codes = [c[:-1] * n_ids + c[1:] for c in coded]
        self.bigram_vocab = np.unique(np.concatenate(bigram_codes)) if coded else np.zeros(0, dtype=np.int64)
        self.bigrams = np.stack([np.bincount(np.searchsorted(self.bigram_vocab, b), minlength=len(self.bigram_vocab))
                                 for b in bigram_codes])
        self._pack_lcs_masks(coded)

    def _pack_lcs_masks(self, coded: Sequence[np.ndarray]) -> None:
        """One big-int mask per token over all candidates, each candidate in its own block plus a zero guard bit,
        so one bit-parallel LCS pass serves every candidate (carries stop in the guard bit)."""
        self.masks = [0] * (self.sink + 1)
        self.offsets = []
        offset = 0
        for tokens in coded:
            self.offsets.append(offset)
            for position, token in enumerate(tokens.tolist()):
                self.masks[token] |= 1 << (offset + position)
            offset += len(tokens) + 1
        self.full = sum(((1 << len(t)) - 1) << o for t, o in zip(coded, self.offsets))

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.ids.get(t, self.sink) for t in tokens]

    def lcs_state(self, state: int, tokens: Sequence[int]) -> int:
        """Advance the packed bit-parallel LCS state (Hyyro 2004) over ``tokens``; start from ``self.full``."""
        masks, full = self.masks, self.full
        for token in tokens:
            matches = state & masks[token]
            if matches:
                state = ((state + matches) | (state - matches)) & full
        return state

    def lcs_lengths(self, state: int) -> np.ndarray:
        """LCS length with each candidate from a final state."""
        return np.array([mask.bit_count() - ((state >> offset) & mask).bit_count()
                         for mask, offset in zip(self._block_masks, self.offsets)], dtype=float)

    def objectives(self, sequences: Sequence[list[int]], lcs: np.ndarray) -> np.ndarray:
        """Mean similarity to all candidates of each sequence, shape (n_sequences,); ``lcs`` is (n, K)."""
        width = len(self.lengths) * (self.sink + len(self.bigram_vocab) + 1)
        step = max(1, _MAX_BATCH_CELLS // width)  # bounds the (n, K, vocabulary) overlap arrays
        return np.concatenate([self._objectives(sequences[i:i + step], lcs[i:i + step])
                               for i in range(0, len(sequences), step)])

    def _objectives(self, sequences: Sequence[list[int]], lcs: np.ndarray) -> np.ndarray:
        n, n_ids = len(sequences), self.sink + 1
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        flat = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum()))
        owner = np.repeat(np.arange(n), lengths)
        uni = np.bincount(owner * n_ids + flat, minlength=n * n_ids).reshape(n, n_ids)[:, :self.sink]
        same = owner[:-1] == owner[1:]
        codes = (flat[:-1] * n_ids + flat[1:])[same]
        where = np.searchsorted(self.bigram_vocab, codes)
        known = where < len(self.bigram_vocab)
        known[known] = self.bigram_vocab[where[known]] == codes[known]
        n_bigrams = len(self.bigram_vocab)
        bi = np.bincount(owner[:-1][same][known] * n_bigrams + where[known],
                         minlength=n * n_bigrams).reshape(n, n_bigrams)
        overlap1 = np.minimum(uni[:, None, :], self.unigrams[None]).sum(-1)
        overlap2 = np.minimum(bi[:, None, :], self.bigrams[None]).sum(-1)
        h, c = lengths[:, None].astype(float), self.lengths[None]
        with np.errstate(divide="ignore", invalid="ignore"):
            r1 = 2.0 * overlap1 / (h + c)
            r2 = np.where((h > 1) & (c > 1), 2.0 * overlap2 / (h + c - 2), 0.0)
            rl = 2.0 * lcs / (h + c)
        sims = np.where((h > 0) & (c > 0), (r1 + r2 + rl) / 3.0, 0.0)
        return sims.mean(axis=1)


def _unit_pool(candidates: Sequence[str],
               tokenize: Callable[[str], tuple[str, ...]]) -> list[tuple[str, tuple[str, ...]]]:
    """Every distinct sentence and clause of every candidate with its tokens (empty ones left out)."""
    pool: dict[str, tuple[str, ...]] = {}
    for candidate in candidates:
        for sentence in sentences(candidate):
            for unit in [sentence] + clauses(sentence):
                if unit not in pool:
                    pool[unit] = tokenize(unit)
    return [(text, tokens) for text, tokens in pool.items() if tokens]


def fuse_row(candidates: Sequence[str], start: int, analyzer: str = DEFAULT_ANALYZER,
             passes: int = PASSES) -> str:
    """The fused summary of one dialogue, starting from candidate ``start`` (the MBR pick)."""
    picked = candidates[start]
    if len(candidates) < 2 or not picked.strip():
        return picked
    tokenize = get_tokenizer(analyzer).tokenize
    scorer = _RowScorer([tokenize(c) for c in candidates])
    pool = _unit_pool(candidates, tokenize)
    index = {text: i for i, (text, _) in enumerate(pool)}
    coded = [scorer.encode(tokens) for _, tokens in pool]
    state = [index[u] for s in sentences(picked) for u in clauses(s) if u in index]
    if not state:
        return picked
    best = _search(scorer, coded, state, passes)
    if best == state:
        return picked
    fused = " ".join(pool[i][0] for i in best)
    gained = exact_objective(fused, candidates, analyzer) > exact_objective(picked, candidates, analyzer)
    return fused if gained else picked


def _search(scorer: _RowScorer, coded: Sequence[list[int]], state: list[int], passes: int) -> list[int]:
    """Greedy replace / delete / append over pool units; returns the final unit list (pool indices)."""
    def tokens(units: Sequence[int]) -> list[int]:
        return [t for u in units for t in coded[u]]

    def best_move(options: list[list[int]], shared: int, current: float) -> tuple[list[int] | None, float]:
        """The best option when it beats ``current`` (first wins ties); all options share their first
        ``shared`` units, whose LCS state is computed once."""
        if not options:
            return None, current
        prefix = tokens(options[0][:shared])
        start = scorer.lcs_state(scorer.full, prefix)
        sequences = [prefix + tokens(option[shared:]) for option in options]
        lcs = np.array([scorer.lcs_lengths(scorer.lcs_state(start, s[len(prefix):])) for s in sequences])
        values = scorer.objectives(sequences, lcs)
        best = int(np.argmax(values))
        return (options[best], float(values[best])) if values[best] > current + _MIN_GAIN else (None, current)

    first = tokens(state)
    current = float(scorer.objectives([first], scorer.lcs_lengths(scorer.lcs_state(scorer.full, first))[None])[0])
    units = range(len(coded))
    for _ in range(passes):
        position = 0
        while position < len(state):
            head, tail = state[:position], state[position + 1:]
            options = [head + [u] + tail for u in units if u != state[position]]
            if len(state) > 1:
                options.append(head + tail)
            moved, current = best_move(options, position, current)
            if moved is None or len(moved) == len(state):  # after a deletion the next unit is at `position`
                position += 1
            state = moved if moved is not None else state
        moved, current = best_move([state + [u] for u in units], len(state), current)
        state = moved if moved is not None else state
    return state


def fuse(candidates: Sequence[Sequence[str]], analyzer: str = DEFAULT_ANALYZER, passes: int = PASSES) -> list[str]:
    """The fused summary of every row, in row order; ``candidates[i][k]`` is system k on row i."""
    if not candidates:
        return []
    starts = mbr_choices(similarity_tensor(candidates, analyzer))
    return [fuse_row(row, int(k), analyzer, passes) for row, k in zip(candidates, starts)]


@dataclass(frozen=True)
class Fusion:
    """Sentence-level fusion of all candidates, started from the plain-MBR pick (no parameters, needs no
    references). ``choose`` gives the MBR pick each row starts from; ``compose`` the fused text."""

    analyzer: str = DEFAULT_ANALYZER
    passes: int = PASSES
    name: str = "fusion"
    needs_gold: bool = False
    # (row candidates, start) -> fused text: cross-validation and the final output reuse one computation.
    _fused: dict[tuple[tuple[str, ...], int], str] = field(default_factory=dict, init=False, compare=False,
                                                           repr=False)

    def __post_init__(self) -> None:
        if self.analyzer not in MORPHEME_ANALYZERS:
            raise ValueError(f"fusion needs a morpheme analyzer ({', '.join(MORPHEME_ANALYZERS)}), "
                             f"got {self.analyzer!r}")
        if self.passes < 1:
            raise ValueError(f"fusion passes must be >= 1, got {self.passes}")

    def fit(self, dev: SplitData, rows: np.ndarray) -> dict[str, Any]:
        return {}

    def choose(self, data: SplitData, rows: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return mbr_choices(data.sims[rows])

    def compose(self, data: SplitData, rows: np.ndarray, params: dict[str, Any]) -> list[str]:
        if data.candidates is None:
            raise ValueError("fusion needs the candidate texts of the split")
        texts = []
        for row, start in zip(rows, self.choose(data, rows, params)):
            key = (tuple(data.candidates[int(row)]), int(start))
            if key not in self._fused:
                self._fused[key] = fuse_row(key[0], key[1], self.analyzer, self.passes)
            texts.append(self._fused[key])
        return texts
