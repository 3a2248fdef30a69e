"""Accuracy of a model's scores on an eval split (RMSE/MAE, or AUC/log loss)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = np.asarray(scores)[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def accuracy(task: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Accuracy metrics of served scores against the labels, per task.

    ``rating``: ``rmse`` and ``mae`` of the predicted value; ``loss`` is the RMSE.
    ``binary`` (labels 0 or 1, scores probabilities): ``auc``, ``log_loss`` and
    ``calibration`` (mean score over mean label); ``loss`` is the log loss.
    """
    labels = np.asarray(labels, np.float64)
    scores = np.asarray(scores, np.float64)
    if task == "binary":
        positive = labels >= 0.5
        p = np.clip(scores, 1e-7, 1 - 1e-7)
        log_loss = float(-np.mean(np.where(positive, np.log(p), np.log(1 - p))))
        rate = float(labels.mean())
        return {"auc": auc(positive, scores), "log_loss": log_loss, "loss": log_loss,
                "calibration": float(scores.mean() / rate) if rate > 0 else float("nan")}
    rmse = float(np.sqrt(np.mean((scores - labels) ** 2)))
    return {"rmse": rmse, "mae": float(np.mean(np.abs(scores - labels))), "loss": rmse}


def predict(score: Callable[[dict[str, np.ndarray]], np.ndarray], batches: Iterable[Any]
            ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of every row of ``batches`` (each with ``inputs`` and ``labels``,
    as :class:`steadyrank.model.data.batches.Rows`), scored by ``score(inputs)``."""
    scores, labels = [], []
    for rows in batches:
        scores.append(np.asarray(score(rows.inputs), np.float32))
        labels.append(rows.labels)
    if not scores:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(scores), np.concatenate(labels)
