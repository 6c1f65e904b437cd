"""Trainer checkpoints that are complete or ignored, for both tracks.

The Trainer writes `checkpoint-N/` folders in place, so a full disk or a kill during a save leaves a partial one.
`MarkCheckpointComplete` writes a `COMPLETE` marker into each folder once its save has finished, and
`last_complete_checkpoint` (used on resume instead of transformers' `get_last_checkpoint`) takes the newest folder
with a marker, skipping newer incomplete ones with a warning. `disk_full_as_os_error` turns the libraries' own
full-disk failures during a save into the OSError the CLIs print as one `error: PATH: No space left on device` line.
"""

from __future__ import annotations

import errno
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from competition.rules.errors import warn
from competition.rules.files import write_text_atomic

COMPLETE_MARKER = "COMPLETE"
# How a full disk reads when a library's writer meets it: safetensors' SafetensorError (`IoError(Os { code: 28,
# kind: StorageFull, ... })`) and torch.save's zip writer (`[enforce fail at inline_container.cc:672] unexpected
# pos ...` or `file write failed`: a short write), neither of which is an OSError.
DISK_FULL_SIGNS = ("No space left on device", "StorageFull", "os error 28", "code: 28", "unexpected pos",
                   "file write failed")
CHECKPOINT_FOLDER = re.compile(r"checkpoint-(\d+)")


def checkpoint_folders(checkpoint_dir: Path | str) -> list[Path]:
    """The `checkpoint-N` folders in a Trainer output folder, newest (highest N) first."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoint_dir.iterdir()
             if p.is_dir() and (m := CHECKPOINT_FOLDER.fullmatch(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def is_complete(folder: Path | str) -> bool:
    """True when the folder's save finished (it holds the marker)."""
    return (Path(folder) / COMPLETE_MARKER).is_file()


def last_complete_checkpoint(checkpoint_dir: Path | str) -> str | None:
    """The newest complete checkpoint folder (as the Trainer's `resume_from_checkpoint` string), or None.

    Newer folders without the marker (a save that was cut short) are skipped with a warning naming them.
    """
    for folder in checkpoint_folders(checkpoint_dir):
        if is_complete(folder):
            return str(folder)
        warn(f"{folder}: incomplete checkpoint (no {COMPLETE_MARKER} marker: its save was cut short); skipped")
    return None


def mark_complete_callback():
    """A TrainerCallback writing the marker into each checkpoint folder after the Trainer has saved it."""
    from transformers import TrainerCallback

    class MarkCheckpointComplete(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():  # one writer under DDP
                write_text_atomic(folder / COMPLETE_MARKER, f"step {state.global_step}\n")

    return MarkCheckpointComplete()


def is_disk_full(err: BaseException) -> bool:
    """True for a full-disk failure of a save: OSError ENOSPC, or a library's own error that says so (DISK_FULL_SIGNS)."""
    if isinstance(err, OSError):
        return err.errno == errno.ENOSPC
    return isinstance(err, Exception) and any(sign in str(err) for sign in DISK_FULL_SIGNS)


def saving_folder(folder: Path | str) -> Path:
    """The folder a save into `folder` was writing: its newest checkpoint without the marker, else `folder`."""
    incomplete = [p for p in checkpoint_folders(folder) if not is_complete(p)]
    return incomplete[0] if incomplete else Path(folder)


@contextmanager
def disk_full_as_os_error(folder: Path | str) -> Iterator[None]:
    """Saves under `folder` (a Trainer's output folder, or a model folder): a library's full-disk error becomes
    OSError(ENOSPC) naming the checkpoint folder being written, so the CLI edge prints one line and exits 2. The
    folder keeps no COMPLETE marker, so a resumed run skips it."""
    try:
        yield
    except Exception as err:
        if isinstance(err, OSError) or not is_disk_full(err):
            raise
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(saving_folder(folder))) from err
