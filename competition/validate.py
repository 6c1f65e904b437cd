"""Validate competition files (exit 0 valid, 2 invalid, with one `error:` line naming file, row and column).

    python -m competition.validate --data DIR                   # train/dev/test (+ sample_submission) in DIR
    python -m competition.validate SUB.csv --test TEST.csv      # a submission against the test file
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from competition.harness.cli import exit_on_bad_input
from competition.rules.data import data_special_tokens, load_splits
from competition.rules.submission import validate_submission


def validate_data_dir(data_dir: Path | str) -> None:
    """Validate every competition file in a folder, print its size and columns, then its special tokens."""
    splits = load_splits(data_dir, required=("dev", "test"), optional=("train",))
    paths = splits.paths
    for split in ("train", "dev", "test"):
        if split in splits:
            columns = list(splits[split].columns.drop("references", errors="ignore"))
            print(f"{paths[split]}: {len(splits[split])} rows, columns {columns}")
    if "sample_submission" in paths:
        validate_submission(paths["sample_submission"], paths["test"])
        print(f"{paths['sample_submission']}: valid submission format")
    print("special tokens:", " ".join(data_special_tokens(splits.frames.values())))


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submission", nargs="?", help="submission CSV to check (with --test)")
    parser.add_argument("--test", help="the competition test.csv the submission answers")
    parser.add_argument("--data", help="folder with train.csv, dev.csv, test.csv (and sample_submission.csv)")
    args = parser.parse_args(argv)
    if args.data is not None:
        if args.submission or args.test:
            parser.error("--data checks a data folder; give either --data DIR or SUB.csv --test TEST.csv")
        validate_data_dir(args.data)
        return 0
    if not (args.submission and args.test):
        parser.error("give a submission and --test TEST.csv, or --data DIR")
    rows = validate_submission(args.submission, args.test)
    print(f"ok: {args.submission} is a valid submission ({rows} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
