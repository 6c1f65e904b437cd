"""Shared-study mode: two tuning workers (separate processes) on one study in a real PostgreSQL server.

The test starts a throwaway PostgreSQL on 127.0.0.1 (Debian package `postgresql`; installed with apt-get when
missing and running as root) and skips, saying why, only when it cannot be installed or started.
Run: `.venv/bin/python -m pytest -q tests/test_tune_postgres.py`
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers.fake_track import write_space, write_tiny_data
from helpers.postgres import PostgresUnavailable, postgres_server
from optuna.trial import TrialState

TESTS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = TESTS_DIR.parent
N_TRIALS = 8

WORKER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import optuna
from tuning.study import TuneSettings
from tuning.tune import run_study
from helpers import fake_track
optuna.logging.set_verbosity(optuna.logging.WARNING)
settings = TuneSettings(track="baseline", preset="fake", data_dir=Path({data!r}), out_dir=Path({out!r}),
                        n_trials={n}, space_path=Path({space!r}), storage={url!r}, study_name="shared",
                        pruner="none", overrides={{"epochs": 3, "seconds_per_epoch": 0.1}})
run_study(fake_track.as_track(), settings)
"""


@pytest.fixture(scope="module")
def postgres_url():
    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as err:
        pytest.skip(f"PostgreSQL unavailable: {err}")


@pytest.mark.integration
@pytest.mark.postgres
def test_two_workers_share_one_study_without_duplicates(tmp_path, postgres_url):
    data = write_tiny_data(tmp_path / "data")
    space = write_space(tmp_path / "space.yaml", {"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
                                                  "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2}})
    script = WORKER.format(tests=str(TESTS_DIR), data=str(data), out=str(tmp_path / "tune"), n=N_TRIALS,
                           space=str(space), url=postgres_url)
    workers = [subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # each worker stops once the shared budget is met; one trial may already be running in the other worker
    assert N_TRIALS <= len(complete) <= N_TRIALS + 1 and len(complete) == len(trials)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    run_dirs = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(run_dirs)) == len(run_dirs)
    for trial in trials:  # every trial was trained exactly once, by the worker that recorded it
        started = (Path(trial.user_attrs["run_dir"]) / "started.txt").read_text().split()
        assert started == [trial.user_attrs["worker"].rsplit(":", 1)[1]]
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers took trials
    assert len({t.params["lr"] for t in trials}) == len(trials)  # workers do not propose in lockstep
