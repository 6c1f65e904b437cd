"""CLI of the encoder-decoder track.

    python -m baselines.run --model kobart --data data --out runs [--config C] [--demo] [KEY=VALUE ...]
    python -m baselines.run --model kobart --print-config                 # every setting, its hint and source
    python -m baselines.run --resume runs/baseline-kobart-20250101-120000 --data data   # continue a run

Without --config, `baselines/configs/<model>.yaml` is used when it exists. Bad input (unknown preset or key, a
value of the wrong type, malformed data) prints `error: ...` and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from baselines.config import SETTINGS
from baselines.pipeline import run
from competition.cli import exit_on_bad_input
from competition.config import add_track_arguments, layers_from_args
from competition.distributed import is_main_process
from competition.logs import setup_logging


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m baselines.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_track_arguments(parser, default_model="kobart")
    args = parser.parse_args(argv)
    setup_logging()
    layers = layers_from_args(SETTINGS, args)
    if args.print_config:
        print(SETTINGS.describe(layers), end="")
        return 0
    run_dir = run(SETTINGS.resolve(layers), args.data, args.out, run_dir=args.resume, submissions_dir=args.submissions)
    if is_main_process():  # every rank returns the run folder; say it once
        print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
