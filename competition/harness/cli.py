"""Shared CLI behaviour: bad input and I/O failures become one clear line on stderr and exit code 2; Ctrl-C one
`interrupted` line (with the resume command of a run) and exit code 130."""

from __future__ import annotations

import functools
import sys
from typing import Callable

from competition.rules.errors import BAD_INPUT_EXIT_CODE, ConfigError, DataError, each_warning_once

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


def os_error_message(err: OSError) -> str:
    """`PATH: REASON` of an I/O failure (unreadable file, full disk, ...), naming both paths of a rename."""
    if err.filename is None:
        return str(err)
    paths = f"{err.filename} -> {err.filename2}" if err.filename2 else str(err.filename)
    return f"{paths}: {err.strerror or err}"


def exit_on_bad_input(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI `main` so DataError, ConfigError and OSError print one `error: ...` line and return 2 (a warning
    repeated within the command prints once), and Ctrl-C prints `interrupted` (`; resume with make ... RESUME=...`
    for a run that can continue) and returns 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            with each_warning_once():
                return main(*args, **kwargs) or 0
        except (DataError, ConfigError) as err:
            print(f"error: {err}", file=sys.stderr)
        except OSError as err:
            print(f"error: {os_error_message(err)}", file=sys.stderr)
        except KeyboardInterrupt as err:
            resume = getattr(err, "resume", None)  # competition.harness.runs.RunInterrupted
            print("interrupted" + (f"; resume with {resume}" if resume else ""), file=sys.stderr)
            return INTERRUPTED_EXIT_CODE
        return BAD_INPUT_EXIT_CODE

    return wrapper
