"""The shared logging setup: INFO on rank 0, WARNING on other ranks. Run: `python -m pytest -q tests/test_logs.py`.

Each case runs in a fresh interpreter, because `logging.basicConfig` configures a process once (and pytest's own
handlers would make it a no-op here).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import PROJECT_ROOT

pytestmark = pytest.mark.integration  # every case starts an interpreter

SCRIPT = ("import logging; from competition.harness.logs import setup_logging; setup_logging(); "
          "log = logging.getLogger('demo'); log.info('info line'); log.warning('warning line')")


def log_lines(rank: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RANK": rank}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # logs go to stderr; stdout stays for results
    return done.stderr.splitlines()


@pytest.mark.parametrize(("rank", "expected"), [
    ("0", ["INFO demo: info line", "WARNING demo: warning line"]),
    ("1", ["WARNING demo: warning line"]),
])
def test_info_on_rank_0_only_warnings_everywhere(rank: str, expected: list[str]) -> None:
    assert log_lines(rank) == expected
