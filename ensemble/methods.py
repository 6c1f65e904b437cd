"""What every ensembling method sees, and the method interface.

A method turns per-row candidate information into one chosen system index per row. Methods with parameters learn
them from dev rows (``fit``) and apply them to any rows of any split (``choose``); `ensemble.crossval` uses
exactly this split to score every method on dev folds its parameters never saw. A composing method (`fusion`)
also writes new text (``compose``); its ``choose`` says which candidate each row started from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from competition.rules.metric import DEFAULT_ANALYZER, sample_scores


@dataclass(frozen=True)
class SplitData:
    """One split as the methods see it.

    ``sims``: pairwise candidate similarities (n_rows, n_systems, n_systems) from `ensemble.mbr.similarity_tensor`;
    ``topics``: per-row topic or None when the split has no topic column;
    ``scores``: per-row score (0-100) of each system's candidate against the references (dev only, else None);
    ``candidates``: per-row candidate texts, ``candidates[i][k]`` is system k on row i (composing methods need them);
    ``references``: per-row reference lists (dev only), to score composed text; ``analyzer``: behind sims and scores.
    """

    sims: np.ndarray
    topics: np.ndarray | None = None
    scores: np.ndarray | None = None
    candidates: Sequence[Sequence[str]] | None = None
    references: Sequence[Sequence[str]] | None = None
    analyzer: str = DEFAULT_ANALYZER

    @property
    def n_rows(self) -> int:
        return int(self.sims.shape[0])

    @property
    def n_systems(self) -> int:
        return int(self.sims.shape[-1])


class Method(Protocol):
    """An ensembling method: ``fit`` on dev rows, ``choose`` a system per row."""

    name: str

    def fit(self, dev: SplitData, rows: np.ndarray) -> dict[str, Any]:
        """Learn parameters from the given dev rows only (JSON-ready dict)."""

    def choose(self, data: SplitData, rows: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Chosen system index for each of the given rows."""


def composes(method: Method) -> bool:
    """True for a method that writes new text (``compose``) instead of only choosing a candidate."""
    return callable(getattr(method, "compose", None))


def output_summaries(method: Method, data: SplitData, rows: np.ndarray, params: dict[str, Any],
                     chosen: np.ndarray) -> list[str]:
    """The method's summary for each row; ``chosen`` is its ``choose`` result for those rows."""
    if composes(method):
        return method.compose(data, rows, params)  # type: ignore[attr-defined]
    if data.candidates is None:
        raise ValueError("the split has no candidate texts")
    return [data.candidates[int(r)][int(k)] for r, k in zip(rows, chosen)]


def output_scores(method: Method, data: SplitData, rows: np.ndarray, params: dict[str, Any],
                  chosen: np.ndarray) -> np.ndarray:
    """Score (0-100) of the method's output on each dev row: the chosen candidate's, or the composed text's."""
    if not composes(method):
        if data.scores is None:
            raise ValueError("scoring needs dev scores (run with --gold DEV.csv)")
        return data.scores[rows, chosen]
    if data.references is None:
        raise ValueError(f"scoring {method.name} needs dev references (run with --gold DEV.csv)")
    texts = output_summaries(method, data, rows, params, chosen)
    return sample_scores(texts, [data.references[int(r)] for r in rows], data.analyzer)
