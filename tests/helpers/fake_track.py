"""A fast fake training track for the tuner that follows the track contract, and the tuner's input files.

Used by tests/test_tune.py and tests/test_tune_postgres.py.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from competition.harness.config import TrackSettings, save_yaml
from competition.harness.runs import save_run_info
from competition.harness.tracks import Track
from competition.rules.data import Splits, load_splits


@dataclass
class FakeConfig:
    """A track config with the fields a tuner would touch."""

    preset: str = "fake"
    seed: int = 0
    lr: float = 1e-3
    epochs: int = 4
    warmup_ratio: float = 0.0
    label_smoothing: float = 0.0
    optimizer: str = "adamw"
    seconds_per_epoch: float = 0.0  # slows trials down so parallel workers interleave
    fail: str = ""  # "oom" | "nan" | "error": raise that failure in the first epoch


@dataclass
class FakeResult:
    best_checkpoint: Path
    best_dev_score: float


# Test hooks: raise KeyboardInterrupt on this train() call (1-based) to simulate Ctrl-C mid-study.
INTERRUPT_ON_CALL: int | None = None
TRAIN_CALLS = 0


# defaults < preset < (demo: one fast epoch) < YAML < overrides, like the real tracks; no shipped YAMLs
SETTINGS = TrackSettings(track="fake", config_class=FakeConfig, configs_dir=Path("/nonexistent/fake-configs"),
                         preset_layer=lambda name: {"preset": name}, demo_layer={"epochs": 1})


def load_config(preset: str, yaml_path: Path | str | None = None, overrides: dict[str, Any] | None = None,
                demo: bool = False) -> FakeConfig:
    """The fake track's config, built the way the real tracks build theirs."""
    return SETTINGS.resolve(SETTINGS.layers(preset, yaml_path, overrides, demo))


def epoch_score(config: FakeConfig, epoch: int) -> float:
    """Deterministic dev score: best near lr=1e-3, grows with epochs, small effects of the other settings."""
    closeness = math.exp(-((math.log10(config.lr) + 3.0) ** 2))
    bonus = 2.0 * config.warmup_ratio - 3.0 * abs(config.label_smoothing - 0.1)
    bonus += 1.0 if config.optimizer == "adamw" else 0.0
    return 10.0 + 20.0 * closeness * (1.0 - 0.5 ** (epoch + 1)) + bonus + 0.01 * (config.seed % 7)


def train(config: FakeConfig, data: Splits | Path, run_dir: Path,
          on_evaluate: Callable[[int, float], None] | None = None) -> FakeResult:
    """Pretend to train: one dev evaluation per epoch, logged to evaluations.txt; the track's run files are written."""
    global TRAIN_CALLS
    TRAIN_CALLS += 1
    if INTERRUPT_ON_CALL is not None and TRAIN_CALLS == INTERRUPT_ON_CALL:
        raise KeyboardInterrupt
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(config, run_dir / "config.yaml")
    save_run_info(run_dir, config, config.seed, load_splits(data).paths.values())
    with (run_dir / "started.txt").open("a") as log:
        log.write(f"{os.getpid()}\n")
    best = -math.inf
    for epoch in range(config.epochs):
        if config.fail == "oom":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if config.fail == "nan":
            raise FloatingPointError("NaN loss at step 7")
        if config.fail == "error":
            raise ValueError("a bug in the track")
        time.sleep(config.seconds_per_epoch)
        score = epoch_score(config, epoch)
        with (run_dir / "evaluations.txt").open("a") as log:
            log.write(f"{epoch} {score}\n")
        if score > best:
            best = score
            (run_dir / "best").mkdir(exist_ok=True)
            (run_dir / "best" / "weights.bin").write_bytes(b"w")
        if on_evaluate is not None:
            on_evaluate(epoch, score)
    return FakeResult(run_dir / "best", best)


def as_track() -> Track:
    """The fake as a track (no predict, no whole-run command)."""
    return Track("fake", SETTINGS, train, predict=None, run=None)


def write_space(path: Path, params: dict[str, Any], fixed: dict[str, Any] | None = None,
                demo: dict | None = None) -> Path:
    """A search-space YAML file."""
    data: dict[str, Any] = {"params": params, "fixed": fixed or {}}
    if demo:
        data["demo"] = demo
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def write_tiny_data(data_dir: Path) -> Path:
    """train/dev CSVs of two rows each (the fake track only hashes them)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        (data_dir / f"{split}.csv").write_text(
            f"fname,dialogue,summary\n{split}_0,#Person1#: 안녕,인사\n{split}_1,#Person1#: 네,대답\n",
            encoding="utf-8")
    return data_dir
