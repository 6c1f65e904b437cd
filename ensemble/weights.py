"""MBR, plain and with per-system weights fitted on dev.

Weights are searched on a grid of levels per system (all combinations, the all-zero one excluded) when that grid
has at most ``max_grid`` points, else by Optuna TPE for ``trials`` trials. The objective is the mean dev score of
the chosen candidates over the fitting rows only; `ensemble.crossval` reports the score on held-out folds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ensemble.mbr import mbr_choices
from ensemble.methods import SplitData

_GRID_CHUNK = 256


def weight_grid(n_systems: int, levels: Sequence[float]) -> np.ndarray:
    """All weight vectors over ``levels`` except all-zero, closest to uniform first (so ties prefer uniform)."""
    grid = np.array([w for w in itertools.product(levels, repeat=n_systems) if sum(w) > 0], dtype=float)
    normalised = grid / grid.sum(axis=1, keepdims=True)
    distance = np.abs(normalised - 1.0 / n_systems).sum(axis=1)
    return grid[np.argsort(distance, kind="stable")]


def weighted_scores(sims: np.ndarray, scores: np.ndarray, weight_rows: np.ndarray) -> np.ndarray:
    """Mean score of the MBR choice for each weight vector, shape (n_weights,)."""
    norm = weight_rows / weight_rows.sum(axis=1, keepdims=True)
    result = np.empty(len(weight_rows))
    row_index = np.arange(len(sims))
    for start in range(0, len(norm), _GRID_CHUNK):
        chunk = norm[start:start + _GRID_CHUNK]
        choices = np.argmax(np.einsum("nkj,gj->gnk", sims, chunk), axis=2)  # (g, n)
        result[start:start + len(chunk)] = scores[row_index, choices].mean(axis=1)
    return result


def fit_weights(sims: np.ndarray, scores: np.ndarray, levels: Sequence[float] = (0, 1, 2, 3),
                max_grid: int = 4096, trials: int = 200, seed: int = 0) -> tuple[np.ndarray, str]:
    """Best weights for MBR on these rows; returns (weights, "grid" | "optuna")."""
    n_systems = sims.shape[-1]
    if len(levels) ** n_systems - 1 <= max_grid:
        grid = weight_grid(n_systems, levels)
        return grid[int(np.argmax(weighted_scores(sims, scores, grid)))], "grid"
    return _fit_weights_optuna(sims, scores, trials, seed), "optuna"


def _fit_weights_optuna(sims: np.ndarray, scores: np.ndarray, trials: int, seed: int) -> np.ndarray:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_systems = sims.shape[-1]

    def objective(trial: optuna.Trial) -> float:
        w = np.array([trial.suggest_float(f"w{k}", 0.0, 1.0) for k in range(n_systems)])
        return float(weighted_scores(sims, scores, w[None, :] + 1e-9)[0])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({f"w{k}": 1.0 for k in range(n_systems)})  # uniform MBR is always a candidate
    study.optimize(objective, n_trials=trials)
    return np.array([study.best_params[f"w{k}"] for k in range(n_systems)]) + 1e-9


@dataclass(frozen=True)
class Mbr:
    """Consensus selection with equal weights (no parameters, needs no references)."""

    name: str = "mbr"

    def fit(self, dev: SplitData, rows: np.ndarray) -> dict[str, Any]:
        return {}

    def choose(self, data: SplitData, rows: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return mbr_choices(data.sims[rows])


@dataclass(frozen=True)
class WeightedMbr:
    """Consensus selection with per-system weights fitted on dev rows."""

    levels: tuple[float, ...] = (0, 1, 2, 3)
    max_grid: int = 4096
    trials: int = 200
    seed: int = 0
    name: str = "weighted-mbr"

    def fit(self, dev: SplitData, rows: np.ndarray) -> dict[str, Any]:
        if dev.scores is None:
            raise ValueError("weighted-mbr needs dev scores (run with --gold DEV.csv)")
        weights, search = fit_weights(dev.sims[rows], dev.scores[rows], self.levels, self.max_grid,
                                      self.trials, self.seed)
        return {"weights": [float(w) for w in weights], "search": search}

    def choose(self, data: SplitData, rows: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return mbr_choices(data.sims[rows], params["weights"])
