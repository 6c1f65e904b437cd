"""One logging setup for every CLI: INFO on rank 0, WARNING on the other ranks, so under torchrun each message
appears once (rank 0 speaks for the run) while a warning or error of any rank still shows.

Library code logs through `logging.getLogger(__name__)`; a CLI's `main` calls `setup_logging()` first. A CLI's
final result line (run folder, score) stays a plain `print` on rank 0, so scripts can read it from stdout.
"""

from __future__ import annotations

import logging
import os

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def launch_rank() -> int:
    """The rank torchrun gives this process (0 alone): known before any process group exists.

    Read from the environment, like `competition.harness.distributed.rank` before initialisation, so that CLIs without
    torch (ensembling, scoring) do not import it just to set up logging.
    """
    return int(os.environ.get("RANK", "0"))


def setup_logging(level: int = logging.INFO) -> None:
    """Log `level` and above to stderr on rank 0, WARNING and above on the other ranks.

    Does nothing when the root logger already has handlers (an embedding program or pytest set it up).
    """
    logging.basicConfig(level=level if launch_rank() == 0 else max(level, logging.WARNING), format=LOG_FORMAT)
