"""Progress output: one line per event on stderr, prefixed with the job's name.

Library functions take a ``log: Log`` argument (a callable taking one line) and default to
:func:`say`; the command gives each job its own prefix with :func:`sayer`, tests pass a
list's ``append`` or a no-op.
"""

from __future__ import annotations

import sys
import time
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


class Progress:
    """Progress lines of a long pass: done/total, rows per second and an ETA, at most one
    every ``every`` seconds."""

    def __init__(self, what: str, total: int, log: Log, every: float = 15.0) -> None:
        self.what, self.total, self.log, self.every = what, total, log, every
        self.started = self.last = time.perf_counter()

    def update(self, done: int, extra: str = "") -> None:
        """Reports ``done`` rows when ``every`` seconds have passed since the last line."""
        now = time.perf_counter()
        if now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        eta = f", ETA {(self.total - done) / rate:,.0f} s" if self.total and rate else ""
        self.log(f"{self.what}: {done:,}/{self.total:,} rows ({rate:,.0f} rows/s{eta})"
                 + (f", {extra}" if extra else ""))
