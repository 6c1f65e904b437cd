"""Bad input, reported the same way by every package: error types a CLI turns into one `error:` line and exit 2,
and `warn` for a problem that does not stop the run."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

BAD_INPUT_EXIT_CODE = 2
_said: set[str] | None = None  # inside `each_warning_once`: the warnings already printed


class DataError(ValueError):
    """A competition file is not what the harness expects; the message says where and what."""


class ConfigError(ValueError):
    """A configuration value or preset name is not valid; the message lists what is."""


def warn(message: str) -> None:
    """A problem that does not stop the run, on stderr (the same `warning: ...` line in every CLI)."""
    if _said is not None:
        if message in _said:
            return  # a file read twice by one command (test.csv, then against a submission) warns once
        _said.add(message)
    print(f"warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def each_warning_once() -> Iterator[None]:
    """Within this block (one command, `exit_on_bad_input`), a repeated warning is printed only the first time."""
    global _said
    outer, _said = _said, set() if _said is None else _said
    try:
        yield
    finally:
        _said = outer
