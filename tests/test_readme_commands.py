"""Every command in the README's bash blocks is run somewhere, with the README's settings.

Each command is covered in one of three ways, listed in COVERAGE:
- `config`: the Makefile expands it (`make -n`) and the expanded track command runs with `--print-config`, which
  resolves the preset, the shipped or given YAML and every KEY=VALUE exactly as the real run would (the training
  itself needs a GPU and the hub);
- `demo:<target>`: the demo runs it: the expanded command resolves to the same config as that demo stage;
- `stage:<target>`: that stage of `make demo` runs the same module;
- `test:<file>::<name>`: that test runs it.
Run: .venv/bin/python -m pytest -q tests/test_readme_commands.py
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from competition.harness.config import parse_overrides

PROJECT_ROOT = Path(__file__).resolve().parents[1]
README = PROJECT_ROOT / "README.md"

COVERAGE = {
    "make demo": "test:.ci/run",
    "make test": "test:.ci/run",
    "make test-fast": "test:test_readme_commands.py::test_fast_lane_runs_the_unit_tests_only",
    "python -m competition.score": "test:test_score_cli.py::test_report_dir_gets_markdown_json_and_plots",
    "make baseline": "config",
    "make baseline MODEL=pko-t5-large": "config",
    'make baseline ARGS="label_smoothing_factor=0.1 max_source_length=768 learning_rate=3e-5"': "config",
    "make baseline MODEL=tiny-bart DATA=data/sample": "demo:demo-baseline",
    "make baseline RESUME=runs/baseline-kobart-<stamp>": "config",
    "make llm MODEL=qwen3-14b": "config",
    'make llm ARGS="learning_rate=1e-4 batch_tokens=8192"': "config",
    "make llm RESUME=runs/llm-<model>-<stamp>": "config",
    "make llm MODEL=tiny-llama DATA=data/sample": "demo:demo-llm",
    "make screen MODELS=llama3.2-ko-3b,qwen3-4b SHOTS=0,1,3": "test:test_screen.py::test_screen_tiny_presets_end_to_end",
    "python -m llm.run --model qwen3-14b --print-config": "config",
    "python -m baselines.run --model pko-t5-large --print-config": "config",
    "python -m llm.run --model qwen3-14b --print-config --gpu-memory 24": "config",
    "make truncation MODEL=qwen3-14b MAXLEN=512,768,1024,2048": "test:test_truncation.py::test_cli_writes_the_report",
    "python -m competition.truncation": "test:test_truncation.py::test_cli_writes_the_report",
    "make tune TRACK=baseline MODEL=kobart TRIALS=30":
        "test:test_tune_tracks.py::test_shipped_search_spaces_match_the_track_configs",
    "make tune-gen RUN=runs/<a run folder> TRIALS=30":
        "test:test_tune_tracks.py::test_tiny_bart_study_best_config_reproduces_and_generation_study",
    "make demo-tune": "stage:demo-tune",
    "make ensemble": "stage:demo-ensemble",
    "make submit": "stage:demo-ensemble",
    "python -m ensemble": "test:test_ensemble_cli.py::test_plain_csvs_single_split_to_csv",
    "python -m ensemble.extractive": "stage:demo-ensemble",
    "python -m competition.submit": "stage:demo-core",
    "python -m competition.validate": "test:test_submission.py::test_validator_cli_rejects",
    "make kfold MODEL=tiny-bart DATA=data/sample K=3 ARGS=\"--demo max_eval_samples=20\"":
        "test:test_kfold.py::test_kfold_end_to_end_then_resume",
    "make kfold MODEL=kobart K=5": "test:test_kfold.py::test_readme_settings_are_what_make_kfold_runs",
    "make kfold MODEL=kobart K=5 ARGS=\"--include-dev\"": "test:test_kfold.py::test_include_dev_says_dev_is_in_sample",
    # in the prose of "A first day", step 8
    "make predict RUN=runs/<a run> INPUT=FILE.csv":
        "test:test_predict.py::test_make_predict_on_the_runs_test_file_equals_its_preds_test",
    "python -m competition.predict --run RUN --dialogue -":
        "test:test_predict.py::test_dialogue_from_stdin_prints_the_summary_the_file_gets",
}


def readme_commands() -> list[str]:
    """The `make ...` and `python -m ...` lines of the README's bash blocks, comments removed."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(("make ", "python -m "))]


def coverage_of(command: str) -> str | None:
    """The COVERAGE entry of a README command: the exact line, else the longest key it starts with."""
    if command in COVERAGE:
        return COVERAGE[command]
    prefixes = [key for key in COVERAGE if command.startswith(key + " ") and key.startswith("python -m")]
    return COVERAGE[max(prefixes, key=len)] if prefixes else None


