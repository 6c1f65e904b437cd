"""The real preset folders (tokenizer, chat template, config), unpacked from `../shared/models.tar.xz`."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest

from helpers import PROJECT_ROOT

ARCHIVE = PROJECT_ROOT.parent / "shared" / "models.tar.xz"
UNPACK = PROJECT_ROOT.parent / "shared" / "tools" / "models.sh"


@functools.lru_cache(maxsize=None)
def models_dir() -> Path:
    """The unpacked preset folders (skip without the archive), in the user's cache folder or a temporary one."""
    if not ARCHIVE.is_file():
        pytest.skip(f"real model files not present at {ARCHIVE}")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shared-models"
    for dest in (cache, Path(os.environ.get("TMPDIR", "/tmp")) / f"shared-models-{os.getuid()}"):
        done = subprocess.run(["bash", str(UNPACK), str(dest)], capture_output=True, text=True)
        if done.returncode == 0:
            return Path(done.stdout.strip().splitlines()[-1])
    pytest.fail(f"{UNPACK} failed: {done.stderr[-2000:]}")
