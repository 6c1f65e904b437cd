"""K-fold cross-validation of ensembling methods on dev.

Each fold's parameters are fitted on the other folds and used to choose candidates on the fold itself; the
cross-validated score is the mean score of those held-out outputs (chosen candidates, or composed text for a
composing method) over all dev rows (each row held out once).
Every fold records its train and held-out row indices, so the separation can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ensemble.methods import Method, SplitData, output_scores


@dataclass(frozen=True)
class Fold:
    """One fold: the rows parameters were fitted on, the held-out rows and the parameters."""

    train_rows: np.ndarray
    heldout_rows: np.ndarray
    params: dict[str, Any]
    heldout_score: float


@dataclass(frozen=True)
class CrossValidation:
    """Held-out choices for every dev row and their mean score (0-100)."""

    method: str
    folds: list[Fold]
    heldout_choices: np.ndarray
    score: float


def make_folds(n_rows: int, n_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Shuffled, disjoint row-index folds covering every row (at most ``n_rows`` folds, at least 2)."""
    if n_rows < 2:
        raise ValueError(f"cross-validation needs at least 2 dev rows, got {n_rows}")
    n_folds = max(2, min(n_folds, n_rows))
    order = np.random.default_rng(seed).permutation(n_rows)
    return [np.sort(fold) for fold in np.array_split(order, n_folds)]


def cross_validate(method: Method, dev: SplitData, folds: list[np.ndarray]) -> CrossValidation:
    """Fit on all folds but one, choose on that one, for every fold."""
    if dev.scores is None:
        raise ValueError("cross-validation needs dev scores (run with --gold DEV.csv)")
    choices = np.full(dev.n_rows, -1, dtype=int)
    row_scores = np.full(dev.n_rows, np.nan)
    results = []
    for i, heldout in enumerate(folds):
        train = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i]))
        params = method.fit(dev, train)
        chosen = method.choose(dev, heldout, params)
        choices[heldout] = chosen
        row_scores[heldout] = output_scores(method, dev, heldout, params, chosen)
        results.append(Fold(train, heldout, params, float(row_scores[heldout].mean())))
    return CrossValidation(method.name, results, choices, float(np.nanmean(row_scores)))
