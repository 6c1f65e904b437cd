"""End-to-end test of `python -m baselines.run` on tiny data (one epoch of tiny-bart, about 30 s on 2 cores).

Run: .venv/bin/python -m pytest -q tests/test_baselines_run.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.data import sample_rows, write_data_dir

from competition.rules.data import read_split
from competition.rules.predictions import read_predictions_with_metadata
from competition.rules.submission import read_ledger, validate_submission

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "baselines.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.integration
def test_cli_writes_every_track_output(tmp_path: Path) -> None:
    data = write_data_dir(tmp_path / "data", sample_rows("train", 32), sample_rows("dev", 8), sample_rows("test", 6))
    done = run_cli(["--model", "tiny-bart", "--data", str(data), "--out", str(tmp_path / "runs"), "--demo",
                    "num_train_epochs=1", "learning_rate=2e-3", "generation_max_length=12"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("baseline-tiny-bart-*")

    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert (config["preset"], config["num_train_epochs"], config["generation_max_length"]) == ("tiny-bart", 1, 12)
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert info["track"] == "baseline" and info["config"]["learning_rate"] == 2e-3 and info["data"]
    assert list(info["stage_seconds"]) == ["train", "predict_dev", "predict_test", "report_and_submit"]
    assert info["training_speed"]["train_tokens"] > 32 * 10 and info["training_speed"]["real_tokens_per_s"] > 0
    assert "peak_gpu_memory_gib" in info
    assert (run_dir / "best" / "model.safetensors").is_file() and (run_dir / "best" / "track.json").is_file()

    for split, n in (("dev", 8), ("test", 6)):
        frame, meta = read_predictions_with_metadata(run_dir / f"preds_{split}.csv")
        expected = read_split(data / f"{split}.csv", split)["fname"]
        assert list(frame["fname"]) == list(expected) and len(frame) == n  # input (fname) order, no row dropped
        assert meta["split"] == split and meta["preset"] == "tiny-bart" and meta["config_hash"] == info["config_hash"]
        assert not any(tok in s for s in frame["summary"] for tok in ("<s>", "</s>", "<pad>"))

    report = json.loads((run_dir / "report" / "rouge_report.json").read_text(encoding="utf-8"))
    assert report["n_samples"] == 8
    truncation = json.loads((run_dir / "truncation.json").read_text(encoding="utf-8"))
    assert truncation["splits"]["dev"]["by_max_length"]["256"]["rows"] == 8

    ledger = read_ledger(tmp_path / "submissions")
    (submission,) = [p for p in (tmp_path / "submissions").glob("*.csv") if p.name != "ledger.csv"]
    assert run_dir.name in submission.name
    assert validate_submission(submission, data / "test.csv") == 6
    assert float(ledger["dev_score"].iloc[-1]) == pytest.approx(report["scores"]["final"], abs=1e-3)


@pytest.mark.integration
def test_cli_bad_override_exits_2(tmp_path: Path) -> None:
    done = run_cli(["--model", "tiny-bart", "--data", str(tmp_path), "lr"], cwd=tmp_path)
    assert done.returncode == 2 and "KEY=VALUE" in done.stderr


@pytest.mark.integration
def test_cli_missing_data_exits_2(tmp_path: Path) -> None:
    done = run_cli(["--model", "tiny-bart", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "runs")],
                   cwd=tmp_path)
    assert done.returncode == 2 and "train.csv" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "runs").exists()  # no empty run folder left behind
