"""The track contract, written down once: what tuning, K-fold training and the CLIs drive.

Each track package has a `track` module exposing `TRACK`, a `Track`; `get_track("llm")` imports it by name, so the
shared core never imports a track (the tracks import the core, never the other way round).

    track = get_track("baseline")
    config = track.config("kobart", yaml_path=None, overrides={"learning_rate": 3e-5})
    result = track.train(config, data_dir, run_dir, on_evaluate=None)     # -> TrainResult
    summaries = track.predict(result.best_checkpoint, dialogues, config)  # -> list[str], input order
    run_dir = track.run(config, data_dir, out_dir)                        # train, predict, report, submit
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from competition.config import TrackSettings
from competition.errors import ConfigError
from competition.runs import TrainResult

OnEvaluate = Callable[[int, float], None]  # (epoch or step, dev score); may raise (e.g. optuna.TrialPruned)
TRACK_MODULES = {"baseline": "baselines.track", "llm": "llm.track"}


@dataclass(frozen=True)
class Track:
    """One track: how its config is built, and its train / predict / whole-run functions."""

    name: str
    settings: TrackSettings
    train: Callable[..., TrainResult]  # (config, data_dir, run_dir, on_evaluate=None)
    predict: Callable[..., list[str]]  # (checkpoint_dir, dialogues, config)
    run: Callable[..., Path]  # (config, data_dir, out_dir, run_dir=None) -> the run folder

    def config(self, preset: str, yaml_path: Path | str | None = None, overrides: Mapping[str, Any] | None = None,
               demo: bool = False) -> Any:
        """defaults < preset < demo < YAML (given, else the preset's shipped one) < overrides."""
        return self.settings.resolve(self.settings.layers(preset, yaml_path, overrides, demo))


def get_track(name: str) -> Track:
    """The track called `name` (`baseline` or `llm`); an unknown name raises ConfigError listing the known ones."""
    if name not in TRACK_MODULES:
        raise ConfigError(f"unknown track '{name}'; known: {sorted(TRACK_MODULES)}")
    return importlib.import_module(TRACK_MODULES[name]).TRACK
