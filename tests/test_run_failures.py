"""How a track run ends when something stops it: a failure before training leaves no run folder, Ctrl-C says how
to resume (exit 130), an unreachable hub and a full disk are one `error:` line (exit 2), a random-weight checkpoint
never submits. Both tracks, through their CLIs.

Run: `.venv/bin/python -m pytest -q tests/test_run_failures.py` (the unit tests in seconds; `-m integration` trains
tiny models).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from helpers.data import sample_rows, write_data_dir

from competition.rules.errors import ConfigError

TRACKS = {"baseline": ("baselines", "tiny-bart"), "llm": ("llm", "tiny-llama")}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_data_dir(tmp_path / "data", sample_rows("train", 8), sample_rows("dev", 4), sample_rows("test", 3))


def run_track(track: str, data: Path, out: Path, *more: str) -> int:
    package, model = TRACKS[track]
    main = importlib.import_module(f"{package}.run").main
    return main(["--model", model, "--data", str(data), "--out", str(out), "--submissions", str(out.parent / "subs"),
                 "--demo", *more])


def run_folders(out: Path) -> list[Path]:
    return sorted(out.glob("*")) if out.is_dir() else []


@pytest.mark.parametrize("track", TRACKS)
@pytest.mark.parametrize("failure", [OSError(13, "Permission denied", "model/config.json"),
                                     ConfigError("model_path x: not a folder with config.json")],
                         ids=["unreadable file", "bad value"])
def test_a_run_that_fails_before_training_leaves_no_run_folder(track: str, failure: Exception, data: Path,
                                                               tmp_path: Path, monkeypatch, capsys) -> None:
    package, _ = TRACKS[track]

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(f"{package}.pipeline.train", fail)
    code = run_track(track, data, tmp_path / "runs")
    stderr = capsys.readouterr().err
    assert code == 2 and "Traceback" not in stderr, stderr
    assert run_folders(tmp_path / "runs") == []


@pytest.mark.parametrize("track", TRACKS)
def test_a_resumed_run_that_fails_keeps_its_folder(track: str, data: Path, tmp_path: Path, monkeypatch,
                                                   capsys) -> None:
    package, _ = TRACKS[track]
    monkeypatch.setattr(f"{package}.pipeline.train", lambda *a, **k: (_ for _ in ()).throw(ConfigError("bad")))
    assert run_track(track, data, tmp_path / "runs") == 2
    from competition.harness.runs import open_run

    config = importlib.import_module(f"{package}.config").load_config(TRACKS[track][1], demo=True)
    run_dir = open_run(tmp_path / "runs", track, config, [])
    assert run_track(track, data, tmp_path / "runs", "--resume", str(run_dir)) == 2
    assert run_dir.is_dir() and (run_dir / "config.yaml").is_file()


@pytest.mark.parametrize("track", TRACKS)
@pytest.mark.parametrize("wrote_checkpoint", [True, False], ids=["during training", "before training"])
def test_ctrl_c_says_interrupted_and_how_to_resume_with_exit_130(track: str, wrote_checkpoint: bool, data: Path,
                                                                 tmp_path: Path, monkeypatch, capsys) -> None:
    package, _ = TRACKS[track]

    def interrupted(config, splits, run_dir, *args, **kwargs):
        if wrote_checkpoint:
            (Path(run_dir) / "checkpoints" / "checkpoint-1").mkdir(parents=True)
            (Path(run_dir) / "checkpoints" / "checkpoint-1" / "COMPLETE").write_text("step 1\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(f"{package}.pipeline.train", interrupted)
    code = run_track(track, data, tmp_path / "runs")
    stderr = capsys.readouterr().err
    assert code == 130 and "Traceback" not in stderr, stderr
    if wrote_checkpoint:
        (run_dir,) = run_folders(tmp_path / "runs")
        assert stderr.strip().splitlines()[-1] == f"interrupted; resume with make {track} RESUME={run_dir}"
    else:
        assert run_folders(tmp_path / "runs") == []
        assert stderr.strip().splitlines()[-1] == "interrupted"


@pytest.mark.integration
def test_sigint_to_a_training_baseline_run_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """A real Ctrl-C (SIGINT) once the first checkpoint is complete: no traceback, the resume command."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import PROJECT_ROOT

    data = write_data_dir(tmp_path / "data", sample_rows("train", 16), sample_rows("dev", 4), sample_rows("test", 3))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "baselines.run", "--model", "tiny-bart", "--data", str(data),
                                "--out", str(tmp_path / "runs"), "--demo", "num_train_epochs=200",
                                "early_stopping_patience=200", "generation_max_length=8"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "runs").glob("*/checkpoints/checkpoint-*/COMPLETE")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    (run_dir,) = (tmp_path / "runs").glob("baseline-tiny-bart-*")
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    said = f"interrupted; resume with make baseline RESUME={run_dir}"
    assert any(line.endswith(said) for line in stderr.splitlines()), stderr[-3000:]  # after a cut progress bar


@pytest.mark.parametrize("error", [
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })',
    "[enforce fail at inline_container.cc:672] . unexpected pos 8689664 vs 8689552"])
