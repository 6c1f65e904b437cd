"""Predictions files: `fname,summary` CSV plus a `.meta.json` sidecar with the run's metadata.

Every track writes these for dev and test; the ensembler reads them (plain CSVs without a sidecar work too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from competition.rules.data import first_utterance, read_predictions
from competition.rules.errors import DataError, warn
from competition.rules.files import atomic_path, write_text_atomic

FILL_INS = "empty_replaced_by_lead"  # sidecar key: how many empty summaries `fill_empty` replaced


@dataclass(frozen=True)
class PredictionMeta:
    """The `.meta.json` sidecar of a predictions file: where its summaries came from.

    Unset fields are not written; `extra` holds a writer's own keys (K-fold's fold, the ensembler's method, ...).
    """

    split: str | None = None
    run_dir: str | None = None
    track: str | None = None
    preset: str | None = None
    config_hash: str | None = None
    checkpoint: str | None = None
    system: str | None = None  # a system without a trained model: lead, extractive-central, ensemble
    source: str | None = None  # the data file such a system read
    fill_ins: int | None = None  # written under FILL_INS
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's JSON object."""
        core = {FILL_INS if f.name == "fill_ins" else f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "extra" and getattr(self, f.name) is not None}
        return {**core, **self.extra}


def fill_empty(summaries: Sequence[str], dialogues: Sequence[str]) -> tuple[list[str], int]:
    """Replace empty summaries (invalid in a submission) by the dialogue's first utterance; count them."""
    filled = [s if s.strip() else first_utterance(d) for s, d in zip(summaries, dialogues)]
    return filled, sum(1 for s in summaries if not s.strip())


def fill_in_counts(prediction_files: Mapping[str, Path | str]) -> dict[str, dict[str, Any]]:
    """Per split, from the predictions' sidecars: rows, fill-ins (empty summaries replaced) and their share."""
    counts = {}
    for split, path in prediction_files.items():
        frame, metadata = read_predictions_with_metadata(path)
        filled = int(metadata.get(FILL_INS, 0))
        counts[split] = {"rows": len(frame), "filled": filled, "share": filled / max(len(frame), 1)}
    return counts


def fill_in_note(counts: Mapping[str, Mapping[str, Any]]) -> str:
    """`fill-ins (empty summaries replaced by the first utterance): dev 3 of 499 (0.6%), test ...` for reports."""
    parts = [f"{split} {c['filled']} of {c['rows']} ({c['share']:.1%})" for split, c in counts.items()]
    return "fill-ins (empty summaries replaced by the dialogue's first utterance): " + ", ".join(parts)


def fill_in_block(counts: Mapping[str, Mapping[str, Any]], max_share: float, submit_anyway: bool) -> str | None:
    """Why the run must not submit (too many fill-ins: its scores are the lead baseline's), or None.

    Over `max_share` the run says so on stderr either way; `submit_anyway` (submit_despite_fill_ins) lets it submit.
    """
    over = {split: c for split, c in counts.items() if c["share"] > max_share}
    if not over:
        return None
    message = (f"{fill_in_note(over)} is over max_fill_in_share={max_share:g}: the model wrote nothing for those "
               f"rows and its dev score is largely the lead baseline's")
    if submit_anyway:
        warn(f"{message}; submitting anyway (submit_despite_fill_ins=true)")
        return None
    warn(f"{message}; NOT SUBMITTING (set submit_despite_fill_ins=true to submit anyway)")
    return message


def metadata_path(predictions_path: Path | str) -> Path:
    """`run/preds_dev.csv` -> `run/preds_dev.meta.json`."""
    return Path(predictions_path).with_suffix(".meta.json")


def write_predictions(path: Path | str, fnames: Sequence[str], summaries: Sequence[str],
                      metadata: PredictionMeta | Mapping[str, Any] | None = None, overwrite: bool = True) -> Path:
    """Write predictions atomically, in the given fname order, with an optional metadata sidecar; `overwrite=False`
    never replaces an existing file (FileExistsError, even in a race)."""
    if len(fnames) != len(summaries):
        raise ValueError(f"{len(fnames)} fnames but {len(summaries)} summaries")
    with atomic_path(path, overwrite=overwrite) as temp:
        pd.DataFrame({"fname": list(fnames), "summary": list(summaries)}).to_csv(temp, index=False)
    if metadata is not None:
        sidecar = metadata.to_dict() if isinstance(metadata, PredictionMeta) else dict(metadata)
        write_text_atomic(metadata_path(path), json.dumps(sidecar, ensure_ascii=False, indent=2))
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
