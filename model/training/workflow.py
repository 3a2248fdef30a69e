"""Train, evaluate and export in one step: what ``steadyrank train`` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steadyrank.core.log import Log, say
from steadyrank.model.artifact.reader import score_in_batches
from steadyrank.model.artifact.writer import ServingModule, export, parameter_count
from steadyrank.model.config import Config, techniques
from steadyrank.model.data.splits import Splits, prepare_data
from steadyrank.model.evaluation.accuracy import accuracy
from steadyrank.model.training.trainer import remove_checkpoints, train


def default_checkpoint_dir(export_dir: str | Path, seed: int) -> Path:
    """``checkpoints/<model name>-seed-<seed>`` in the working folder."""
    return Path("checkpoints") / f"{Path(export_dir).name}-seed-{seed}"


def train_and_export(config: Config, seed: int, export_dir: str | Path,
                     checkpoint_dir: str | Path | None = None, splits: Splits | None = None,
                     keep_checkpoints: bool = False, version: int | None = None,
                     extra: dict[str, Any] | None = None, log: Log = say,
                     order_seed: int | None = None,
                     warm_start: str | Path | None = None) -> Path:
    """Trains a model (or ensemble) for ``seed`` (init) and ``order_seed`` (row order,
    default ``seed``) and exports it as a new version.

    Checkpoints go to ``checkpoint_dir`` (default :func:`default_checkpoint_dir`), so a
    killed run resumes; they are removed after a successful export unless kept.
    """
    order_seed = seed if order_seed is None else order_seed
    checkpoint_dir = Path(checkpoint_dir or default_checkpoint_dir(export_dir, seed))
    splits = splits or prepare_data(config)
    result = train(config, seed, splits, checkpoint_dir, log, order_seed=order_seed,
                   warm_start=warm_start)
    module = ServingModule(result.members, splits.tables, config.model.task)
    scores = score_in_batches(module.serve, splits.eval.user_id, splits.eval.item_id)
    metrics = accuracy(config.model, splits.eval.rating, scores)
    manifest = {
        "config": config.to_dict(), "seed": seed, "order_seed": order_seed,
        "member_seeds": result.seeds, "techniques": techniques(config),
        "warm_start": str(warm_start) if warm_start is not None else None,
        "data": {"dataset": config.data.dataset, "checksum": splits.data.checksum,
                 "train_rows": len(splits.train), "eval_rows": len(splits.eval)},
        "metrics": metrics, "parameters": parameter_count(result.members),
        "training": {"seconds": result.seconds, "examples": result.examples,
                     "examples_per_second": result.examples_per_second,
                     "history": result.history},
        "distribution": {"strategy": config.train.strategy, "shards": result.sharding},
        **(extra or {}),
    }
    path = export(module, export_dir, manifest, version)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    log(f"exported {path} (eval {shown})")
    if not keep_checkpoints:
        remove_checkpoints(checkpoint_dir)
    return path
