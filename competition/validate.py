"""Validate a submission: `python -m competition.validate SUB.csv --test TEST.csv` (exit 0 valid, 2 invalid)."""

from __future__ import annotations

import argparse
import sys

from competition.cli import exit_on_bad_input
from competition.submission import validate_submission


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("submission", help="submission CSV to check")
    parser.add_argument("--test", required=True, help="the competition test.csv it answers")
    args = parser.parse_args(argv)
    rows = validate_submission(args.submission, args.test)
    print(f"ok: {args.submission} is a valid submission ({rows} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
