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


@contextlib.contextmanager
def no_partial_outputs(folder: Path | str) -> Iterator[Path]:
    """Write several outputs into `folder`: on an error, the files and folders created inside are removed again.

    Files that existed before are left as they were (each is replaced atomically or not at all). An OSError
    without a path (a full disk during a write) is re-raised naming `folder`.
    """
    folder = Path(folder)
    before = set(folder.rglob("*")) if folder.exists() else None
    try:
        yield folder
    except BaseException as err:
        _remove_new(folder, before)
        if isinstance(err, OSError) and err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(folder)) from err
        raise


def _remove_new(folder: Path, before: set[Path] | None) -> None:
    if not folder.exists():
        return
    created = sorted((p for p in folder.rglob("*") if before is None or p not in before), reverse=True)
    for path in created:  # deepest first, so folders are empty when removed
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()
        else:
            path.unlink(missing_ok=True)
    if before is None:
        with contextlib.suppress(OSError):
            folder.rmdir()
