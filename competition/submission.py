"""Submission files: the writer, the validator and the ledger. The one place that knows the submission format.

Format (as the real sample_submission.csv): a leading unnamed index column, then `fname,summary`, in test order.
Submissions go to `submissions/` under unique names and are never overwritten; each gets a ledger row.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from competition.data import read_split, read_text_checked, where
from competition.errors import DataError
from competition.files import atomic_path

SUBMISSIONS_DIR = Path("submissions")
LEDGER_NAME = "ledger.csv"
LEDGER_COLUMNS = ("time", "name", "source_runs", "dev_score", "config_hash", "rows")
LEFTOVER_TOKENS = ("<s>", "</s>", "<pad>", "<usr>", "<unk>")
HEADER = ",fname,summary"


def submission_csv_text(fnames: Sequence[str], summaries: Sequence[str]) -> str:
    """Render rows exactly like sample_submission.csv."""
    buffer = io.StringIO()
    pd.DataFrame({"fname": list(fnames), "summary": list(summaries)}).to_csv(buffer, index=True)
    return buffer.getvalue()


def validate_submission(path: Path | str, test_path: Path | str) -> int:
    """Check a submission against the test file; return the row count or raise DataError naming the problem."""
    text = read_text_checked(path)  # encoding, BOM, empty file
    header = text.splitlines()[0]
    if header.strip() != HEADER:
        raise DataError(f"{where(path, column='header')}: header '{header}'; expected '{HEADER}' "
                        f"(leading unnamed index column, then fname,summary)")
    submission = read_split(path, "submission")
    test = read_split(test_path, "test")
    if len(submission) != len(test):
        raise DataError(f"{where(path)}: {len(submission)} rows; expected {len(test)} (one per test dialogue)")
    for row, (got, expected) in enumerate(zip(submission["fname"], test["fname"]), start=1):
        if got != expected:
            raise DataError(f"{where(path, row, 'fname')}: '{got}'; expected '{expected}' (test order)")
    for row, summary in enumerate(submission["summary"], start=1):
        if not summary.strip():
            raise DataError(f"{where(path, row, 'summary')}: empty summary; expected text")
        leftover = [t for t in LEFTOVER_TOKENS if t in summary]
        if leftover:
            raise DataError(f"{where(path, row, 'summary')}: leftover model tokens {leftover}; strip them first")
    return len(submission)


@dataclass(frozen=True)
class LedgerEntry:
    """One row of `submissions/ledger.csv`."""

    name: str
    source_runs: str = ""
    dev_score: float | None = None
    config_hash: str = ""
    rows: int = 0


def write_submission(fnames: Sequence[str], summaries: Sequence[str], test_path: Path | str,
                     label: str = "submission", out_dir: Path | str = SUBMISSIONS_DIR,
                     source_runs: Sequence[str] = (), dev_score: float | None = None,
                     config_hash: str = "") -> Path:
    """Validate and write a new submission under a unique name, then append its ledger row.

    The file is validated before it takes its final name, so an invalid submission never appears.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = submission_csv_text(fnames, summaries)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"-{attempt}"
        path = out_dir / f"{stamp}_{_safe_label(label)}{suffix}.csv"
        if path.exists():
            continue
        try:
            with atomic_path(path, overwrite=False) as temp:
                temp.write_text(text, encoding="utf-8")
                rows = validate_submission(temp, test_path)
        except FileExistsError:
            continue
        append_ledger(out_dir, LedgerEntry(path.name, ";".join(source_runs), dev_score, config_hash, rows))
        return path
    raise RuntimeError(f"could not find a free submission name in {out_dir}")


def _safe_label(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label)[:60] or "submission"


def append_ledger(out_dir: Path | str, entry: LedgerEntry) -> Path:
    """Append one row to the ledger, rewriting it atomically so a crash never truncates it."""
    ledger = Path(out_dir) / LEDGER_NAME
    existing = ledger.read_text(encoding="utf-8") if ledger.is_file() else ",".join(LEDGER_COLUMNS) + "\n"
    buffer = io.StringIO()
    score = "" if entry.dev_score is None else f"{entry.dev_score:.4f}"
    csv.writer(buffer, lineterminator="\n").writerow(
        [time.strftime("%Y-%m-%dT%H:%M:%S"), entry.name, entry.source_runs, score, entry.config_hash, entry.rows]
    )
    with atomic_path(ledger) as temp:
        temp.write_text(existing + buffer.getvalue(), encoding="utf-8")
    return ledger


def read_ledger(out_dir: Path | str = SUBMISSIONS_DIR) -> pd.DataFrame:
    """The ledger as a table (empty when no submission was written yet)."""
    ledger = Path(out_dir) / LEDGER_NAME
    if not ledger.is_file():
        return pd.DataFrame(columns=list(LEDGER_COLUMNS))
    return pd.read_csv(ledger, dtype=str, keep_default_na=False)
