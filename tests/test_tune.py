"""Tuner logic against a fast fake track: search-space schema, resume, pruning, failures, best config, outputs.

Run: `.venv/bin/python -m pytest -q tests/test_tune.py`
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from helpers import fake_track
from helpers.fake_track import write_space, write_tiny_data
from optuna.trial import TrialState

from competition.rules.errors import ConfigError
from tuning.search_space import load_search_space
from tuning.study import TuneSettings, make_pruner, open_study
from tuning.trials import failure_kind, trial_run_dir
from tuning.tune import run_study

SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2},
    "optimizer": {"type": "categorical", "choices": ["adamw", "adafactor"]},
}


@pytest.fixture(autouse=True)
def reset_fake(monkeypatch):
    monkeypatch.setattr(fake_track, "INTERRUPT_ON_CALL", None)
    monkeypatch.setattr(fake_track, "TRAIN_CALLS", 0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def settings_for(tmp_path: Path, n_trials: int, **kwargs) -> TuneSettings:
    space = kwargs.pop("space", None) or write_space(tmp_path / "space.yaml", SPACE)
    return TuneSettings(track="baseline", preset="fake", data_dir=write_tiny_data(tmp_path / "data"),
                        out_dir=tmp_path / "tune", n_trials=n_trials, space_path=space, **kwargs)


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials()]


# ---------------------------------------------------------------- search space


def test_search_space_parses_types_and_demo_section(tmp_path):
    path = write_space(tmp_path / "s.yaml", {**SPACE, "epochs": {"type": "int", "low": 2, "high": 8, "step": 2}},
                       fixed={"seed": 3}, demo={"params": {"epochs": {"type": "int", "low": 1, "high": 2}},
                                                "fixed": {"seconds_per_epoch": 0.0}})
    space = load_search_space(path)
    by_name = {p.name: p for p in space.params}
    assert by_name["lr"].log and by_name["lr"].low == 1e-5
    assert by_name["optimizer"].choices == ("adamw", "adafactor")
    assert by_name["epochs"].high == 8 and space.fixed == {"seed": 3}
    demo = load_search_space(path, demo=True)
    assert {p.name: p for p in demo.params}["epochs"].high == 2
    assert demo.fixed == {"seed": 3, "seconds_per_epoch": 0.0}
    assert load_search_space(tmp_path / "s.yaml").to_dict()["params"]["lr"] == {"type": "float", "low": 1e-5,
                                                                                "high": 0.1, "log": True}


@pytest.mark.parametrize("spec, message", [
    ({"type": "uniform", "low": 0, "high": 1}, "'type' must be one of"),
    ({"type": "float", "low": 1}, "needs 'low' and 'high'"),
    ({"type": "float", "low": 2, "high": 1}, "low 2.0 is above high 1.0"),
    ({"type": "float", "low": 0, "high": 1, "log": True}, "log scale needs low > 0"),
    ({"type": "int", "low": 1.5, "high": 3}, "integer low/high"),
    ({"type": "categorical", "choices": []}, "non-empty list"),
    ({"type": "float", "low": 0, "high": 1, "choices": [1]}, "unknown keys ['choices']"),
    ({"type": "float", "low": "abc", "high": 1}, "'low' must be a number"),
])
def test_bad_search_space_names_file_and_parameter(tmp_path, spec, message):
    path = write_space(tmp_path / "bad.yaml", {"lr": spec})
    with pytest.raises(ConfigError) as err:
        load_search_space(path)
    assert str(path) in str(err.value) and "parameter 'lr'" in str(err.value) and message in str(err.value)


def test_unknown_config_key_in_space_fails_before_training(tmp_path):
    settings = settings_for(tmp_path, 2, space=write_space(tmp_path / "s.yaml", {"learning_rate": SPACE["lr"]}))
    with pytest.raises(ConfigError, match="unknown config keys \\['learning_rate'\\]"):
        run_study(fake_track.as_track(), settings)
    assert fake_track.TRAIN_CALLS == 0


# ---------------------------------------------------------------- study behaviour


def test_study_resumes_after_interrupt(tmp_path):
    settings = settings_for(tmp_path, 5)
    fake_track.INTERRUPT_ON_CALL = 3  # Ctrl-C during the third trial
    with pytest.raises(KeyboardInterrupt):
        run_study(fake_track.as_track(), settings)
    first = open_study(settings.name, settings.storage_url, make_pruner("none", 0))
    assert states(first) == ["COMPLETE", "COMPLETE", "FAIL"]
    assert first.trials[2].user_attrs["failure_kind"] == "interrupted"
    assert (settings.study_dir / "trials.csv").is_file()  # outputs are written even when interrupted

    fake_track.INTERRUPT_ON_CALL = None
    study = run_study(fake_track.as_track(), settings)  # same command again: same SQLite storage
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4, 5]  # numbering continues
    assert states(study) == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    # the interrupted trial does not use up the budget: 5 requested, 5 finished
    assert sum(s == "COMPLETE" for s in states(study)) == 5
    assert fake_track.TRAIN_CALLS == 6
    # a resumed study does not replay the first random proposals
    assert len({t.params["lr"] for t in study.trials}) == 6
    # running again with the budget met trains nothing
    run_study(fake_track.as_track(), settings)
    assert fake_track.TRAIN_CALLS == 6


def test_pruning_stops_a_bad_trial_before_its_last_epoch(tmp_path):
    settings = settings_for(tmp_path, 2, pruner="median", pruner_startup_trials=1, overrides={"epochs": 6})
    study = open_study(settings.name, settings.storage_url, make_pruner("median", 1))
    study.enqueue_trial({"lr": 1e-3, "warmup_ratio": 0.1, "optimizer": "adamw"})  # good
    study.enqueue_trial({"lr": 1e-5, "warmup_ratio": 0.0, "optimizer": "adafactor"})  # clearly worse at every epoch
    study = run_study(fake_track.as_track(), settings)
    good, bad = study.trials
    assert good.state == TrialState.COMPLETE and good.user_attrs["evaluations"] == 6
    assert bad.state == TrialState.PRUNED
    evaluations = (trial_run_dir(settings.study_dir, 1) / "evaluations.txt").read_text().splitlines()
    assert 1 <= len(evaluations) < 6 and bad.user_attrs["evaluations"] == len(evaluations)
    table = pd.read_csv(settings.study_dir / "trials.csv")
    assert table.loc[1, "state"] == "PRUNED" and table.loc[1, "pruned_at_step"] == len(evaluations) - 1


def test_hyperband_pruner_is_selectable(tmp_path):
    assert isinstance(make_pruner("hyperband", 5), optuna.pruners.HyperbandPruner)
    with pytest.raises(ConfigError, match="unknown pruner"):
        make_pruner("asha", 5)


@pytest.mark.parametrize("fail, kind", [("oom", "oom"), ("nan", "nan_loss")])
def test_oom_and_nan_trials_fail_with_reason_and_study_continues(tmp_path, fail, kind):
    space = write_space(tmp_path / "space.yaml", {**SPACE, "fail": {"type": "categorical", "choices": ["", fail]}})
    settings = settings_for(tmp_path, 3, space=space)
    study = open_study(settings.name, settings.storage_url, make_pruner("median", 5))
    for lr, failure in ((1e-3, ""), (1e-3, fail), (1e-2, "")):  # the second trial fails
        study.enqueue_trial({"lr": lr, "warmup_ratio": 0.1, "optimizer": "adamw", "fail": failure})
    study = run_study(fake_track.as_track(), settings)
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE"]
    failed = study.trials[1]
    assert failed.user_attrs["failure_kind"] == kind
    assert ("out of memory" if fail == "oom" else "NaN loss") in failed.user_attrs["failure_reason"]
    row = pd.read_csv(settings.study_dir / "trials.csv").iloc[1]
    assert row["state"] == "FAIL" and row["failure_kind"] == kind and row["run_dir"].endswith("trial-0001")


def test_unexpected_error_stops_study_but_is_recorded(tmp_path):
    settings = settings_for(tmp_path, 3, overrides={"fail": "error"})
    with pytest.raises(ValueError, match="a bug in the track"):
        run_study(fake_track.as_track(), settings)
    row = pd.read_csv(settings.study_dir / "trials.csv").iloc[0]
    assert row["state"] == "FAIL" and row["failure_kind"] == "error" and "a bug" in row["failure_reason"]
    assert fake_track.TRAIN_CALLS == 1


def test_failure_kind_recognizes_oom_and_nan():
    torch = pytest.importorskip("torch")
    assert failure_kind(torch.OutOfMemoryError("CUDA out of memory")) == "oom"
    assert failure_kind(RuntimeError("CUDA error: out of memory")) == "oom"
    assert failure_kind(ValueError("loss is NaN at step 3")) == "nan_loss"
    assert failure_kind(ValueError("shape mismatch")) is None


# ---------------------------------------------------------------- outputs


def test_best_config_reproduces_best_trial_score(tmp_path):
    settings = settings_for(tmp_path, 4, overrides={"seed": 5})
    study = run_study(fake_track.as_track(), settings)
    best_config = settings.study_dir / "best_config.yaml"
    config = fake_track.load_config("fake", best_config)
    assert config.lr == study.best_params["lr"] and config.seed == 5
    rerun = fake_track.train(config, settings.data_dir, tmp_path / "rerun")
    assert rerun.best_dev_score == study.best_value
    assert f"make baseline MODEL=fake DATA={settings.data_dir} CONFIG={best_config}" in best_config.read_text()


def test_outputs_record_every_trial_and_plots(tmp_path):
    settings = settings_for(tmp_path, 3)
    study = run_study(fake_track.as_track(), settings)
    out = settings.study_dir
    table = pd.read_csv(out / "trials.csv")
    assert list(table["number"]) == [0, 1, 2] and set(table["state"]) == {"COMPLETE"}
    assert {"score", "param_lr", "param_optimizer", "run_dir", "failure_reason", "worker"} <= set(table.columns)
    for row in table.itertuples():
        run_dir = Path(row.run_dir)
        assert (run_dir / "run.json").is_file()  # each trial is reproducible from its run folder
        assert row.score == pytest.approx(study.trials[row.number].value)
    assert (out / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "importance.png").read_bytes()[:4] == b"\x89PNG"
    info = json.loads((out / "study.json").read_text())
    assert info["seed"] == 42 and info["sampler"]["seed"] == 42 and info["n_trials"] == 3
    assert "lr" in (out / "search_space.yaml").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["number"] == study.best_trial.number
    assert "| number | state | score |" in (out / "trials.md").read_text()
    # only the best trial keeps model weights
    kept = [n for n in range(3) if (trial_run_dir(out, n) / "best").exists()]
    assert kept == [study.best_trial.number]


def test_importance_needs_two_completed_trials(tmp_path):
    settings = settings_for(tmp_path, 1)
    run_study(fake_track.as_track(), settings)
    assert not (settings.study_dir / "importance.png").exists()
    assert "at least 2 completed trials" in (settings.study_dir / "summary.md").read_text()


def test_importance_from_few_trials_carries_a_caveat(tmp_path):
    from tuning.outputs import plot_importance

    settings = settings_for(tmp_path, 3)
    run_study(fake_track.as_track(), settings)
    caveat = "3 completed trials: importance is unreliable below ~10"
    assert json.loads((settings.study_dir / "summary.json").read_text())["importance_note"] == caveat
    summary = (settings.study_dir / "summary.md").read_text()
    assert f"Parameter importance: {caveat}." in summary and "![importance](importance.png)" in summary
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + 0.1 * t.suggest_float("y", 0, 1), n_trials=10)
    assert plot_importance(study, tmp_path / "importance.png")[1] == ""  # 10 trials: no caveat


def test_command_line_override_pins_a_tuned_parameter(tmp_path):
    settings = settings_for(tmp_path, 2, overrides={"lr": 0.01})
    study = run_study(fake_track.as_track(), settings)
    assert all("lr" not in t.params and t.user_attrs["config"]["lr"] == 0.01 for t in study.trials)
