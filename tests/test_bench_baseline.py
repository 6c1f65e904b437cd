"""The GPU benchmark script in --smoke mode (tiny sizes, CPU, data/sample), so it cannot rot unnoticed.

Run: .venv/bin/python -m pytest -q tests/test_bench_baseline.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_ROOT / "benchmarks" / "bench_baseline.py"


@pytest.mark.integration
def test_smoke_report_agrees_with_its_own_measurements(tmp_path: Path, monkeypatch) -> None:
    """The headline figures are the ones the run recorded: the last epoch, the median generation run, the recipe
    estimate from both, and the token count from the rows and their mean lengths."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import bench_baseline as bench

    out = tmp_path / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["mode"] == "smoke" and result["generated_summaries"] == 8 and result["train_rows"] == 48
    epochs, generations = result["epoch_seconds_each"], result["generation_seconds_each"]
    assert epochs and result["epoch_seconds"] == epochs[-1]
    assert len(generations) == 1 and result["generation_seconds"] == generations[0]  # one run: its own median
    recipe = bench.recipe_seconds(epochs, result["generation_seconds"])
    assert result["recipe_seconds_estimate"] == pytest.approx(recipe, abs=0.3)  # from figures rounded to 0.01 s
    mean_tokens = result["encoder_tokens_mean"] + result["label_tokens_mean"]
    assert result["train_tokens"] == pytest.approx(48 * mean_tokens, abs=48 * 0.1)  # means rounded to 0.1
    assert len(result["generated_ids_sha256"]) == 16 and result["meets_targets"] is None  # smoke is never judged


def test_the_recipe_counts_every_warm_up_epochs_extra_once(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import bench_baseline as bench

    # epochs 60, 9, 8 s and 1 s of generation: (60 - 8) + (9 - 8) + 20 x (8 + 1)
    assert bench.recipe_seconds([60.0, 9.0, 8.0], 1.0) == 52.0 + 1.0 + 180.0
    assert bench.recipe_seconds([7.0, 8.0], 1.0) == 180.0  # an epoch faster than the last adds nothing


@pytest.mark.integration
def test_profile_covers_only_the_last_training_epoch(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--epochs", "2", "--skip-generate", "--profile",
                           str(tmp_path / "prof")], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "prof" / "train.txt").read_text(encoding="utf-8")
    steps = int(re.search(r"Optimizer\.step#AdamW\.step .*\s(\d+)\s*$", table, re.MULTILINE).group(1))  # calls
    assert steps == 6  # 48 rows / batch 8: one epoch's optimizer steps, not two epochs' 12


@pytest.mark.integration
def test_missing_real_data_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--data-dir", str(tmp_path)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "dev.csv and test.csv not found" in done.stderr
