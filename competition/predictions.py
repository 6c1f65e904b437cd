"""Predictions files: `fname,summary` CSV plus a `.meta.json` sidecar with the run's metadata.

Every track writes these for dev and test; the ensembler reads them (plain CSVs without a sidecar work too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from competition.data import first_utterance, read_predictions
from competition.errors import DataError
from competition.files import atomic_path, write_text_atomic


def fill_empty(summaries: Sequence[str], dialogues: Sequence[str]) -> tuple[list[str], int]:
    """Replace empty summaries (invalid in a submission) by the dialogue's first utterance; count them."""
    filled = [s if s.strip() else first_utterance(d) for s, d in zip(summaries, dialogues)]
    return filled, sum(1 for s in summaries if not s.strip())


def metadata_path(predictions_path: Path | str) -> Path:
    """`run/preds_dev.csv` -> `run/preds_dev.meta.json`."""
    return Path(predictions_path).with_suffix(".meta.json")


def write_predictions(path: Path | str, fnames: Sequence[str], summaries: Sequence[str],
                      metadata: dict[str, Any] | None = None) -> Path:
    """Write predictions atomically, in the given fname order, with an optional metadata sidecar."""
    if len(fnames) != len(summaries):
        raise ValueError(f"{len(fnames)} fnames but {len(summaries)} summaries")
    with atomic_path(path) as temp:
        pd.DataFrame({"fname": list(fnames), "summary": list(summaries)}).to_csv(temp, index=False)
    if metadata is not None:
        write_text_atomic(metadata_path(path), json.dumps(metadata, ensure_ascii=False, indent=2))
    return Path(path)


def read_predictions_with_metadata(path: Path | str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a predictions CSV and its sidecar (empty dict when there is none)."""
    frame = read_predictions(path)
    meta_file = metadata_path(path)
    if not meta_file.is_file():
        return frame, {}
    try:
        return frame, json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{meta_file}: not valid JSON ({err})") from None
