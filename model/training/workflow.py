"""Train, evaluate and export in one step: what ``steadyrank train`` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from steadyrank.core.log import Log, say
from steadyrank.model.artifact.manifest import Manifest
from steadyrank.model.artifact.reader import score_in_batches
from steadyrank.model.artifact.writer import ServingModule, export, parameter_count
from steadyrank.model.config import Config, techniques
from steadyrank.model.data.splits import Prepared, prepare_data
from steadyrank.model.measures.accuracy import accuracy, predict
from steadyrank.model.network.features import row_counts
from steadyrank.model.schema import NO_RANKING
from steadyrank.model.training.slot_carry import SlotCarry
from steadyrank.model.training.trainer import remove_checkpoints, train


def default_checkpoint_dir(export_dir: str | Path, seed: int) -> Path:
    """``checkpoints/<model name>-seed-<seed>`` in the working folder."""
    return Path("checkpoints") / f"{Path(export_dir).name}-seed-{seed}"


def serving_module(members: list[Any], prepared: Prepared) -> ServingModule:
    """The members behind the schema's signatures, with the catalog, the users that have
    stored facts and each table row's training count (for the ``rarity`` signature; hash
    buckets are counted in a pass over the train rows)."""
    facts = prepared.stats.facts
    empty = np.array([], np.int64)
    tables = members[0].encoder.tables
    counts = row_counts(prepared.schema, tables, prepared.stats,
                        (rows.inputs for rows in prepared.train_batches())
                        if any(t.hash_buckets for t in tables.values()) else ())
    return ServingModule(members, prepared.schema,
                         facts["item_id"].ids if "item_id" in facts else empty,
                         facts["user_id"].ids if "user_id" in facts else empty, counts)


def schema_record(prepared: Prepared) -> dict[str, Any]:
    """The manifest's record of the schema: each feature's declaration and table size, the
    label, and the statistics of the train rows."""
    stats = prepared.stats
    features = []
    for f in prepared.schema.features:
        entry = f.to_dict()
        if f.embedded and f.table in stats.vocabularies:
            entry["distinct_values"] = int(len(stats.vocabularies[f.table].values))
        if f.name in stats.numeric:
            entry["statistics"] = stats.numeric[f.name].to_dict()
        features.append(entry)
    return {**prepared.schema.to_dict(), "features": features,
            "time_column": prepared.time_column, "statistics": stats.to_dict()}


def train_and_export(config: Config, seed: int, export_dir: str | Path,
                     checkpoint_dir: str | Path | None = None,
                     prepared: Prepared | None = None,
                     keep_checkpoints: bool = False, version: int | None = None,
                     extra: dict[str, Any] | None = None, log: Log = say,
                     order_seed: int | None = None,
                     warm_start: str | Path | None = None,
                     warm_rows: dict | None = None, slots: SlotCarry | None = None) -> Path:
    """Trains a model (or ensemble) for ``seed`` (init) and ``order_seed`` (row order,
    default ``seed``) and exports it as a new version.

    Checkpoints go to ``checkpoint_dir`` (default :func:`default_checkpoint_dir`), so a
    killed run resumes; they are removed after a successful export unless kept. ``slots``:
    the tables' optimizer slots carried across continuous-training rounds.
    """
    order_seed = seed if order_seed is None else order_seed
    checkpoint_dir = Path(checkpoint_dir or default_checkpoint_dir(export_dir, seed))
    prepared = prepared or prepare_data(config, log=log)
    result = train(config, seed, prepared, checkpoint_dir, log, order_seed=order_seed,
                   warm_start=warm_start, warm_rows=warm_rows, slots=slots)
    module = serving_module(result.members, prepared)
    scores, labels = predict(lambda inputs: score_in_batches(module.serve, inputs),
                             prepared.eval_batches())
    metrics = accuracy(prepared.schema.label.task, labels, scores)
    manifest = Manifest(
        config=config.to_dict(), seed=seed, order_seed=order_seed, member_seeds=result.seeds,
        techniques=techniques(config),
        warm_start=str(warm_start) if warm_start is not None else None,
        schema=schema_record(prepared),
        ranking=None if prepared.schema.ranks else NO_RANKING,
        data={"dataset": config.data.source, "checksum": prepared.checksum,
              "train_rows": prepared.train.rows, "eval_rows": prepared.eval.rows},
        metrics=metrics, parameters=parameter_count(result.members),
        training={"seconds": result.seconds, "examples": result.examples,
                  "examples_per_second": result.examples_per_second,
                  "history": result.history},
        distribution={"strategy": config.train.strategy, "shards": result.sharding},
    ).updated(**(extra or {}))
    path = export(module, export_dir, manifest, version)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    log(f"exported {path} (eval {shown})")
    if not keep_checkpoints:
        remove_checkpoints(checkpoint_dir)
    return path
