"""Reading and validating competition files: the one place that knows the CSV formats.

Every check raises `DataError` with the file, the row (1-based, header excluded), the column and what was
expected, so a CLI can print one line and exit 2 (see `competition.harness.cli.exit_on_bad_input`).
`python -m competition.validate --data DIR` checks every file of a data folder.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

import pandas as pd

from competition.rules.errors import DataError, warn

SplitKind = Literal["train", "dev", "test", "gold", "predictions", "submission"]

SPEAKER_PATTERN = re.compile(r"#Person\d+#")
MASK_PATTERN = re.compile(r"#[A-Z][A-Za-z]*#")
# Masks documented for the competition data; always added to tokenizers, even if a split lacks some.
KNOWN_MASKS = (
    "#PhoneNumber#", "#Address#", "#PassportNumber#", "#DateOfBirth#", "#SSN#",
    "#CardNumber#", "#CarNumber#", "#Email#",
)
MULTI_REFERENCE_PATTERN = re.compile(r"summary(\d+)")
UTF8_BOM = b"\xef\xbb\xbf"
ZIP_MAGIC = b"PK\x03\x04"  # .xlsx (and any zip)
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls
LONG_TEXT_CHARS = 20_000  # real dialogues are a few thousand characters; far longer is a pasted file
# What a spreadsheet, pandas or a script writes for a missing value; never a summary.
PLACEHOLDERS = frozenset({"nan", "none", "null", "n/a", "na", "<na>", "nil", "undefined", "-", "--", "."})
NUMBER = re.compile(r"[-+]?(\d+([.,]\d*)?|\.\d+)([eE][-+]?\d+)?")


def where(path: Path | str, row: int | None = None, column: str | None = None) -> str:
    """Format a location such as `data/dev.csv, row 5, column 'dialogue'`."""
    parts = [str(path)]
    if row is not None:
        parts.append(f"row {row}")
    if column is not None:
        parts.append(f"column '{column}'")
    return ", ".join(parts)


@dataclass(frozen=True)
class Schema:
    """Columns a file kind must and may have."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    references: bool = False  # `summary` or `summary1..summaryN`
    index_column: bool = False  # leading unnamed index, as in sample_submission.csv


SCHEMAS: dict[str, Schema] = {
    "train": Schema(("fname", "dialogue"), ("topic",), references=True),
    "dev": Schema(("fname", "dialogue"), ("topic",), references=True),
    "test": Schema(("fname", "dialogue"), ("topic",)),
    "gold": Schema(("fname",), ("dialogue", "topic"), references=True),
    "predictions": Schema(("fname", "summary"), index_column=True),
    "submission": Schema(("fname", "summary"), index_column=True),
}


def read_bytes_checked(path: Path) -> bytes:
    """The file's bytes; a missing path, a folder or a spreadsheet saved under .csv is a DataError saying so.

    An unreadable file raises OSError (with its path and reason), which the CLI edge prints as one line.
    """
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected a CSV file")
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file; expected a CSV file")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty; expected a CSV header and rows")
    if raw.startswith(ZIP_MAGIC) or raw.startswith(OLE2_MAGIC):
        kind = "an Excel .xlsx workbook (a ZIP archive)" if raw.startswith(ZIP_MAGIC) else "an Excel .xls workbook"
        raise DataError(f"{path}: is {kind}, not a CSV text file; export it from the spreadsheet as 'CSV UTF-8'")
    return raw


