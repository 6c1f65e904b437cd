"""CLI of the encoder-decoder track.

    python -m baselines.run --model kobart --data data --out runs [--config C] [--demo] [KEY=VALUE ...]
    python -m baselines.run --model kobart --print-config                 # every setting, its hint and source
    python -m baselines.run --resume runs/baseline-kobart-20250101-120000 --data data   # continue a run

Without --config, `baselines/configs/<model>.yaml` is used when it exists. Bad input (unknown preset or key, a
value of the wrong type, malformed data) prints `error: ...` and exits 2.
"""

from __future__ import annotations

import sys

from baselines.track import TRACK
from competition.harness.cli import exit_on_bad_input
from competition.harness.tracks import track_cli


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    return track_cli(TRACK, argv, "python -m baselines.run", __doc__, default_model="kobart")


if __name__ == "__main__":
    sys.exit(main())
