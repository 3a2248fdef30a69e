"""Progress output: one line per event on stderr, prefixed with the job's name.

Library functions take a ``log: Log`` argument (a callable taking one line) and default to
:func:`say`; the command gives each job its own prefix with :func:`sayer`, tests pass a
list's ``append`` or a no-op.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Log = Callable[[str], None]


def sayer(prefix: str) -> Log:
    """A :data:`Log` that prints ``[steadyrank PREFIX] line`` on stderr, flushed."""
    def say_line(msg: str) -> None:
        print(f"[steadyrank {prefix}] {msg}", file=sys.stderr, flush=True)
    say_line.__name__ = f"say_{prefix}"
    return say_line


say: Log = sayer("train")  # the default of training and evaluation functions


def quiet(_msg: str) -> None:
    """A :data:`Log` that drops every line."""
