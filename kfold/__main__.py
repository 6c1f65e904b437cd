"""K-fold training of a track's preset, then the fold ensemble and a validated submission.

    python -m kfold --track baseline --model kobart --data data --k 5 --out runs/kfold [--config C] [--demo]
                    [--seed 42] [--include-dev] [--name NAME] [--ensemble-method M] [KEY=VALUE ...]

Fold k trains on the other folds (stratified by topic, seeded) and picks its best checkpoint on fold k; each fold
run predicts the real dev, the test and its held-out rows (preds_oof.csv). Rerun the same command to resume.
--include-dev folds train+dev together (final submission): dev scores are then in-sample. Bad input: exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from competition.harness.cli import exit_on_bad_input
from competition.harness.config import parse_overrides
from competition.harness.distributed import end_multi_process_run, is_main_process
from competition.harness.memory import prefer_expandable_segments
from competition.harness.tracks import TRACK_MODULES
from competition.rules.submission import default_submissions_dir
from kfold.pipeline import KFoldSettings, run_kfold


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kfold", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--track", default="baseline", choices=sorted(TRACK_MODULES))
    parser.add_argument("--model", required=True, help="preset name, e.g. kobart, tiny-bart, llama3.2-ko-3b")
    parser.add_argument("--data", required=True, help="folder with train.csv, dev.csv and test.csv")
    parser.add_argument("--k", type=int, default=5, help="number of folds")
    parser.add_argument("--out", default="runs/kfold", help="the K-fold folder goes to OUT/<track>-<model>-k<K>/")
    parser.add_argument("--config", help="track config YAML (default: the track's shipped YAML, as its CLI)")
    parser.add_argument("--demo", action="store_true", help="the track's small CPU settings")
    parser.add_argument("--seed", type=int, default=42, help="fold assignment seed")
    parser.add_argument("--include-dev", action="store_true",
                        help="fold train+dev together (for a final submission; dev scores become in-sample)")
    parser.add_argument("--name", help="K-fold folder name (default: <track>-<model>-k<K>[-with-dev])")
    parser.add_argument("--ensemble-method", default="default",
                        help="the ensembler's method over the fold runs (default: its default; mbr with "
                             "--include-dev)")
    parser.add_argument("--submissions", type=Path, default=None,
                        help="where the submission goes (default: $SUBMISSIONS, else submissions/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="track config overrides")
    return parser.parse_args(argv)


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prefer_expandable_segments()
    settings = KFoldSettings(
        track=args.track, preset=args.model, data_dir=Path(args.data), out_dir=Path(args.out), k=args.k,
        seed=args.seed, include_dev=args.include_dev, config_path=Path(args.config) if args.config else None,
        overrides=parse_overrides(args.overrides), demo=args.demo, name=args.name,
        ensemble_method=args.ensemble_method,
        submissions_dir=args.submissions or default_submissions_dir())
    kfold_dir = run_kfold(settings)
    if is_main_process():
        print(f"K-fold folder: {kfold_dir}")
    end_multi_process_run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