def read_text_checked(path: Path | str) -> str:
    """Read a file as UTF-8, rejecting a missing or empty file, a spreadsheet, a BOM and other encodings (CP949)."""
    path = Path(path)
    raw = read_bytes_checked(path)
    if raw.startswith(UTF8_BOM):
        raise DataError(
            f"{path}: starts with a UTF-8 byte-order mark (BOM); expected plain UTF-8. "
            f"Re-save without BOM, e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' {path}`"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        hint = " It looks like CP949/EUC-KR." if _decodes_as_cp949(raw) else ""
        raise DataError(
            f"{path}: line {line}: not valid UTF-8 (byte {err.start}).{hint} "
            f"Convert it: `iconv -f cp949 -t utf-8 {path} > fixed.csv`"
        ) from None


def _decodes_as_cp949(raw: bytes) -> bool:
    try:
        raw.decode("cp949")
        return True
    except UnicodeDecodeError:
        return False


def read_csv_checked(path: Path | str) -> pd.DataFrame:
    """Parse a CSV as strings (empty cells stay ""), with encoding and quoting errors made readable."""
    import io

    path = Path(path)
    text = read_text_checked(path)
    header = text.split("\n", 1)[0]
    if "\t" in header and "," not in header:
        raise DataError(f"{path}: tab-separated (TSV: the header has tabs and no commas); expected a comma-separated "
                        f"CSV with the header {header.replace(chr(9), ',').strip()}")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: malformed CSV: {err}; expected every row to have the header's fields "
                        f"(check the quotes: an unclosed quote around a multi-line dialogue?)") from None
    if frame.empty:
        raise DataError(f"{path}: has a header but no rows")
    return frame if unicodedata.is_normalized("NFC", text) else to_nfc(frame, path)


def to_nfc(frame: pd.DataFrame, path: Path | str) -> pd.DataFrame:
    """Every value in Unicode NFC, with one warning counting the rows that changed.

    Decomposed Hangul (NFD, as macOS tools and some editors write) looks the same but matches no composed
    morpheme: the same predictions in NFD score far lower.
    """
    changed = pd.Series(False, index=frame.index)
    columns = {}
    for column in frame.columns:
        columns[column] = frame[column].map(lambda text: unicodedata.normalize("NFC", text))
        changed |= columns[column] != frame[column]
    if changed.any():
        row = int(changed.to_numpy().argmax()) + 1
        warn(f"{where(path, row)}: {int(changed.sum())} of {len(frame)} rows were not in Unicode NFC (decomposed "
             f"Hangul, as macOS tools write); read as NFC")
    return pd.DataFrame(columns, index=frame.index)


def reference_columns(columns: Iterable[str]) -> list[str]:
    """`['summary']` or `['summary1', ..., 'summaryN']` in order; empty if neither is present."""
    columns = list(columns)
    if "summary" in columns:
        return ["summary"]
    numbered = sorted(
        (int(m.group(1)), c) for c in columns if (m := MULTI_REFERENCE_PATTERN.fullmatch(c))
    )
    return [c for _, c in numbered]


def check_columns(frame: pd.DataFrame, path: Path | str, schema: Schema) -> pd.DataFrame:
    """Reject missing or extra columns; drop a leading unnamed index column where the kind allows it."""
    columns = list(frame.columns)
    if schema.index_column and columns and (columns[0] == "" or columns[0].startswith("Unnamed: 0")):
        frame = frame.drop(columns=columns[0])
        columns = columns[1:]
    references = reference_columns(columns) if schema.references else []
    missing = [c for c in schema.required if c not in columns]
    if schema.references and not references:
        missing.append("summary (or summary1..summaryN)")
    if references and references != ["summary"]:
        expected = [f"summary{i}" for i in range(1, len(references) + 1)]
        if references != expected:
            raise DataError(f"{where(path)}: reference columns {references}; expected {expected}")
    allowed = set(schema.required) | set(schema.optional) | set(references)
    extra = [c for c in columns if c not in allowed]
    if missing or extra:
        expected = list(schema.required) + (["summary"] if schema.references else [])
        raise DataError(
            f"{where(path)}: columns {columns}; missing {missing}, unexpected {extra}; "
            f"expected {expected} (optional: {list(schema.optional)})"
        )
    return frame


def check_unique_fnames(frame: pd.DataFrame, path: Path | str) -> None:
    """Reject duplicate fnames, naming both rows."""
    first_row: dict[str, int] = {}
    for row, fname in enumerate(frame["fname"], start=1):
        if fname in first_row:
            raise DataError(
                f"{where(path, row, 'fname')}: duplicate fname '{fname}' (first seen at row {first_row[fname]})"
            )
        first_row[fname] = row


