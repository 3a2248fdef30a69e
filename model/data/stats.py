"""What a model learns about its data before training: one streaming pass over the train rows.

- a vocabulary per embedding table: each value's training-row count (the keys the model
  looks up: a numeric category's bucket, a truncated string), kept in memory as Arrow
  tables merged in C++, so high-cardinality columns cost bytes per distinct value, not per
  row;
- each numeric feature's count, mean, standard deviation, minimum and maximum (Chan's
  parallel update, exact in float64);
- the fact tables: for each user (item) id, the latest value of every user (item) fact, by
  ``time_column`` when there is one, else by row order;
- the label's mean.

Nothing here holds the rows themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steadyrank.model.data.columns import PAD_INT, PAD_STRING, bucketize, truncated
from steadyrank.model.schema import FACT_ROLES, Feature, Schema

COMPACT_ROWS = 1_000_000  # value counts (per table) gathered before they are merged


def lookup_keys(feature: Feature, values: np.ndarray) -> np.ndarray:
    """The keys the model looks up for a feature's values: a bucket for a numeric category,
    the truncated string, else the value itself (multi-hot pads dropped, flattened)."""
    if feature.boundaries:
        return bucketize(values, feature.boundaries)
    if feature.kind == "multi_hot":
        values = values.reshape(-1)
        values = values[values != (PAD_STRING if feature.dtype == "string" else PAD_INT)]
    if feature.truncate:
        return truncated(values, feature.truncate)
    return values


class ValueCounter:
    """Counts values (int64 or str) in C++ hash tables, merging batches as it goes."""

    def __init__(self, dtype: str) -> None:
        self.type = pa.string() if dtype == "string" else pa.int64()
        self.parts: list[pa.Table] = []
        self.pending = 0

    def add(self, values: np.ndarray) -> None:
        """Counts ``values``."""
        if len(values) == 0:
            return
        counted = pc.value_counts(pa.array(values, self.type))
        self.parts.append(pa.table({"value": counted.field("values"),
                                    "count": counted.field("counts")}))
        self.pending += len(counted)
        if self.pending > COMPACT_ROWS:
            self._compact()

    def _compact(self) -> None:
        if len(self.parts) > 1:
            merged = pa.concat_tables(self.parts).group_by("value").aggregate(
                [("count", "sum")]).rename_columns(["value", "count"])
            self.parts = [merged]
        self.pending = sum(len(p) for p in self.parts)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, counts) ordered by count (most first), then value."""
        self._compact()
        if not self.parts:
            empty = np.array([], object if self.type == pa.string() else np.int64)
            return empty, np.array([], np.int64)
        table = self.parts[0].sort_by([("count", "descending"), ("value", "ascending")])
        values = table.column("value").to_numpy()
        if self.type == pa.string():
            values = values.astype(object)
        return values, table.column("count").to_numpy().astype(np.int64)


@dataclass
class Vocabulary:
    """A table's values with their training-row counts, most frequent first."""

    values: np.ndarray
    counts: np.ndarray

    def kept(self, min_count: int = 1, max_size: int = 0) -> np.ndarray:
        """The values that get their own embedding row: seen >= ``min_count`` times, at most
        ``max_size`` of them (the most frequent; 0: no cap)."""
        keep = self.values[self.counts >= min_count]
        return keep[:max_size] if max_size else keep

    def to_dict(self) -> dict[str, int]:
        """Sizes, for the manifest."""
        return {"values": int(len(self.values)), "rows": int(self.counts.sum())}


@dataclass
class Moments:
    """Count, mean, spread and range of a numeric feature (float64, merged exactly)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def add(self, values: np.ndarray) -> None:
        """Merges a batch of values (Chan et al.'s parallel update)."""
        values = np.asarray(values, np.float64)
        n = len(values)
        if n == 0:
            return
        mean = float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))

    @property
    def std(self) -> float:
        """The population standard deviation (0 for fewer than two values)."""
        return float(np.sqrt(self.m2 / self.count)) if self.count > 1 else 0.0

    def to_dict(self) -> dict[str, float]:
        """For the manifest."""
        return {"count": self.count, "mean": self.mean, "std": self.std,
                "min": self.minimum, "max": self.maximum}


@dataclass
class FactTable:
    """The facts of one id (user or item): each id's latest value of each fact."""

    ids: np.ndarray  # sorted
    values: dict[str, np.ndarray] = field(default_factory=dict)  # fact name -> per id


class _Latest:
    """Keeps each id's latest row (by time, then row order) of some columns."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
        self.pending = 0

    def add(self, ids: np.ndarray, time: np.ndarray, order: np.ndarray,
            values: dict[str, np.ndarray]) -> None:
        last = _last_per_id(ids, time, order)
        self.parts.append((ids[last], time[last], order[last],
                           {k: v[last] for k, v in values.items()}))
        self.pending += len(last)
        if self.pending > COMPACT_ROWS:
            self._compact()

    def _compact(self) -> None:
        if len(self.parts) > 1:
            ids = np.concatenate([p[0] for p in self.parts])
            time = np.concatenate([p[1] for p in self.parts])
            order = np.concatenate([p[2] for p in self.parts])
            values = {k: np.concatenate([p[3][k] for p in self.parts]) for k in self.names}
            last = _last_per_id(ids, time, order)
            self.parts = [(ids[last], time[last], order[last],
                           {k: v[last] for k, v in values.items()})]
        self.pending = sum(len(p[0]) for p in self.parts)

    def result(self) -> FactTable:
        self._compact()
        if not self.parts:
            return FactTable(np.array([], np.int64), {})
        ids, _, _, values = self.parts[0]
        order = np.argsort(ids, kind="stable")
        return FactTable(ids[order], {k: v[order] for k, v in values.items()})


def _last_per_id(ids: np.ndarray, time: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Indices of each distinct id's latest row: the greatest (time, order)."""
    by = np.lexsort((order, time, ids))
    sorted_ids = ids[by]
    is_last = np.ones(len(by), bool)
    is_last[:-1] = sorted_ids[1:] != sorted_ids[:-1]
    return by[is_last]


