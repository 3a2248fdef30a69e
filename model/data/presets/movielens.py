"""The MovieLens 100K preset: its rows (fetched and cached, then read whole) and its
schema: the ids, four user facts and two item facts, rated 1-5 (or clicked, with
``model.task = "binary"`` and ``model.binary_threshold``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steadyrank.model.config import Config
from steadyrank.model.data.presets.base import Preset
from steadyrank.model.schema import Feature, Label, Schema, check_schema

NAME = "movielens-100k"
# MovieLens' age bands (as its own users table codes them) and 5-year release periods.
AGE_BANDS = (18.0, 25.0, 35.0, 45.0, 50.0, 56.0)
RELEASE_PERIODS = tuple(float(y) for y in range(1920, 2001, 5))


@dataclass(frozen=True)
class Columns:
    """The MovieLens shape's column names, written once: the schema's features below, the
    fetched copy's columns and the synthetic generator's arrays."""

    user_id: str = "user_id"
    item_id: str = "item_id"
    rating: str = "rating"
    timestamp: str = "timestamp"
    gender: str = "gender"
    occupation: str = "occupation"
    age: str = "age"
    zip: str = "zip"
    genres: str = "genres"
    year: str = "year"


COLUMNS = Columns()
TIME_COLUMN = COLUMNS.timestamp  # of the MovieLens-shaped sources
OCCUPATIONS = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment",
               "executive", "healthcare", "homemaker", "lawyer", "librarian", "marketing",
               "none", "other", "programmer", "retired", "salesman", "scientist", "student",
               "technician", "writer")  # MovieLens' 21, sorted


@dataclass(frozen=True)
class Draw:
    """How the synthetic generator (``steadyrank data synth``) draws one fact of this shape:

    - ``integers``: uniform in [``low``, ``high``);
    - ``choice``: one of ``values``, with probabilities ``p`` (uniform when empty);
    - ``digits``: a zero-padded integer below 10**``width``;
    - ``multi_hot``: ``low`` to ``high - 1`` of ``values[1:]`` (``values[0]`` is left for
      none), as a 0/1 matrix.
    """

    column: str
    kind: str
    low: int = 0
    high: int = 0
    values: tuple[str, ...] = ()
    p: tuple[float, ...] = ()
    width: int = 0


# The synthetic MovieLens-shaped facts, in the order they are drawn (the order fixes the
# bytes of every synthetic dataset, so it never changes), each id's facts stored in
# users.npz / items.npz in the ``*_STORED`` order.
SYNTH_USER_FACTS = (
    Draw(COLUMNS.age, "integers", 7, 74),
    Draw(COLUMNS.gender, "choice", values=("F", "M"), p=(0.3, 0.7)),
    Draw(COLUMNS.occupation, "choice", values=OCCUPATIONS),
    Draw(COLUMNS.zip, "digits", width=5),
)
SYNTH_ITEM_FACTS = (
    Draw(COLUMNS.genres, "multi_hot", 1, 4,
         values=("none", *(f"genre-{i:02d}" for i in range(1, 19)))),
    Draw(COLUMNS.year, "integers", 1930, 2000),
)
SYNTH_USER_STORED = (COLUMNS.age, COLUMNS.gender, COLUMNS.occupation, COLUMNS.zip)
SYNTH_ITEM_STORED = (COLUMNS.year, COLUMNS.genres)
# The planted model's affinity: a user choice fact against an item multi-hot fact.
SYNTH_AFFINITY = (COLUMNS.occupation, COLUMNS.genres)


def movielens_schema(task: str = "rating", threshold: float = 4.0) -> Schema:
    """The MovieLens-shaped schema: ``rating`` label, ids, user and item facts."""
    c = COLUMNS
    return check_schema(Schema(
        Label(c.rating, task, threshold if task == "binary" else None),
        (Feature(c.user_id, "categorical", "user_id", "int64"),
         Feature(c.item_id, "categorical", "item_id", "int64"),
         Feature(c.gender, "categorical", "user", "string"),
         Feature(c.occupation, "categorical", "user", "string"),
         Feature(c.age, "categorical", "user", "int64", boundaries=AGE_BANDS),
         Feature(c.zip, "categorical", "user", "string", truncate=1),
         Feature(c.genres, "multi_hot", "item", "string", max_len=6),
         Feature(c.year, "categorical", "item", "int64", boundaries=RELEASE_PERIODS))))


def schema_for(config: Config) -> Schema:
    """The schema with the config's task (rating, or binary at its threshold)."""
    return movielens_schema(config.model.task, config.model.binary_threshold)


def _folder(config: Config) -> Path:
    from steadyrank.model.data import movielens

    return Path(config.data.data_dir) / movielens.NAME


def reader(config: Config) -> Any:
    """The fetched ratings joined with users and items, held in memory (fetched first when
    ``data.data_dir`` has no verified copy)."""
    from steadyrank.model.data import movielens
    from steadyrank.model.data.sources import TableReader, fetch_movielens, movielens_table

    folder = _folder(config)
    if movielens.read_cache_manifest(folder) is None:
        fetch_movielens(config.data.data_dir)
    table, _ = movielens_table(folder)
    return TableReader(table, str(folder / "ratings.tsv"))


def checksum(config: Config) -> str:
    """The fetched copy's checksum (from its verified manifest)."""
    from steadyrank.model.data import movielens

    manifest = movielens.read_cache_manifest(_folder(config))
    return manifest["checksum"] if manifest else ""


def fetch(data_dir: str | Path = "data", source: str | Path | None = None,
          force: bool = False) -> Path:
    """Fetches, verifies and caches the dataset under ``data_dir``."""
    from steadyrank.model.data.sources import fetch_movielens

    return fetch_movielens(data_dir, source=source, force=force)


PRESET = Preset(NAME, "MovieLens 100K ratings with user and item facts", schema_for,
                TIME_COLUMN, reader=reader, checksum=checksum, fetch=fetch)
