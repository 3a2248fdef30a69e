"""What a dataset preset is: one file per preset under this package, one line each in the
registry (:mod:`steadyrank.model.data.presets`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steadyrank.model.config import Config
from steadyrank.model.schema import Schema


@dataclass(frozen=True)
class Preset:
    """A named dataset shape.

    ``schema``: its schema for a config (some depend on ``model.task``). ``time_column``:
    the column that orders its rows in time. A *source* preset brings its own rows
    (``data.format = NAME``): ``reader`` opens them for a config and ``checksum`` names
    them; ``fetch`` (``steadyrank data fetch NAME``) downloads them. Any preset's schema
    can be named for files of that shape (``[data] schema = NAME``); ``file_format``: the
    file format that implies it (Criteo's TSV).
    """

    name: str
    summary: str
    schema: Callable[[Config], Schema]
    time_column: str = ""
    reader: Callable[[Config], Any] | None = None
    checksum: Callable[[Config], str] | None = None
    fetch: Callable[..., Path] | None = None
    file_format: str = ""

    @property
    def is_source(self) -> bool:
        """Whether the preset brings its own rows (a ``data.format`` of its own)."""
        return self.reader is not None
