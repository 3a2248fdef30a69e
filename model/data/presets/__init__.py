"""Dataset presets: named dataset shapes, one file each in this package, and the registry.

A preset (:class:`~.base.Preset`) owns its schema, its time column and, for a *source*
(``data.format = NAME``: rows of its own), its reader, checksum and fetch. Any preset's
schema can be named for files of that shape (``[data] schema = NAME``), with ``[[features]]``
entries overriding single features by name (or adding some) and ``[label]`` its label.
Adding a preset: a new file here with its ``PRESET``, and its line in :data:`REGISTRY`.
"""

from __future__ import annotations

from steadyrank.model.config import FILE_FORMATS, Config, ConfigError
from steadyrank.model.data.presets import criteo, movielens, synthetic
from steadyrank.model.data.presets.base import Preset
from steadyrank.model.data.presets.criteo import (
    CRITEO_CATEGORIES,
    CRITEO_COLUMNS,
    CRITEO_INTEGERS,
    criteo_schema,
)
from steadyrank.model.data.presets.movielens import TIME_COLUMN, movielens_schema
from steadyrank.model.schema import Schema, SchemaError, check_feature, check_schema

REGISTRY: dict[str, Preset] = {p.name: p for p in (
    movielens.PRESET,
    synthetic.PRESET,
    criteo.PRESET,
)}

__all__ = ["CRITEO_CATEGORIES", "CRITEO_COLUMNS", "CRITEO_INTEGERS", "REGISTRY", "TIME_COLUMN",
           "Preset", "check", "criteo_schema", "get", "movielens_schema", "resolve_schema",
           "sources", "time_column"]


def sources() -> tuple[str, ...]:
    """The presets that bring their own rows (valid ``data.format`` values besides files)."""
    return tuple(name for name, p in REGISTRY.items() if p.is_source)


def get(name: str) -> Preset:
    """The preset named ``name``; ValueError naming the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset preset {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def check(config: Config) -> None:
    """ConfigError naming the key when the config names a preset that does not exist (or
    one that cannot serve there)."""
    d = config.data
    formats = (*FILE_FORMATS, *sources())
    if d.format and d.format not in formats:
        raise ConfigError(f"data.format must be one of {', '.join(formats)}, got {d.format!r}")
    if not d.format and d.dataset not in sources():
        raise ConfigError(f"data.dataset must be one of {', '.join(sources())}, got "
                          f"{d.dataset!r}")
    if d.schema and d.schema not in REGISTRY:
        raise ConfigError(f"data.schema must name a preset schema: {', '.join(REGISTRY)}; "
                          f"got {d.schema!r}")


def _named(config: Config) -> Preset | None:
    """The preset whose schema the config trains on: ``data.schema``, the one a file
    format implies, or the source preset; None for files of a declared schema."""
    d = config.data
    if d.schema:
        return REGISTRY[d.schema]
    implied = [p for p in REGISTRY.values() if p.file_format and p.file_format == d.source]
    if implied:
        return implied[0]
    return REGISTRY.get(d.source) if d.source not in FILE_FORMATS else None


def resolve_schema(config: Config) -> Schema:
    """The schema an experiment trains on: the declared one (``[label]`` and
    ``[[features]]``), else its preset's, with declared features replacing the preset's of
    the same name (or added) and a declared label replacing its label."""
    check(config)
    preset = _named(config)
    if config.label is not None and not config.data.schema:
        return check_schema(Schema(config.label, config.features))
    if preset is None:
        raise ValueError(f"data.format {config.data.source!r} has no preset schema: declare "
                         "[label] and [[features]], or name a preset (data.schema = "
                         f"{' | '.join(repr(n) for n in REGISTRY)}; see `steadyrank data "
                         "schema FILE` for a first draft)")
    base = preset.schema(config)
    given = {f.name: f for f in config.features}
    features = (*(given.pop(f.name, f) for f in base.features), *given.values())
    try:
        for i, feature in enumerate(features):
            check_feature(feature, f"features[{i}]")
        return check_schema(Schema(config.label or base.label, features))
    except SchemaError as err:
        raise ConfigError(f"the {preset.name} schema with the declared [[features]]: {err}"
                          ) from None


def time_column(config: Config) -> str:
    """The column that orders rows in time ("" when there is none)."""
    if config.data.time_column:
        return config.data.time_column
    preset = REGISTRY.get(config.data.source)
    return preset.time_column if preset is not None and preset.is_source else ""
