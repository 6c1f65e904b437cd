"""Write a validated submission from test predictions:
`python -m competition.submit --pred PREDS_TEST.csv --test TEST.csv [--label NAME] [--dev-pred PREDS_DEV.csv --gold DEV.csv]`

The predictions are put in test order (a missing or extra fname is an error), validated, written under a unique
name in --submissions (default $SUBMISSIONS, else submissions/) and recorded in the ledger with the dev score when dev predictions are given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from competition.harness.cli import exit_on_bad_input
from competition.harness.config import config_hash
from competition.rules.data import align_predictions, read_gold, read_split
from competition.rules.predictions import read_predictions_with_metadata
from competition.rules.submission import (
    LEDGER_NAME,
    check_summaries_are_text,
    default_submissions_dir,
    write_submission,
)


def dev_score(dev_pred_path: str, gold_path: str, analyzer: str = "mecab") -> float:
    """Competition score (0-100) of dev predictions."""
    from competition.rules.metric import compute_rouge

    gold = read_gold(gold_path)
    predictions = align_predictions(read_predictions_with_metadata(dev_pred_path)[0], gold["fname"], dev_pred_path)
    return compute_rouge(predictions, list(gold["references"]), analyzer).final


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", required=True, help="test predictions (fname,summary)")
    parser.add_argument("--test", required=True, help="competition test.csv")
    parser.add_argument("--label", default="submission", help="short name put in the file name")
    parser.add_argument("--dev-pred", help="dev predictions of the same system, to record its dev score")
    parser.add_argument("--gold", help="dev.csv with references (with --dev-pred)")
    parser.add_argument("--submissions", "--out-dir", dest="submissions", type=Path, default=None,
                        help="folder for submissions and the ledger (default: $SUBMISSIONS, else submissions/)")
    args = parser.parse_args(argv)

    predictions, metadata = read_predictions_with_metadata(args.pred)
    check_summaries_are_text(predictions, args.pred)  # named by the file given, before a submission is built
    test = read_split(args.test, "test")
    summaries = align_predictions(predictions, test["fname"], args.pred, reference="the test file")
    score = dev_score(args.dev_pred, args.gold) if args.dev_pred and args.gold else None
    sources = metadata.get("source_runs") or [metadata.get("run_dir", args.pred)]
    out_dir = args.submissions or default_submissions_dir()
    path = write_submission(test["fname"], summaries, args.test, label=args.label, out_dir=out_dir,
                            source_runs=[str(s) for s in sources], dev_score=score,
                            config_hash=metadata.get("config_hash") or config_hash(metadata))
    note = f", dev score {score:.2f}" if score is not None else ""
    print(f"wrote {path} (validated{note}); ledger: {out_dir / LEDGER_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
