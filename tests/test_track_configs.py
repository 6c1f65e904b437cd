"""One typed configuration per track: types coerced in every layer, one rule for the shipped YAMLs, deltas only,
renamed keys, resume from the saved config, `--print-config`. Run: .venv/bin/python -m pytest -q tests/test_track_configs.py
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from baselines.config import SETTINGS as BASELINE
from competition.harness.config import Layer, TrackSettings, resolve_config
from competition.harness.presets import preset_names
from competition.rules.errors import ConfigError
from llm.config import SETTINGS as LLM

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRACKS = {"baselines": BASELINE, "llm": LLM}
SHIPPED = [(package, path) for package, settings in TRACKS.items() for path in sorted(settings.configs_dir.glob("*.yaml"))]


def run_cli(package: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", f"{package}.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("settings", TRACKS.values(), ids=TRACKS.keys())
def test_yaml_strings_are_coerced_to_the_declared_type(settings: TrackSettings, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('learning_rate: 1e-5\nnum_train_epochs: "3"\nseed: "7"\n', encoding="utf-8")
    preset = preset_names(settings.track)[0]
    config = settings.resolve(settings.layers(preset, path))
    assert isinstance(config.learning_rate, float) and config.learning_rate == 1e-5  # YAML 1.1 reads a string
    assert config.num_train_epochs == 3 and config.seed == 7 and isinstance(config.seed, int)


@pytest.mark.parametrize("settings", TRACKS.values(), ids=TRACKS.keys())
def test_every_layer_is_type_checked_naming_its_source(settings: TrackSettings, tmp_path: Path) -> None:
    preset = preset_names(settings.track)[0]
    path = tmp_path / "bad.yaml"
    path.write_text("num_train_epochs: three\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: num_train_epochs='three': expected (int|float)"):
        settings.resolve(settings.layers(preset, path))
    with pytest.raises(ConfigError, match=r"command line: seed=1\.5: expected int"):
        settings.resolve(settings.layers(preset, overrides={"seed": 1.5}))
    with pytest.raises(ConfigError, match=r"command line: learning_rate=\[1\]: expected float"):
        settings.resolve(settings.layers(preset, overrides={"learning_rate": [1]}))


@pytest.mark.integration
@pytest.mark.parametrize("package", TRACKS, ids=TRACKS.keys())
def test_cli_wrong_type_exits_2_naming_file_key_and_type_and_writes_nothing(package: str, tmp_path: Path) -> None:
    settings = TRACKS[package]
    path = tmp_path / "user.yaml"
    path.write_text("num_train_epochs: three\n", encoding="utf-8")
    out = tmp_path / "runs"
    done = run_cli(package, "--model", preset_names(settings.track)[-1], "--data", str(PROJECT_ROOT / "data/sample"),
                   "--out", str(out), "--config", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "user.yaml" in done.stderr and "num_train_epochs='three'" in done.stderr and "expected" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and not (tmp_path / "submissions").exists()


@pytest.mark.parametrize("settings", TRACKS.values(), ids=TRACKS.keys())
def test_renamed_keys_name_the_new_key(settings: TrackSettings) -> None:
    old, new = next(iter(settings.renamed.items()))
    preset = preset_names(settings.track)[0]
    with pytest.raises(ConfigError, match=f"'{old}' is now called '{new}'"):
        settings.resolve(settings.layers(preset, overrides={old: 1}))


def test_both_tracks_use_the_same_trainer_names() -> None:
    shared = ("num_train_epochs", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
              "per_device_eval_batch_size", "lr_scheduler_type", "warmup_ratio", "weight_decay", "max_source_length",
              "max_target_length", "max_train_samples", "max_eval_samples", "early_stopping_patience", "seed")
    for settings in TRACKS.values():
        names = {f.name for f in dataclasses.fields(settings.config_class)}
        assert set(shared) <= names, sorted(set(shared) - names)


@pytest.mark.parametrize(("package", "path"), SHIPPED, ids=[f"{p}/{f.name}" for p, f in SHIPPED])
def test_shipped_yaml_is_the_presets_default_file_and_a_delta(package: str, path: Path) -> None:
    settings = TRACKS[package]
    preset = path.stem
    assert preset in preset_names(settings.track)
    layers = settings.layers(preset)  # no --config: the shipped file is read
    assert any(layer.source.endswith(f"{package}/configs/{path.name}") for layer in layers), [layer.source for layer in layers]
    below = dataclasses.asdict(resolve_config(settings.config_class, layers[0]))  # defaults + preset
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    resolved = dataclasses.asdict(settings.resolve(layers))
    redundant = [key for key in raw if key != "preset" and resolved[key] == below[key]]
    assert not redundant, f"{path}: keys equal to defaults + preset: {redundant}"
    assert raw["preset"] == preset
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert all("  # " in line for line in lines), "every key needs a one-line hint"


def test_every_preset_of_both_tracks_ships_a_yaml() -> None:
    for settings in TRACKS.values():
        assert {p.stem for p in settings.configs_dir.glob("*.yaml")} == set(preset_names(settings.track))


@pytest.mark.integration
def test_pko_t5_resolves_its_shipped_batch_size(tmp_path: Path) -> None:
    done = run_cli("baselines", "--model", "pko-t5-large", "--print-config", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = next(row for row in done.stdout.splitlines() if row.startswith("per_device_train_batch_size:"))
    assert line.split()[1] == "8" and "baselines/configs/pko-t5-large.yaml" in line
    assert BASELINE.resolve(BASELINE.layers("pko-t5-large")).per_device_train_batch_size == 8


@pytest.mark.integration
def test_print_config_shows_every_key_hint_and_source(tmp_path: Path) -> None:
    done = run_cli("llm", "--model", "qwen3-14b", "--print-config", "learning_rate=1e-4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split(":")[0]: line for line in done.stdout.splitlines() if not line.startswith("#")}
    assert set(rows) == {f.name for f in dataclasses.fields(LLM.config_class)}
    assert rows["learning_rate"].endswith("[command line]") and "peak learning rate" in rows["learning_rate"]
    assert rows["max_source_length"].endswith("[preset qwen3-14b]")
    assert rows["seed"].endswith("[defaults]")
    assert yaml.safe_load(done.stdout)["learning_rate"] == 1e-4  # the printout is itself a loadable YAML


def test_resume_reloads_the_saved_config_and_refuses_changes(tmp_path: Path) -> None:
    saved = dataclasses.replace(LLM.resolve(LLM.layers("tiny-llama")), max_train_samples=160)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(saved)), encoding="utf-8")
    assert LLM.resolve(LLM.resume_layers(tmp_path)).max_train_samples == 160
    same = LLM.resolve(LLM.resume_layers(tmp_path, {"max_train_samples": 160, "per_device_eval_batch_size": 4}))
    assert (same.max_train_samples, same.per_device_eval_batch_size) == (160, 4)  # unchanged and safe keys pass
    with pytest.raises(ConfigError, match=r"\['learning_rate'\] would change the run"):
        LLM.resume_layers(tmp_path, {"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="no config.yaml"):
        LLM.resume_layers(tmp_path / "absent")


def test_layers_name_their_sources() -> None:
    layers = LLM.layers("tiny-llama", overrides={"seed": 1}, demo=True)
    assert [layer.source.split("/")[-1] for layer in layers] == ["preset tiny-llama", "--demo", "tiny-llama.yaml",
                                                                  "command line"]
    assert isinstance(layers[0], Layer)


@pytest.mark.parametrize("track_name", ["baseline", "llm"])
def test_tuning_layers_are_typed_too(track_name: str, tmp_path: Path) -> None:
    """A search space's fixed values and a study's best_config.yaml go through the same typed layers."""
    from competition.harness.tracks import get_track
    from tuning.search_space import load_search_space
    from tuning.study import TuneSettings
    from tuning.tune import check_inputs

    track = get_track(track_name)
    preset = preset_names(track.settings.track)[-1]
    best = tmp_path / "best_config.yaml"
    best.write_text("learning_rate: 1e-5\n", encoding="utf-8")
    assert track.config(preset, best, {"num_train_epochs": "2"}).learning_rate == 1e-5
    space = tmp_path / "space.yaml"
    space.write_text("params: {seed: {type: int, low: 1, high: 3}}\nfixed: {num_train_epochs: three}\n",
                     encoding="utf-8")
    settings = TuneSettings(track=track_name, preset=preset, data_dir=PROJECT_ROOT / "data/sample", out_dir=tmp_path,
                            n_trials=1, space_path=space)
    with pytest.raises(ConfigError, match="num_train_epochs='three': expected"):
        check_inputs(track, settings, load_search_space(space))


def test_resuming_a_run_of_the_other_track_says_which_track_it_is(tmp_path: Path) -> None:
    saved = BASELINE.resolve(BASELINE.layers("tiny-bart"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(saved)), encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        LLM.resume_layers(tmp_path)
    assert str(raised.value) == (f"{tmp_path}: a baseline run (preset 'tiny-bart'), not a llm run; resume it with "
                                 f"`make baseline RESUME={tmp_path}`")


@pytest.mark.parametrize("settings, preset", [(BASELINE, "tiny-bart"), (LLM, "tiny-llama")])
def test_max_train_samples_zero_is_refused_with_the_way_to_say_all(settings: TrackSettings, preset: str) -> None:
    with pytest.raises(ConfigError, match=r"max_train_samples=0; expected a positive row count \(null = all\)"):
        settings.resolve(settings.layers(preset, overrides={"max_train_samples": 0}))
    assert settings.resolve(settings.layers(preset, overrides={"max_train_samples": None})).max_train_samples is None


def test_a_key_given_twice_in_a_yaml_is_refused_naming_the_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("learning_rate: 3.0e-5\nnum_train_epochs: 2\nlearning_rate: 1.0e-4\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        BASELINE.layers("tiny-bart", yaml_path=path)
    assert str(raised.value) == f"{path}, line 3: key 'learning_rate' is given twice; expected each key once (delete one)"
