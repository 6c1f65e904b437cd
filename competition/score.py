"""Score predictions against gold references with the competition metric.

    python -m competition.score --pred PRED.csv --gold GOLD.csv [--analyzer mecab] [--json] [--report DIR]

Prints rouge1, rouge2, rougeL (F1, 0-1) and final (0-100). With --json, stdout holds exactly one JSON
object with those four keys; progress goes to stderr. PRED's fnames must equal GOLD's (exit 2 otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys

from competition.harness.cli import exit_on_bad_input
from competition.rules.data import align_predictions, read_gold, read_predictions
from competition.rules.metric import ANALYZERS, DEFAULT_ANALYZER, RougeResult, compute_rouge
from competition.rules.report import write_rouge_report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m competition.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pred", required=True, help="predictions CSV: fname,summary (leading index column allowed)")
    parser.add_argument("--gold", required=True, help="gold CSV: fname and summary or summary1..summaryN")
    parser.add_argument("--analyzer", default=DEFAULT_ANALYZER, choices=ANALYZERS, help="tokenizer (default: mecab)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the four scores")
    parser.add_argument("--report", metavar="DIR", help="also write rouge_report.md/.json and plots into DIR")
    return parser.parse_args(argv)


def score_files(pred_path: str, gold_path: str, analyzer: str, report_dir: str | None = None) -> RougeResult:
    """Read, align and score two files; optionally write the full report."""
    gold = read_gold(gold_path)
    predictions = align_predictions(read_predictions(pred_path), gold["fname"], pred_path)
    references = list(gold["references"])
    if report_dir is None:
        return compute_rouge(predictions, references, analyzer=analyzer, progress=True)
    return write_rouge_report(
        report_dir, list(gold["fname"]), predictions, references,
        topics=list(gold["topic"]) if "topic" in gold.columns else None,
        dialogues=list(gold["dialogue"]) if "dialogue" in gold.columns else None,
        analyzer=analyzer, title=f"ROUGE report: {pred_path} vs {gold_path}",
    )


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = score_files(args.pred, args.gold, args.analyzer, args.report)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        for key, value in result.as_dict().items():
            print(f"{key}: {value:.4f}")
    if args.report:
        print(f"report written to {args.report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
