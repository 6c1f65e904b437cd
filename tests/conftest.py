"""Shared test fixtures (shared helpers live in tests/helpers/). Run the whole suite with `make test`, the unit
tests alone with `make test-fast` (it leaves out the `integration`, `gpu` and `postgres` markers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import PROJECT_ROOT, REAL_DATA_DIR, SAMPLE_DIR

# Tests never reach the model hub; tiny checkpoints are built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# torch.compile's kernels for the tests stay in the checkout: a stale or half-written entry in the machine's shared
# /tmp cache (seen: an "invalid ELF header" .so left by a killed run) cannot fail them.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(PROJECT_ROOT / ".cache" / "torchinductor"))
# Commands under test write submissions where each test says, never into a folder named by the caller's $SUBMISSIONS.
os.environ.pop("SUBMISSIONS", None)


@pytest.fixture
def sample_dir() -> Path:
    """The bundled sample data (the project's own)."""
    return SAMPLE_DIR


@pytest.fixture
def real_data_dir() -> Path:
    """The real competition files beside the repo; tests using them skip when they are absent."""
    if not (REAL_DATA_DIR / "dev.csv").is_file():
        pytest.skip(f"real competition data not present at {REAL_DATA_DIR}")
    return REAL_DATA_DIR
