"""Accuracy of a model's scores on an eval split (RMSE/MAE, or AUC/log loss)."""

from __future__ import annotations

import numpy as np

from steadyrank.model.config import ModelConfig


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


def accuracy(config: ModelConfig, ratings: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Accuracy metrics of served scores against true ratings, per task.

    ``rating``: ``rmse`` and ``mae`` of the predicted rating; ``loss`` is the RMSE.
    ``binary``: ``auc`` and ``log_loss`` of the probability that rating >= threshold;
    ``loss`` is the log loss.
    """
    ratings = np.asarray(ratings, np.float64)
    scores = np.asarray(scores, np.float64)
    if config.task == "binary":
        labels = ratings >= config.binary_threshold
        p = np.clip(scores, 1e-7, 1 - 1e-7)
        log_loss = float(-np.mean(np.where(labels, np.log(p), np.log(1 - p))))
        return {"auc": auc(labels, scores), "log_loss": log_loss, "loss": log_loss}
    rmse = float(np.sqrt(np.mean((scores - ratings) ** 2)))
    return {"rmse": rmse, "mae": float(np.mean(np.abs(scores - ratings))), "loss": rmse}
