"""What a track run submits, for both tracks, without training: fill-ins counted and gating the submission, one
submissions folder for every command, and no second submission when a finished run is resumed.

Training and generation are replaced by stand-ins (a model that writes nothing is simulated by empty summaries), so
these run in seconds. Run: `.venv/bin/python -m pytest -q tests/test_run_submissions.py`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from competition.harness.runs import TrainResult

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"


def fake_train(config, splits, run_dir, on_evaluate=None) -> TrainResult:
    (Path(run_dir) / "best").mkdir(exist_ok=True)
    return TrainResult(Path(run_dir) / "best", 0.0)


def summaries_writing(empty_every: int, text: str = "#Person1#이 인사한다."):
    """Summaries for dialogues: `text`, every `empty_every`-th one empty (1: all empty, 0: none)."""
    def summarise(dialogues) -> list[str]:
        return ["" if empty_every and i % empty_every == 0 else text for i in range(len(dialogues))]
    return summarise


@pytest.fixture
def baseline(monkeypatch):
    """`run(overrides, out, run_dir=None, submissions_dir=None)` of the baseline track, training stubbed."""
    import baselines.pipeline as pipeline
    from baselines.config import load_config

    state = {"summarise": summaries_writing(0)}
    monkeypatch.setattr(pipeline, "train", fake_train)
    monkeypatch.setattr(pipeline, "encoder_truncation_report", lambda *args: {})
    monkeypatch.setattr(pipeline, "predict", lambda checkpoint, dialogues, config, desc="": state["summarise"](dialogues))

    def run(overrides, out, run_dir=None, submissions_dir=None, empty_every=0, **text):
        state["summarise"] = summaries_writing(empty_every, **text)
        return pipeline.run(load_config("tiny-bart", overrides=overrides), SAMPLE_DIR, out, run_dir=run_dir,
                            submissions_dir=submissions_dir)
    return run


@pytest.fixture
def llm(monkeypatch):
    """The same for the LLM track: training, model loading and generation stubbed."""
    import llm.generate as generate
    import llm.pipeline as llm_run
    from llm.config import load_config

    state = {"summarise": summaries_writing(0)}
    monkeypatch.setattr(llm_run, "train", fake_train)
    monkeypatch.setattr(llm_run, "load_checkpoint", lambda checkpoint, config: (None, None, None, {}))

    def generate_summaries(model, tokenizer, style, dialogues, config, on_batch=None, desc="", prompt_ids=None):
        summaries = state["summarise"](dialogues)
        if on_batch is not None:
            on_batch(list(range(len(dialogues))), summaries)
        return summaries

    monkeypatch.setattr(generate, "generate_summaries", generate_summaries)

    def run(overrides, out, run_dir=None, submissions_dir=None, empty_every=0, **text):
        state["summarise"] = summaries_writing(empty_every, **text)
        return llm_run.run(load_config("tiny-llama", overrides=overrides), SAMPLE_DIR, out, run_dir=run_dir,
                           submissions_dir=submissions_dir)
    return run


@pytest.fixture(params=["baseline", "llm"])
def track_run(request):
    return request.getfixturevalue(request.param)


def submissions_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.csv") if p.name != "ledger.csv") if folder.is_dir() else []


def test_a_model_that_writes_nothing_is_counted_said_loudly_and_not_submitted(track_run, tmp_path, capsys) -> None:
    run_dir = track_run({}, tmp_path / "runs", submissions_dir=tmp_path / "subs", empty_every=1)
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert info["fill_ins"]["dev"] == {"rows": 60, "filled": 60, "share": 1.0}
    assert info["fill_ins"]["test"]["filled"] == 60
    assert info["submission"] is None if "submission" in info else True
    assert "max_fill_in_share=0.05" in info["submission_blocked"]
    assert submissions_in(tmp_path / "subs") == []
    assert "NOT SUBMITTING" in capsys.readouterr().err
    report = (run_dir / "report" / "rouge_report.md").read_text(encoding="utf-8")
    assert "fill-ins (empty summaries replaced by the dialogue's first utterance): dev 60 of 60 (100.0%)" in report


def test_fill_ins_under_the_threshold_or_allowed_still_submit(track_run, tmp_path, capsys) -> None:
    few = track_run({}, tmp_path / "runs", submissions_dir=tmp_path / "subs", empty_every=30)  # 2 of 60 = 3.3%
    assert json.loads((few / "run.json").read_text())["fill_ins"]["dev"]["filled"] == 2
    assert len(submissions_in(tmp_path / "subs")) == 1
    track_run({"submit_despite_fill_ins": True}, tmp_path / "runs", submissions_dir=tmp_path / "subs", empty_every=1)
    assert len(submissions_in(tmp_path / "subs")) == 2
    assert "submitting anyway" in capsys.readouterr().err


def test_a_run_that_fails_to_submit_keeps_what_it_measured(track_run, tmp_path) -> None:
    """The validator refuses a summary with a leftover model token; the stages timed before stay in run.json."""
    from competition.rules.errors import DataError

    with pytest.raises(DataError, match="leftover model tokens"):
        track_run({}, tmp_path / "runs", submissions_dir=tmp_path / "subs", text="#Person1#이 <unk> 인사한다.")
    (run_dir,) = (tmp_path / "runs").iterdir()
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert {"train", "predict_dev", "predict_test"} <= set(info["stage_seconds"]) and "finished" not in info
    assert "training_speed" in info and submissions_in(tmp_path / "subs") == []


def test_a_finished_run_resumed_does_not_submit_again(track_run, tmp_path, capsys) -> None:
    run_dir = track_run({}, tmp_path / "runs", submissions_dir=tmp_path / "subs")
    (first,) = submissions_in(tmp_path / "subs")
    assert track_run({}, tmp_path / "runs", run_dir=run_dir, submissions_dir=tmp_path / "subs") == run_dir
    assert submissions_in(tmp_path / "subs") == [first]
    assert "already submitted" in capsys.readouterr().out
    assert Path(json.loads((run_dir / "run.json").read_text())["submission"]) == first


def test_the_submissions_variable_decides_where_runs_submit(track_run, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUBMISSIONS", str(tmp_path / "elsewhere"))
    track_run({}, tmp_path / "runs")
    assert len(submissions_in(tmp_path / "elsewhere")) == 1
    assert not (tmp_path / "submissions").exists()


@pytest.mark.parametrize("package", ["baselines", "llm"])
def test_track_clis_take_a_submissions_folder(package, baseline, llm, tmp_path) -> None:
    import importlib

    main = importlib.import_module(f"{package}.run").main
    model = "tiny-bart" if package == "baselines" else "tiny-llama"
    assert main(["--model", model, "--data", str(SAMPLE_DIR), "--out", str(tmp_path / "runs"),
                 "--submissions", str(tmp_path / "subs")]) == 0
    assert len(submissions_in(tmp_path / "subs")) == 1


def test_submit_cli_uses_the_submissions_variable(tmp_path, monkeypatch) -> None:
    from competition.submit import main

    monkeypatch.setenv("SUBMISSIONS", str(tmp_path / "subs"))
    monkeypatch.chdir(tmp_path)
    assert main(["--pred", str(SAMPLE_DIR / "sample_submission.csv"), "--test", str(SAMPLE_DIR / "test.csv")]) == 0
    assert len(submissions_in(tmp_path / "subs")) == 1 and not (tmp_path / "submissions").exists()


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["baseline", "llm", "submit", "demo-core", "demo-baseline", "demo-llm",
                                    "demo-ensemble"])
def test_every_make_target_that_submits_passes_the_one_setting(target) -> None:
    """`make X RUNS=/r SUBMISSIONS=/s`: every command that can submit is told /s, none falls back to submissions/."""
    dry = subprocess.run(["make", "-n", target, "RUNS=/r", "SUBMISSIONS=/s"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, check=True).stdout
    commands = [line for line in dry.replace("\\\n", " ").splitlines()
                if "baselines.run" in line or "llm.run" in line or "competition.submit" in line]
    assert commands, dry
    assert all("--submissions /s" in line for line in commands), commands
