"""Error types for bad input, shared by every package: a CLI turns them into one `error:` line and exit 2."""

from __future__ import annotations

BAD_INPUT_EXIT_CODE = 2


class DataError(ValueError):
    """A competition file is not what the harness expects; the message says where and what."""


class ConfigError(ValueError):
    """A configuration value or preset name is not valid; the message lists what is."""
