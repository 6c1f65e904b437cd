"""Shared CLI behaviour: bad input becomes one clear line on stderr and exit code 2."""

from __future__ import annotations

import functools
import sys
from typing import Callable

from competition.errors import BAD_INPUT_EXIT_CODE, ConfigError, DataError


def exit_on_bad_input(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI `main` so DataError and ConfigError print `error: ...` and return 2 instead of a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except (DataError, ConfigError) as err:
            print(f"error: {err}", file=sys.stderr)
            return BAD_INPUT_EXIT_CODE

    return wrapper
