"""`make predict` / `python -m competition.predict` / `python -m kfold.predict`: a finished run's summaries for a new
file or one pasted dialogue, equal to what the run itself predicted (tiny runs of both tracks and a 2-fold run).

Run: .venv/bin/python -m pytest -q tests/test_predict.py -m integration     (trains tiny runs: a few minutes on 2 cores)
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import PROJECT_ROOT
from helpers.data import sample_rows, write_data_dir

from competition.harness.tracks import get_track
from competition.rules.data import first_utterance
from competition.rules.predictions import FILL_INS, read_predictions_with_metadata, write_predictions

TINY_RUNS = {  # one short training per track; the tiny LLM trains until it writes some summaries (about a minute)
    "baseline": ("tiny-bart", {"num_train_epochs": 1, "learning_rate": 2e-3, "generation_max_length": 12}),
    "llm": ("tiny-llama", {"finetune": "full", "num_train_epochs": 6, "learning_rate": 5e-3, "select_by": "loss",
                           "max_eval_samples": 0, "max_new_tokens": 12, "per_device_train_batch_size": 8,
                           "gradient_accumulation_steps": 1, "warmup_ratio": 0.0, "submit_despite_fill_ins": True}),
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    return write_data_dir(root, sample_rows("train", 16), sample_rows("dev", 6), sample_rows("test", 6))


@pytest.fixture(scope="module")
def finished_runs(tiny_data, tmp_path_factory) -> dict[str, Path]:
    """A finished tiny run of each track (trained once for the module)."""
    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, (preset, overrides) in TINY_RUNS.items():
        track = get_track(name)
        config = track.config(preset, overrides=overrides, demo=True)
        runs[name] = track.run(config, tiny_data, out, submissions_dir=out / "submissions")
    return runs


def make_predict_argv(**variables: str) -> list[str]:
    """The command `make predict` runs with these variables (a dry run of make), as [python, -m, module, args...]."""
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-o", "setup", "-o", ".venv/.installed", "predict",
                          *[f"{k}={v}" for k, v in variables.items()]], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, check=True)
    command = shlex.split(dry.stdout.replace("\\\n", " "))
    assert command[0] == ".venv/bin/python", command
    return [sys.executable, *command[1:]]


def run_module(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(argv, input=stdin, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)


def predict_main(argv: list[str]) -> int:
    """Run `python -m competition.predict ...` / `kfold.predict` in this process (argv as make expands it)."""
    import importlib

    return importlib.import_module(argv[2]).main(argv[3:])


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("track", list(TINY_RUNS))
def test_make_predict_on_the_runs_test_file_equals_its_preds_test(track, finished_runs, tiny_data, tmp_path):
    run_dir = finished_runs[track]
    out = tmp_path / "preds.csv"
    argv = make_predict_argv(RUN=str(run_dir), INPUT=str(tiny_data / "test.csv"), OUT=str(out))
    assert argv[2] == "competition.predict"
    assert predict_main(argv) == 0
    predicted, meta = read_predictions_with_metadata(out)
    expected, run_meta = read_predictions_with_metadata(run_dir / "preds_test.csv")
    pd.testing.assert_frame_equal(predicted, expected)
    assert run_meta.get(FILL_INS, 0) < len(expected)  # the model wrote summaries: not only first utterances compared
    assert meta["run_dir"] == str(run_dir) and meta["track"] == track and meta["source"] == str(tiny_data / "test.csv")
    assert meta["checkpoint"] == run_meta["checkpoint"] and meta["config_hash"] == run_meta["config_hash"]
    assert meta[FILL_INS] == run_meta.get(FILL_INS, 0) and meta["generation_overrides"] == {}
    assert predict_main(argv) == 2  # an existing OUT is refused, never overwritten
    pd.testing.assert_frame_equal(read_predictions_with_metadata(out)[0], expected)


@pytest.mark.integration
def test_default_out_and_overrides_are_recorded(finished_runs, tiny_data):
    run_dir = finished_runs["baseline"]
    assert predict_main([sys.executable, "-m", "competition.predict", "--run", str(run_dir), "--input",
                         str(tiny_data / "dev.csv"), "num_beams=1", "generation_max_length=4"]) == 0
    predicted, meta = read_predictions_with_metadata(run_dir / "predict" / "dev.csv")  # dev.csv: references allowed
    assert meta["generation_overrides"] == {"num_beams": 1, "generation_max_length": 4}
    dialogues = pd.read_csv(tiny_data / "dev.csv", dtype=str, keep_default_na=False)["dialogue"]
    leads = sum(s == first_utterance(d) for s, d in zip(predicted["summary"], dialogues))
    assert len(predicted) == 6 and meta[FILL_INS] == leads > 0  # 4 tokens leave most summaries empty: filled, counted


@pytest.mark.integration
@pytest.mark.parametrize("track", list(TINY_RUNS))
def test_dialogue_from_stdin_prints_the_summary_the_file_gets(track, finished_runs, tiny_data):
    run_dir = finished_runs[track]
    dialogue = pd.read_csv(tiny_data / "test.csv", dtype=str, keep_default_na=False)["dialogue"][0]
    done = run_module([sys.executable, "-m", "competition.predict", "--run", str(run_dir), "--dialogue", "-"],
                      stdin=dialogue + "\n")
    assert done.returncode == 0, done.stderr[-3000:]
    expected = pd.read_csv(run_dir / "preds_test.csv", dtype=str, keep_default_na=False)["summary"][0]
    assert done.stdout == expected + "\n"


@pytest.mark.integration
def test_bad_inputs_exit_2_with_one_line(finished_runs, tiny_data, tmp_path, capsys):
    run_dir = finished_runs["baseline"]
    no_dialogue = tmp_path / "no_dialogue.csv"
    pd.DataFrame({"fname": ["a"], "text": ["#Person1#: 안녕"]}).to_csv(no_dialogue, index=False)
    cases = {
        "missing run": (["--run", str(tmp_path / "nope"), "--input", str(tiny_data / "test.csv")], "no run.json"),
        "no dialogue column": (["--run", str(run_dir), "--input", str(no_dialogue)], "dialogue"),
        "training key": (["--run", str(run_dir), "--input", str(tiny_data / "test.csv"), "learning_rate=1e-3"],
                         "['learning_rate'] not generation settings"),
        "unknown key": (["--run", str(run_dir), "--dialogue", "-", "beams=3"], "['beams'] not generation settings"),
    }
    from competition.predict import main

    for case, (argv, expected) in cases.items():
        assert main(argv) == 2, case
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], (case, err)
    if shutil.which("make"):
        done = subprocess.run(["make", "-o", "setup", "-o", ".venv/.installed", "predict", "INPUT=x.csv"],
                              cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert done.returncode == 2 and "RUN=runs/<a run folder> is required" in done.stderr


@pytest.mark.integration
def test_kfold_predictions_equal_its_ensembles(tmp_path, monkeypatch, capsys):
    from kfold.pipeline import KFoldSettings, run_kfold

    data = write_data_dir(tmp_path / "data", sample_rows("train", 16), sample_rows("dev", 6), sample_rows("test", 6))
    settings = KFoldSettings("baseline", "tiny-bart", data, tmp_path / "runs", k=2, demo=True,
                             overrides={"num_train_epochs": 1, "learning_rate": 2e-3, "generation_max_length": 12},
                             submissions_dir=tmp_path / "submissions")
    kfold_dir = run_kfold(settings)
    out = tmp_path / "kfold_preds.csv"
    argv = (make_predict_argv(RUN=str(kfold_dir), INPUT=str(data / "test.csv"), OUT=str(out)) if shutil.which("make")
            else [sys.executable, "-m", "kfold.predict", "--run", str(kfold_dir), "--input", str(data / "test.csv"),
                  "--out", str(out)])
    assert argv[2] == "kfold.predict"
    assert predict_main(argv) == 0
    predicted, meta = read_predictions_with_metadata(out)
    expected, ensemble_meta = read_predictions_with_metadata(kfold_dir / "ensemble" / "preds_test.csv")
    pd.testing.assert_frame_equal(predicted, expected)
    # the folds the ensemble combined (both, or one when their predictions were identical and counted once)
    assert meta["method"] == ensemble_meta["method"] and [Path(f).name for f in meta["folds"]] == ensemble_meta["systems"]
    assert 1 <= len(meta["folds"]) <= 2 and (len(meta["folds"]) == 2 or ensemble_meta["method"] == "single")
    assert meta["fill_ins_per_fold"] == {Path(f).name: json.loads(
        (Path(f) / "preds_test.meta.json").read_text(encoding="utf-8"))[FILL_INS] for f in meta["folds"]}
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO(pd.read_csv(data / "test.csv")["dialogue"][0]))
    assert predict_main([sys.executable, "-m", "kfold.predict", "--run", str(kfold_dir), "--dialogue", "-"]) == 0
    assert capsys.readouterr().out == expected["summary"][0] + "\n"


@pytest.mark.parametrize("track", list(TINY_RUNS))
def test_generation_keys_are_settings_of_the_track_and_training_keys_are_not(track):
    api = get_track(track)
    fields = set(api.settings.config_class.__dataclass_fields__)
    assert api.generation_keys and api.generation_keys <= fields
    assert not api.generation_keys & {"learning_rate", "num_train_epochs", "max_source_length", "preset", "seed"}


def test_readme_shows_the_commands_the_tests_run():
    readme = " ".join((PROJECT_ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "`make predict RUN=runs/<a run> INPUT=FILE.csv`" in readme
    assert "`python -m competition.predict --run RUN --dialogue -`" in readme


ITEMS = ["사과", "포도", "딸기", "수박", "참외", "자두", "복숭아", "바나나"]


def toy_summary(i: int, system: int) -> str:
    words = [ITEMS[(i + k + system * (i % 2)) % len(ITEMS)] for k in range(4 - system)]
    return f"#Person1#은 {' '.join(words)}를 산다." + (" 그리고" if system == 2 else "")


@pytest.mark.parametrize("method", ["fusion", "mbr", "weighted-mbr", "best", "topic"])
def test_a_fitted_ensemble_applied_to_new_rows_gives_its_test_summaries(method, tmp_path):
    """What kfold.predict does with the folds' summaries: the ensemble's method, params and rules from its saved
    outputs (JSON sidecar, config.yaml) reproduce its test predictions, for every method."""
    from competition.harness.config import CONFIG_FILE, Layer, resolve_config, yaml_layer
    from ensemble.pipeline import EnsembleConfig, apply_fitted, load_inputs, run_ensemble, write_outputs

    frames = {split: pd.DataFrame({"fname": [f"{split}_{i}" for i in range(n)],
                                   "dialogue": [f"#Person1#: 안녕 {i}.\n#Person2#: 네 {i % 3}." for i in range(n)],
                                   "topic": ["쇼핑" if i % 2 else "여행" for i in range(n)]})
              for split, n in (("dev", 12), ("test", 9))}
    frames["dev"]["summary"] = [toy_summary(i, 0) for i in range(12)]
    for split, frame in frames.items():
        frame.to_csv(tmp_path / f"{split}.csv", index=False)
    files = []
    for system in range(3):
        for split, frame in frames.items():
            path = tmp_path / f"sys{system}" / f"preds_{split}.csv"
            summaries = [toy_summary(i, system) if i % 4 else "" for i in range(len(frame))]  # rules see empties
            files.append(write_predictions(path, frame["fname"], summaries, {"split": split, "run_dir": str(path.parent)}))
    inputs = load_inputs(files, None, tmp_path / "dev.csv", tmp_path / "test.csv")
    result = run_ensemble(resolve_config(EnsembleConfig, Layer("test", {"method": method})), inputs, progress=False)
    write_outputs(result, inputs, tmp_path / "ensemble")
    expected, fitted = read_predictions_with_metadata(tmp_path / "ensemble" / "preds_test.csv")
    config = resolve_config(EnsembleConfig, yaml_layer(tmp_path / "ensemble" / CONFIG_FILE))
    by_system = {s.name: s.summaries["test"] for s in inputs.systems}
    combined = apply_fitted(config, fitted["method"], fitted["params"], [by_system[s] for s in fitted["systems"]],
                            list(frames["test"]["dialogue"]), list(frames["test"]["topic"]))
    assert fitted["method"] == method and combined == list(expected["summary"])
