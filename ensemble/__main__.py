"""Ensemble prediction files:
`python -m ensemble (--preds A.csv B.csv ... | --runs DIR) --out OUT [--method M] [--gold DEV.csv] [--test TEST.csv]
 [--config C.yaml] [--disable-rule NAME ...] [KEY=VALUE ...]`

OUT is a folder (preds_dev.csv, preds_test.csv with sidecars, run.json, config.yaml, report/), built beside it and
swapped in whole (a folder holding other files is refused), unless it ends in .csv (one split only). Identical
systems count once. --runs finds every preds_dev.csv + preds_test.csv pair below DIR (DIR/ensemble and OUT
skipped). --test defaults to test.csv beside --gold. Methods: default (auto with --gold, else fusion with >= 3
systems), auto (best cross-validated dev score), fusion (sentence-level fusion from the MBR pick), mbr,
weighted-mbr, best, topic. Different fnames across inputs: exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from competition.harness.cli import exit_on_bad_input
from competition.harness.config import (
    Layer,
    describe_config,
    parse_overrides,
    resolve_config,
    resolve_layers,
    yaml_layer,
)
from competition.harness.logs import setup_logging
from ensemble.config import METHOD_CHOICES, EnsembleConfig
from ensemble.pipeline import check_replaceable, load_inputs, run_ensemble, write_outputs
from ensemble.postprocess import RULES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ensemble", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preds", nargs="+", default=[], help="prediction CSVs (fname,summary), dev and/or test")
    parser.add_argument("--runs", help="folder searched recursively for preds_dev.csv + preds_test.csv pairs")
    parser.add_argument("--out", help="output folder, or OUT.csv for a single split (required unless --print-config)")
    parser.add_argument("--method", choices=METHOD_CHOICES, help="ensembling method (default: config, 'default')")
    parser.add_argument("--gold", help="dev.csv with references: scores, fitted methods, rule measurements")
    parser.add_argument("--test", help="test.csv (default: test.csv beside --gold): row order, dialogues, topics")
    parser.add_argument("--config", help="YAML file with EnsembleConfig keys")
    parser.add_argument("--disable-rule", action="append", default=[], choices=list(RULES), metavar="RULE",
                        help=f"turn a post-processing rule off (repeatable): {', '.join(RULES)}")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (value, hint, the layer that set it) and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. folds=10")
    return parser


def config_layers(args: argparse.Namespace) -> list[Layer]:
    """--config YAML < KEY=VALUE overrides < --method, each named by its source."""
    layers = [yaml_layer(args.config)] if args.config else []
    layers.append(Layer("command line", parse_overrides(args.overrides)))
    if args.method:
        layers.append(Layer("--method", {"method": args.method}))
    return layers


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging()
    layers = config_layers(args)
    config = resolve_config(EnsembleConfig, *layers)
    if args.print_config:
        print(describe_config(config, resolve_layers(EnsembleConfig, layers)[1]), end="")
        return 0
    config.rules = [r for r in config.rules if r not in args.disable_rule]
    test = args.test or (str(Path(args.gold).with_name("test.csv")) if args.gold and
                         Path(args.gold).with_name("test.csv").is_file() else None)
    if args.out and Path(args.out).suffix.lower() != ".csv":
        check_replaceable(Path(args.out))  # before the slow part: a folder --out is replaced whole
    exclude = [args.out] + ([Path(args.runs) / "ensemble"] if args.runs else [])
    inputs = load_inputs(args.preds, args.runs, args.gold, test, exclude)
    print(f"{len(inputs.systems)} systems: {', '.join(s.name for s in inputs.systems)}; splits: {list(inputs.order)}")
    result = run_ensemble(config, inputs)
    for name, score in result.system_scores.items():
        print(f"  dev {score['postprocessed']:6.2f} (raw {score['raw']:6.2f})  {name}")
    for m in result.method_scores:
        print(f"  dev {m.in_sample:6.2f} (cross-validated {m.cross_validated:6.2f})  method {m.method}")
    for note in result.notes:
        print(f"  note: {note}")
    written = write_outputs(result, inputs, args.out)
    score = f", dev {result.dev_score:.2f}" if result.dev_score is not None else ""
    print(f"method {result.method}{score}; wrote {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
