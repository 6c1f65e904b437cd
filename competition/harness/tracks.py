"""The track contract, written down once: what tuning, K-fold training and the CLIs drive.

Each track package has a `track` module exposing `TRACK`, a `Track`; `get_track("llm")` imports it by name, so the
shared core never imports a track (the tracks import the core, never the other way round).

    track = get_track("baseline")
    config = track.config("kobart", yaml_path=None, overrides={"learning_rate": 3e-5})
    result = track.train(config, load_splits(data_dir), run_dir, on_evaluate=None)  # (or the folder) -> TrainResult
    summaries = track.predict(result.best_checkpoint, dialogues, config)  # -> list[str], input order, empty ones kept
    run_dir = track.run(config, data_dir, out_dir)  # load_splits, open_run, train, predict_splits, report
"""

from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from competition.harness.config import TrackSettings, add_track_arguments, layers_from_args
from competition.harness.distributed import end_multi_process_run, is_main_process
from competition.harness.logs import setup_logging
from competition.harness.memory import Gpu, detect_gpu, prefer_expandable_segments
from competition.harness.runs import TrainResult
from competition.rules.errors import ConfigError, warn

OnEvaluate = Callable[[int, float], None]  # (epoch or step, dev score); may raise (e.g. optuna.TrialPruned)
TRACK_MODULES = {"baseline": "baselines.track", "llm": "llm.track"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Track:
    """One track: how its config is built, and its train / predict / whole-run functions."""

    name: str
    settings: TrackSettings
    train: Callable[..., TrainResult]  # (config, splits or data folder, run_dir, on_evaluate=None)
    predict: Callable[..., list[str]]  # (checkpoint_dir, dialogues, config); callers fill in empty ones (fill_empty)
    run: Callable[..., Path]  # (config, data_dir, out_dir, run_dir=None) -> the run folder
    generation_keys: frozenset[str] = frozenset()  # settings a finished run may change when it predicts again

    def config(self, preset: str, yaml_path: Path | str | None = None, overrides: Mapping[str, Any] | None = None,
               demo: bool = False) -> Any:
        """defaults < preset < demo < YAML (given, else the preset's shipped one) < overrides."""
        return self.settings.resolve(self.settings.layers(preset, yaml_path, overrides, demo))


def get_track(name: str) -> Track:
    """The track called `name` (`baseline` or `llm`); an unknown name raises ConfigError listing the known ones."""
    if name not in TRACK_MODULES:
        raise ConfigError(f"unknown track '{name}'; known: {sorted(TRACK_MODULES)}")
    return importlib.import_module(TRACK_MODULES[name]).TRACK


def card_to_fit(args: argparse.Namespace) -> Gpu | None:
    """The card the settings are fitted to: `--gpu-memory` (any machine), else this machine's GPU; none when
    resuming (the saved config was fitted when the run started) or without a GPU (nothing is fitted)."""
    if args.resume is not None:
        return None
    if args.gpu_memory is not None:
        if args.gpu_memory <= 0:
            raise ConfigError(f"--gpu-memory {args.gpu_memory}: expected the card's free memory in GiB, above 0")
        name = args.gpu_name or "a GPU"
        return Gpu(name, args.gpu_memory, args.gpu_memory)
    return detect_gpu()


def track_cli(track: Track, argv: list[str] | None, prog: str, description: str, default_model: str) -> int:
    """The one CLI of both tracks: resolve the config layers, then `--print-config` or the whole run."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_track_arguments(parser, default_model)
    args = parser.parse_args(argv)
    setup_logging()
    prefer_expandable_segments()
    layers = layers_from_args(track.settings, args)
    layers, fit = track.settings.fitted(layers, card_to_fit(args))
    for message in fit.warnings if fit else ():
        warn(message)
    if args.print_config:
        print((fit.summary() + "\n" if fit else "") + track.settings.describe(layers), end="")
        return 0
    log.info("config layers: %s", ", ".join(layer.source for layer in layers))
    if fit:
        log.info("%s", fit.summary().lstrip("# "))
    run_dir = track.run(track.settings.resolve(layers), args.data, args.out, run_dir=args.resume,
                        submissions_dir=args.submissions, **({"run_info": fit.record()} if fit else {}))
    if is_main_process():  # every rank returns the run folder; say it once
        print(f"run folder: {run_dir}")
    end_multi_process_run()
    return 0