@dataclass
class DataStats:
    """What the statistics pass learnt from the train rows."""

    rows: int = 0
    label_mean: float = 0.0
    vocabularies: dict[str, Vocabulary] = field(default_factory=dict)  # table -> counts
    numeric: dict[str, Moments] = field(default_factory=dict)  # feature -> moments
    facts: dict[str, FactTable] = field(default_factory=dict)  # user_id | item_id -> table

    def to_dict(self) -> dict[str, Any]:
        """A summary for the manifest."""
        return {"rows": self.rows, "label_mean": self.label_mean,
                "vocabularies": {k: v.to_dict() for k, v in self.vocabularies.items()},
                "numeric": {k: v.to_dict() for k, v in self.numeric.items()},
                "facts": {k: int(len(v.ids)) for k, v in self.facts.items()}}


class StatsBuilder:
    """Accumulates :class:`DataStats` over converted batches of train rows."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.counters = {}
        for f in schema.features:
            if f.embedded and not f.hash_buckets and f.table not in self.counters:
                self.counters[f.table] = ValueCounter("int64" if f.boundaries else f.dtype)
        self.moments = {f.name: Moments() for f in schema.features if f.kind == "numeric"}
        self.latest = {role: _Latest([f.name for f in schema.features
                                      if f.is_fact and FACT_ROLES[f.role] == role])
                       for role in ("user_id", "item_id") if schema.with_role(role)}
        self.rows = 0
        self.label_sum = 0.0

    def add(self, columns: dict[str, np.ndarray], labels: np.ndarray, time: np.ndarray,
            order: np.ndarray) -> None:
        """Adds a batch of rows: every feature's values (facts included), the labels, each
        row's time (or its ordinal when there is no time column) and ordinal."""
        self.rows += len(labels)
        self.label_sum += float(np.sum(labels, dtype=np.float64))
        for f in self.schema.features:
            if f.table in self.counters and f.embedded:
                self.counters[f.table].add(lookup_keys(f, columns[f.name]))
            if f.kind == "numeric":
                self.moments[f.name].add(columns[f.name])
        for role, latest in self.latest.items():
            id_feature = self.schema.with_role(role)[0]
            latest.add(columns[id_feature.name], time, order,
                       {name: columns[name] for name in latest.names})

    def result(self) -> DataStats:
        """The statistics of every row added."""
        return DataStats(
            rows=self.rows, label_mean=self.label_sum / self.rows if self.rows else 0.0,
            vocabularies={t: Vocabulary(*c.result()) for t, c in self.counters.items()},
            numeric=self.moments,
            facts={role: latest.result() for role, latest in self.latest.items()})


def merge_vocabularies(old: Vocabulary, new: Vocabulary) -> Vocabulary:
    """Counts of both added up per value, most frequent first, then by value."""
    kind = pa.string() if old.values.dtype == object or new.values.dtype == object \
        else pa.int64()
    counter = ValueCounter("string" if kind == pa.string() else "int64")
    for vocab in (old, new):
        if len(vocab.values):
            counter.parts.append(pa.table({"value": pa.array(vocab.values.tolist(), kind),
                                           "count": pa.array(vocab.counts, pa.int64())}))
    return Vocabulary(*counter.result())


def merge_moments(old: Moments, new: Moments) -> Moments:
    """The moments of both sets of values (Chan et al.'s parallel update)."""
    if old.count == 0:
        return Moments(new.count, new.mean, new.m2, new.minimum, new.maximum)
    if new.count == 0:
        return Moments(old.count, old.mean, old.m2, old.minimum, old.maximum)
    total = old.count + new.count
    delta = new.mean - old.mean
    return Moments(total, old.mean + delta * new.count / total,
                   old.m2 + new.m2 + delta * delta * old.count * new.count / total,
                   min(old.minimum, new.minimum), max(old.maximum, new.maximum))


def merge_facts(old: FactTable, new: FactTable) -> FactTable:
    """Each id's facts: the newer table's where it has the id (its rows came later), the
    older's otherwise; ids sorted."""
    keep_old = ~np.isin(old.ids, new.ids)
    ids = np.concatenate([old.ids[keep_old], new.ids])
    order = np.argsort(ids, kind="stable")
    values = {k: np.concatenate([old.values[k][keep_old], new.values[k]])[order]
              for k in new.values}
    return FactTable(ids[order], values)


def merge_stats(old: DataStats, new: DataStats) -> DataStats:
    """The statistics of the rows of both (``old`` from earlier rows, ``new`` from later
    ones): what a model trained continuously carries from round to round."""
    rows = old.rows + new.rows
    label_mean = ((old.label_mean * old.rows + new.label_mean * new.rows) / rows
                  if rows else 0.0)
    empty = Vocabulary(np.array([], np.int64), np.array([], np.int64))
    vocabularies = {t: merge_vocabularies(old.vocabularies.get(t, empty), v)
                    for t, v in new.vocabularies.items()}
    numeric = {k: merge_moments(old.numeric.get(k, Moments()), v)
               for k, v in new.numeric.items()}
    facts = {role: merge_facts(old.facts[role], table) if role in old.facts else table
             for role, table in new.facts.items()}
    return DataStats(rows, label_mean, vocabularies, numeric, facts)
