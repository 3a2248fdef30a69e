"""Readers that stream rows from files as Arrow record batches, never the whole file.

- Parquet: ``pyarrow.parquet.ParquetFile.iter_batches`` (one row group at a time);
- CSV, with or without a header: pyarrow's streaming CSV reader (parsed in C++, block by
  block); values arrive as strings and are converted to the declared dtypes by
  :mod:`steadyrank.model.data.columns`, which names the row of a value that does not parse;
- Criteo: headerless TSV with the label, I1..I13 and C1..C26, empty meaning missing.

Files are read in sorted order; every batch carries the file it came from and its first
row there, and its ordinal in the whole stream, so errors name the file and row, splits
select rows by ordinal, and a resumed run finds its place again.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from steadyrank.core.errors import DataError
from steadyrank.model.data.presets import CRITEO_COLUMNS


@dataclass(frozen=True)
class Chunk:
    """A record batch of the stream, and where it came from."""

    file: str  # the file's path
    row: int  # the batch's first row in that file (0-based, header not counted)
    start: int  # the batch's first row in the whole stream
    batch: pa.RecordBatch

    def where(self, index: int = 0) -> str:
        """``FILE, row N`` (1-based data row, header not counted) of the batch's row
        ``index``."""
        return f"{self.file}, row {self.row + index + 1}"


def expand(patterns: Sequence[str], base: Path | None = None) -> list[Path]:
    """The files named by ``patterns`` (paths or globs, relative to ``base``), sorted;
    DataError naming a pattern that matches no file."""
    found: set[Path] = set()
    for pattern in patterns:
        full = str(base / pattern) if base is not None and not Path(pattern).is_absolute() \
            else pattern
        matches = [Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file()]
        if not matches:
            raise DataError(pattern, "matches no file" if glob.has_magic(full)
                            else "no such file")
        found.update(matches)
    return sorted(found)


@dataclass(frozen=True)
class Column:
    """A column to read: its name, the Arrow type wanted, and whether a list is allowed
    (a multi-hot column: a list in Parquet, a joined string in CSV)."""

    name: str
    dtype: str  # int64 | float | string
    is_list: bool = False


class FileReader:
    """Streams the declared columns of a format's files as :class:`Chunk` batches."""

    def __init__(self, fmt: str, files: Sequence[Path], columns: Sequence[Column],
                 delimiter: str = ",", header: bool = True,
                 names: Sequence[str] = ()) -> None:
        """``names``: a headerless CSV's column names in order (default: ``columns``')."""
        if fmt not in ("parquet", "csv", "criteo"):
            raise ValueError(f"no file reader for format {fmt!r}")
        self.format = fmt
        self.files = list(files)
        self.columns = list(columns)
        self.delimiter = "\t" if fmt == "criteo" else delimiter
        self.header = False if fmt == "criteo" else header
        self.names = (list(CRITEO_COLUMNS) if fmt == "criteo" else
                      None if self.header else list(names) or [c.name for c in columns])
        self._rows: dict[str, int] | None = None  # rows_by_file, once counted

    def chunks(self, batch_rows: int = 65536, start: int = 0) -> Iterator[Chunk]:
        """The stream from row ``start`` on (earlier rows are skipped: whole Parquet row
        groups without decoding them); the first chunk starts at row ``start`` exactly."""
        for chunk in self._all(batch_rows, start):
            if chunk.start < start:
                cut = start - chunk.start
                chunk = Chunk(chunk.file, chunk.row + cut, start, chunk.batch.slice(cut))
            yield chunk

    def _all(self, batch_rows: int, start: int) -> Generator[Chunk, None, None]:
        ordinal = 0
        for path in self.files:
            read = self._parquet if self.format == "parquet" else self._csv
            ordinal = yield from read(path, batch_rows, ordinal, start)

    # ----------------------------------------------------------------------- parquet
    def _parquet(self, path: Path, batch_rows: int, first: int, start: int
                 ) -> Generator[Chunk, None, int]:
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as err:
            raise DataError(path, f"not a readable Parquet file: {err}") from None
        schema = parquet.schema_arrow
        for column in self.columns:
            if column.name not in schema.names:
                raise DataError(path, f"no column {column.name!r} (it has "
                                f"{', '.join(schema.names)})")
            _check_arrow_type(path, column, schema.field(column.name).type)
        metadata = parquet.metadata
        ordinal, groups = first, []
        for g in range(metadata.num_row_groups):  # skip whole row groups before ``start``
            rows = metadata.row_group(g).num_rows
            if ordinal + rows <= start:
                ordinal += rows
                continue
            groups.append(g)
        row = ordinal - first
        try:
            for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=groups,
                                              columns=[c.name for c in self.columns],
                                              use_threads=True):
                yield Chunk(str(path), row, ordinal, batch)
                row += batch.num_rows
                ordinal += batch.num_rows
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as err:
            raise DataError(path, f"unreadable after row {row}: {err}") from None
        if ordinal != first + metadata.num_rows:
            raise DataError(path, f"holds {ordinal - first} rows, its metadata says "
                            f"{metadata.num_rows} (truncated?)")
        return ordinal

    # -------------------------------------------------------------------- csv, criteo
    def _csv(self, path: Path, batch_rows: int, first: int, start: int
             ) -> Generator[Chunk, None, int]:
        wanted = [c.name for c in self.columns]
        types = {c.name: pa.string() for c in self.columns}
        read = pa_csv.ReadOptions(column_names=self.names,
                                  autogenerate_column_names=False,
                                  block_size=max(1 << 20, batch_rows * 64))
        parse = pa_csv.ParseOptions(delimiter=self.delimiter,
                                    quote_char=False if self.format == "criteo" else '"')
        convert = pa_csv.ConvertOptions(column_types=types, include_columns=wanted,
                                        null_values=[""], strings_can_be_null=True)
        try:
            reader = pa_csv.open_csv(path, read_options=read, parse_options=parse,
                                     convert_options=convert)
        except (pa.ArrowInvalid, pa.ArrowKeyError, OSError) as err:
            raise _csv_error(path, err) from None
        row, ordinal = 0, first
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError) as err:
                raise _csv_error(path, err) from None
            if ordinal + batch.num_rows > start:
                yield Chunk(str(path), row, ordinal, batch)
            row += batch.num_rows
            ordinal += batch.num_rows
        return ordinal

    def count_rows(self) -> int:
        """Rows in all files (Parquet from its metadata; CSV by reading the files)."""
        return sum(self.rows_by_file().values())

    def rows_by_file(self) -> dict[str, int]:
        """Each file's rows, by path, counted once per reader (Parquet from its metadata;
        CSV by reading the file)."""
        if self._rows is None:
            rows = dict.fromkeys(map(str, self.files), 0)
            if self.format == "parquet":
                for path in self.files:
                    try:
                        rows[str(path)] = pq.ParquetFile(path).metadata.num_rows
                    except (pa.ArrowInvalid, OSError) as err:
                        raise DataError(path, f"not a readable Parquet file: {err}") from None
            else:
                for chunk in self.chunks():
                    rows[chunk.file] += chunk.batch.num_rows
            self._rows = rows
        return dict(self._rows)


def _check_arrow_type(path: Path, column: Column, arrow_type: pa.DataType) -> None:
    """DataError when a Parquet column's type cannot hold the declared dtype."""
    if column.is_list and (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)):
        arrow_type = arrow_type.value_type
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    ok = {"int64": pa.types.is_integer(arrow_type),
          "float": pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type),
          "string": pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
          or pa.types.is_integer(arrow_type)}[column.dtype]
    if not ok:
        raise DataError(path, f"column {column.name!r} is {arrow_type}, which does not hold "
                        f"the declared {column.dtype}" + (" list" if column.is_list else ""))


def _csv_error(path: Path, err: Exception) -> DataError:
    """A DataError naming the file (and the column, for a missing one) of a CSV error."""
    text = str(err)
    missing = re.search(r"Column '([^']*)' in include_columns does not exist", text)
    if missing:
        return DataError(path, f"no column {missing.group(1)!r} in its header")
    return DataError(path, f"not readable as CSV: {text.splitlines()[0] if text else err}")
