"""K-fold training (`python -m kfold`): fold splitting (pure, fast) and end-to-end CPU runs of tiny-bart (integration).

Run: .venv/bin/python -m pytest -q tests/test_kfold.py (-m integration: about 3 minutes on 2 free cores)
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from helpers.data import sample_rows, write_data_dir

from competition.rules.data import read_split
from competition.rules.errors import ConfigError, DataError
from competition.rules.metric import compute_rouge
from competition.rules.predictions import read_predictions_with_metadata
from competition.rules.submission import read_ledger, validate_submission
from competition.trivial import first_utterance
from kfold.folds import assign_folds, assignment_hash, fold_split, pool_rows, stratification_topics
from kfold.pipeline import KFoldSettings, plan_folds

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT_ROOT / "data" / "sample"
# The README's CPU command: `make kfold MODEL=tiny-bart DATA=data/sample K=3 ARGS="--demo ..."` (these ARGS).
README_MAKE_VARS = {"MODEL": "tiny-bart", "K": "3", "ARGS": "--demo max_eval_samples=20"}
README_ARGS = ["--track", "baseline", "--model", "tiny-bart", "--k", "3", *README_MAKE_VARS["ARGS"].split()]


def frame(n: int, topics: list[str] | None = None) -> pd.DataFrame:
    data = {"fname": [f"train_{i}" for i in range(n)], "dialogue": ["d"] * n, "summary": ["s"] * n}
    if topics is not None:
        data["topic"] = topics
    return pd.DataFrame(data)


# ---------------------------------------------------------------- fold splitting


@pytest.mark.parametrize("n, k", [(10, 2), (31, 5), (7, 7), (300, 3)])
def test_every_row_is_in_exactly_one_evaluation_fold(n: int, k: int) -> None:
    rows = frame(n)
    folds = assign_folds(n, k, seed=3)
    held_out = []
    for fold in range(k):
        train, evaluation = fold_split(rows, folds, fold)
        assert not set(train["fname"]) & set(evaluation["fname"])  # never trained and evaluated on at once
        assert set(train["fname"]) | set(evaluation["fname"]) == set(rows["fname"])
        held_out += list(evaluation["fname"])
    assert sorted(held_out) == sorted(rows["fname"])  # each row held out exactly once
    sizes = Counter(folds)
    assert set(sizes) == set(range(k)) and max(sizes.values()) - min(sizes.values()) <= 1


def test_folds_are_stratified_by_topic() -> None:
    topics = ["a"] * 12 + ["b"] * 7 + ["c"] * 5 + ["d"] * 1
    folds = assign_folds(len(topics), 3, seed=0, topics=topics)
    for topic in set(topics):
        per_fold = Counter(f for f, t in zip(folds, topics) if t == topic)
        counts = [per_fold.get(fold, 0) for fold in range(3)]
        assert max(counts) - min(counts) <= 1, (topic, counts)
    sizes = Counter(folds)
    assert max(sizes.values()) - min(sizes.values()) <= 1


def test_unstratified_folds_on_the_sample_can_be_unbalanced_by_topic() -> None:
    """The check above can fail: without topics, some topic of the sample is spread unevenly."""
    train = read_split(SAMPLE / "train.csv", "train")
    plain = assign_folds(len(train), 3, seed=0)
    spreads = []
    for topic in set(train["topic"]):
        per_fold = Counter(f for f, t in zip(plain, train["topic"]) if t == topic)
        spreads.append(max(per_fold.values()) - min(per_fold.get(k, 0) for k in range(3)))
    assert max(spreads) > 1
    stratified = assign_folds(len(train), 3, seed=0, topics=list(train["topic"]))
    for topic in set(train["topic"]):
        per_fold = Counter(f for f, t in zip(stratified, train["topic"]) if t == topic)
        assert sorted(per_fold.values()) == [6, 7, 7]  # 20 rows of each topic over 3 folds


def test_fold_assignment_is_seeded() -> None:
    topics = [str(i % 4) for i in range(40)]
    first = assign_folds(40, 5, seed=7, topics=topics)
    assert assign_folds(40, 5, seed=7, topics=topics) == first
    assert assign_folds(40, 5, seed=8, topics=topics) != first
    fnames = [f"f{i}" for i in range(40)]
    assert assignment_hash(fnames, first) == assignment_hash(fnames, list(first))
    assert assignment_hash(fnames, first) != assignment_hash(fnames, assign_folds(40, 5, seed=8, topics=topics))


def test_bad_fold_counts_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        assign_folds(10, 1, seed=0)
    with pytest.raises(ConfigError, match="only 3 training rows"):
        assign_folds(3, 5, seed=0)


def test_topics_are_used_only_when_every_row_has_one() -> None:
    assert stratification_topics(frame(3)) is None
    assert stratification_topics(frame(3, ["a", "", "b"])) is None
    assert stratification_topics(frame(3, ["a", "a", "b"])) == ["a", "a", "b"]


def test_include_dev_pools_train_and_dev() -> None:
    train, dev = frame(6, ["a"] * 6), frame(4, ["b"] * 4)
    dev["fname"] = [f"dev_{i}" for i in range(4)]
    pooled = pool_rows(train, dev)
    assert list(pooled["fname"]) == list(train["fname"]) + list(dev["fname"])
    assert list(pool_rows(train)["fname"]) == list(train["fname"])
    folds = assign_folds(len(pooled), 2, seed=0, topics=stratification_topics(pooled))
    assert {f for f, name in zip(folds, pooled["fname"]) if name.startswith("dev_")} == {0, 1}  # dev in both folds
    with pytest.raises(DataError, match="both train and dev"):
        pool_rows(train, train)
    with pytest.raises(DataError, match="columns"):
        pool_rows(train, dev.drop(columns=["topic"]))


# ---------------------------------------------------------------- the CLI


def run_kfold(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "kfold", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    return done


@pytest.mark.integration
def test_missing_test_file_exits_2(tmp_path: Path) -> None:
    data = write_data_dir(tmp_path / "data", sample_rows("train", 6), sample_rows("dev", 4))
    done = run_kfold([*README_ARGS, "--data", str(data), "--out", str(tmp_path / "runs")], cwd=tmp_path)
    assert done.returncode == 2 and "test.csv" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


@pytest.mark.integration
def test_unknown_ensemble_method_exits_2_before_training(tmp_path: Path) -> None:
    done = run_kfold([*README_ARGS, "--data", str(SAMPLE), "--out", str(tmp_path / "runs"), "--ensemble-method",
                      "nope"], cwd=tmp_path)
    assert done.returncode == 2 and "method='nope'" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def fold_dirs(kfold_dir: Path) -> list[Path]:
    return sorted(p for p in kfold_dir.iterdir() if p.is_dir() and p.name.startswith(f"{kfold_dir.name}-fold"))


def check_fold_run(fold_dir: Path, fold: int, folds: pd.DataFrame, data: Path, in_sample: bool) -> None:
    """A fold run: its data split, run.json done, predictions of dev, test and its held-out rows in order."""
    train = read_split(fold_dir / "data" / "train.csv", "train")
    held_out = read_split(fold_dir / "data" / "dev.csv", "dev")
    assert set(held_out["fname"]) == set(folds.loc[folds["fold"] == fold, "fname"])
    assert not set(train["fname"]) & set(held_out["fname"])
    info = json.loads((fold_dir / "run.json").read_text(encoding="utf-8"))
    assert info["done"] is True and info["kfold"]["fold"] == fold and info["fold"]["dev_in_sample"] is in_sample
    expected = {"dev": read_split(data / "dev.csv", "dev")["fname"], "test": read_split(data / "test.csv", "test")["fname"],
                "oof": held_out["fname"]}
    for split, fnames in expected.items():
        predictions, meta = read_predictions_with_metadata(fold_dir / f"preds_{split}.csv")
        assert list(predictions["fname"]) == list(fnames) and all(s.strip() for s in predictions["summary"])
        assert meta["split"] == split and meta["run_dir"] == str(fold_dir) and meta["dev_in_sample"] is in_sample


def printed_score(stdout: str, prefix: str) -> float:
    line = next(line for line in stdout.splitlines() if line.startswith(prefix))
    return float(line.rsplit(" ", 1)[1])


def makefile_kfold_args(data: Path, runs: Path) -> list[str]:
    """The arguments `make kfold` passes to `python -m kfold` with the README's variables (a dry run of make)."""
    variables = [f"{k}={v}" for k, v in {**README_MAKE_VARS, "DATA": str(data), "RUNS": str(runs)}.items()]
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-o", "setup", "-o", ".venv/.installed", "kfold",
                          *variables], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    command = shlex.split(dry.stdout.replace("\\\n", " "))
    assert command[:3] == [".venv/bin/python", "-m", "kfold"], command
    return command[3:]


