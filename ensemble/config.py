"""Ensembling settings: `EnsembleConfig`, resolved like the tracks' configs (defaults < `--config` YAML <
KEY=VALUE overrides < dedicated flags), every value typed and checked, `--print-config` shows each one's source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from competition.harness.config import setting
from competition.rules.errors import ConfigError
from competition.rules.metric import DEFAULT_ANALYZER, Analyzer
from ensemble.fusion import PASSES
from ensemble.postprocess import DEFAULT_RULES, check_rule_names

Method = Literal["fusion", "mbr", "weighted-mbr", "best", "topic"]
MethodChoice = Literal["default", "auto", "fusion", "mbr", "weighted-mbr", "best", "topic"]
METHODS: tuple[str, ...] = get_args(Method)  # auto breaks ties in this order
METHOD_CHOICES: tuple[str, ...] = get_args(MethodChoice)


@dataclass
class EnsembleConfig:
    """All ensembling settings."""

    method: MethodChoice = setting("default", "default = auto with --gold, else fusion (3+ systems) | auto = best "
                                              "cross-validated dev score | one method")
    rules: list[str] = setting(list(DEFAULT_RULES), "post-processing rules, in order (comma-separated on the command line)")
    folds: int = setting(5, "dev folds for the cross-validated method scores")
    seed: int = setting(0, "seed of the fold shuffling and of Optuna")
    weight_levels: list[float] = setting([0.0, 1.0, 2.0, 3.0], "weighted-mbr: the grid of each system's weight")
    max_grid: int = setting(4096, "weighted-mbr: larger weight grids are searched with Optuna instead")
    optuna_trials: int = setting(200, "weighted-mbr: Optuna trials when the grid is too large")
    min_topic_count: int = setting(2, "topic: dev rows a topic needs before routing uses it")
    analyzer: Analyzer = setting(DEFAULT_ANALYZER, "metric tokenizer; the leaderboard uses morphemes")
    fusion_passes: int = setting(PASSES, "fusion: sweeps of replace/delete/append over the summary")

    def __post_init__(self) -> None:
        try:
            check_rule_names(self.rules)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.folds < 2:
            raise ConfigError(f"folds={self.folds}; expected 2 or more")
        if self.fusion_passes < 1:
            raise ConfigError(f"fusion_passes={self.fusion_passes}; expected 1 or more")
