"""The tuner on the real tracks: shipped search spaces, CLI errors, and a tiny-bart study end to end
(best config reproduces the best trial's dev score; generation-only study on its checkpoint).

Run: `.venv/bin/python -m pytest -q tests/test_tune_tracks.py` (the tiny-bart study takes ~1-2 minutes on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

from competition.harness.tracks import get_track
from tuning import generation, tune
from tuning.search_space import SEARCH_SPACE_DIR, load_search_space
from tuning.study import TuneSettings
from tuning.tune import check_inputs

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
REAL_PRESETS = {"baseline": "kobart", "llm": "llama3.2-ko-3b"}
TINY_PRESETS = {"baseline": "tiny-bart", "llm": "tiny-llama"}


@pytest.mark.parametrize("track", ["baseline", "llm"])
@pytest.mark.parametrize("demo", [False, True])
def test_shipped_search_spaces_match_the_track_configs(track, demo, tmp_path):
    preset = TINY_PRESETS[track] if demo else REAL_PRESETS[track]
    settings = TuneSettings(track=track, preset=preset, data_dir=SAMPLE_DIR, out_dir=tmp_path, n_trials=1,
                            space_path=SEARCH_SPACE_DIR / f"{track}.yaml", demo=demo)
    api = get_track(track)
    check_inputs(api, settings, load_search_space(settings.space_path, demo=demo))  # unknown keys would raise
    generation = load_search_space(SEARCH_SPACE_DIR / "generation.yaml", demo=demo, section=track)
    api.config(preset, None, {p.name: p.example() for p in generation.params})


@pytest.mark.parametrize("args, message", [
    (["--data", "no/such/dir"], "file not found: train.csv, dev.csv"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["--model", "no-such-model"], "no-such-model"),
    (["learning_rat=1e-4"], "unknown config keys ['learning_rat']"),
])
def test_tune_cli_bad_input_exits_2(tmp_path, capsys, args, message):
    base = {"--track": "baseline", "--model": "tiny-bart", "--data": str(SAMPLE_DIR), "--trials": "1",
            "--out": str(tmp_path)}
    flags = [a for a in args if a.startswith("--")]
    for flag in flags:
        base[flag] = args[args.index(flag) + 1]
    overrides = [a for a in args if "=" in a and not a.startswith("--")]
    argv = [item for pair in base.items() for item in pair] + overrides
    assert tune.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*/trials"))  # nothing trained


def test_tune_generation_cli_bad_run_exits_2(tmp_path, capsys):
    assert generation.main(["--run", str(tmp_path), "--data", str(SAMPLE_DIR), "--trials", "1"]) == 2
    assert "no config.yaml" in capsys.readouterr().err


@pytest.mark.integration
def test_tiny_bart_study_best_config_reproduces_and_generation_study(tmp_path):
    from baselines.config import load_config
    from baselines.train import train

    # one trial of the demo space (multi-trial logic is covered by test_tune.py with a fake track); epochs and
    # learning rate pinned so the tiny model learns something in 2 epochs
    argv = ["--track", "baseline", "--model", "tiny-bart", "--data", str(SAMPLE_DIR), "--trials", "1",
            "--out", str(tmp_path / "tune"), "--demo", "num_train_epochs=2", "learning_rate=0.005"]
    assert tune.main(argv) == 0
    study_dir = tmp_path / "tune" / "baseline-tiny-bart"
    summary = json.loads((study_dir / "summary.json").read_text())
    best = summary["best"]
    assert best["score"] > 0
    table = pd.read_csv(study_dir / "trials.csv")
    assert list(table["state"]) == ["COMPLETE"] and (Path(best["run_dir"]) / "run.json").is_file()

    # what `make baseline MODEL=tiny-bart CONFIG=best_config.yaml` resolves and trains (deterministic on CPU)
    config = load_config("tiny-bart", study_dir / "best_config.yaml")
    rerun = train(config, SAMPLE_DIR, tmp_path / "rerun")
    assert rerun.best_dev_score == pytest.approx(best["score"], abs=1e-9)

    # generation-only study on the best trial's checkpoint: trial 0 replays the run's own settings
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = generation.tune_generation(Path(best["run_dir"]), SAMPLE_DIR, 2, limit=config.max_eval_samples,
                                            demo=True)
    assert study.trials[0].user_attrs.get("replays_run_settings")
    assert study.trials[0].value == pytest.approx(best["score"], abs=1e-9)  # same checkpoint, settings, dev rows
    gen_dir = Path(best["run_dir"]) / "tune_generation"
    assert (gen_dir / "best_config.yaml").is_file() and (gen_dir / "trials" / "trial-0001" / "preds_dev.csv").is_file()
