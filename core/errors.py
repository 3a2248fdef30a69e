"""The error base of every SteadyRank package, and the error of a bad data file.

``exit_code`` is what the ``steadyrank`` command returns when the error ends it: 1 for a
failure (bad data, a failed build or export), 2 for a caller's mistake (a bad argument).
"""

from __future__ import annotations

from pathlib import Path


class SteadyRankError(Exception):
    """Base of SteadyRank's errors; the message says what went wrong and what to do."""

    exit_code = 1


class DataError(SteadyRankError, ValueError):
    """A data file is missing or malformed; the message names the file and the problem."""

    def __init__(self, where: str | Path, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = str(where)
        self.problem = problem
