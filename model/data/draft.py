"""``steadyrank data schema FILE_OR_GLOB``: a first draft of a schema from a sample of rows.

It reads at most ``rows`` rows (streaming, a batch at a time) and writes a
``[data]``/``[label]``/``[[features]]`` draft: each column's type, a kind guess (a list is
multi-hot; a string is categorical; an integer column is categorical when it has few distinct
values, or when its name looks like an id; otherwise numeric), its distinct count in the
sample and its missing rate as comments, every role left as ``context``, and a comment where
a name looks like an id, a label or a time. Like TFDV's ``infer_schema``: a start, to be
read and edited, not a verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from steadyrank.core.errors import DataError
from steadyrank.model.data.presets import CRITEO_COLUMNS, criteo_schema
from steadyrank.model.data.readers import expand

ID_NAME = re.compile(r"(^|_)(id|ids|key|uuid|sku)$|(user|item|product|customer|shopper|"
                     r"session|account)", re.I)
LABEL_NAME = re.compile(r"^(label|target|y|click|clicked|clicks|converted|conversion|"
                        r"purchased|rating|outcome)$", re.I)
TIME_NAME = re.compile(r"^(ts|time|timestamp|date|datetime|event_time|created_at)$", re.I)
FEW_VALUES = 1000  # an integer column with at most this many distinct values: categorical


@dataclass
class ColumnSummary:
    """What the sample says of one column."""

    name: str
    arrow_type: pa.DataType
    rows: int
    missing: int
    distinct: int
    binary: bool  # only 0 and 1

    @property
    def missing_rate(self) -> float:
        return self.missing / self.rows if self.rows else 0.0


def file_format(path: Path) -> str:
    """parquet, csv or criteo, from the file's name."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".tsv", ".txt") or path.name.startswith("day"):
        return "criteo"
    return "csv"


def sample(files: list[Path], fmt: str, rows: int, delimiter: str = ",") -> pa.Table:
    """At most ``rows`` rows of ``files``, read in batches."""
    batches, seen = [], 0
    for path in files:
        if fmt == "parquet":
            try:
                stream = pq.ParquetFile(path).iter_batches(batch_size=min(rows, 65536))
            except (pa.ArrowInvalid, OSError) as err:
                raise DataError(path, f"not a readable Parquet file: {err}") from None
        else:
            names = list(CRITEO_COLUMNS) if fmt == "criteo" else None
            try:
                stream = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(
                    column_names=names, block_size=1 << 22), parse_options=pa_csv.ParseOptions(
                    delimiter="\t" if fmt == "criteo" else delimiter))
            except (pa.ArrowInvalid, OSError) as err:
                raise DataError(path, f"not readable as CSV: {err}") from None
        for batch in stream:
            batches.append(batch.slice(0, rows - seen))
            seen += batches[-1].num_rows
            if seen >= rows:
                return pa.Table.from_batches(batches)
    if not batches:
        raise DataError(files[0], "has no rows")
    return pa.Table.from_batches(batches)


def summarize(table: pa.Table) -> list[ColumnSummary]:
    """Each column's type, missing count, distinct count and whether it is 0/1."""
    out = []
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        values = column.flatten() if pa.types.is_list(column.type) else column
        distinct = len(pc.unique(values.drop_null()))
        binary = (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)) and \
            set(pc.unique(column.drop_null()).to_pylist()) <= {0, 1}
        out.append(ColumnSummary(name, column.type, len(column), column.null_count, distinct,
                                 binary))
    return out