def test_every_readme_command_is_covered() -> None:
    missing = [command for command in readme_commands() if coverage_of(command) is None]
    assert not missing, f"README commands nobody runs: {missing}; add each to COVERAGE with how it is run"


def test_named_tests_exist() -> None:
    for how in set(COVERAGE.values()):
        if how.startswith("test:") and "::" in how:
            file, name = how[len("test:"):].split("::")
            assert f"def {name}(" in (PROJECT_ROOT / "tests" / file).read_text(encoding="utf-8"), how
    assert "make test" in (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def make_dry_run(arguments: list[str]) -> list[str]:
    """The commands `make -n` prints for these arguments, continuation lines joined."""
    done = subprocess.run(["make", "-n", *arguments, "PY=python"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          check=True)
    return done.stdout.replace("\\\n", " ").splitlines()


def track_command(command: str, run_dir: Path) -> list[str]:
    """The Python command a README line runs: `make -n` expands make lines; a placeholder RESUME is a real folder."""
    command = re.sub(r"RESUME=\S+", f"RESUME={run_dir}", command)
    if command.startswith("python -m"):
        return [sys.executable, *shlex.split(command)[1:]]
    (line,) = [line for line in make_dry_run(shlex.split(command)[1:]) if " -m baselines.run" in line or
               " -m llm.run" in line]
    return [sys.executable, *shlex.split(line)[1:]]


def printed_config(argv: list[str]) -> dict[str, str]:
    """`--print-config` of a track command (`[python, -m, module, args...]`), run in this process: key -> value."""
    import contextlib
    import importlib
    import io

    main = importlib.import_module(argv[2]).main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv[3:], "--print-config"])
    assert code == 0, argv
    rows = [line.split("  #")[0] for line in out.getvalue().splitlines() if not line.startswith("#")]
    return dict(row.split(": ", 1) for row in rows)


def saved_run(tmp_path: Path, track: str, preset: str) -> Path:
    """A run folder holding a resolved config, as a run leaves it (what RESUME= reloads)."""
    run_dir = tmp_path / f"{track}-{preset}"
    run_dir.mkdir()
    module = "baselines.run" if track == "baseline" else "llm.run"
    values = printed_config([sys.executable, "-m", module, "--model", preset])
    (run_dir / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in values.items()), encoding="utf-8")
    return run_dir


@pytest.mark.integration
@pytest.mark.parametrize("command", [c for c in COVERAGE if COVERAGE[c] == "config"])
def test_config_commands_resolve(command: str, tmp_path: Path) -> None:
    track, preset = ("llm", "llama3.2-ko-3b") if " llm" in command or "llm.run" in command else ("baseline", "kobart")
    argv = track_command(command, saved_run(tmp_path, track, preset))
    values = printed_config(argv)
    overrides = shlex.split(command.split("ARGS=", 1)[1])[0].split() if "ARGS=" in command else []
    for key, value in parse_overrides(overrides).items():
        assert yaml.safe_load(values[key]) == value, (key, values[key])


@pytest.mark.integration
@pytest.mark.parametrize("command", [c for c in COVERAGE if COVERAGE[c].startswith("demo:")])
def test_demo_runs_the_readme_settings(command: str, tmp_path: Path) -> None:
    target = COVERAGE[command][len("demo:"):]
    (demo_line,) = [line for line in make_dry_run([target]) if " -m " in line]
    demo = printed_config([sys.executable, *shlex.split(demo_line)[1:]])
    readme = printed_config(track_command(command, tmp_path))
    assert readme == demo


@pytest.mark.integration
def test_demo_stages_run_the_readme_modules() -> None:
    prerequisites = re.search(r"^demo: (.*)$", (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M)
    for command, how in COVERAGE.items():
        if how.startswith("stage:"):
            target = how[len("stage:"):]
            assert target in prerequisites.group(1).split(), target
            lines = make_dry_run([target])
            module = command.split()[2] if command.startswith("python -m") else None
            assert module is None or any(f"-m {module} " in line for line in lines), (command, lines)


@pytest.mark.integration
def test_fast_lane_runs_the_unit_tests_only() -> None:
    """`make test-fast` lints, then runs every test but those that train, start processes or read ../shared."""
    lines = make_dry_run(["test-fast"])
    assert any("-m ruff check" in line for line in lines), lines
    (pytest_line,) = [line for line in lines if "-m pytest" in line]
    expression = shlex.split(pytest_line)[shlex.split(pytest_line).index("-m", 3) + 1]
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", expression],
                               cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    files = {line.split("::")[0] for line in collected.stdout.splitlines() if "::" in line}
    assert "tests/test_imports.py" in files and "tests/test_config.py" in files, sorted(files)
    assert not files & {"tests/test_real_models.py", "tests/test_full_size_runs.py", "tests/test_score_cli.py"}
    assert "test_fast_lane_runs_the_unit_tests_only" not in collected.stdout  # integration itself
