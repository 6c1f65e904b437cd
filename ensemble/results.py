"""What an ensembling run reads and produces: `Inputs` and `EnsembleResult` (with its method and rule scores).

The pipeline builds these and the report reads them; keeping them here lets the report import the types alone and
the pipeline import the report, one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ensemble.config import EnsembleConfig
from ensemble.systems import System

HARMFUL_TOLERANCE = 1e-6  # score points; float noise from reordered sums is not a harmful rule


@dataclass
class Inputs:
    """Systems aligned per split, plus the gold dev file and the test file when known."""

    order: dict[str, list[str]]
    systems: list[System]
    gold: pd.DataFrame | None = None
    test: pd.DataFrame | None = None
    data_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what reading them found (e.g. identical systems)


@dataclass
class MethodScore:
    """A method's dev score fitted and evaluated on all dev rows, and cross-validated."""

    method: str
    in_sample: float
    cross_validated: float | None
    params: dict[str, Any]
    folds: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RuleEffect:
    """Mean dev score over systems with and without one rule (relative to the configured pipeline)."""

    rule: str
    enabled: bool
    score_with: float
    score_without: float

    @property
    def delta(self) -> float:
        return self.score_with - self.score_without

    @property
    def harmful(self) -> bool:
        return self.delta < -HARMFUL_TOLERANCE


@dataclass
class EnsembleResult:
    """Everything the outputs and the report need."""

    config: EnsembleConfig
    method: str
    params: dict[str, Any]
    order: dict[str, list[str]]
    summaries: dict[str, list[str]]
    choices: dict[str, np.ndarray]
    systems: list[str]
    source_runs: list[str]
    system_scores: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> raw / postprocessed
    method_scores: list[MethodScore] = field(default_factory=list)
    rule_effects: list[RuleEffect] = field(default_factory=list)
    dev_sample_scores: np.ndarray | None = None  # (n_dev, n_systems), post-processed
    dev_output_scores: np.ndarray | None = None  # (n_dev,), score of each final dev summary
    dev_topics: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def dev_score(self) -> float | None:
        """Dev score (0-100) of the final dev predictions, when references are known."""
        return None if self.dev_output_scores is None else float(self.dev_output_scores.mean())

    @property
    def cv_score(self) -> float | None:
        return next((m.cross_validated for m in self.method_scores if m.method == self.method), None)
