"""Statistics on disk: what a continuously trained model carries from one round to the next
(each table's value counts, the numeric moments, the facts, the rows and the label mean), in
one folder written atomically (a hidden folder renamed into place).

- ``stats.json``: rows, label mean, numeric moments, which tables and fact tables exist;
- ``vocab-N.parquet``: table N's values and training counts;
- ``facts-ROLE.parquet``: the ids and each fact's latest value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from steadyrank.core.errors import DataError
from steadyrank.core.fileio import staged_folder
from steadyrank.model.data.stats import DataStats, FactTable, Moments, Vocabulary

INDEX = "stats.json"


def save_stats(stats: DataStats, folder: str | Path) -> Path:
    """Writes ``stats`` into ``folder`` (replacing it whole); returns the folder."""
    tables = sorted(stats.vocabularies)
    with staged_folder(folder, force=True) as tmp:
        for i, name in enumerate(tables):
            vocab = stats.vocabularies[name]
            pq.write_table(pa.table({"value": pa.array(vocab.values.tolist()),
                                     "count": pa.array(vocab.counts, pa.int64())}),
                           tmp / f"vocab-{i}.parquet")
        for role, facts in stats.facts.items():
            columns = {"__id__": pa.array(facts.ids.tolist())}
            for k, v in facts.values.items():
                columns[k] = pa.array(v.tolist())
            pq.write_table(pa.table(columns), tmp / f"facts-{role}.parquet")
        (tmp / INDEX).write_text(json.dumps({
            "rows": stats.rows, "label_mean": stats.label_mean, "tables": tables,
            "numeric": {k: [m.count, m.mean, m.m2, m.minimum, m.maximum]
                        for k, m in stats.numeric.items()},
            "facts": sorted(stats.facts)}, indent=1))
    return Path(folder)


def _array(column: pa.ChunkedArray) -> np.ndarray:
    """A column as numpy: strings as objects; a list column (a multi-hot fact) 2-D."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        text = pa.types.is_string(column.type.value_type)
        return np.array(column.to_pylist(), dtype=object if text else None)
    values = column.to_numpy(zero_copy_only=False)
    return values.astype(object) if pa.types.is_string(column.type) else values


def load_stats(folder: str | Path) -> DataStats:
    """The statistics :func:`save_stats` wrote; DataError naming the folder otherwise."""
    folder = Path(folder)
    try:
        index = json.loads((folder / INDEX).read_text())
        vocabularies = {}
        for i, name in enumerate(index["tables"]):
            table = pq.read_table(folder / f"vocab-{i}.parquet")
            values = _array(table.column("value"))
            if values.dtype != object:
                values = values.astype(np.int64)
            vocabularies[name] = Vocabulary(values, _array(table.column("count")))
        facts = {}
        for role in index["facts"]:
            table = pq.read_table(folder / f"facts-{role}.parquet")
            facts[role] = FactTable(_array(table.column("__id__")),
                                    {k: _array(table.column(k)) for k in table.column_names
                                     if k != "__id__"})
        numeric = {k: Moments(int(c), float(mean), float(m2), float(lo), float(hi))
                   for k, (c, mean, m2, lo, hi) in index["numeric"].items()}
    except (OSError, ValueError, KeyError) as err:
        raise DataError(folder, f"not a statistics folder: {err}") from None
    return DataStats(int(index["rows"]), float(index["label_mean"]), vocabularies, numeric,
                     facts)
