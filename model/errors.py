"""Errors of the model package."""

from __future__ import annotations

from pathlib import Path

from steadyrank.ops._errors import SteadyRankError


class DataError(SteadyRankError, ValueError):
    """A data file is missing or malformed; the message names the file and the problem."""

    def __init__(self, where: str | Path, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = str(where)
        self.problem = problem
