"""Where an experiment's rows come from: one reader per format, all streaming
:class:`~steadyrank.model.data.readers.Chunk` batches.

- ``parquet``, ``csv``, ``criteo``: :class:`~steadyrank.model.data.readers.FileReader` over
  ``data.train`` (and ``data.eval``);
- a source preset's own reader (:mod:`steadyrank.model.data.presets`), built from the
  readers here: ``movielens-100k``, the fetched, verified folder (fetched first when it is
  not cached), its ratings joined with the user and item tables (100,000 rows, held in
  memory, :class:`TableReader`); ``synthetic``, a ``steadyrank data synth`` folder, one shard
  at a time, each joined with the user and item tables (:class:`SynthReader`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from steadyrank.core.errors import DataError
from steadyrank.core.fileio import combined_checksum, sha256_file
from steadyrank.model.config import Config
from steadyrank.model.data import movielens, presets, synth
from steadyrank.model.data.presets import TIME_COLUMN, movielens_schema, time_column
from steadyrank.model.data.readers import Chunk, Column, FileReader, expand
from steadyrank.model.schema import Schema

__all__ = ["Reader", "TableReader", "data_checksum", "fetch_movielens", "movielens_table",
           "open_readers", "reader_columns"]


class Reader(Protocol):
    """A stream of rows: what every source gives."""

    files: list

    def chunks(self, batch_rows: int = 65536, start: int = 0) -> Iterator[Chunk]:
        """The rows from ordinal ``start`` on, as batches."""
        ...

    def count_rows(self) -> int:
        """How many rows the stream has."""
        ...

    def rows_by_file(self) -> dict[str, int]:
        """Each of ``files``' rows, by path."""
        ...


class TableReader:
    """An Arrow table held in memory, streamed like a file."""

    def __init__(self, table: pa.Table, name: str) -> None:
        self.table = table
        self.name = name
        self.files = [name]

    def chunks(self, batch_rows: int = 65536, start: int = 0) -> Iterator[Chunk]:
        """Batches of ``batch_rows`` from row ``start``."""
        for first in range(start, self.table.num_rows, batch_rows):
            part = self.table.slice(first, batch_rows)
            yield Chunk(self.name, first, first, part.combine_chunks().to_batches()[0])

    def count_rows(self) -> int:
        """The table's rows."""
        return self.table.num_rows

    def rows_by_file(self) -> dict[str, int]:
        """The table's rows, under its name."""
        return {self.name: self.table.num_rows}


def _multi_hot_lists(multi_hot: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    """A list<string> per row of a 0/1 matrix, naming its set columns."""
    rows, cols = np.nonzero(multi_hot)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(multi_hot)))])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                    pa.array(np.asarray(names, object)[cols], pa.string()))


def fetch_movielens(data_dir: str | Path = "data", source: str | Path | None = None,
                    force: bool = False) -> Path:
    """Fetches and caches MovieLens 100K; see :func:`steadyrank.model.data.movielens.fetch`."""
    return movielens.fetch(Path(data_dir), Path(source) if source else None, force=force)


def movielens_table(folder: Path) -> tuple[pa.Table, str]:
    """The ratings of a fetched MovieLens 100K folder joined with its users and items, and
    the dataset's checksum."""
    tables, manifest = movielens.read_tables(folder)
    schema = movielens_schema()  # its names are the fetched files' columns
    user, item = schema.user_id.name, schema.item_id.name
    users = {int(u[user]): u for u in tables["users.tsv"]}
    items = {int(i[item]): i for i in tables["items.tsv"]}
    ratings = tables["ratings.tsv"]
    rated_users = [int(r[user]) for r in ratings]
    rated_items = [int(r[item]) for r in ratings]
    missing = (set(rated_users) - set(users)) | {-i for i in set(rated_items) - set(items)}
    if missing:
        raise DataError(folder / "ratings.tsv", f"{len(missing)} user or item ids have no row "
                        "in users.tsv/items.tsv")
    user_rows = [users[u] for u in rated_users]
    item_rows = [items[i] for i in rated_items]
    label = schema.label.column
    columns = {
        user: pa.array(rated_users, pa.int64()),
        item: pa.array(rated_items, pa.int64()),
        label: pa.array([float(r[label]) for r in ratings], pa.float64()),
        TIME_COLUMN: pa.array([int(r[TIME_COLUMN]) for r in ratings], pa.int64())}
    # The facts the preset declares, each read from its users.tsv or items.tsv column.
    for rows, role in ((user_rows, "user"), (item_rows, "item")):
        for f in schema.with_role(role):
            values = [row[f.name] for row in rows]
            if f.kind == "multi_hot":
                columns[f.name] = pa.array([[v for v in value.split("|") if v]
                                            for value in values], pa.list_(pa.string()))
            elif f.dtype == "int64":
                columns[f.name] = pa.array([int(v) for v in values], pa.int64())
            else:
                columns[f.name] = pa.array(values, pa.string())
    table = pa.table(columns)
    return table, manifest["checksum"]