def test_a_librarys_full_disk_error_becomes_enospc_naming_the_checkpoint_cut_short(error: str, tmp_path: Path) -> None:
    from safetensors import SafetensorError

    from competition.modeling.checkpoints import disk_full_as_os_error

    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "COMPLETE").write_text("step 1\n")
    (tmp_path / "checkpoint-2").mkdir()  # being saved
    kind = SafetensorError if "serializing" in error else RuntimeError
    with pytest.raises(OSError) as raised, disk_full_as_os_error(tmp_path):
        raise kind(error)
    assert raised.value.filename == str(tmp_path / "checkpoint-2") and raised.value.strerror == "No space left on device"
    with pytest.raises(RuntimeError, match="CUDA out of memory"), disk_full_as_os_error(tmp_path):
        raise RuntimeError("CUDA out of memory")  # not a disk error: as it was


@pytest.fixture
def hub_unreachable(monkeypatch):
    """Online mode with a hub that cannot be reached (the tests themselves never reach it)."""
    import huggingface_hub
    import huggingface_hub.constants

    calls = []

    def model_info(self, repo_id, **kwargs):
        calls.append(repo_id)
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    return calls


@pytest.mark.parametrize(("package", "model", "hub_id"), [("baselines", "kobart", "digit82/kobart-summarization"),
                                                         ("llm", "qwen3-14b", "Qwen/Qwen3-14B")])
def test_an_unreachable_hub_is_one_line_naming_the_model_and_the_way_out(package: str, model: str, hub_id: str,
                                                                        hub_unreachable, data: Path, tmp_path: Path,
                                                                        capsys) -> None:
    main = importlib.import_module(f"{package}.run").main
    code = main(["--model", model, "--data", str(data), "--out", str(tmp_path / "runs")])
    stderr = capsys.readouterr().err
    assert code == 2 and "Traceback" not in stderr, stderr
    (error,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert f"cannot reach the Hugging Face hub for '{hub_id}' (preset {model}" in error, error
    assert "pass model_path=DIR" in error and "HF_HUB_OFFLINE=1" in error, error
    assert hub_unreachable == [hub_id]  # asked once
    assert run_folders(tmp_path / "runs") == []


def test_the_truncation_command_names_its_own_way_out(hub_unreachable, data: Path, tmp_path: Path, capsys) -> None:
    from competition.truncation import main

    assert main(["--model", "qwen3-14b", "--data", str(data), "--out", str(tmp_path / "t")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'Qwen/Qwen3-14B'" in error and "pass --tokenizer PATH" in error, error


def test_a_hub_that_answers_or_offline_mode_is_not_refused(monkeypatch) -> None:
    import huggingface_hub
    import huggingface_hub.constants
    from huggingface_hub.errors import HfHubHTTPError

    from competition.modeling.loading import check_hub

    class Gated(HfHubHTTPError):
        def __init__(self) -> None:
            Exception.__init__(self, "401 gated")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo_id, **kw: (_ for _ in ()).throw(
        Gated()))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    check_hub("org/gated", "x")  # the hub answered: the load says what is wrong
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda *a, **k: pytest.fail("asked the hub offline"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    check_hub("org/model", "x")


def test_the_ensembler_skips_a_run_of_random_weights_with_a_note(tmp_path: Path, capsys) -> None:
    import json

    from ensemble.systems import discover_prediction_files

    for name, extra in (("real", {}), ("random", {"random_weights": True})):
        for split in ("dev", "test"):
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / f"preds_{split}.csv").write_text("fname,summary\nx,y\n", encoding="utf-8")
            (tmp_path / name / f"preds_{split}.meta.json").write_text(json.dumps({"split": split, **extra}))
    assert discover_prediction_files(tmp_path) == [tmp_path / "real" / "preds_dev.csv",
                                                   tmp_path / "real" / "preds_test.csv"]
    assert f"note: skipping {tmp_path / 'random'} (a run of random weights" in capsys.readouterr().out


@pytest.mark.integration
def test_a_run_of_a_random_weight_build_never_submits_and_is_marked(data: Path, tmp_path: Path, capsys) -> None:
    """Even with submit_despite_fill_ins=true: run.json, the report and the predictions' sidecars say why."""
    import json

    from competition.build_checkpoint import build_checkpoint
    from competition.harness.presets import get_preset
    from competition.modeling.tiny import ensure_tiny_checkpoint
    from competition.rules.predictions import read_predictions_with_metadata

    build = build_checkpoint(ensure_tiny_checkpoint(get_preset("tiny-bart")), tmp_path / "random-build")
    code = run_track("baseline", data, tmp_path / "runs", "num_train_epochs=1", f"model_path={build}",
                     "submit_despite_fill_ins=true", "generation_max_length=8")
    stderr = capsys.readouterr().err
    assert code == 0, stderr[-3000:]
    (run_dir,) = run_folders(tmp_path / "runs")
    assert f"model_path {build} holds random weights" in stderr and "NOT SUBMITTING" in stderr
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert info["random_weights"] is True and info["submission"] is None and "random weights" in info[
        "submission_blocked"]
    assert info["random_checkpoint"]["source"] == str(ensure_tiny_checkpoint(get_preset("tiny-bart")))
    assert "random weights" in (run_dir / "report" / "rouge_report.md").read_text(encoding="utf-8")
    assert read_predictions_with_metadata(run_dir / "preds_test.csv")[1]["random_weights"] is True
    assert not (tmp_path / "subs").exists()
