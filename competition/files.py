"""Atomic file writing: outputs are complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: Path | str, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success move it into place, on error delete it.

    With `overwrite=False` an existing file is never replaced (FileExistsError), even in a race.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        if overwrite:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # fails if path exists: no overwrite, no window
            temp.unlink()
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path | str, text: str, overwrite: bool = True) -> Path:
    """Write UTF-8 text atomically."""
    with atomic_path(path, overwrite=overwrite) as temp:
        temp.write_text(text, encoding="utf-8")
    return Path(path)
