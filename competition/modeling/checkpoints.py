"""Trainer checkpoints that are complete or ignored, for both tracks.

The Trainer writes `checkpoint-N/` folders in place, so a full disk or a kill during a save leaves a partial one.
`MarkCheckpointComplete` writes a `COMPLETE` marker into each folder once its save has finished, and
`last_complete_checkpoint` (used on resume instead of transformers' `get_last_checkpoint`) takes the newest folder
with a marker, skipping newer incomplete ones with a warning.
"""

from __future__ import annotations

import re
from pathlib import Path

from competition.rules.errors import warn
from competition.rules.files import write_text_atomic

COMPLETE_MARKER = "COMPLETE"
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
