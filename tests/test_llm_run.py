"""Tests for the LLM track CLI and pipeline (`python -m llm.run`), its configs and the benchmark's smoke mode.

Run: .venv/bin/python -m pytest tests/test_llm_run.py -q     (integration ones: -m integration; `make test` runs them)
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from competition.harness.config import load_yaml
from competition.harness.presets import PRESETS, preset_names
from competition.rules.errors import ConfigError
from competition.rules.submission import validate_submission
from llm.config import SETTINGS, LLMConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llm.run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                                "PYTHONPATH": str(REPO)})


@pytest.mark.integration
def test_unknown_model_exits_2_and_lists_every_llm_preset(tmp_path):
    result = run_cli("--model", "no-such-model", "--data", str(tmp_path), "--out", str(tmp_path))
    assert result.returncode == 2
    for name in preset_names("llm"):
        assert name in result.stderr


def test_every_llm_preset_ships_a_yaml_that_loads():
    for preset in (p for p in PRESETS if p.track == "llm"):
        path = SETTINGS.shipped_yaml(preset.name)
        text = path.read_text(encoding="utf-8")
        assert f"python -m llm.run --model {preset.name}" in text.splitlines()[1]
        assert set(load_yaml(path)) <= set(LLMConfig.__dataclass_fields__)
        assert load_config(preset.name, path).preset == preset.name


def test_config_layers_in_order_and_unknown_keys_rejected(tmp_path):
    assert load_config("llama3.2-ko-3b").quantization == "nf4"
    assert load_config("tiny-llama").quantization == "none"  # preset layer
    assert load_config("llama3.2-ko-3b", demo=True).quantization == "none"  # demo layer
    assert load_config("tiny-llama").max_eval_samples == 16  # the preset's shipped YAML
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("learning_rate: 0.001\nnum_train_epochs: 5\n", encoding="utf-8")
    config = load_config("tiny-llama", yaml_file, {"num_train_epochs": 7}, demo=True)
    assert (config.learning_rate, config.num_train_epochs) == (0.001, 7)
    with pytest.raises(ConfigError, match="lr"):
        load_config("tiny-llama", overrides={"lr": 1})
    with pytest.raises(ConfigError, match="batching"):
        load_config("tiny-llama", overrides={"batching": "nope"})


@pytest.mark.integration
def test_cli_pipeline_end_to_end_then_resume(tmp_path, sample_dir):
    """LoRA on tiny-llama through the CLI: run folder, merged export, predictions, report, valid submission;
    rerun with --resume finishes without retraining, regenerating or submitting again."""
    data = tmp_path / "data"
    data.mkdir()
    for split, rows in (("train", 16), ("dev", 6), ("test", 6)):
        pd.read_csv(sample_dir / f"{split}.csv", dtype=str, keep_default_na=False).head(rows).to_csv(
            data / f"{split}.csv", index=False)
    # one epoch of tiny-llama writes empty summaries (all filled in by the first utterance): the run would refuse
    # to submit them, so this test, which is about the pipeline and resume, asks it to submit anyway
    args = ["--model", "tiny-llama", "--data", str(data), "--out", str(tmp_path / "runs"), "--demo",
            "num_train_epochs=1", "max_eval_samples=3", "max_new_tokens=12", "predict_with=merged",
            "submit_despite_fill_ins=true"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    for name in ("run.json", "config.yaml", "best/adapter_model.safetensors", "best/prompt_style.json",
                 "merged/model.safetensors", "preds_dev.csv", "preds_dev.meta.json", "preds_test.csv",
                 "report/rouge_report.json", "summary.json", "train_result.json"):
        assert (run_dir / name).is_file(), name
    meta = json.loads((run_dir / "preds_test.meta.json").read_text(encoding="utf-8"))
    assert meta["preset"] == "tiny-llama" and meta["split"] == "test" and meta["run_dir"] == str(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert list(info["stage_seconds"]) == ["train", "export_merged", "load_for_prediction", "predict_dev",
                                           "predict_test", "report_and_submit"]
    assert info["training_speed"]["train_tokens"] > 16 * 10 and "peak_gpu_memory_gib" in info
    fill_ins = summary["fill_ins"]["test"]
    assert fill_ins["rows"] == 6
    if fill_ins["share"] > 0.05:
        assert "submitting anyway" in result.stderr
    assert validate_submission(summary["submission"] if Path(summary["submission"]).is_absolute()
                               else tmp_path / summary["submission"], data / "test.csv") == 6
    before = (run_dir / "preds_test.csv").stat().st_mtime_ns
    resumed = run_cli(*args, "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "training already finished" in resumed.stderr
    assert (run_dir / "preds_test.csv").stat().st_mtime_ns == before
    assert len(list((tmp_path / "submissions").glob("*_llm-tiny-llama-*.csv"))) == 1  # a finished run submits once
    assert "already submitted" in resumed.stdout


def run_benchmark(script: str) -> dict:
    result = subprocess.run([sys.executable, f"benchmarks/{script}", "--smoke"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{\n"):])  # after the Trainer's own log lines


@pytest.mark.integration
def test_training_benchmark_smoke_mode_runs_and_reports():
    report = run_benchmark("bench_llm_train.py")
    for run in ("packed_4seq", "grouped_4seq", "padded_4seq", "padded_800tok"):
        assert report["training"][run]["real_tokens_per_s"] > 0
    assert report["training"]["padded_4seq"]["padding_share"] > report["training"]["packed_4seq"]["padding_share"] == 0
    assert report["training"]["padded_800tok"]["largest_step_tokens"] <= 800
    assert report["targets"]["train_real_tokens_per_s_shipped_min"] == 25_000
    assert report["bounds"]["train_real_tokens_per_s"] > report["bounds"]["train_real_tokens_per_s_checkpointing"] > 0
    assert report["training"]["padded_4seq"]["bound_over_measured"] > 0


@pytest.mark.integration
def test_generation_benchmark_smoke_mode_runs_and_reports():
    report = run_benchmark("bench_llm_generate.py")
    assert set(report["generation"]) >= {"fast_batch_4", "fast_batch_8", "generate_batch_8"}
    assert report["generation"]["generate_batch_8"]["same_summary_as_fast"] == 1.0  # fp32 on CPU: identical
    assert report["generation"]["generate_batch_8"]["shared_prefix_as_fast"] == 1.0
    assert report["bounds"]["generate_seconds_batch_8"] > 0
    assert report["generation"]["fast_compiled_batch_8"]["same_summary_as_fast"] == 1.0
    assert report["generation"]["fast_batch_8_budget_400"]["same_summary_as_fast"] == 1.0  # other batches, same text
    assert report["generation_verdict"]["fastest"] in report["generation"]


def test_benchmarks_time_the_shipped_3b_settings():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_llm_generate
    import bench_llm_train

    shipped = load_config("llama3.2-ko-3b")
    generation = bench_llm_generate.parse_args([])
    assert generation.batch_tokens == [shipped.generation_batch_tokens]
    assert generation.batch_sizes == [shipped.per_device_eval_batch_size]
    runs = [bench_llm_train.TrainRun.parse(spec) for spec in bench_llm_train.parse_args([]).train_runs.split(",")]
    assert [(run.size, run.checkpointing) for run in runs] == [(shipped.batch_tokens, False), (shipped.batch_tokens, True)]


def test_benchmark_verdict_takes_the_fastest_fast_loop_row_against_static_generate():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_llm_generate

    rows = {"fast_batch_128": {"seconds_median": 5.8}, "fast_compiled_batch_256_budget_98304": {"seconds_median": 3.7},
            "generate_batch_128": {"seconds_median": 1.0}}  # a generate row is not a candidate
    verdict = bench_llm_generate.generation_verdict(rows)
    assert verdict["fastest"] == "fast_compiled_batch_256_budget_98304"
    assert verdict["meets_targets"] == {"generate_499_s_max": True, "generate_faster_than": None}  # static not run
    rows["generate_static_compiled_batch_128"] = {"warm_seconds": 3.5}
    assert bench_llm_generate.generation_verdict(rows)["meets_targets"]["generate_faster_than"] is False


def test_benchmark_trains_the_first_run_once_untimed_before_timing_any(monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_llm_train

    calls = []
    monkeypatch.setattr(bench_llm_train, "_train_once", lambda folder, tokenizer, examples, run, args, profile:
                        calls.append(run.name) or {"real_tokens_per_s": float(len(calls))})
    runs = [bench_llm_train.TrainRun.parse(spec) for spec in ("grouped:8", "padded:4:ckpt")]
    examples = [{"input_ids": [1, 2, 3]}]
    warm = bench_llm_train.bench_training(None, None, examples, runs, type("Args", (), {"process_warmup": True,
                                                                                        "profile_steps": 0}))
    assert calls == ["grouped_8seq", "grouped_8seq", "padded_4seq_ckpt"]
    assert warm["process_warmup"] == {"real_tokens_per_s": 1.0, "run": "grouped_8seq"}
    assert warm["grouped_8seq"]["real_tokens_per_s"] == 2.0  # the timed figure is the second pass
    calls.clear()
    cold = bench_llm_train.bench_training(None, None, examples, runs, type("Args", (), {"process_warmup": False,
                                                                                        "profile_steps": 0}))
    assert calls == ["grouped_8seq", "padded_4seq_ckpt"] and "process_warmup" not in cold


def test_unsloth_benchmark_collates_the_token_budget_buckets_the_trainer_hands_over():
    # On an H200 the unsloth run stopped with KeyError 'input_ids': its collator got bucket rows it could not read
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_unsloth

    from llm.train import training_dataset

    examples = [{"input_ids": list(range(1, n + 1)), "labels": [-100] * (n - 2) + [5, 6]} for n in (9, 7, 4, 3)]
    buckets = training_dataset(examples, load_config("tiny-llama", overrides={"batch_tokens": 16}))
    assert len(buckets) > 1 and "bucket" in buckets[0]
    batch = bench_unsloth.unsloth_collator(pad_token_id=0)(buckets[:1])  # the Trainer's batch: one bucket
    rows = buckets[0]["bucket"]
    assert batch["input_ids"].shape[0] == len(rows) and batch["labels"].shape == batch["input_ids"].shape
    assert batch["input_ids"][0, : len(rows[0]["input_ids"])].tolist() == rows[0]["input_ids"]


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("unsloth") is not None, reason="unsloth installed: this checks the report without it")
def test_unsloth_benchmark_says_what_stopped_it():
    result = subprocess.run([sys.executable, "benchmarks/bench_unsloth.py"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["unsloth"] is None and "No module named 'unsloth'" in report["stopped_by"]