def check_fnames_trimmed(frame: pd.DataFrame, path: Path | str) -> None:
    """Reject an fname with leading or trailing spaces: it would never match the same fname elsewhere."""
    padded = frame["fname"] != frame["fname"].str.strip()
    if padded.any():
        row = int(padded.to_numpy().argmax()) + 1
        raise DataError(f"{where(path, row, 'fname')}: fname {frame['fname'].iloc[row - 1]!r} has leading or trailing "
                        f"spaces; expected the bare fname")


def check_non_empty(frame: pd.DataFrame, path: Path | str, columns: Sequence[str]) -> None:
    """Reject blank cells in the given columns."""
    for column in columns:
        blank = frame[column].str.strip() == ""
        if blank.any():
            row = int(blank.to_numpy().argmax()) + 1
            raise DataError(
                f"{where(path, row, column)}: empty {column} (fname '{frame['fname'].iloc[row - 1]}'); "
                f"expected non-empty text"
            )


def check_no_repeated_header(frame: pd.DataFrame, path: Path | str) -> None:
    """Reject a row that repeats the header (files concatenated with their headers)."""
    repeated = pd.concat([frame[c] == c for c in frame.columns], axis=1).all(axis=1)
    if repeated.any():
        row = int(repeated.to_numpy().argmax()) + 1
        raise DataError(f"{where(path, row)}: repeats the header row {list(frame.columns)} (files concatenated?); "
                        f"expected data rows only")


def warn_about_text(frame: pd.DataFrame, path: Path | str, written_by_model: bool = False) -> None:
    """Warn on carriage returns left inside values (a file saved with CRLF) and on very long texts."""
    for column in [c for c in frame.columns if c != "fname"]:
        values = frame[column]
        carriage = values.str.contains("\r", regex=False)
        if carriage.any():
            row = int(carriage.to_numpy().argmax()) + 1
            advice = ("the summaries hold carriage returns; strip them before submitting" if written_by_model else
                      "CRLF line endings inside the text; the model sees them as characters (convert with `dos2unix`)")
            warn(f"{where(path, row, column)}: {int(carriage.sum())} values keep '\\r': {advice}")
        lengths = values.str.len()
        if (lengths > LONG_TEXT_CHARS).any():
            row = int(lengths.to_numpy().argmax()) + 1
            warn(f"{where(path, row, column)}: {int(lengths.max())} characters (over {LONG_TEXT_CHARS}); "
                 f"expected a dialogue or summary, not a pasted file")


def warn_untagged_dialogues(frame: pd.DataFrame, path: Path | str) -> None:
    """Warn on dialogues without any `#PersonN#` speaker tag: the tracks and the fill-ins expect tagged turns."""
    untagged = ~frame["dialogue"].str.contains(SPEAKER_PATTERN)
    if untagged.any():
        row = int(untagged.to_numpy().argmax()) + 1
        warn(f"{where(path, row, 'dialogue')}: {int(untagged.sum())} of {len(frame)} dialogues have no speaker tag "
             f"(#Person1#: ...; first: fname '{frame['fname'].iloc[row - 1]}'); expected tagged turns")


def placeholder_rows(summaries: pd.Series) -> list[int]:
    """0-based rows whose summary is a missing-value placeholder ("NaN", "None", "null", "N/A") or a number."""
    return [row for row, text in enumerate(summaries)
            if text.strip().lower() in PLACEHOLDERS or NUMBER.fullmatch(text.strip())]


def describe_rows(frame: pd.DataFrame, rows: Sequence[int], column: str, limit: int = 5) -> str:
    """`rows 3 (fname 'a': 'NaN'), 7 (...), ... (12 in all)` for a message (rows 1-based, header excluded)."""
    shown = ", ".join(f"{row + 1} (fname '{frame['fname'].iloc[row]}': {frame[column].iloc[row]!r})"
                      for row in rows[:limit])
    return f"rows {shown}" + (f", ... ({len(rows)} in all)" if len(rows) > limit else "")


