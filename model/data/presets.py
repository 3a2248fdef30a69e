"""The schemas that formats imply, and the one an experiment trains on.

MovieLens 100K and the synthetic generator (MovieLens-shaped rows) share one preset: the
ids, four user facts and two item facts, rated 1-5 (or clicked, with ``model.task =
"binary"`` and ``model.binary_threshold``). Criteo's is the 13 integer and 26 categorical
columns of its TSV, all context. The README writes each of them out.
"""

from __future__ import annotations

from steadyrank.model.config import Config
from steadyrank.model.schema import Feature, Label, Schema, check_schema

# MovieLens' age bands (as its own users table codes them) and 5-year release periods.
AGE_BANDS = (18.0, 25.0, 35.0, 45.0, 50.0, 56.0)
RELEASE_PERIODS = tuple(float(y) for y in range(1920, 2001, 5))
TIME_COLUMN = "timestamp"  # of the MovieLens-shaped sources


def movielens_schema(task: str = "rating", threshold: float = 4.0) -> Schema:
    """The MovieLens-shaped preset: ``rating`` label, ids, user and item facts."""
    return check_schema(Schema(
        Label("rating", task, threshold if task == "binary" else None),
        (Feature("user_id", "categorical", "user_id", "int64"),
         Feature("item_id", "categorical", "item_id", "int64"),
         Feature("gender", "categorical", "user", "string"),
         Feature("occupation", "categorical", "user", "string"),
         Feature("age", "categorical", "user", "int64", boundaries=AGE_BANDS),
         Feature("zip", "categorical", "user", "string", truncate=1),
         Feature("genres", "multi_hot", "item", "string", max_len=6),
         Feature("year", "categorical", "item", "int64", boundaries=RELEASE_PERIODS))))


CRITEO_INTEGERS = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORIES = tuple(f"C{i}" for i in range(1, 27))
CRITEO_COLUMNS = ("label", *CRITEO_INTEGERS, *CRITEO_CATEGORIES)  # the TSV's order


def criteo_schema() -> Schema:
    """The Criteo preset: a 0/1 ``label``, I1..I13 (heavy-tailed counts: log1p, missing 0)
    and C1..C26 (hashed ids as hex strings; missing is its own value), all context."""
    return check_schema(Schema(
        Label("label", "binary"),
        (*(Feature(name, "numeric", transform="log1p", fill=0.0) for name in CRITEO_INTEGERS),
         *(Feature(name, "categorical", dtype="string", fill="")
           for name in CRITEO_CATEGORIES))))


def resolve_schema(config: Config) -> Schema:
    """The schema an experiment trains on: the declared one, else its format's preset."""
    if config.label is not None:
        return check_schema(Schema(config.label, config.features))
    source = config.data.source
    if source in ("movielens-100k", "synthetic"):
        return movielens_schema(config.model.task, config.model.binary_threshold)
    if source == "criteo" or config.data.schema == "criteo":
        return criteo_schema()
    raise ValueError(f"data.format {source!r} has no preset schema: declare [label] and "
                     "[[features]], or name a preset (data.schema = \"criteo\"; see "
                     "`steadyrank data schema FILE` for a first draft)")


def time_column(config: Config) -> str:
    """The column that orders rows in time ("" when there is none)."""
    if config.data.time_column:
        return config.data.time_column
    return TIME_COLUMN if config.data.source in ("movielens-100k", "synthetic") else ""
