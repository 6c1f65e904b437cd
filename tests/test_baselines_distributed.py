"""The seq2seq track under torchrun with 2 gloo processes (CPU) matches 1 process with the same global batch.
Run: `.venv/bin/python -m pytest tests/test_baselines_distributed.py` (about a minute on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers.data import sample_rows, write_data_dir

from competition.rules.data import read_split

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
# Same global batch (2 x 8 vs 1 x 16) and data order, and the loss divided by the step's target count on every rank:
# the dev losses agree to float rounding (gloo sums in another order), and beam search may still flip a token.
LOSS_TOLERANCE = 1e-5
SCORE_TOLERANCE = 1.0
# 16 train rows x 4 (dev = the train rows), so the score says whether the model learned: the first-utterance
# fill-ins of a model that wrote nothing score about 21 on these rows, the trained model about 32.
SETTINGS = ["num_train_epochs=8", "learning_rate=5e-3", "warmup_ratio=0.0", "lr_scheduler_type=linear",
            "group_by_length=false", "num_beams=2", "no_repeat_ngram_size=0", "generation_max_length=48",
            "per_device_eval_batch_size=8", "early_stopping_patience=8", "full_determinism=true"]


def run_track(data: Path, out: Path, processes: int, batch: int) -> Path:
    command = ([str(TORCHRUN), "--standalone", f"--nproc_per_node={processes}"] if processes > 1
               else [sys.executable]) + ["-m", "baselines.run", "--model", "tiny-bart", "--demo", "--data", str(data),
                                         "--out", str(out / "runs"), f"per_device_train_batch_size={batch}", *SETTINGS]
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONFAULTHANDLER": "1"}  # an abort prints every thread's Python stack
    result = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-6000:]
    run_dirs = list((out / "runs").iterdir())
    assert len(run_dirs) == 1, run_dirs  # one run folder, not one per rank
    assert result.stdout.count("run folder: ") == 1, result.stdout  # each message once, not once per rank
    assert result.stderr.count("best dev ROUGE during training: ") == 1, result.stderr[-3000:]
    return run_dirs[0]


@pytest.mark.integration
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    rows = sample_rows("train", 16)
    data = write_data_dir(tmp_path / "data", rows, rows, sample_rows("test", 8), train_repeats=4)
    single = run_track(data, tmp_path / "one", processes=1, batch=16)
    double = run_track(data, tmp_path / "two", processes=2, batch=8)
    runs = {d: json.loads((d / "run.json").read_text()) for d in (single, double)}
    histories = {d: json.loads((d / "train_result.json").read_text())["history"] for d in (single, double)}
    score = {d: runs[d]["dev_score"] for d in (single, double)}
    print(f"dev score: 1 process {score[single]:.4f}, 2 processes {score[double]:.4f}")
    for run in runs.values():  # the model wrote every summary: no first-utterance fill-ins scored in its place
        assert run["fill_ins"]["dev"]["filled"] == run["fill_ins"]["test"]["filled"] == 0, run["fill_ins"]
    assert score[single] > 25, score
    assert abs(score[single] - score[double]) <= SCORE_TOLERANCE, score
    assert len(histories[single]) == len(histories[double]) == 8
    for one, two in zip(histories[single], histories[double]):
        assert two["loss"] == pytest.approx(one["loss"], rel=LOSS_TOLERANCE), (one, two)
    test_fnames = list(read_split(data / "test.csv", "test")["fname"])
    dev_fnames = list(read_split(data / "dev.csv", "dev")["fname"])
    for split, expected in (("dev", dev_fnames), ("test", test_fnames)):
        assert list(pd.read_csv(double / f"preds_{split}.csv")["fname"]) == expected  # every fname once, in order
