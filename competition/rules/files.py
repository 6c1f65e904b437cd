"""Atomic file writing: outputs are complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator

_CREATE_ATTEMPTS = 100
_BUILDING, _ASIDE = ".building", ".old"  # suffixes of a folder being built and of one set aside while replaced


def _create_temp_beside(path: Path) -> Path:
    """Create an empty, uniquely named temp file beside `path` with the process umask's permissions.

    `tempfile.mkstemp` always creates mode 0600, which leaves submissions and the ledger unreadable to
    teammates. Creating with mode 0666 lets the kernel apply the umask (0644 under umask 022) without
    reading or changing the process umask, which is not thread-safe.
    """
    return _unique_beside(path, ".tmp", _create_empty_file)


def _create_empty_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def temp_dir_beside(path: Path | str) -> Path:
    """Create an empty, uniquely named folder beside `path` with the umask's permissions (0755 under umask 022;
    `tempfile.mkdtemp` makes 0700). Build a checkpoint in it, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _unique_beside(path, _BUILDING, lambda temp: os.mkdir(temp, 0o777))


def replace_dir(building: Path | str, target: Path | str) -> Path:
    """Move the complete folder `building` (from `temp_dir_beside(target)`) to `target`, replacing an existing one
    whole: the old folder is renamed aside, the new one in, then the old one removed. A kill between the two
    renames leaves `target` absent and the old folder aside; `clear_temp_dirs_beside` puts it back."""
    building, target = Path(building), Path(target)
    aside = target.parent / f".{target.name}.{secrets.token_hex(6)}{_ASIDE}" if target.exists() else None
    if aside is not None:
        os.rename(target, aside)
    os.rename(building, target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return target


def clear_temp_dirs_beside(target: Path | str) -> None:
    """Clean up after an interrupted `replace_dir`: remove `target`'s unfinished builds; a folder set aside is put
    back when `target` is missing (the kill came between the renames), else removed."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    for temp in sorted(target.parent.glob(f".{glob.escape(target.name)}.*")):
        if not temp.is_dir() or temp.suffix not in (_BUILDING, _ASIDE):
            continue
        if temp.suffix == _ASIDE and not target.exists():
            os.rename(temp, target)
        else:
            shutil.rmtree(temp, ignore_errors=True)


def _unique_beside(path: Path, suffix: str, create: Callable[[Path], None]) -> Path:
    """`create` a fresh hidden name beside `path` (retrying on a name clash) and return it."""
    for _ in range(_CREATE_ATTEMPTS):
        temp = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            create(temp)
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(f"{path.parent}: no free temp name for {path.name} after {_CREATE_ATTEMPTS} attempts")


@contextlib.contextmanager
def atomic_path(path: Path | str, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success move it into place, on error delete it.

    The file gets the permissions of a normal file under the process umask. With `overwrite=False` an
    existing file is never replaced (FileExistsError), even in a race.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _create_temp_beside(path)
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
    """Write UTF-8 text (no BOM, no newline translation) atomically."""
    with atomic_path(path, overwrite=overwrite) as temp:
        with open(temp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
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
