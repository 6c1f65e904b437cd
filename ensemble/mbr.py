"""Minimum-Bayes-risk (consensus) selection with the competition metric as the utility.

For each dialogue, candidate k scores ``sum_j w_j * sim(k, j)`` over all candidates j, where ``sim`` is
`competition.rules.metric.similarity` (mean morpheme ROUGE-1/2/L F1) and ``sim(k, k) = 1`` for a non-empty candidate.
With equal weights this picks the candidate with the highest mean similarity to the others (the self term is
the same constant for all); with unequal weights it is the expected utility under the weighted candidate
distribution, so a weight also acts as a prior and all weight on one system reproduces that system.
Ties go to the earlier system (systems are sorted by name), so results are deterministic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm import tqdm

from competition.rules.metric import DEFAULT_ANALYZER, similarity


def similarity_tensor(candidates: Sequence[Sequence[str]], analyzer: str = DEFAULT_ANALYZER,
                      progress: bool = False) -> np.ndarray:
    """Pairwise similarities, shape (n_rows, n_systems, n_systems); ``candidates[i][k]`` is system k on row i.

    Each unordered pair is computed once; identical texts are not re-scored.
    """
    n_rows = len(candidates)
    n_systems = len(candidates[0]) if n_rows else 0
    sims = np.zeros((n_rows, n_systems, n_systems))
    for i, row in enumerate(tqdm(candidates, desc="mbr similarities", disable=not progress, leave=False)):
        if len(row) != n_systems:
            raise ValueError(f"row {i} has {len(row)} candidates; expected {n_systems}")
        for a in range(n_systems):
            sims[i, a, a] = 1.0 if row[a].strip() else 0.0
            for b in range(a + 1, n_systems):
                value = sims[i, a, a] if row[a] == row[b] else similarity(row[a], row[b], analyzer)
                sims[i, a, b] = sims[i, b, a] = value
    return sims


def mbr_utilities(sims: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Expected utility of each candidate, shape (n_rows, n_systems), weights normalised to sum 1."""
    n_systems = sims.shape[-1]
    w = np.ones(n_systems) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n_systems,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {n_systems} non-negative numbers with a positive sum, got {list(w)}")
    return sims @ (w / w.sum())


def mbr_choices(sims: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Index of the chosen system per row (first system wins ties)."""
    return np.argmax(mbr_utilities(sims, weights), axis=1)


def select(candidates: Sequence[Sequence[str]], choices: np.ndarray) -> list[str]:
    """The chosen candidate text of each row."""
    return [row[int(k)] for row, k in zip(candidates, choices)]
