"""Following runs in TensorBoard / W&B / MLflow (`report_to`, competition/modeling/tracking.py): tiny runs of both
tracks with report_to=tensorboard write event files that hold the dev score at each evaluation, its ROUGE parts, the
training loss and learning rate, the end-of-run figures and the config; a missing package is one error line.

Run: .venv/bin/python -m pytest -q tests/test_tracking.py     (the tiny runs: -m integration, about a minute)
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from competition.harness.config import config_hash
from competition.modeling import tracking
from competition.rules.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_run_name_is_the_folder_and_a_trial_carries_its_study(tmp_path):
    assert tracking.run_name(tmp_path / "runs" / "baseline-kobart-20260101-120000") == "baseline-kobart-20260101-120000"
    assert tracking.run_name(tmp_path / "tuning" / "lr-study" / "trials" / "trial-0003") == "lr-study-trial-0003"
    assert tracking.tracking_arguments("none", tmp_path / "k" / "k-fold2") == {"report_to": "none",
                                                                               "run_name": "k-fold2"}


def test_missing_package_is_one_config_error_naming_what_to_install(monkeypatch):
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    tracking.require_reporter("none")  # needs nothing
    with pytest.raises(ConfigError, match=r"report_to=wandb needs the wandb package: pip install wandb.*WANDB_MODE"):
        tracking.require_reporter("wandb")
    with pytest.raises(ConfigError, match="pip install mlflow"):
        tracking.require_reporter("mlflow")


def test_report_to_leaves_the_config_hash_alone():
    """Following a run in another tool keeps it the same run (K-fold reruns, submissions' config hash)."""
    from baselines.config import load_config

    plain = load_config("tiny-bart")
    assert config_hash(plain) == config_hash(load_config("tiny-bart", overrides={"report_to": "tensorboard"}))
    assert config_hash(plain) != config_hash(load_config("tiny-bart", overrides={"seed": 7}))


def test_kfold_and_tuning_check_the_package_before_any_work(monkeypatch, tmp_path, sample_dir):
    from competition.harness.tracks import get_track
    from kfold.pipeline import KFoldSettings, run_kfold
    from tuning.search_space import SEARCH_SPACE_DIR, load_search_space
    from tuning.study import TuneSettings
    from tuning.tune import check_inputs

    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    wandb = {"report_to": "wandb"}
    with pytest.raises(ConfigError, match="pip install wandb"):
        run_kfold(KFoldSettings(track="baseline", preset="tiny-bart", data_dir=sample_dir, out_dir=tmp_path / "kf",
                                k=2, overrides=wandb))
    assert not (tmp_path / "kf").exists()
    space = SEARCH_SPACE_DIR / "baseline.yaml"
    settings = TuneSettings(track="baseline", preset="tiny-bart", data_dir=sample_dir, out_dir=tmp_path / "tune",
                            n_trials=1, space_path=space, overrides=wandb)
    with pytest.raises(ConfigError, match="pip install wandb"):
        check_inputs(get_track("baseline"), settings, load_search_space(space))


def test_run_summary_holds_fill_in_shares_speed_and_stage_seconds():
    results = {"dev_score": 31.5, "fill_ins": {"dev": {"rows": 8, "filled": 2, "share": 0.25},
                                               "test": {"rows": 6, "filled": 0, "share": 0.0}}}
    summary = tracking.run_summary(results, {"real_tokens_per_s": 812.5, "train_step_seconds": 3.0, "train_tokens": 9},
                                   {"train": 4.0, "predict_dev": 1.5})
    assert summary == {"dev_score": 31.5, "fill_in_share_dev": 0.25, "fill_in_share_test": 0.0,
                       "real_tokens_per_s": 812.5, "train_step_seconds": 3.0, "stage_seconds/train": 4.0,
                       "stage_seconds/predict_dev": 1.5, "stage_seconds/total": 5.5}


def read_tensorboard(log_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], set[str], dict[str, Any]]:
    """Every scalar (tag -> [(step, value)], in step order) under `log_dir`, its text tags and its HParams."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    tensors: set[str] = set()
    hparams: dict[str, Any] = {}
    files = sorted(log_dir.glob("events.out.tfevents.*"))
    assert files, f"no event files in {log_dir}"
    for path in files:
        events = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
        tensors.update(events.Tags()["tensors"])  # add_text is stored as a tensor summary
        with contextlib.suppress(KeyError):  # KeyError: no HParams in this file
            for content in events.PluginTagToContent("hparams").values():
                start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
                hparams.update({key: value.string_value or value.number_value for key, value in start.hparams.items()})
    return {tag: sorted(values) for tag, values in scalars.items()}, tensors, hparams


def tiny_data(tmp_path: Path, sample_dir: Path, rows: dict[str, int]) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for split, n in rows.items():
        pd.read_csv(sample_dir / f"{split}.csv", dtype=str, keep_default_na=False).head(n).to_csv(
            data / f"{split}.csv", index=False)
    return data


def run_track(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def check_run_events(run_dir: Path, evaluations: int, preset: str) -> dict[str, list[tuple[int, float]]]:
    """The dev score and its ROUGE parts at each evaluation, loss, learning rate, end figures and config."""
    scalars, tensors, hparams = read_tensorboard(run_dir / tracking.TENSORBOARD_DIR)
    history = json.loads((run_dir / "train_result.json").read_text(encoding="utf-8"))["history"]
    assert len(history) == evaluations
    scores = [value for _, value in scalars["eval/score"]]
    assert scores == pytest.approx([entry["dev_score"] for entry in history], abs=1e-4)  # the run's own record
    for part in ("eval/rouge1", "eval/rouge2", "eval/rougeL"):
        assert len(scalars[part]) == evaluations
    for (step, score), parts in zip(scalars["eval/score"], zip(*(scalars[f"eval/{p}"] for p in ("rouge1", "rouge2",
                                                                                                "rougeL")))):
        assert score == pytest.approx(sum(value for _, value in parts) / 3, abs=1e-3)
        assert all(part_step == step for part_step, _ in parts)
    assert scalars["train/loss"] and scalars["train/learning_rate"]
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert scalars["final/dev_score"][0][1] == pytest.approx(info["dev_score"], abs=1e-4)
    assert scalars["final/fill_in_share_dev"][0][1] == pytest.approx(info["fill_ins"]["dev"]["share"])
    assert scalars["final/stage_seconds/train"][0][1] == pytest.approx(info["stage_seconds"]["train"], abs=1e-3)
    assert scalars["final/real_tokens_per_s"][0][1] == pytest.approx(info["training_speed"]["real_tokens_per_s"],
                                                                     rel=1e-4)
    assert "config/text_summary" in tensors  # the resolved config, as text and in the HParams tab
    assert hparams["preset"] == preset and hparams["report_to"] == "tensorboard" and hparams["seed"] == 42
    return scalars


@pytest.mark.integration
def test_baseline_run_logs_to_tensorboard(tmp_path, sample_dir):
    data = tiny_data(tmp_path, sample_dir, {"train": 32, "dev": 8, "test": 6})
    done = run_track("baselines.run", "--model", "tiny-bart", "--data", str(data), "--out", str(tmp_path / "runs"),
                     "--demo", "num_train_epochs=2", "early_stopping_patience=5", "generation_max_length=12",
                     "report_to=tensorboard", "submit_despite_fill_ins=true", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("baseline-tiny-bart-*")
    check_run_events(run_dir, evaluations=2, preset="tiny-bart")


@pytest.mark.integration
def test_llm_run_logs_to_tensorboard(tmp_path, sample_dir):
    data = tiny_data(tmp_path, sample_dir, {"train": 16, "dev": 6, "test": 4})
    done = run_track("llm.run", "--model", "tiny-llama", "--data", str(data), "--out", str(tmp_path / "runs"),
                     "--demo", "num_train_epochs=2", "max_eval_samples=3", "max_new_tokens=8", "logging_steps=1",
                     "report_to=tensorboard", "submit_despite_fill_ins=true", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("llm-tiny-llama-*")
    scalars = check_run_events(run_dir, evaluations=2, preset="tiny-llama")
    assert len(scalars["train/loss"]) == 4  # 16 rows, 8 a step, 2 epochs, logged every step


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_report_to_without_its_package_exits_2_in_one_line(tmp_path, sample_dir):
    data = tiny_data(tmp_path, sample_dir, {"train": 4, "dev": 2})
    done = run_track("baselines.run", "--model", "tiny-bart", "--data", str(data), "--out", str(tmp_path / "runs"),
                     "--demo", "report_to=wandb", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "pip install wandb" in error_lines[0] and "WANDB_MODE=offline" in error_lines[0]
    assert not (tmp_path / "runs").exists()  # nothing started
