"""Ensembling settings: `EnsembleConfig` and the method names it accepts."""

from __future__ import annotations

from dataclasses import dataclass, field

from competition.metric import ANALYZERS, DEFAULT_ANALYZER
from ensemble.fusion import PASSES
from ensemble.postprocess import DEFAULT_RULES, check_rule_names

METHODS = ("fusion", "mbr", "weighted-mbr", "best", "topic")  # auto breaks ties in this order
METHOD_CHOICES = ("default", "auto") + METHODS


@dataclass
class EnsembleConfig:
    """All ensembling settings (defaults < --config YAML < KEY=VALUE overrides < dedicated flags)."""

    method: str = "default"  # default: auto with --gold, else fusion (>= 3 systems); auto: best cross-validated
    rules: list[str] = field(default_factory=lambda: list(DEFAULT_RULES))  # post-processing rules, in order
    folds: int = 5  # dev folds for cross-validated method scores
    seed: int = 0  # fold shuffling and Optuna
    weight_levels: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 3.0])  # grid per system weight
    max_grid: int = 4096  # larger grids switch to Optuna
    optuna_trials: int = 200
    min_topic_count: int = 2  # dev rows a topic needs before routing uses it
    analyzer: str = DEFAULT_ANALYZER
    fusion_passes: int = PASSES  # fusion: sweeps of replace/delete/append over the summary

    def __post_init__(self) -> None:
        if self.method not in METHOD_CHOICES:
            raise ValueError(f"method '{self.method}'; expected one of {list(METHOD_CHOICES)}")
        if isinstance(self.rules, str):
            self.rules = [r for r in self.rules.split(",") if r]
        check_rule_names(self.rules)
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.analyzer not in ANALYZERS:
            raise ValueError(f"analyzer '{self.analyzer}'; expected one of {list(ANALYZERS)}")
        if self.fusion_passes < 1:
            raise ValueError(f"fusion_passes must be >= 1, got {self.fusion_passes}")
