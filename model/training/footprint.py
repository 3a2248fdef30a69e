"""What the embedding tables and their optimizer slots will take in memory, before training.

A model of 10^7 rows and more is refused before it trains when its tables and slots exceed
the budget (``train.table_memory_mb``, by default 80% of the machine's memory), with the
numbers, rather than killed half way through a pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from steadyrank.core.errors import SteadyRankError
from steadyrank.core.log import Log
from steadyrank.model.config import Config, parse_averaging
from steadyrank.model.data.stats import DataStats
from steadyrank.model.network.features import table_specs
from steadyrank.model.schema import Schema
from steadyrank.model.training.sparse_optimizers import SLOTS

FLOAT_BYTES = 4
STAMP_BYTES = 8  # a row's last averaged step (int64), with lazy averaging
BUDGET_SHARE = 0.8


class MemoryBudgetError(SteadyRankError, RuntimeError):
    """The tables and slots do not fit the memory budget; the message has the numbers."""


@dataclass(frozen=True)
class TableCost:
    """One table's rows and bytes: weights, and slots for one tower."""

    name: str
    rows: int
    dim: int
    weight_bytes: int
    slot_bytes: int


def slots_per_entry(config: Config) -> tuple[int, bool]:
    """(float slots per table entry, whether each row also keeps a step stamp): the
    optimizer's moments or accumulators, plus an average when the weights are averaged."""
    averaged = parse_averaging(config.train.weight_averaging)[0] != "none"
    slots = SLOTS[config.train.embeddings.optimizer] + int(averaged)
    return slots, averaged and config.train.embeddings.sparse


def table_costs(config: Config, schema: Schema, stats: DataStats) -> list[TableCost]:
    """Each embedding table's rows, weight bytes and slot bytes (one tower's)."""
    slots, stamped = slots_per_entry(config)
    out = []
    for name, spec in table_specs(schema, stats, config.model).items():
        weights = spec.rows * spec.dim * FLOAT_BYTES
        out.append(TableCost(name, spec.rows, spec.dim, weights,
                             slots * weights + (spec.rows * STAMP_BYTES if stamped else 0)))
    return out


def machine_memory_bytes() -> int:
    """This machine's memory, or the container's limit when it is lower (cgroup v2/v1)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def check_table_memory(config: Config, schema: Schema, stats: DataStats, log: Log
                       ) -> list[TableCost]:
    """Logs each table's rows and bytes with slots, and the total against the budget;
    raises MemoryBudgetError (with the numbers and what to change) when it does not fit.

    Peak: every tower trains with its slots (two towers when co-distilling); an ensemble's
    finished members keep only their tables while the next one trains.
    """
    costs = table_costs(config, schema, stats)
    if not costs:
        return costs
    t = config.train
    towers = 2 if t.codistill > 0 else 1
    weights = sum(c.weight_bytes for c in costs)
    slots = sum(c.slot_bytes for c in costs)
    peak = towers * (weights + slots) + (t.ensemble - 1) * towers * weights
    per, stamped = slots_per_entry(config)
    optimizer = t.embeddings.optimizer + ("" if t.embeddings.sparse else " (dense)")
    log(f"embedding tables ({optimizer}; {per} slot(s) per entry"
        f"{' and a step stamp per row' if stamped else ''}): weights + slots")
    for c in sorted(costs, key=lambda c: -c.rows)[:30]:
        log(f"  {c.name}: {c.rows:,} rows x {c.dim} = {_size(c.weight_bytes)} + "
            f"{_size(c.slot_bytes)}")
    if len(costs) > 30:
        log(f"  ... and {len(costs) - 30} smaller tables")
    if t.table_memory_mb:
        budget, said = t.table_memory_mb << 20, f"train.table_memory_mb = {t.table_memory_mb}"
    else:
        machine = machine_memory_bytes()
        budget = int(BUDGET_SHARE * machine)
        said = f"{BUDGET_SHARE:.0%} of this machine's {_size(machine)}"
    shape = (f"{towers} tower(s)" if t.ensemble == 1 else
             f"{towers} tower(s) training, {t.ensemble - 1} finished member(s)")
    total = (f"{len(costs)} table(s), {sum(c.rows for c in costs):,} rows: "
             f"{_size(weights)} + {_size(slots)} slots; peak {_size(peak)} ({shape}), "
             f"budget {_size(budget)} ({said})")
    if peak > budget:
        raise MemoryBudgetError(
            f"the embedding tables do not fit in memory: {total}. Use a row-sparse "
            "optimizer with fewer slots (train.embeddings.optimizer = \"adagrad\" keeps 1), "
            "fewer rows (hash_buckets, min_count or max_size on the largest features) or a "
            "smaller embedding_dim, or raise train.table_memory_mb")
    log(f"  all: {total}")
    return costs
