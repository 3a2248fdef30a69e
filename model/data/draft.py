"""``steadyrank data schema FILE_OR_GLOB``: a first draft of a schema from a sample of rows.

It reads at most ``rows`` rows (streaming, a batch at a time) and writes a
``[data]``/``[label]``/``[[features]]`` draft: each column's type, a kind guess, its
distinct count in the sample and its missing rate as comments, and a comment where a name
looks like a label or a time. Like TFDV's ``infer_schema``: a start, to be read and edited,
not a verdict. The guesses:

- a list column, or a string column whose values mostly hold one separator (``|``, ``;``,
  or ``,`` where it is not the file's delimiter), is ``multi_hot``, with that separator and
  ``max_len`` the 99th percentile of the sample's list lengths;
- a string is ``categorical``; an integer column is categorical when it has few distinct
  values or its name looks like an id; otherwise ``numeric``, with ``log1p`` when it is
  non-negative and heavily skewed (its 99th percentile over 50x its median, or a skewness
  over 3), else ``standardize``;
- id-like columns (by name, or a string column of 100 or more distinct values) are
  ranked as user and item candidates: name hints first (customer, shopper, account ... for
  users; item, article, product, sku ... for items), then how often a value repeats (a user
  acts many times); the best of each gets the role, and the comments say why;
- a low-cardinality column whose value never changes for one id (over ids seen more than
  once) is suggested as that id's fact (role ``user`` or ``item``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from steadyrank.core.errors import DataError
from steadyrank.model.data.presets import CRITEO_COLUMNS, criteo_schema
from steadyrank.model.data.readers import expand

ID_NAME = re.compile(r"(^|_)(id|ids|key|uuid|sku|code)$|(user|item|product|customer|shopper|"
                     r"session|account|article|member|visitor|client)", re.I)
USER_NAME = re.compile(r"user|customer|shopper|account|member|visitor|client|buyer|viewer|"
                       r"player|reader|session", re.I)
ITEM_NAME = re.compile(r"item|article|product|sku|movie|video|song|track|offer|listing|"
                       r"ad_?id|doc|post|book|title|asset", re.I)
SEPARATORS = ("|", ";", ",")
SEPARATED_SHARE = 0.5  # a string column is multi-hot when this share of values hold one
SKEW_RATIO = 50.0  # p99 / median of a non-negative column past which log1p is suggested
SKEWNESS = 3.0
FACT_DISTINCT = 1000  # at most this many distinct values for a fact suggestion
ID_DISTINCT = 100  # a string column without a name hint is id-like from this many values
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
    separator: str = ""  # a string column of joined values: their separator
    list_p99: int = 0  # the 99th percentile of list lengths (a list or joined column)
    skewed: str = ""  # why a non-negative numeric column looks heavy-tailed ("" if not)
    role: str = ""  # the suggested role: user_id, item_id, user or item
    why: str = ""  # the reason, for the comment

    @property
    def missing_rate(self) -> float:
        return self.missing / self.rows if self.rows else 0.0

    @property
    def is_string(self) -> bool:
        t = self.arrow_type
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)

    @property
    def is_list(self) -> bool:
        return pa.types.is_list(self.arrow_type) or pa.types.is_large_list(self.arrow_type)


def _separator(column: pa.Array, delimiter: str) -> tuple[str, int]:
    """(the separator most values of a string column hold, the 99th percentile of the
    number of values joined), or ("", 0) when no separator is that common."""
    values = column.drop_null()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if len(values) == 0:
        return "", 0
    best, share = "", 0.0
    for sep in SEPARATORS:
        if sep == delimiter:
            continue
        holding = pc.mean(pc.cast(pc.match_substring(values, sep), pa.int8())).as_py() or 0.0
        if holding > share:
            best, share = sep, holding
    if share < SEPARATED_SHARE:
        return "", 0
    lengths = pc.list_value_length(pc.split_pattern(values, best)).to_numpy(zero_copy_only=False)
    return best, int(np.ceil(np.percentile(lengths, 99)))


def _skew(column: pa.Array) -> str:
    """Why a numeric column looks heavy-tailed and non-negative ("" if it does not)."""
    values = column.drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size < 20 or values.min() < 0:
        return ""
    median, p99 = np.percentile(values, [50, 99])
    std = values.std()
    skewness = float(((values - values.mean()) ** 3).mean() / std ** 3) if std > 0 else 0.0
    if median > 0 and p99 / median > SKEW_RATIO:
        return f"non-negative, 99th percentile {p99 / median:,.0f}x the median"
    if skewness > SKEWNESS:
        return f"non-negative, skewness {skewness:.1f}"
    return ""


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


def summarize(table: pa.Table, delimiter: str = ",") -> list[ColumnSummary]:
    """Each column's type, missing count, distinct count, whether it is 0/1, and for
    strings a separator of joined values, for numbers their skew."""
    out = []
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        is_list = pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
        values = column.flatten() if is_list else column
        distinct = len(pc.unique(values.drop_null()))
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        binary = numeric and set(pc.unique(column.drop_null()).to_pylist()) <= {0, 1}
        summary = ColumnSummary(name, column.type, len(column), column.null_count, distinct,
                                binary)
        if summary.is_string:
            summary.separator, summary.list_p99 = _separator(column, delimiter)
        elif is_list:
            lengths = pc.list_value_length(column.drop_null()).to_numpy(zero_copy_only=False)
            summary.list_p99 = int(np.ceil(np.percentile(lengths, 99))) if lengths.size else 1
        elif numeric and not binary:
            summary.skewed = _skew(column)
        out.append(summary)
    return out


def _looks_like_id(c: ColumnSummary) -> bool:
    """A name hint, or a string column with many distinct values (not joined lists)."""
    if ID_NAME.search(c.name):
        return True
    return c.is_string and not c.separator and c.distinct >= ID_DISTINCT


def suggest_roles(table: pa.Table, summary: list[ColumnSummary], skip: set[str]) -> None:
    """Sets ``role`` and ``why`` on the columns: the best user id and item id candidates
    among the id-like columns, and facts of each (a low-cardinality column constant per
    id)."""
    ids = [c for c in summary if c.name not in skip and not c.separator and not c.is_list
           and not c.binary and _looks_like_id(c)
           and (c.is_string or pa.types.is_integer(c.arrow_type))]
    scored = []
    for c in ids:
        repeats = c.rows / max(c.distinct, 1)
        user = 2 * bool(USER_NAME.search(c.name)) - bool(ITEM_NAME.search(c.name))
        item = 2 * bool(ITEM_NAME.search(c.name)) - bool(USER_NAME.search(c.name))
        scored.append((c, user, item, repeats))
    taken: set[str] = set()
    for role, index, word in (("user_id", 1, "a user"), ("item_id", 2, "an item")):
        ranked = sorted((s for s in scored if s[0].name not in taken),
                        key=lambda s: (s[index], s[3] if role == "user_id" else -s[3]),
                        reverse=True)
        if not ranked:
            continue
        c, repeats = ranked[0][0], ranked[0][3]
        hint = ranked[0][index]
        reason = (f"its name hints at {word}" if hint > 0 else
                  f"no name hint; {'more' if role == 'user_id' else 'fewer'} repeats per "
                  f"value than the other id columns")
        others = ", ".join(s[0].name for s in ranked[1:])
        c.role, c.why = role, (f"{reason} ({c.distinct:,} distinct, each seen "
                               f"{repeats:.1f} times on average)"
                               + (f"; other candidates: {others}" if others else ""))
        taken.add(c.name)
    for id_column in (c for c in summary if c.role in ("user_id", "item_id")):
        keys = table.column(id_column.name)
        for c in summary:
            if c.role or c.name in skip or c.is_list or c.distinct > FACT_DISTINCT:
                continue
            pairs = pa.table({"k": keys, "v": table.column(c.name)}).group_by("k").aggregate(
                [("v", "count_distinct"), ("v", "count")])
            seen_twice = pc.greater(pairs.column("v_count"), 1)
            if not pc.any(seen_twice).as_py():
                continue
            varying = pc.greater(pc.filter(pairs.column("v_count_distinct"), seen_twice), 1)
            if not pc.any(varying).as_py():
                c.role = "user" if id_column.role == "user_id" else "item"
                c.why = (f"the same value every time one {id_column.name} is seen: a fact "
                         f"of the {c.role}")


def _feature(c: ColumnSummary, label: str | None, time: str | None) -> list[str]:
    t = c.arrow_type
    notes = [f"{t}", f"{c.distinct:,} distinct in the sample",
             f"{c.missing_rate:.1%} missing"]
    looks_id = bool(ID_NAME.search(c.name))
    if c.is_list:
        value = t.value_type
        kind, dtype = "multi_hot", "string" if pa.types.is_string(value) else "int64"
    elif c.separator:
        kind, dtype = "multi_hot", "string"
        notes[1] = f"{c.distinct:,} distinct joined strings in the sample"
    elif c.is_string:
        kind, dtype = "categorical", "string"
    elif pa.types.is_integer(t) and (c.distinct <= FEW_VALUES or looks_id or c.role):
        kind, dtype = "categorical", "int64"
    else:
        kind, dtype = "numeric", "float"
    if c.role:
        role = f"role = \"{c.role}\"  # {c.why}"
    else:
        role = "role = \"context\"" + ("  # looks like an id, but ranked below another"
                                       if looks_id and kind == "categorical" else "")
    lines = ["", "[[features]]", f"name = \"{c.name}\"",
             f"kind = \"{kind}\"" + ("" if kind != "numeric" or not pa.types.is_integer(t)
                                     else "  # integer with many values: or categorical"),
             role, f"dtype = \"{dtype}\""]
    if kind == "numeric":
        lines.append(f"transform = \"log1p\"  # {c.skewed}; or standardize, none"
                     if c.skewed else "transform = \"standardize\"  # or none, log1p")
    if c.missing:
        fill = {"numeric": "0.0", "categorical": '""' if dtype == "string" else "0"}.get(kind)
        lines.append(f"fill = {fill}  # {c.missing_rate:.1%} missing in the sample"
                     if fill else f"# {c.missing_rate:.1%} missing: a missing list is empty")
    if kind == "categorical" and c.distinct > 100_000:
        lines.append("hash_buckets = 1000000  # or a vocabulary with min_count")
    elif kind in ("categorical", "multi_hot"):
        lines.append("min_count = 1  # vocabulary threshold")
    if kind == "multi_hot":
        if c.separator:
            lines.append(f"separator = \"{c.separator}\"  # in most of the sample's values")
        lines.append(f"max_len = {max(1, c.list_p99 or 8)}  # the sample's 99th percentile "
                     "of list lengths" if c.list_p99 else "max_len = 8")
    lines.insert(2, "# " + ", ".join(notes))
    return lines


def draft(pattern: str, rows: int = 100_000, delimiter: str = ",") -> str:
    """The TOML draft for the files ``pattern`` names."""
    files = expand([pattern])
    fmt = file_format(files[0])
    if fmt == "criteo":
        return criteo_text(pattern)
    table = sample(files, fmt, rows, delimiter)
    summary = summarize(table, delimiter)
    label = next((c.name for c in summary if LABEL_NAME.match(c.name)), None)
    time = next((c.name for c in summary if TIME_NAME.match(c.name)), None)
    suggest_roles(table, summary, {n for n in (label, time) if n})
    label_column = next((c for c in summary if c.name == label), None)
    task = "binary" if label_column is not None and label_column.binary else "rating"
    lines = [f"# A first draft from {summary[0].rows:,} rows of {pattern}: read it, check each",
             "# feature's role (user_id, item_id, user, item, context) and kind.",
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