@pytest.mark.integration
def test_readme_settings_are_what_make_kfold_runs(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    args = makefile_kfold_args(SAMPLE, tmp_path / "runs")
    assert args == [*README_ARGS[:4], "--data", str(SAMPLE), *README_ARGS[4:6], "--out",
                    str(tmp_path / "runs" / "kfold"), *README_ARGS[6:]]
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert f'make kfold MODEL=tiny-bart DATA=data/sample K=3 ARGS="{README_MAKE_VARS["ARGS"]}"' in readme


@pytest.mark.integration
def test_kfold_end_to_end_then_resume(tmp_path: Path) -> None:
    from ensemble.systems import discover_prediction_files

    args = (makefile_kfold_args(SAMPLE, tmp_path / "runs") if shutil.which("make")
            else [*README_ARGS, "--data", str(SAMPLE), "--out", str(tmp_path / "runs" / "kfold")])
    done = run_kfold(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    kfold_dir = tmp_path / "runs" / "kfold" / "baseline-tiny-bart-k3"
    folds = pd.read_csv(kfold_dir / "folds.csv", dtype={"fname": str})
    train = read_split(SAMPLE / "train.csv", "train")
    assert sorted(folds["fname"]) == sorted(train["fname"]) and set(folds["fold"]) == {1, 2, 3}
    runs = fold_dirs(kfold_dir)
    assert len(runs) == 3
    for fold, fold_dir in enumerate(runs, start=1):
        check_fold_run(fold_dir, fold, folds, SAMPLE, in_sample=False)

    info = json.loads((kfold_dir / "run.json").read_text(encoding="utf-8"))
    assert info["done"] and info["dev_in_sample"] is False and info["kfold"]["k"] == 3
    assert info["kfold"]["stratified_by_topic"] and len(info["kfold"]["fold_assignment_hash"]) == 12
    assert info["git_revision"] and info["seed"] == 42 and str(SAMPLE / "train.csv") in info["data"]
    ensemble_score = printed_score(done.stdout, "fold ensemble")
    assert ensemble_score == pytest.approx(info["ensemble"]["dev_score"], abs=0.01)
    dev = read_split(SAMPLE / "dev.csv", "dev")
    lead = compute_rouge([first_utterance(d) for d in dev["dialogue"]], list(dev["references"])).final
    assert ensemble_score > lead + 1, (ensemble_score, lead)  # the fold models learned (empty output falls back to lead)
    for split in ("dev", "test"):
        assert (kfold_dir / "ensemble" / f"preds_{split}.csv").is_file()
    submission = tmp_path / info["submission"]  # relative to the command's folder, like the tracks' submissions
    assert validate_submission(submission, SAMPLE / "test.csv") == 60
    ledger = read_ledger(tmp_path / "submissions")
    assert ledger["source_runs"].iloc[-1].split(";") == [str(p) for p in runs]
    # `make ensemble` / `python -m ensemble --runs KFOLD_DIR` finds exactly the fold runs
    found = discover_prediction_files(kfold_dir, exclude=[kfold_dir / "ensemble"])
    assert sorted({p.parent for p in found}) == runs

    # interrupt the last fold after its training: predictions and "done" gone; the rerun redoes only that fold
    before = {p: (p / "best" / "model.safetensors").stat().st_mtime_ns for p in runs}
    last = runs[2]
    for path in last.glob("preds_*"):
        path.unlink()
    last_info = json.loads((last / "run.json").read_text(encoding="utf-8"))
    (last / "run.json").write_text(json.dumps({**last_info, "done": False}), encoding="utf-8")
    again = run_kfold(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "fold 1/3: finished" in again.stdout and "fold 2/3: finished" in again.stdout
    assert "fold 3/3: training" in again.stdout and "fold 1/3: training" not in again.stdout
    # no model retrained: the track's train() returns a finished training's stored result
    assert {p: (p / "best" / "model.safetensors").stat().st_mtime_ns for p in runs} == before
    check_fold_run(last, 3, folds, SAMPLE, in_sample=False)
    assert len(read_ledger(tmp_path / "submissions")) == 2

    # a finished K-fold run has nothing left to do: no retraining, no second submission for the same result
    third = run_kfold(args, cwd=tmp_path)
    assert third.returncode == 0 and "already finished" in third.stdout, third.stderr[-3000:]
    assert len(read_ledger(tmp_path / "submissions")) == 2


@pytest.mark.integration
def test_include_dev_says_dev_is_in_sample(tmp_path: Path) -> None:
    data = write_data_dir(tmp_path / "data", sample_rows("train", 16), sample_rows("dev", 8), sample_rows("test", 6))
    args = ["--track", "baseline", "--model", "tiny-bart", "--k", "2", "--demo", "--include-dev", "--data", str(data),
            "--out", str(tmp_path / "runs"), "num_train_epochs=1", "generation_max_length=12"]
    done = run_kfold(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    kfold_dir = tmp_path / "runs" / "baseline-tiny-bart-k2-with-dev"
    folds = pd.read_csv(kfold_dir / "folds.csv", dtype={"fname": str})
    dev = read_split(data / "dev.csv", "dev")
    assert set(dev["fname"]) <= set(folds["fname"]) and len(folds) == 24  # dev rows are folded into training
    for fold, fold_dir in enumerate(fold_dirs(kfold_dir), start=1):
        check_fold_run(fold_dir, fold, folds, data, in_sample=True)
        assert set(dev["fname"]) & set(read_split(fold_dir / "data" / "train.csv", "train")["fname"])

    info = json.loads((kfold_dir / "run.json").read_text(encoding="utf-8"))
    assert info["dev_in_sample"] is True and info["kfold"]["include_dev"] is True
    assert all(f["dev_in_sample"] for f in info["folds"])
    ensemble_info = json.loads((kfold_dir / "ensemble" / "run.json").read_text(encoding="utf-8"))
    # nothing fitted on dev: MBR, or the one system left when the folds' predictions were identical
    assert ensemble_info["dev_in_sample"] is True and ensemble_info["method"] in ("mbr", "single")
    assert "warning: include_dev" in done.stdout and "IN-SAMPLE" in printed_line(done.stdout, "fold ensemble")
    assert "IN-SAMPLE" in (kfold_dir / "summary.md").read_text(encoding="utf-8")
    assert "IN-SAMPLE" in (kfold_dir / "ensemble" / "report" / "ensemble_report.md").read_text(encoding="utf-8")

    # the same folder with other settings is refused, not mixed into
    other = run_kfold([*args, "--seed", "1"], cwd=tmp_path)
    assert other.returncode == 2 and "other settings" in other.stderr, other.stderr[-2000:]


def printed_line(stdout: str, prefix: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(prefix))


@pytest.mark.parametrize("include_dev", [False, True])
def test_train_overlapping_dev_is_warned_once_unless_include_dev_says_so_already(tmp_path: Path, capsys,
                                                                                  include_dev: bool) -> None:
    dev = sample_rows("dev", 8)
    train = pd.concat([sample_rows("train", 16), dev.head(2)], ignore_index=True)  # two dev dialogues again in train
    data = write_data_dir(tmp_path / "data", train, dev, sample_rows("test", 6))
    plan_folds(KFoldSettings("baseline", "tiny-bart", data, tmp_path / "runs", k=2, include_dev=include_dev))
    warned = [line for line in capsys.readouterr().err.splitlines() if "identical dialogues" in line]
    assert warned == ([] if include_dev else [
        f"warning: {data / 'train.csv'}: 0 fnames [] and 2 identical dialogues (fnames in dev.csv: "
        f"[{dev['fname'][0]}, {dev['fname'][1]}]) also in {data / 'dev.csv'}; dev scores of a model trained on them "
        f"are in-sample: remove them from train"])