class SynthReader:
    """A ``steadyrank data synth`` folder, one shard at a time, joined with its tables."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest, users, items = synth.load_tables(folder)
        self.files = [str(folder / s["file"]) for s in self.manifest["shards"]]
        # Ids are 1..N: a row's id - 1 indexes the tables.
        self.schema = movielens_schema()
        self.users = pa.table({f.name: users[f.name] for f in self.schema.with_role("user")})
        self.items = pa.table({
            f.name: (_multi_hot_lists(items[f.name], synth.multi_hot_names(self.manifest, f.name))
                     if f.kind == "multi_hot" else items[f.name])
            for f in self.schema.with_role("item")})

    def chunks(self, batch_rows: int = 65536, start: int = 0) -> Iterator[Chunk]:
        """The shards' rows from ordinal ``start``, in batches of at most ``batch_rows``."""
        paths = {s["file"]: p for s, p in zip(self.manifest["shards"], self.files, strict=True)}
        starts = {}
        first = 0
        for s in self.manifest["shards"]:
            starts[first] = paths[s["file"]]
            first += s["rows"]
        user, item = self.schema.user_id.name, self.schema.item_id.name
        for first, shard in synth.iter_shards(self.folder, self.manifest, skip=start):
            path, rows = starts[first], len(shard[user])
            joined = pa.table({
                user: shard[user], item: shard[item],
                self.schema.label.column: shard[self.schema.label.column].astype(np.float64),
                TIME_COLUMN: shard[TIME_COLUMN],
                **{k: self.users.column(k).take(shard[user] - 1)
                   for k in self.users.column_names},
                **{k: self.items.column(k).take(shard[item] - 1)
                   for k in self.items.column_names}})
            for offset in range(max(0, start - first), rows, batch_rows):
                part = joined.slice(offset, batch_rows).combine_chunks().to_batches()[0]
                yield Chunk(path, offset, first + offset, part)

    def count_rows(self) -> int:
        """Rows of all shards, from the manifest."""
        return sum(self.rows_by_file().values())

    def rows_by_file(self) -> dict[str, int]:
        """Each shard's rows, from the manifest."""
        return {path: s["rows"] for s, path in zip(self.manifest["shards"], self.files,
                                                    strict=True)}


def reader_columns(schema: Schema, time: str = "") -> list[Column]:
    """The columns a file reader reads: every feature, the label, the time column."""
    columns = [Column(f.name, f.value_dtype, f.kind == "multi_hot") for f in schema.features]
    columns.append(Column(schema.label.column, "float"))
    if time and time not in {c.name for c in columns}:
        columns.append(Column(time, "float"))
    return columns


def open_readers(config: Config, schema: Schema, base: Path | None = None
                 ) -> tuple[Reader, Reader | None]:
    """(train reader, eval reader or None) of the configured data. None: the eval split is
    carved from the train rows."""
    d = config.data
    preset = presets.REGISTRY.get(d.source)
    if preset is not None and preset.reader is not None:
        return preset.reader(config), None
    columns = reader_columns(schema, time_column(config))
    train = FileReader(d.source, expand(d.train, base), columns, d.delimiter, d.header,
                       d.columns)
    evaluation = (FileReader(d.source, expand(d.eval, base), columns, d.delimiter, d.header,
                             d.columns) if d.eval else None)
    return train, evaluation


def data_checksum(config: Config, readers: tuple[Reader, Reader | None]) -> str:
    """One SHA-256 over the data: a preset's own checksum, or every file's bytes."""
    preset = presets.REGISTRY.get(config.data.source)
    if preset is not None and preset.checksum is not None:
        return preset.checksum(config)
    digests = {}
    for role, reader in zip(("train", "eval"), readers, strict=True):
        for path in (reader.files if reader is not None else []):
            digests[f"{role}:{Path(path).name}"] = sha256_file(path)
    return combined_checksum(digests)
