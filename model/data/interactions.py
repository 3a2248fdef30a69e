"""Interaction rows as numpy arrays, with per-user and per-item side features, and their
deterministic train/eval split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Interactions:
    """Interaction rows with per-user and per-item side features, as numpy arrays.

    Row arrays (one entry per interaction): ``user_id``, ``item_id`` (int64 raw ids),
    ``rating`` (float32), ``timestamp`` (int64). Side features are keyed by raw id:
    ``users[name]`` and ``items[name]`` are arrays aligned with ``user_ids``/``item_ids``.
    ``item_genres`` holds each item's genres (list of strings, multi-hot).
    """

    user_id: np.ndarray
    item_id: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    users: dict[str, np.ndarray]
    item_ids: np.ndarray
    items: dict[str, np.ndarray]
    item_genres: np.ndarray
    genres: tuple[str, ...]
    checksum: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user_id)

    def take(self, index: np.ndarray) -> Interactions:
        """The interactions at ``index``, sharing the side-feature tables."""
        return Interactions(self.user_id[index], self.item_id[index], self.rating[index],
                            self.timestamp[index], self.user_ids, self.users, self.item_ids,
                            self.items, self.item_genres, self.genres, self.checksum,
                            self.meta)


def split(data: Interactions, eval_fraction: float = 0.2, seed: int = 0,
          by: str = "random") -> tuple[Interactions, Interactions]:
    """Deterministic train/eval split.

    Args:
      data: all interactions.
      eval_fraction: share of rows in the eval split, in (0, 1).
      seed: with ``by="random"``, the permutation seed (same seed, same split).
      by: ``"random"`` or ``"time"`` (the latest ``eval_fraction`` of rows by timestamp
        are the eval split; ties broken by row order).
    """
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    n = len(data)
    n_eval = max(1, int(round(n * eval_fraction)))
    if by == "random":
        order = np.random.default_rng(seed).permutation(n)
    elif by == "time":
        order = np.argsort(data.timestamp, kind="stable")
    else:
        raise ValueError(f"split 'by' must be 'random' or 'time', got {by!r}")
    train, evaluation = np.sort(order[: n - n_eval]), np.sort(order[n - n_eval:])
    return data.take(train), data.take(evaluation)
