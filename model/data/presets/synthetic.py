"""The synthetic preset: a ``steadyrank data synth`` folder of MovieLens-shaped rows (a
planted model, any size), read one shard at a time; MovieLens' schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steadyrank.model.config import Config
from steadyrank.model.data.presets.base import Preset
from steadyrank.model.data.presets.movielens import TIME_COLUMN, schema_for


def reader(config: Config) -> Any:
    """The folder ``data.data_dir``'s shards, each joined with its user and item tables."""
    from steadyrank.model.data.sources import SynthReader

    return SynthReader(Path(config.data.data_dir))


def checksum(config: Config) -> str:
    """The folder's checksum, from its manifest."""
    from steadyrank.model.data import synth

    return synth.read_dataset_manifest(Path(config.data.data_dir), verify=False)["checksum"]


PRESET = Preset("synthetic", "MovieLens-shaped rows from `steadyrank data synth`", schema_for,
                TIME_COLUMN, reader=reader, checksum=checksum)
