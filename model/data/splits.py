"""Data preparation for training: the dataset, its deterministic train/eval split, and the
side-feature tables (with the per-id training counts that vocabulary thresholds use)."""

from __future__ import annotations

from dataclasses import dataclass

from steadyrank.model.config import Config
from steadyrank.model.data.interactions import Interactions, split
from steadyrank.model.data.sources import load_dataset
from steadyrank.model.data.tables import FeatureTables


@dataclass
class Splits:
    """The dataset with its deterministic train/eval split and side-feature tables."""

    data: Interactions
    train: Interactions
    eval: Interactions
    tables: FeatureTables


def prepare_data(config: Config, data: Interactions | None = None,
                 validation: bool = False) -> Splits:
    """Loads the configured dataset and splits it.

    With ``validation`` the eval part is carved out of the train split instead (same
    fraction and method), so settings can be tuned without touching the eval split.
    """
    d = config.data
    data = data if data is not None else load_dataset(d.dataset, d.data_dir)
    train, evaluation = split(data, d.eval_fraction, d.split_seed, d.split)
    if validation:
        train, evaluation = split(train, d.eval_fraction, d.split_seed + 1, d.split)
    tables = FeatureTables.from_data(data).with_counts(train.user_id, train.item_id)
    return Splits(data, train, evaluation, tables)
