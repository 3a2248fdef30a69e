"""The Criteo preset: the 13 integer and 26 categorical columns of Criteo's click logs
(its headerless TSV, ``data.format = "criteo"``, or files of that shape with
``[data] schema = "criteo"``), all context; ``steadyrank data synth --schema criteo``
generates rows of this shape."""

from __future__ import annotations

from steadyrank.model.config import Config
from steadyrank.model.data.presets.base import Preset
from steadyrank.model.schema import Feature, Label, Schema, check_schema

CRITEO_INTEGERS = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORIES = tuple(f"C{i}" for i in range(1, 27))
CRITEO_COLUMNS = ("label", *CRITEO_INTEGERS, *CRITEO_CATEGORIES)  # the TSV's order


def criteo_schema() -> Schema:
    """A 0/1 ``label``, I1..I13 (heavy-tailed counts: log1p, missing 0) and C1..C26 (hashed
    ids as hex strings; missing is its own value), all context."""
    return check_schema(Schema(
        Label("label", "binary"),
        (*(Feature(name, "numeric", transform="log1p", fill=0.0) for name in CRITEO_INTEGERS),
         *(Feature(name, "categorical", dtype="string", fill="")
           for name in CRITEO_CATEGORIES))))


def schema_for(_: Config) -> Schema:
    """The schema (the same for every config)."""
    return criteo_schema()


PRESET = Preset("criteo", "Criteo click logs: label, I1..I13, C1..C26", schema_for,
                file_format="criteo")