def read_split(path: Path | str, kind: SplitKind, shown: Path | str | None = None) -> pd.DataFrame:
    """Read and validate one competition file (warnings on stderr for CRLF remnants and very long texts).

    Files with references (train, dev, gold) gain a `references` column holding a list of strings. `shown` names
    the file in warnings when `path` is a temporary copy of it.
    """
    schema = SCHEMAS[kind]
    frame = check_columns(read_csv_checked(path), path, schema)
    check_no_repeated_header(frame, path)
    warn_about_text(frame, shown or path, written_by_model=kind in ("predictions", "submission"))
    check_unique_fnames(frame, path)
    check_non_empty(frame, path, ["fname"] + [c for c in ("dialogue",) if c in frame.columns])
    check_fnames_trimmed(frame, path)
    if kind in ("train", "dev", "test"):
        warn_untagged_dialogues(frame, shown or path)
    if schema.references:
        ref_columns = reference_columns(frame.columns)
        check_non_empty(frame, path, ref_columns)
        frame = frame.assign(references=frame[ref_columns].apply(list, axis=1))
    return frame.reset_index(drop=True)


def read_predictions(path: Path | str) -> pd.DataFrame:
    """Read `fname,summary` predictions (a leading index column, as in submissions, is accepted).

    Empty summaries, placeholders ("NaN", "None", ...) and numbers are read (they score about 0) with a warning:
    a submission refuses them.
    """
    frame = read_split(path, "predictions")
    blank = frame["summary"].str.strip() == ""
    if blank.any():
        row = int(blank.to_numpy().argmax()) + 1
        warn(f"{where(path, row, 'summary')}: {int(blank.sum())} of {len(frame)} summaries are empty "
             f"(first: fname '{frame['fname'].iloc[row - 1]}'); they score 0 and a submission rejects them")
    placeholders = placeholder_rows(frame["summary"])
    if placeholders:
        warn(f"{where(path, column='summary')}: {len(placeholders)} of {len(frame)} summaries are placeholders or "
             f"numbers, not text: {describe_rows(frame, placeholders, 'summary', limit=3)}; they score about 0 and "
             f"a submission refuses them")
    return frame


def read_gold(path: Path | str) -> pd.DataFrame:
    """Read references for scoring: `fname` plus `summary` or `summary1..N` (dialogue and topic when present)."""
    return read_split(path, "gold")


def align_predictions(pred: pd.DataFrame, fnames: Sequence[str], pred_path: Path | str,
                      reference: str = "the gold file",
                      show_names: Callable[[list[str]], str] | None = None) -> list[str]:
    """Return `pred`'s summaries in `fnames` order; missing or extra fnames are an error, never a silent drop.

    The one alignment of predictions to a gold, test or other system's fname list. `reference` names that list
    in the error; `show_names` formats the first missing/extra names (default: `[a, b, ...]`).
    """
    predicted = dict(zip(pred["fname"], pred["summary"]))
    missing = [f for f in fnames if f not in predicted]
    extra = sorted(set(predicted) - set(fnames))
    if missing or extra:
        show = show_names or preview
        raise DataError(f"{where(pred_path, column='fname')}: fnames differ from {reference}: "
                        f"{len(missing)} missing {show(missing)}, {len(extra)} extra {show(extra)}")
    return [predicted[f] for f in fnames]


def preview(items: Sequence[str], limit: int = 5) -> str:
    """`[a, b, c, ...]`: the first names of a list, for a message."""
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def split_paths(data_dir: Path | str) -> dict[str, Path]:
    """The competition files present in a data folder: train, dev, test, sample_submission."""
    data_dir = Path(data_dir)
    names = {"train": "train.csv", "dev": "dev.csv", "test": "test.csv", "sample_submission": "sample_submission.csv"}
    # `exists`, not `is_file`: a folder named dev.csv is reported as one when read, not as a missing file
    return {split: data_dir / name for split, name in names.items() if (data_dir / name).exists()}


TRAINING_SPLITS = ("train", "dev")


