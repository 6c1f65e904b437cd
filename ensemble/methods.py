"""What every ensembling method sees, and the method interface.

A method turns per-row candidate information into one chosen system index per row. Methods with parameters learn
them from dev rows (``fit``) and apply them to any rows of any split (``choose``); `ensemble.crossval` uses
exactly this split to score every method on dev folds its parameters never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class SplitData:
    """One split as the methods see it.

    ``sims``: pairwise candidate similarities (n_rows, n_systems, n_systems) from `ensemble.mbr.similarity_tensor`;
    ``topics``: per-row topic or None when the split has no topic column;
    ``scores``: per-row score (0-100) of each system's candidate against the references (dev only, else None).
    """

    sims: np.ndarray
    topics: np.ndarray | None = None
    scores: np.ndarray | None = None

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