def _feature(c: ColumnSummary, label: str | None, time: str | None) -> list[str]:
    t = c.arrow_type
    notes = [f"{t}", f"{c.distinct:,} distinct in the sample",
             f"{c.missing_rate:.1%} missing"]
    looks_id = bool(ID_NAME.search(c.name))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        value = t.value_type
        kind, dtype = "multi_hot", "string" if pa.types.is_string(value) else "int64"
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        kind, dtype = "categorical", "string"
    elif pa.types.is_integer(t) and (c.distinct <= FEW_VALUES or looks_id):
        kind, dtype = "categorical", "int64"
    else:
        kind, dtype = "numeric", "float"
    lines = ["", "[[features]]", f"name = \"{c.name}\"",
             f"kind = \"{kind}\"" + ("" if kind != "numeric" or not pa.types.is_integer(t)
                                     else "  # integer with many values: or categorical"),
             "role = \"context\"" + ("  # looks like an id: user_id or item_id?" if looks_id
                                      else ""),
             f"dtype = \"{dtype}\""]
    if kind == "numeric":
        lines.append("transform = \"standardize\"  # or none, log1p")
    if c.missing:
        fill = {"numeric": "0.0", "categorical": '""' if dtype == "string" else "0"}.get(kind)
        lines.append(f"fill = {fill}  # {c.missing_rate:.1%} missing in the sample"
                     if fill else f"# {c.missing_rate:.1%} missing: a missing list is empty")
    if kind == "categorical" and c.distinct > 100_000:
        lines.append("hash_buckets = 1000000  # or a vocabulary with min_count")
    elif kind in ("categorical", "multi_hot"):
        lines.append("min_count = 1  # vocabulary threshold")
    if kind == "multi_hot":
        lines.append("max_len = 8")
    lines.insert(2, "# " + ", ".join(notes))
    return lines


def draft(pattern: str, rows: int = 100_000, delimiter: str = ",") -> str:
    """The TOML draft for the files ``pattern`` names."""
    files = expand([pattern])
    fmt = file_format(files[0])
    if fmt == "criteo":
        return criteo_text(pattern)
    summary = summarize(sample(files, fmt, rows, delimiter))
    label = next((c.name for c in summary if LABEL_NAME.match(c.name)), None)
    time = next((c.name for c in summary if TIME_NAME.match(c.name)), None)
    label_column = next((c for c in summary if c.name == label), None)
    task = "binary" if label_column is not None and label_column.binary else "rating"
    lines = [f"# A first draft from {summary[0].rows:,} rows of {pattern}: read it, set each",
             "# feature's role (user_id, item_id, user, item, context) and check the kinds.",
             "[data]", f"format = \"{fmt}\"", f"train = [\"{pattern}\"]",
             "# eval = [...]  # or leave out: eval_fraction and split carve it"]
    if time:
        lines.append(f"time_column = \"{time}\"  # looks like a time")
    if fmt == "csv":
        lines += [f"delimiter = \"{delimiter}\"", "header = true"]
    lines += ["", "[label]"]
    if label:
        lines += [f"column = \"{label}\"  # looks like the label",
                  f"task = \"{task}\"  # binary (0/1) or rating (a number)"]
    else:
        lines += ["column = \"\"  # no column looks like a label: name it",
                  "task = \"binary\"  # binary (0/1) or rating (a number)"]
    for c in summary:
        if c.name not in (label, time):
            lines += _feature(c, label, time)
    return "\n".join(lines) + "\n"


def criteo_text(pattern: str) -> str:
    """Criteo's implied schema, written out."""
    lines = [f"# Criteo TSV: label, I1..I13, C1..C26, empty meaning missing ({pattern}).",
             "[data]", "format = \"criteo\"", f"train = [\"{pattern}\"]", "", "[label]",
             "column = \"label\"", "task = \"binary\""]
    for f in criteo_schema().features:
        lines += ["", "[[features]]", f"name = \"{f.name}\"", f"kind = \"{f.kind}\"",
                  "role = \"context\"", f"dtype = \"{f.dtype}\""]
        if f.kind == "numeric":
            lines.append(f"transform = \"{f.transform}\"")
        lines.append(f"fill = {f.fill!r}".replace("'", '"'))
    return "\n".join(lines) + "\n"
