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

import pandas as pd
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


def load_runner():
    import importlib.util

    spec = importlib.util.spec_from_file_location("full_size_runs", SCRIPT)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner


def test_memory_caps_run_each_preset_once_per_cap_and_tabulate_fits_and_fitted_settings(tmp_path, monkeypatch):
    """--memory-cap 23.5,46 under --smoke: the checkpoint is built once, the track command runs once per cap (the cap
    noted as ignored on the CPU), and the cap table shows what each run.json recorded, or the failing stage."""
    runner = load_runner()
    models = tmp_path / "models"
    (models / "kobart").mkdir(parents=True)
    (models / "kobart" / "config.json").write_text("{}")
    builds, commands = [], []
    monkeypatch.setattr(runner, "checkpoint_for", lambda preset, *a: builds.append(preset) or (tmp_path / "ck", 1.5))

    def fake_cli(module, args, log_path, smoke):  # the first cap finishes, the second fails at prediction
        commands.append((module, log_path.parent.name))
        run_dir = Path(args[args.index("--out") + 1]) / f"run-{len(commands)}"
        run_dir.mkdir(parents=True)
        info = {"stage_seconds": {"train": 3.0}, "training_speed": {"train_tokens": 1200, "real_tokens_per_s": 400.0},
                "global_step": 4, "gpu": {"name": "fake card", "free_gib": 23.5}, "fitted": {"batch_tokens": 4096},
                "oom_fallbacks": [{"stage": "training", "step": 2, "split": 2}], "submission_blocked": False}
        (run_dir / "run.json").write_text(json.dumps(info))
        (run_dir / "train_result.json").write_text("{}")
        if len(commands) == 2:
            log_path.write_text("error: out of memory in generation (batch preds_dev) with one row at a time\n")
            return 2, 5.0
        (run_dir / "preds_dev.csv").write_text("")
        fnames = pd.read_csv(Path(args[args.index("--data") + 1]) / "test.csv")["fname"]  # validated as a submission
        pd.DataFrame({"fname": fnames, "summary": "요약."}).to_csv(run_dir / "preds_test.csv", index=False)
        return 0, 9.0

    monkeypatch.setattr(runner, "run_cli", fake_cli)
    out = tmp_path / "caps.json"
    code = runner.main(["--smoke", "--models", str(models), "--presets", "kobart", "--data", str(SAMPLE_DIR),
                        "--work", str(tmp_path / "work"), "--out", str(out), "--memory-cap", "23.5,46"])
    assert code == 1  # one cap failed
    assert builds == ["kobart"] and commands == [("baselines.run", "cap-23.5"), ("baselines.run", "cap-46")]
    finished, failed = json.loads(out.read_text(encoding="utf-8"))["presets"]
    assert finished["memory_cap_gib"] == 23.5 and finished["memory"] == {"ignored": "the CPU (--smoke)"}
    assert finished["tokens_per_step"] == 300.0 and finished["fitted"]["fitted"] == {"batch_tokens": 4096}
    assert finished["submission_rows"] == 4 and failed["failed_stage"] == "predict_dev" and failed["error_line"].startswith("error: out of memory")
    table = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "| kobart | 23.5 (ignored: CPU) | finished | " in table and '"batch_tokens": 4096' in table
    assert "| kobart | 46 (ignored: CPU) | failed in predict_dev: error: out of memory" in table
    assert "| 400.0 | - | - | - | 4 | 300.0 | training x2 |" in table


def test_a_bad_memory_cap_is_a_clear_error(tmp_path):
    done = run_script(["--smoke", "--models", str(tmp_path), "--presets", "kobart", "--work", str(tmp_path),
                       "--memory-cap", "24,big"])
    assert done.returncode == 2 and "--memory-cap '24,big'; expected GiB numbers" in done.stderr


def test_the_memory_holder_leaves_the_asked_gibibytes_free():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hold", PROJECT_ROOT / "benchmarks" / "hold_gpu_memory.py")
    hold = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hold)
    gib = 2**30
    assert hold.bytes_to_hold(80 * gib, 23.5) == int(56.5 * gib) and hold.bytes_to_hold(10 * gib, 23.5) == 0
    sizes = hold.chunk_sizes(int(2.5 * gib))
    assert sizes == [gib, gib, gib // 2] and sum(hold.chunk_sizes(gib + 3 * 2**20)) == gib + 2 * 2**20
