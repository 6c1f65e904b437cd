"""Best-on-dev system selection and per-topic routing.

Per-topic routing picks, for each dev topic seen at least ``min_topic_count`` times in the fitting rows, the system
with the best mean score on that topic. A row whose topic is unseen (or too rare) uses the best system overall.
The real test.csv has no topic column, so test rows then all use the best overall system: routing changes test
predictions only when the test file carries topics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ensemble.methods import SplitData


def _require_scores(dev: SplitData) -> np.ndarray:
    if dev.scores is None:
        raise ValueError("this method needs dev scores (run with --gold DEV.csv)")
    return dev.scores


def best_system(scores: np.ndarray, rows: np.ndarray) -> int:
    """Index of the system with the best mean score over ``rows`` (first wins ties)."""
    return int(np.argmax(scores[rows].mean(axis=0)))


@dataclass(frozen=True)
class BestOnDev:
    """Use the single system with the best dev score for every row."""

    name: str = "best"

    def fit(self, dev: SplitData, rows: np.ndarray) -> dict[str, Any]:
        return {"system": best_system(_require_scores(dev), rows)}

    def choose(self, data: SplitData, rows: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return np.full(len(rows), params["system"], dtype=int)


@dataclass(frozen=True)
class TopicRouting:
    """Route each row to the best system for its topic; fall back to the best overall system."""

    min_topic_count: int = 2
    name: str = "topic"

    def fit(self, dev: SplitData, rows: np.ndarray) -> dict[str, Any]:
        scores = _require_scores(dev)
        fallback = best_system(scores, rows)
        routes: dict[str, int] = {}
        if dev.topics is not None:
            overall = scores[rows].mean(axis=0)
            topics = dev.topics[rows]
            for topic in dict.fromkeys(topics):
                members = rows[topics == topic]
                if len(members) < self.min_topic_count:
                    continue
                means = scores[members].mean(axis=0)
                best = np.flatnonzero(np.isclose(means, means.max()))
                routes[str(topic)] = int(best[np.argmax(overall[best])])  # tie: the better system overall
        return {"fallback": fallback, "routes": routes}

    def choose(self, data: SplitData, rows: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        if data.topics is None:
            return np.full(len(rows), params["fallback"], dtype=int)
        return np.array([params["routes"].get(str(t), params["fallback"]) for t in data.topics[rows]], dtype=int)
