"""Tests for ensemble.mbr, ensemble.routing, ensemble.weights, ensemble.crossval on constructed cases.

Run: .venv/bin/python -m pytest tests/test_ensemble_mbr.py -q
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from competition.rules.metric import compute_rouge, sample_scores
from ensemble.crossval import cross_validate, make_folds
from ensemble.mbr import mbr_choices, mbr_utilities, select, similarity_tensor
from ensemble.methods import SplitData
from ensemble.routing import BestOnDev, TopicRouting
from ensemble.weights import Mbr, WeightedMbr, fit_weights, weight_grid

# The first candidate contains both the second and the third: it is the centre; the fourth is an outlier.
CONSENSUS = [
    "사과 포도 딸기 수박 참외 자두",
    "사과 포도 딸기 수박",
    "딸기 수박 참외 자두",
    "고양이 강아지 토끼 거북",
]


def test_mbr_picks_the_consensus_candidate() -> None:
    sims = similarity_tensor([CONSENSUS, list(reversed(CONSENSUS))])
    chosen = select([CONSENSUS, list(reversed(CONSENSUS))], mbr_choices(sims))
    # Order does not matter: the centre is chosen in both rows.
    assert chosen == [CONSENSUS[0], CONSENSUS[0]]
    assert np.allclose(sims, sims.transpose(0, 2, 1))
    assert np.allclose(sims[:, range(4), range(4)], 1.0)


def test_weights_act_as_a_prior() -> None:
    sims = similarity_tensor([CONSENSUS])
    assert mbr_choices(sims, [0, 0, 0, 1])[0] == 3  # all weight on one system reproduces it
    assert mbr_choices(sims, [1, 1, 1, 0])[0] == 0
    with pytest.raises(ValueError, match="non-negative"):
        mbr_utilities(sims, [1, -1, 1, 1])
    with pytest.raises(ValueError, match="4 non-negative"):
        mbr_utilities(sims, [1, 1])


def test_ties_go_to_the_first_system_and_empty_candidates_lose() -> None:
    same = ["같은 요약이다.", "같은 요약이다.", "같은 요약이다."]
    assert mbr_choices(similarity_tensor([same]))[0] == 0
    with_empty = ["", "요약이다.", "요약이다 정말."]
    assert mbr_choices(similarity_tensor([with_empty]))[0] != 0


def test_sample_scores_equal_compute_rouge() -> None:
    predictions = ["#Person1#은 회의에 간다.", "고양이가 잔다.", ""]
    references = [["#Person1#은 내일 회의에 간다."], ["강아지가 잔다.", "고양이가 논다."], ["무엇이다."]]
    expected = compute_rouge(predictions, references).sample_final
    assert np.allclose(sample_scores(predictions, references), expected)


def _toy_dev(n: int = 40, seed: int = 0) -> SplitData:
    rng = np.random.default_rng(seed)
    sims = rng.uniform(0.1, 0.9, size=(n, 3, 3))
    sims = (sims + sims.transpose(0, 2, 1)) / 2
    sims[:, range(3), range(3)] = 1.0
    scores = rng.uniform(0, 40, size=(n, 3))
    topics = np.array([f"t{i % 7}" for i in range(n)], dtype=object)
    return SplitData(sims, topics, scores)


class SpyMethod:
    """Records the rows each fit sees; chooses system 0."""

    name = "spy"
    needs_gold = True

    def __init__(self) -> None:
        self.fitted_on: list[np.ndarray] = []

    def fit(self, dev: SplitData, rows: np.ndarray) -> dict[str, Any]:
        self.fitted_on.append(rows.copy())
        return {"fit_rows": rows.tolist()}

    def choose(self, data: SplitData, rows: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        assert not set(rows.tolist()) & set(params["fit_rows"]), "chose on rows the parameters were fitted on"
        return np.zeros(len(rows), dtype=int)


def test_cross_validation_fits_on_other_folds_only() -> None:
    dev = _toy_dev()
    folds = make_folds(dev.n_rows, 5, seed=1)
    spy = SpyMethod()
    cv = cross_validate(spy, dev, folds)
    assert len(cv.folds) == 5 and len(spy.fitted_on) == 5
    heldout_all = np.concatenate([f.heldout_rows for f in cv.folds])
    assert sorted(heldout_all.tolist()) == list(range(dev.n_rows))  # each row held out exactly once
    for fold, fitted in zip(cv.folds, spy.fitted_on):
        assert np.array_equal(fold.train_rows, fitted)
        assert not set(fold.train_rows.tolist()) & set(fold.heldout_rows.tolist())
        assert len(fold.train_rows) + len(fold.heldout_rows) == dev.n_rows
    assert cv.score == pytest.approx(dev.scores[:, 0].mean())


def test_held_out_score_exposes_overfitting() -> None:
    """Routing by singleton topics is perfect in-sample but cannot help on rows whose topic it never saw."""
    n = 30
    scores = np.zeros((n, 2))
    scores[np.arange(n), np.arange(n) % 2] = 10.0  # alternate rows favour system 0 / 1
    sims = np.ones((n, 2, 2))
    dev = SplitData(sims, np.array([f"topic{i}" for i in range(n)], dtype=object), scores)
    routing = TopicRouting(min_topic_count=1)
    rows = np.arange(n)
    in_sample = scores[rows, routing.choose(dev, rows, routing.fit(dev, rows))].mean()
    cv = cross_validate(routing, dev, make_folds(n, 5))
    assert in_sample == pytest.approx(10.0)
    assert cv.score < 6.0  # held-out rows fall back to one system: about half the rows score 0


def test_best_and_topic_routing() -> None:
    scores = np.array([[1.0, 5.0], [1.0, 5.0], [9.0, 0.0], [9.0, 0.0], [9.0, 0.0]])
    topics = np.array(["a", "a", "b", "b", "c"], dtype=object)
    dev = SplitData(np.ones((5, 2, 2)), topics, scores)
    rows = np.arange(5)
    assert BestOnDev().fit(dev, rows) == {"system": 0}
    params = TopicRouting(min_topic_count=2).fit(dev, rows)
    assert params == {"fallback": 0, "routes": {"a": 1, "b": 0}}
    assert TopicRouting().choose(dev, rows, params).tolist() == [1, 1, 0, 0, 0]
    no_topics = SplitData(np.ones((3, 2, 2)))  # the real test set: no topic column -> best overall system
    assert TopicRouting().choose(no_topics, np.arange(3), params).tolist() == [0, 0, 0]


def test_weight_fitting_prefers_the_helpful_system() -> None:
    dev = _toy_dev(60)
    grid = weight_grid(3, (0, 1, 2))
    assert len(grid) == 26 and np.allclose(grid[0], grid[0][0])  # uniform first
    weights, search = fit_weights(dev.sims, dev.scores, (0, 1, 2), max_grid=4096)
    assert search == "grid"
    fitted = dev.scores[np.arange(60), mbr_choices(dev.sims, weights)].mean()
    uniform = dev.scores[np.arange(60), Mbr().choose(dev, np.arange(60), {})].mean()
    assert fitted >= uniform
    _, search = fit_weights(dev.sims, dev.scores, (0, 1, 2), max_grid=10, trials=5)
    assert search == "optuna"
    params = WeightedMbr(levels=(0, 1, 2)).fit(dev, np.arange(60))
    assert params["weights"] == [float(w) for w in weights]
