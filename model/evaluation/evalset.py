"""What replicas are compared on: the eval rows' scores, and ranking requests.

Prediction difference is measured on every eval row, streamed (only the scores and labels
are held). Top-k swap needs rankings, so it needs a user id and an item id: a ranking
request is a user of the eval split (the first ``users`` user ids, sorted) with the context
features of that user's first eval row, and its candidates are the whole catalog (the
items seen in training). A schema without ids gets PD only, and reports say why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from steadyrank.model.artifact.layout import ITEM_IDS
from steadyrank.model.artifact.reader import LoadedModel
from steadyrank.model.data.splits import Prepared
from steadyrank.model.measures.accuracy import predict


@dataclass
class Requests:
    """Ranking requests: each user's id and context, and the candidates (the catalog)."""

    user: str  # the user id feature's name
    item: str  # the item id feature's name
    users: dict[str, np.ndarray]  # user id and context features, one entry per request
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users[self.user])

    def grid(self, index: int | None = None) -> dict[str, np.ndarray]:
        """serving_default inputs scoring every candidate for each request (or for request
        ``index`` alone)."""
        picked = range(len(self)) if index is None else [index]
        n = len(self.items)
        # axis 0: a multi-hot context feature is one list per request
        out = {k: np.repeat(v[list(picked)], n, axis=0) for k, v in self.users.items()}
        out[self.item] = np.tile(self.items, len(picked))
        return out

    def request(self, index: int) -> dict[str, Any]:
        """Request ``index`` as ``rank``'s inputs."""
        return {**{k: v[index] for k, v in self.users.items()}, ITEM_IDS: self.items}


def ranking_requests(prepared: Prepared, users: int) -> Requests | None:
    """The first ``users`` user ids of the eval split (sorted) with their first eval row's
    context; None when the schema does not rank."""
    schema = prepared.schema
    if not schema.ranks:
        return None
    user = schema.user_id.name
    context = [f.name for f in schema.with_role("context")]
    first: dict[Any, dict[str, Any]] = {}
    for rows in prepared.eval_batches((user, *context)):
        ids = rows.inputs[user]
        _, at = np.unique(ids, return_index=True)
        for i in sorted(at):
            first.setdefault(ids[i], {k: rows.inputs[k][i] for k in (user, *context)})
    chosen = sorted(first)[:users]
    items = prepared.stats.facts["item_id"].ids
    columns = {k: np.array([first[u][k] for u in chosen],
                           object if isinstance(first[chosen[0]][k], str) else None)
               for k in (user, *context)} if chosen else {user: np.array([], np.int64)}
    return Requests(user, schema.item_id.name, columns, items)


def eval_scores(model: LoadedModel, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of every eval row."""
    return predict(model.score, prepared.eval_batches())


def rank_all(model: LoadedModel, requests: Requests, batch_users: int = 64) -> np.ndarray:
    """Scores [requests, candidates] of every candidate for each request."""
    rows = []
    for start in range(0, len(requests), batch_users):
        part = Requests(requests.user, requests.item,
                        {k: v[start:start + batch_users] for k, v in requests.users.items()},
                        requests.items)
        rows.append(model.score(part.grid()).reshape(len(part), len(requests.items)))
    return np.concatenate(rows) if rows else np.zeros((0, len(requests.items)), np.float32)


def request_latency(model: LoadedModel, requests: Requests | None, prepared: Prepared,
                    repeats: int = 30) -> float:
    """Median seconds of one request: a ``rank`` call scoring the catalog for one user, or
    (without rankings) a ``serving_default`` call on one eval row."""
    if requests is not None:
        calls = [lambda i=i: model.rank(requests.request(i % len(requests)))
                 for i in range(repeats + 1)]
    else:
        first = next(prepared.eval_batches())
        calls = [lambda i=i: model.score({k: v[i % len(first):i % len(first) + 1]
                                          for k, v in first.inputs.items()})
                 for i in range(repeats + 1)]
    calls[0]()  # warm-up
    times = []
    for call in calls[1:]:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times))
