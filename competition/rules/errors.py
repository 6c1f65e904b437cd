"""Bad input, reported the same way by every package: error types a CLI turns into one `error:` line and exit 2,
and `warn` for a problem that does not stop the run."""

from __future__ import annotations

import sys

BAD_INPUT_EXIT_CODE = 2


class DataError(ValueError):
    """A competition file is not what the harness expects; the message says where and what."""


class ConfigError(ValueError):
    """A configuration value or preset name is not valid; the message lists what is."""


def warn(message: str) -> None:
    """A problem that does not stop the run, on stderr (the same `warning: ...` line in every CLI)."""
    print(f"warning: {message}", file=sys.stderr)
