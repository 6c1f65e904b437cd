"""Config tests of the encoder-decoder track: layers, errors, shipped YAML files.

Run: .venv/bin/python -m pytest -q tests/test_baselines_config.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from baselines.config import DEMO_LAYER, BaselineConfig, load_config
from competition.harness.presets import preset_names
from competition.rules.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "baselines" / "configs"


def test_defaults_are_the_official_baseline() -> None:
    config = BaselineConfig()
    assert (config.max_source_length, config.max_target_length, config.num_train_epochs) == (512, 100, 20)
    assert (config.learning_rate, config.per_device_train_batch_size, config.warmup_ratio) == (1e-5, 50, 0.1)
    assert (config.weight_decay, config.lr_scheduler_type, config.early_stopping_patience) == (0.01, "cosine", 3)
    assert (config.num_beams, config.no_repeat_ngram_size, config.generation_max_length) == (4, 2, 100)
    assert config.precision == "auto"


def test_precedence_defaults_preset_demo_yaml_overrides(tmp_path: Path) -> None:
    assert load_config("tiny-bart").max_source_length == 256  # preset beats the default 512
    assert load_config("tiny-bart").weight_decay == 0.01  # default where nothing else speaks
    assert load_config("tiny-bart").learning_rate == 1e-3  # the preset's shipped YAML
    assert load_config("kobart", demo=True).learning_rate == DEMO_LAYER["learning_rate"]
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 2.0e-5\nmax_source_length: 300\n", encoding="utf-8")
    from_file = load_config("tiny-bart", path, demo=True)
    assert (from_file.learning_rate, from_file.max_source_length) == (2e-5, 300)  # YAML beats demo and preset
    final = load_config("tiny-bart", path, {"learning_rate": 3e-5}, demo=True)
    assert (final.learning_rate, final.max_source_length) == (3e-5, 300)  # the command line beats YAML


def test_unknown_key_lists_known_keys() -> None:
    with pytest.raises(ConfigError, match="lerning_rate.*known.*learning_rate"):
        load_config("kobart", overrides={"lerning_rate": 1e-4})


def test_bad_values_are_rejected() -> None:
    with pytest.raises(ConfigError, match="precision"):
        load_config("kobart", overrides={"precision": "fp8"})
    with pytest.raises(ConfigError, match="max_new_tokens_by_length"):
        load_config("kobart", overrides={"max_new_tokens_by_length": [[0, 60, 1]]})


def test_unknown_or_llm_preset_lists_seq2seq_presets() -> None:
    for name in ("nope", "llama3.2-ko-3b"):
        with pytest.raises(ConfigError) as err:
            load_config(name)
        for known in preset_names("baseline"):
            assert known in str(err.value)


@pytest.mark.integration
def test_cli_unknown_model_exits_2_listing_presets(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "baselines.run", "--model", "nope", "--data", str(tmp_path)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "nope" in done.stderr and "kobart" in done.stderr and "tiny-bart" in done.stderr
    assert "Traceback" not in done.stderr


def test_yaml_preset_must_match_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="preset 'kobart' but --model is 'tiny-bart'"):
        load_config("tiny-bart", CONFIG_DIR / "kobart.yaml")


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path: Path) -> None:
    preset = yaml.safe_load(path.read_text(encoding="utf-8"))["preset"]
    config = load_config(preset, path)
    assert config.preset == preset
    header = path.read_text(encoding="utf-8").splitlines()
    assert any(f"python -m baselines.run --model {preset} " in line and str(path.name) in line for line in header)
    keys = [line for line in header if line and not line.startswith("#")]
    assert all("#" in line for line in keys), "every key needs a one-line hint"


def test_every_seq2seq_preset_has_a_yaml() -> None:
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == set(preset_names("baseline"))
