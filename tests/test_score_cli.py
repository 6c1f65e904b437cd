"""Tests for the scoring CLI `python -m competition.score`, run as a real subprocess.

Run: .venv/bin/python -m pytest tests/test_score_cli.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from competition.rules.metric import compute_rouge

pytestmark = pytest.mark.integration  # every test runs the CLI as a process

REPO = Path(__file__).resolve().parents[1]

GOLD = pd.DataFrame({
    "fname": ["dev_0", "dev_1", "dev_2"],
    "dialogue": ["#Person1#: 안녕하세요.\n#Person2#: 숨쉬기가 힘들어요.",
                 "#Person1#: 운동하러 가자.\n#Person2#: 좋아.",
                 "#Person1#: 환불 되나요?\n#Person2#: 영수증 있으세요?"],
    "summary": ["#Person2#는 숨쉬기 어려워합니다.", "두 사람은 운동하러 갑니다.", "#Person1#은 환불을 문의합니다."],
    "topic": ["의사 상담", "운동", "환불"],
})
PREDICTIONS = ["#Person2#는 숨쉬기가 힘듭니다.", "두 사람은 운동을 합니다.", "환불 문의"]


def run_score(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "competition.score", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def write_files(tmp_path: Path, fnames: list[str], predictions: list[str], gold: pd.DataFrame = GOLD) -> tuple[str, str]:
    pred_path, gold_path = tmp_path / "pred.csv", tmp_path / "gold.csv"
    pd.DataFrame({"fname": fnames, "summary": predictions}).to_csv(pred_path)  # with the index column, like submissions
    gold.to_csv(gold_path, index=False)
    return str(pred_path), str(gold_path)


def test_json_output_is_exactly_one_object_with_four_keys(tmp_path):
    pred, gold = write_files(tmp_path, list(GOLD["fname"]), PREDICTIONS)
    done = run_score("--pred", pred, "--gold", gold, "--json")
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)  # fails if anything else is on stdout
    assert set(scores) == {"rouge1", "rouge2", "rougeL", "final"}
    expected = compute_rouge(PREDICTIONS, [[s] for s in GOLD["summary"]]).as_dict()
    assert scores == pytest.approx(expected)


def test_plain_output_prints_four_scores_and_reorders_by_gold_fname(tmp_path):
    # Predictions in a different row order must be aligned to the gold fnames.
    pred, gold = write_files(tmp_path, ["dev_2", "dev_0", "dev_1"], [PREDICTIONS[2], PREDICTIONS[0], PREDICTIONS[1]])
    done = run_score("--pred", pred, "--gold", gold, "--analyzer", "whitespace")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ") for line in done.stdout.strip().splitlines())
    assert list(lines) == ["rouge1", "rouge2", "rougeL", "final"]
    expected = compute_rouge(PREDICTIONS, [[s] for s in GOLD["summary"]], analyzer="whitespace").final
    assert float(lines["final"]) == pytest.approx(expected, abs=1e-4)


def test_multi_reference_gold_is_averaged(tmp_path):
    gold = GOLD.drop(columns="summary").assign(summary1=GOLD["summary"], summary2=["가", "나", "다"],
                                               summary3=GOLD["summary"])
    pred, gold_path = write_files(tmp_path, list(GOLD["fname"]), PREDICTIONS, gold)
    done = run_score("--pred", pred, "--gold", gold_path, "--json")
    assert done.returncode == 0, done.stderr
    references = [list(r) for r in gold[["summary1", "summary2", "summary3"]].itertuples(index=False)]
    assert json.loads(done.stdout)["final"] == pytest.approx(compute_rouge(PREDICTIONS, references).final)


def test_missing_fname_exits_2_and_names_it(tmp_path):
    pred, gold = write_files(tmp_path, ["dev_0", "dev_1"], PREDICTIONS[:2])
    done = run_score("--pred", pred, "--gold", gold, "--json")
    assert done.returncode == 2
    assert "dev_2" in done.stderr and "missing" in done.stderr
    assert done.stdout == ""


def test_extra_fname_exits_2_and_names_it(tmp_path):
    pred, gold = write_files(tmp_path, list(GOLD["fname"]) + ["dev_99"], PREDICTIONS + ["추가"])
    done = run_score("--pred", pred, "--gold", gold)
    assert done.returncode == 2
    assert "dev_99" in done.stderr and "extra" in done.stderr


def test_missing_file_exits_2(tmp_path):
    _, gold = write_files(tmp_path, list(GOLD["fname"]), PREDICTIONS)
    missing = tmp_path / "nope.csv"
    done = run_score("--pred", str(missing), "--gold", gold)
    assert done.returncode == 2
    assert str(missing) in done.stderr and "Traceback" not in done.stderr


def test_report_dir_gets_markdown_json_and_plots(tmp_path):
    pred, gold = write_files(tmp_path, list(GOLD["fname"]), PREDICTIONS)
    report_dir = tmp_path / "report"
    done = run_score("--pred", pred, "--gold", gold, "--json", "--report", str(report_dir))
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)
    report = json.loads((report_dir / "rouge_report.json").read_text(encoding="utf-8"))
    assert report["scores"] == pytest.approx(scores)
    assert "Score per topic" in (report_dir / "rouge_report.md").read_text(encoding="utf-8")
    assert (report_dir / "rouge_by_length.png").read_bytes().startswith(b"\x89PNG")
    assert not (report_dir / "rouge_by_topic.png").exists()  # 3 one-row topics: a per-topic plot would be noise