@dataclass(frozen=True)
class Splits:
    """A data folder's competition splits, read and validated once: `frames` by split name (`splits["dev"]`), and
    `paths` of every competition file present (run provenance hashes them; a submission is checked against test)."""

    data_dir: Path
    frames: dict[str, pd.DataFrame]
    paths: dict[str, Path]

    def __getitem__(self, split: str) -> pd.DataFrame:
        return self.frames[split]

    def __contains__(self, split: object) -> bool:
        return split in self.frames


def load_splits(data: Splits | Path | str, required: Sequence[str] = TRAINING_SPLITS,
                optional: Sequence[str] = ("test",), overlap_with: Sequence[str] = ("dev", "test")) -> Splits:
    """The `required` splits (a DataError names every missing file) and the `optional` ones present, validated.

    Train rows shared with the `overlap_with` splits (same fname or same dialogue) are counted in a warning.
    Splits already loaded are returned as they are, once they hold the required ones.
    """
    present = data.frames if isinstance(data, Splits) else split_paths(data)
    missing = [f"{split}.csv" for split in required if split not in present]
    if missing:
        where_from = data.data_dir if isinstance(data, Splits) else data
        raise DataError(f"{where_from}: file not found: {', '.join(missing)}; expected "
                        f"{', '.join(f'{split}.csv' for split in required)}")
    if isinstance(data, Splits):
        return data
    frames = {split: read_split(present[split], split) for split in (*required, *optional)  # type: ignore[arg-type]
              if split in present}
    for split in overlap_with:
        if "train" in frames and split in frames:
            warn_train_overlap(frames["train"], frames[split], present["train"], present[split])
    return Splits(Path(data), frames, present)


def warn_train_overlap(train: pd.DataFrame, other: pd.DataFrame, train_path: Path, other_path: Path) -> None:
    """Warn when train shares fnames or identical dialogues with another split: its scores would be in-sample."""
    fnames = sorted(set(train["fname"]) & set(other["fname"]))
    dialogues = set(train["dialogue"].str.strip()) & set(other["dialogue"].str.strip())
    if not fnames and not dialogues:
        return
    rows = other["fname"][other["dialogue"].str.strip().isin(dialogues)].tolist()
    consequence = ("dev scores of a model trained on them are in-sample" if "references" in other.columns
                   else "a model trained on them has seen those dialogues")
    warn(f"{train_path}: {len(fnames)} fnames {preview(fnames, 3)} and {len(dialogues)} identical dialogues "
         f"(fnames in {other_path.name}: {preview(rows, 3)}) also in {other_path}; {consequence}: remove them "
         f"from train")


def first_utterance(dialogue: str) -> str:
    """The first non-empty line of a dialogue, e.g. `#Person1#: 안녕하세요.`."""
    return next((line.strip() for line in dialogue.splitlines() if line.strip()), dialogue.strip())


def special_tokens(texts: Iterable[str]) -> list[str]:
    """Speaker tags and masks found in the texts plus the known masks, sorted (speakers first).

    The tracks add these to tokenizers as normal (non-special) tokens, so decoding keeps them.
    """
    found: set[str] = set(KNOWN_MASKS)
    for text in texts:
        found.update(MASK_PATTERN.findall(text))
        found.update(SPEAKER_PATTERN.findall(text))
    speakers = sorted((t for t in found if SPEAKER_PATTERN.fullmatch(t)), key=lambda t: int(t[7:-1]))
    return speakers + sorted(found - set(speakers))


def data_special_tokens(frames: Iterable[pd.DataFrame]) -> list[str]:
    """Special-token inventory over the dialogues and references of several loaded splits."""
    texts: list[str] = []
    for frame in frames:
        if "dialogue" in frame.columns:
            texts.extend(frame["dialogue"])
        if "references" in frame.columns:
            texts.extend(ref for refs in frame["references"] for ref in refs)
    return special_tokens(texts)


def file_sha256(path: Path | str) -> str:
    """Content hash recorded with every run, so results can be traced to the exact data."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
