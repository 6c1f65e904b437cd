"""A simple extractive candidate: the most central utterance of each dialogue.

`python -m ensemble.extractive --data DIR --out RUN_DIR` writes preds_dev.csv and preds_test.csv (with metadata
sidecars), like `competition.trivial` does for the first utterance. Centrality is the competition similarity
(`competition.rules.metric.similarity`) between an utterance and the rest of the dialogue, so the pick is the utterance
that best "summarises" the others by the metric itself; its speaker tag is kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from competition.harness.cli import exit_on_bad_input
from competition.harness.logs import setup_logging
from competition.rules.data import load_splits
from competition.rules.metric import DEFAULT_ANALYZER, similarity
from competition.rules.predictions import PredictionMeta, write_predictions

SYSTEM_NAME = "extractive-central"


def utterances(dialogue: str) -> list[str]:
    """The non-empty lines of a dialogue."""
    return [line.strip() for line in dialogue.splitlines() if line.strip()]


def central_utterance(dialogue: str, analyzer: str = DEFAULT_ANALYZER) -> str:
    """The utterance most similar to the rest of the dialogue (first one on ties; the text itself if one line)."""
    lines = utterances(dialogue)
    if len(lines) <= 1:
        return lines[0] if lines else dialogue.strip()
    scores = [similarity(line, "\n".join(lines[:i] + lines[i + 1:]), analyzer) for i, line in enumerate(lines)]
    return lines[max(range(len(lines)), key=lambda i: (scores[i], -i))]


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with dev.csv and test.csv")
    parser.add_argument("--out", required=True, help="run folder to write predictions into")
    args = parser.parse_args(argv)
    setup_logging()
    splits = load_splits(args.data, required=("dev", "test"), optional=())
    for split, frame in splits.frames.items():
        summaries = [central_utterance(d) for d in tqdm(frame["dialogue"], desc=f"extractive {split}")]
        out = Path(args.out) / f"preds_{split}.csv"
        metadata = PredictionMeta(split, str(Path(args.out)), system=SYSTEM_NAME, source=str(splits.paths[split]))
        write_predictions(out, frame["fname"], summaries, metadata)
        print(f"wrote {out} ({len(frame)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
