"""The one rule that turns an error into the command's message and exit status."""

from __future__ import annotations

import sys

from steadyrank.core.errors import SteadyRankError

# What a subcommand may raise for a bad input or a failed job; anything else is a bug and
# keeps its traceback.
EXPECTED = (SteadyRankError, ValueError, OSError, TimeoutError)


def exit_code(err: BaseException) -> int:
    """1 for a failed job, 2 for a caller's mistake (a bad argument value)."""
    if isinstance(err, SteadyRankError):
        return err.exit_code
    return 2 if isinstance(err, ValueError) else 1


def report(err: BaseException) -> int:
    """Prints ``error: MESSAGE`` on stderr; returns the exit status."""
    print(f"error: {err}", file=sys.stderr)
    return exit_code(err)
