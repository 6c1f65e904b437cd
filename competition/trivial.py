"""Trivial lead baseline: the first utterance of each dialogue, speaker tag kept.

`python -m competition.trivial --data DIR --out RUN_DIR` writes preds_dev.csv and preds_test.csv. It is the floor
every model must beat, and a cheap extra candidate for the ensembler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from competition.harness.cli import exit_on_bad_input
from competition.rules.data import first_utterance, load_splits
from competition.rules.predictions import PredictionMeta, write_predictions


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="folder with dev.csv and test.csv")
    parser.add_argument("--out", required=True, help="run folder to write predictions into")
    args = parser.parse_args(argv)
    splits = load_splits(args.data, required=("dev", "test"), optional=())  # validate all before writing
    for split, frame in splits.frames.items():
        out = Path(args.out) / f"preds_{split}.csv"
        write_predictions(out, frame["fname"], [first_utterance(d) for d in frame["dialogue"]],
                          PredictionMeta(split, system="lead", source=str(splits.paths[split])))
        print(f"wrote {out} ({len(frame)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
