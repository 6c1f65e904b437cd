"""The full-size GPU runner (benchmarks/full_size_runs.py) in --smoke mode: a tiny build of a real preset folder,
through `llm.run` end to end on the CPU, so the script cannot rot before it meets a GPU.

Run: `.venv/bin/python -m pytest -q tests/test_full_size_runs.py` (about a minute; the run test skips without
`../shared/models.tar.xz`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PROJECT_ROOT, REAL_DATA_DIR, SAMPLE_DIR
from helpers.real_models import models_dir

pytestmark = pytest.mark.integration  # every test starts the runner script or a track command

SCRIPT = PROJECT_ROOT / "benchmarks" / "full_size_runs.py"


def run_script(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=900)


def test_smoke_run_of_a_real_llm_preset_records_stages_speed_and_a_valid_submission(tmp_path):
    data = REAL_DATA_DIR if (REAL_DATA_DIR / "dev.csv").is_file() else SAMPLE_DIR
    out = tmp_path / "full.json"
    done = run_script(["--smoke", "--models", str(models_dir()), "--presets", "llama3.2-ko-3b", "--data", str(data),
                       "--work", str(tmp_path / "work"), "--out", str(out), "--set", "llama3.2-ko-3b:lora_r=4",
                       "--set", "kobart:lora_r=8"])
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    (result,) = report["presets"]
    assert report["smoke"] and result["track"] == "llm" and "error" not in result
    assert list(result["stage_seconds"]) == ["train", "load_for_prediction", "predict_dev", "predict_test",
                                             "report_and_submit"]
    speed = result["training_speed"]
    assert speed["train_tokens"] > 8 * 100 and speed["real_tokens_per_s"] > 0  # 8 real prompts, one epoch
    assert result["peak_gpu_memory_gib"] is None  # the CPU
    assert result["submission_rows"] == 4 and result["fill_ins"]["test"]["rows"] == 4  # preds_test.csv, validated
    assert result["random_weights"] and result["submission"] is None  # random weights never submit
    config = json.loads((Path(result["run_dir"]) / "run.json").read_text(encoding="utf-8"))["config"]
    assert config["model_path"] == result["checkpoint"] and config["max_train_samples"] == 8
    assert config["lora_r"] == 4  # the preset's --set, not another preset's
    assert not Path(result["checkpoint"]).exists()  # random weights deleted after the run
    assert "| llama3.2-ko-3b |" in out.with_suffix(".md").read_text(encoding="utf-8")
    for name in ("train.csv", "dev.csv", "test.csv"):
        assert (tmp_path / "work" / "data" / name).is_file()


def test_a_models_folder_without_the_preset_is_a_clear_error(tmp_path):
    done = run_script(["--smoke", "--models", str(tmp_path), "--presets", "kobart", "--work", str(tmp_path / "w")])
    assert done.returncode == 2 and f"{tmp_path / 'kobart'}: no config.json" in done.stderr
    unknown = run_script(["--smoke", "--models", str(tmp_path), "--presets", "no-such", "--work", str(tmp_path)])
    assert unknown.returncode == 2 and "no-such" in unknown.stderr


def test_track_commands_see_the_project_and_the_callers_python_path(tmp_path, monkeypatch):
    """An offline GPU machine's wheels live on PYTHONPATH (offline_gpu.sh): the track's command must still see them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("full_size_runs", SCRIPT)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    wheels = tmp_path / "site"
    wheels.mkdir()
    (wheels / "probe_module.py").write_text("import competition.rules.files\nprint('probe saw', competition.rules.files.__name__)\n")
    monkeypatch.setenv("PYTHONPATH", str(wheels))
    log = tmp_path / "run.log"
    code, _ = runner.run_cli("probe_module", [], log, smoke=True)
    assert code == 0, log.read_text()
    assert "probe saw competition.rules.files" in log.read_text()
