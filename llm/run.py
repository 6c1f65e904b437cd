"""CLI of the decoder-only (LLM) track.

    python -m llm.run --model llama3.2-ko-3b --data data --out runs [--config C] [--demo] [KEY=VALUE ...]
    python -m llm.run --model qwen3-14b --print-config        # every setting, its hint and the layer that set it
    python -m llm.run --resume runs/llm-<model>-<stamp> --data data   # continue a run with its saved config

Without --config, `llm/configs/<model>.yaml` is used when it exists. A resumed run restarts training from its last
checkpoint and predictions from their `.partial.jsonl` sidecars. On several GPUs: `torchrun --standalone
--nproc_per_node=N -m llm.run ...` (`make llm GPUS=N`). Bad input prints `error: ...` and exits 2.
"""

from __future__ import annotations

import sys

from competition.harness.cli import exit_on_bad_input
from competition.harness.tracks import track_cli
from llm.track import TRACK


@exit_on_bad_input
def main(argv: list[str] | None = None) -> int:
    return track_cli(TRACK, argv, "python -m llm.run", __doc__, default_model="llama3.2-ko-3b")


if __name__ == "__main__":
    sys.exit(main())
