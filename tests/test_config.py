"""Config layering, run provenance and the preset registry. Run: `.venv/bin/python -m pytest tests/test_config.py`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from competition.harness.config import config_hash, load_yaml, parse_overrides, resolve_config, save_yaml
from competition.harness.presets import PRESETS, get_preset, preset_names
from competition.harness.runs import load_run_info, new_run_dir, save_run_info
from competition.rules.errors import ConfigError


@dataclass
class ToyConfig:
    lr: float = 1e-5
    epochs: int = 20
    name: str = "base"
    bf16: bool = False


def test_precedence_defaults_preset_yaml_overrides(tmp_path: Path) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("epochs: 5\nname: from-yaml\n", encoding="utf-8")
    config = resolve_config(ToyConfig, {"epochs": 3, "lr": 2e-5}, load_yaml(yaml_file), parse_overrides(["name=cli", "bf16=true"]))
    assert config == ToyConfig(lr=2e-5, epochs=5, name="cli", bf16=True)


def test_overrides_are_typed_and_checked() -> None:
    assert parse_overrides(["lr=3e-4", "epochs=2", "flag=false", "tags=[a, b]"]) == {
        "lr": 3e-4, "epochs": 2, "flag": False, "tags": ["a", "b"]}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["lr"])


def test_unknown_key_lists_known_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown config keys \['lrr'\].*known: \['bf16', 'epochs', 'lr', 'name'\]"):
        resolve_config(ToyConfig, {"lrr": 1})


def test_saved_yaml_round_trips(tmp_path: Path) -> None:
    config = ToyConfig(lr=1e-4, name="x")
    path = save_yaml(config, tmp_path / "config.yaml")
    assert resolve_config(ToyConfig, load_yaml(path)) == config
    assert config_hash(config) == config_hash(resolve_config(ToyConfig, load_yaml(path)))
    assert config_hash(config) != config_hash(ToyConfig())


def test_run_info_records_provenance(tmp_path: Path) -> None:
    data = tmp_path / "dev.csv"
    data.write_text("fname\n", encoding="utf-8")
    run_dir = new_run_dir(tmp_path / "runs", "baseline", "tiny-bart")
    again = new_run_dir(tmp_path / "runs", "baseline", "tiny-bart")
    assert run_dir != again
    save_run_info(run_dir, ToyConfig(), seed=7, data_files=[data])
    info = load_run_info(run_dir)
    assert info["seed"] == 7 and info["config"]["epochs"] == 20
    assert info["data"][str(data)] == hashlib.sha256(b"fname\n").hexdigest()
    assert info["git_revision"] != "unknown"
    assert "torch" in info["versions"]
    json.dumps(info)


def test_unknown_preset_lists_every_name() -> None:
    with pytest.raises(ConfigError) as err:
        get_preset("no-such-model")
    for name in preset_names():
        assert name in str(err.value)


def test_track_filter() -> None:
    assert get_preset("kobart", "baseline").hub_id == "digit82/kobart-summarization"
    with pytest.raises(ConfigError, match="Known presets: .*llama3.2-ko-3b"):
        get_preset("kobart", "llm")


def test_registry_is_consistent() -> None:
    names = [p.name for p in PRESETS]
    assert len(names) == len(set(names))
    for preset in PRESETS:
        assert preset.tiny == (preset.hub_id is None), preset.name
        if preset.track == "llm":
            assert preset.lora_target_modules, preset.name
        assert not preset.trust_remote_code, f"{preset.name}: needs an explicit opt-in design first"
