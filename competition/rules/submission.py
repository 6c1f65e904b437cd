"""Submission files: the writer, the validator and the ledger. The one place that knows the submission format.

Format (as the real sample_submission.csv): a leading unnamed index column, then `fname,summary`, in test order.
The validator also accepts plain `fname,summary` files: the leaderboard scores both layouts.
Submissions go to `submissions/` under unique names and are never overwritten; each gets a ledger row, written in
the same step under a lock (a submission whose ledger row cannot be written is removed again).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import os
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd

from competition.rules.data import describe_rows, placeholder_rows, preview, read_split, read_text_checked, where
from competition.rules.errors import DataError
from competition.rules.files import atomic_path

SUBMISSIONS_DIR = Path("submissions")
SUBMISSIONS_ENV = "SUBMISSIONS"  # the Makefile variable of the same name sets it for every command
LEDGER_NAME = "ledger.csv"
LEDGER_COLUMNS = ("time", "name", "source_runs", "dev_score", "config_hash", "rows")
# Model special tokens written out as text: what `skip_special_tokens` leaves when a vocabulary also holds them as
# ordinary tokens (Qwen's BPE has a plain "<unk>"), and what the submission validator refuses.
_NAMED_MODEL_TOKENS = ("s", "pad", "unk", "usr", "sys", "sep", "cls", "mask", "bos", "eos", "eot",
                       "end_of_turn", "start_of_turn", "start_of_text", "end_of_text")
MODEL_TOKEN = re.compile(
    r"<\|[A-Za-z0-9_./\-]+\|>"  # <|eot_id|>, <|im_end|>, <|endoftext|>, <|start_header_id|>
    r"|</?(?:" + "|".join(re.escape(t) for t in _NAMED_MODEL_TOKENS) + r")>"
    r"|\[(?:PAD|UNK|CLS|SEP|MASK|BOS|EOS)\]"
)
HEADER = ",fname,summary"
HEADERS = (HEADER, "fname,summary")  # the sample's layout and the plain one; the leaderboard accepts both


def default_submissions_dir() -> Path:
    """Where every command puts submissions: `$SUBMISSIONS` when set, else `submissions/`."""
    return Path(os.environ.get(SUBMISSIONS_ENV) or SUBMISSIONS_DIR)


def submission_csv_text(fnames: Sequence[str], summaries: Sequence[str]) -> str:
    """Render rows exactly like sample_submission.csv, in Unicode NFC (composed Hangul, as the references are)."""
    buffer = io.StringIO()
    pd.DataFrame({"fname": list(fnames),
                  "summary": [unicodedata.normalize("NFC", s) for s in summaries]}).to_csv(buffer, index=True)
    return buffer.getvalue()


def validate_submission(path: Path | str, test_path: Path | str, shown: Path | str | None = None) -> int:
    """Check a submission against the test file; return the row count or raise DataError naming the problem.

    `shown` names the submission in warnings when `path` is its temporary copy.
    """
    submission = read_split(path, "submission", shown)  # encoding, BOM, spreadsheet, TSV, empty file, columns
    header = read_text_checked(path).splitlines()[0]
    if header.strip() not in HEADERS:
        raise DataError(f"{where(path, column='header')}: header '{header}'; expected '{HEADER}' "
                        f"(leading unnamed index column, then fname,summary) or 'fname,summary'")
    test = read_split(test_path, "test")
    if len(submission) != len(test):
        given, expected_fnames = set(submission["fname"]), set(test["fname"])
        missing = [f for f in test["fname"] if f not in given]
        extra = [f for f in submission["fname"] if f not in expected_fnames]
        raise DataError(f"{where(path)}: {len(submission)} rows; expected {len(test)} (one per test dialogue): "
                        f"{len(missing)} missing {preview(missing)}, {len(extra)} extra {preview(extra)}")
    for row, (got, expected) in enumerate(zip(submission["fname"], test["fname"]), start=1):
        if got != expected:
            raise DataError(f"{where(path, row, 'fname')}: '{got}'; expected '{expected}' (test order)")
    check_summaries_are_text(submission, path)
    for row, summary in enumerate(submission["summary"], start=1):
        if not summary.strip():
            raise DataError(f"{where(path, row, 'summary')}: empty summary; expected text")
        leftover = list(dict.fromkeys(MODEL_TOKEN.findall(summary)))
        if leftover:
            raise DataError(f"{where(path, row, 'summary')}: leftover model tokens {leftover}; strip them first")
    return len(submission)


def check_summaries_are_text(frame: pd.DataFrame, path: Path | str) -> None:
    """Refuse placeholders ("NaN", "None", "null", "N/A", ...) and numbers as summaries, naming their rows."""
    placeholders = placeholder_rows(frame["summary"])
    if placeholders:
        every = " (every row: the wrong column?)" if len(placeholders) == len(frame) else ""
        raise DataError(f"{where(path, column='summary')}: {len(placeholders)} summaries are placeholders or numbers, "
                        f"not text{every}: {describe_rows(frame, placeholders, 'summary')}; expected a "
                        f"written summary in every row")


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
    """Validate and write a new submission under a unique name together with its ledger row.

    The file is validated before it takes its final name, so an invalid submission never appears; the file and
    its ledger row are written under the ledger lock, and the file is removed again if the row cannot be written.
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _write_with_ledger_row(out_dir, submission_csv_text(fnames, summaries), test_path, label,
                                      LedgerEntry("", ";".join(source_runs), dev_score, config_hash))
    except BaseException:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed first submission leaves no empty folder
        raise


