"""CLI of the encoder-decoder track.

    python -m baselines.run --model kobart --data data --out runs [--config C] [--demo] [KEY=VALUE ...]
    python -m baselines.run --resume runs/baseline-kobart-20250101-120000 --data data   # continue a run

Bad input (unknown preset or key, malformed data) prints `error: ...` and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from baselines.config import BaselineConfig, load_config
from baselines.pipeline import CONFIG_FILE, run
from competition.cli import exit_on_bad_input
from competition.config import load_yaml, parse_overrides
from competition.distributed import is_main_process
from competition.errors import ConfigError
from competition.logs import setup_logging


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m baselines.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="kobart", help="seq2seq preset (kobart, kobart-base-v2, pko-t5-large, ...)")
    parser.add_argument("--data", default="data", help="folder with train.csv, dev.csv (and test.csv)")
    parser.add_argument("--out", default="runs", help="runs go to OUT/baseline-<preset>-<stamp>/")
    parser.add_argument("--config", help="YAML file (e.g. baselines/configs/kobart.yaml)")
    parser.add_argument("--demo", action="store_true", help="small CPU settings for the tiny model")
    parser.add_argument("--resume", type=Path, help="an earlier run folder: continue from its last checkpoint")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. learning_rate=3e-5")
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> BaselineConfig:
    """The run's config; a resumed run reuses its saved config (overrides still apply on top)."""
    overrides = parse_overrides(args.overrides)
    if args.resume is None:
        return load_config(args.model, args.config, overrides, demo=args.demo)
    saved = args.resume / CONFIG_FILE
    if not saved.is_file():
        raise ConfigError(f"{args.resume}: no {CONFIG_FILE}; expected a run folder written by baselines.run")
    preset = load_yaml(saved).get("preset", args.model)
    return load_config(preset, saved, overrides)


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    config = resolve(args)
    run_dir = run(config, args.data, args.out, run_dir=args.resume)
    if is_main_process():  # every rank returns the run folder; say it once
        print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