def _write_with_ledger_row(out_dir: Path, text: str, test_path: Path | str, label: str, entry: LedgerEntry) -> Path:
    """Under the ledger lock: the submission under a free name, then its ledger row (or neither)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with ledger_lock(out_dir):
        for attempt in range(1, 1000):
            suffix = "" if attempt == 1 else f"-{attempt}"
            path = out_dir / f"{stamp}_{_safe_label(label)}{suffix}.csv"
            if path.exists():
                continue
            try:
                rows = _write_validated(path, text, test_path)
            except FileExistsError:
                continue
            try:
                _append_ledger_row(out_dir, dataclasses.replace(entry, name=path.name, rows=rows))
            except BaseException:
                path.unlink(missing_ok=True)  # no submission without its ledger row
                raise
            return path
    raise RuntimeError(f"could not find a free submission name in {out_dir}")


def _write_validated(path: Path, text: str, test_path: Path | str) -> int:
    """Write `text` to `path` (never replacing a file) once it validates; messages name `path`, not the temp file."""
    with atomic_path(path, overwrite=False) as temp:
        try:
            temp.write_text(text, encoding="utf-8")
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(path)) from None  # a full disk names the submission
        try:
            return validate_submission(temp, test_path, shown=path)
        except DataError as err:
            raise DataError(str(err).replace(str(temp), f"submission {path}")) from None


@contextlib.contextmanager
def ledger_lock(out_dir: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on the ledger's folder (flock) so concurrent writers never lose a row.

    The folder itself is locked, not a lock file beside the ledger, so a failed write leaves no file behind.
    """
    handle = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _safe_label(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label)[:60] or "submission"


def append_ledger(out_dir: Path | str, entry: LedgerEntry) -> Path:
    """Append one row to the ledger under the ledger lock (concurrent writers keep every row)."""
    with ledger_lock(out_dir):
        return _append_ledger_row(out_dir, entry)


def _append_ledger_row(out_dir: Path | str, entry: LedgerEntry) -> Path:
    """Append one row, rewriting the ledger atomically so a crash never truncates it (caller holds the lock)."""
    ledger = Path(out_dir) / LEDGER_NAME
    existing = ledger.read_text(encoding="utf-8") if ledger.is_file() else ",".join(LEDGER_COLUMNS) + "\n"
    buffer = io.StringIO()
    score = "" if entry.dev_score is None else f"{entry.dev_score:.4f}"
    csv.writer(buffer, lineterminator="\n").writerow(
        [time.strftime("%Y-%m-%dT%H:%M:%S"), entry.name, entry.source_runs, score, entry.config_hash, entry.rows]
    )
    with atomic_path(ledger) as temp:
        try:
            temp.write_text(existing + buffer.getvalue(), encoding="utf-8")
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(ledger)) from None  # a full disk names the ledger
    return ledger


def read_ledger(out_dir: Path | str = SUBMISSIONS_DIR) -> pd.DataFrame:
    """The ledger as a table (empty when no submission was written yet)."""
    ledger = Path(out_dir) / LEDGER_NAME
    if not ledger.is_file():
        return pd.DataFrame(columns=list(LEDGER_COLUMNS))
    return pd.read_csv(ledger, dtype=str, keep_default_na=False)
