"""``steadyrank.RankingService``: the top k candidates for a user, from the primary replica."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from steadyrank.model.artifact.layout import ITEM_IDS, RANK_WITH_FEATURES
from steadyrank.model.evaluation.metrics import topk_indices
from steadyrank.service.batching import Scorer
from steadyrank.service.manager import ModelManager
from steadyrank.service.rpc import deadline_of, requested_version, rpc
from steadyrank.service.servable import Servable
from steadyrank.service.settings import ServerConfig
from steadyrank.service.shadow import ShadowScorer
from steadyrank.service.status import ServiceError, invalid, shown
from steadyrank.service.stubs import ranking_pb2, ranking_pb2_grpc
from steadyrank.service.telemetry import ServerMetrics

MAX_FEATURE_CHARS = 256  # a feature value is a word or a code, not a text
# The fields of a single-query RankRequest, left unset in a batched one (request_id stays
# the caller's id of the whole call).
SINGLE_QUERY_FIELDS = ("user_id", "user_features", "candidate_item_ids", "k")
def new_user_hint(expected: Mapping[str, str]) -> str:
    """What to send to rank for a user the model has not seen."""
    if not expected:
        return ""
    return f"; send user_features ({', '.join(expected)}) to rank for a new user"


def parse_user_features(features: Mapping[str, Any], expected: Mapping[str, str]
                        ) -> dict[str, Any] | None:
    """The user's features as signature inputs, or None when none were sent.

    ``expected``: the model's user facts, name -> int64, float or string (its
    ``rank_with_features`` signature). INVALID_ARGUMENT names an unknown feature, a missing
    one, or a value of the wrong type (an int64 is taken for a float).
    """
    if not features:
        return None
    if not expected:
        raise invalid("user_features: this model takes no user features (it has no "
                      "rank_with_features signature)")
    unknown = sorted(set(features) - set(expected))
    if unknown:
        raise invalid(f"user_features: unknown feature {shown(unknown[0])!r}; "
                      f"known: {', '.join(expected)}")
    missing = [f for f in expected if f not in features]
    if missing:
        raise invalid(f"user_features: missing feature {missing[0]!r} (send all of "
                      f"{', '.join(expected)}, or none)")
    values: dict[str, Any] = {}
    for name, dtype in expected.items():
        got = features[name].WhichOneof("kind")  # FeatureValue's field: DTYPE_value
        accepted = {"float": ("int64_value",)}.get(dtype, ())
        if got != f"{dtype}_value" and got not in accepted:
            raise invalid(f"user_features[{name!r}]: expected {dtype}, "
                          f"got {got.split('_')[0] if got else 'no value'}")
        value = getattr(features[name], got)
        if dtype == "string" and len(value) > MAX_FEATURE_CHARS:
            raise invalid(f"user_features[{name!r}]: {len(value)} characters, at most "
                          f"{MAX_FEATURE_CHARS}")
        values[name] = {"int64": np.int64, "float": np.float32}.get(
            dtype, lambda v: np.bytes_(v.encode()))(value)
    return values


@dataclass(frozen=True)
class _Query:
    """One checked query: the user, the candidates, the features (None: stored), k."""

    user_id: int
    items: np.ndarray
    features: dict[str, Any] | None
    k: int
    request_id: str


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    """Ranks candidates with the scoring path shared with Predict (batched)."""

    def __init__(self, manager: ModelManager, scorer: Scorer, metrics: ServerMetrics,
                 max_candidates: int = ServerConfig.max_candidates,
                 shadow: ShadowScorer | None = None,
                 max_queries: int = ServerConfig.max_queries,
                 max_rank_pairs: int = ServerConfig.max_rank_pairs) -> None:
        self.manager = manager
        self.max_queries = max_queries
        self.max_rank_pairs = max_rank_pairs
        self.scorer = scorer
        self.metrics = metrics
        self.max_candidates = max_candidates
        self.shadow = shadow

    def candidates(self, servable: Servable, requested: Any) -> np.ndarray:
        """The candidate item ids: the request's (checked), or the whole catalog."""
        if not requested:
            return servable.catalog
        if len(requested) > self.max_candidates:
            raise invalid(f"candidate_item_ids: {len(requested)} candidates, at most "
                          f"{self.max_candidates} (server flag --max-candidates)")
        items = np.fromiter(requested, np.int64, count=len(requested))
        ordered = np.sort(items)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if repeated.size:
            raise invalid(f"candidate_item_ids: item {int(repeated[0])} is listed more than "
                          "once")
        servable.check_items("candidate_item_ids", items)
        return items

    def check_batch(self, request: Any) -> list[Any]:
        """The queries of a request: its ``queries``, or the request itself (single query).

        INVALID_ARGUMENT for a batched request that also sets single-query fields, or with
        more than ``max_queries`` queries.
        """
        if not request.queries:
            return [request]
        mixed = [f for f in SINGLE_QUERY_FIELDS if _is_set(request, f)]
        if mixed:
            raise invalid(f"{mixed[0]}: set it in each of queries, not beside them (a request "
                          "has either queries or one user)")
        if len(request.queries) > self.max_queries:
            raise invalid(f"queries: {len(request.queries)} queries, at most "
                          f"{self.max_queries} (server flag --max-queries)")
        return list(request.queries)

    def check_pairs(self, pairs: int) -> None:
        """INVALID_ARGUMENT when a batched request would score more than ``max_rank_pairs``
        (user, item) pairs (whole-catalog queries of a large catalog add up fast)."""
        if pairs > self.max_rank_pairs:
            raise invalid(f"queries: {pairs} (user, item) pairs to score, at most "
                          f"{self.max_rank_pairs} (server flag --max-rank-pairs); send fewer "
                          "or smaller queries per call")

    def _checked(self, servable: Servable, query: Any, field: str) -> _Query:
        """A query's candidates and features, checked (error messages start with ``field``)."""
        try:
            items = self.candidates(servable, query.candidate_item_ids)
            if not 1 <= query.k <= items.size:
                raise invalid(f"k: {query.k} is out of range [1, {items.size}] (1 to the "
                              "number of candidates)")
            expected = servable.user_feature_types
            features = parse_user_features(query.user_features, expected)
            if features is None:
                servable.check_users("user_id", np.array([query.user_id], np.int64),
                                     new_user_hint(expected))
            elif RANK_WITH_FEATURES not in servable.signature_defs:
                raise invalid(f"user_features: model {servable.name!r} version "
                              f"{servable.version} has no {RANK_WITH_FEATURES} signature")
        except ServiceError as err:
            raise ServiceError(err.code, f"{field}{err.message}") from None
        return _Query(query.user_id, items, features, query.k, query.request_id)

    async def _score_all(self, servable: Servable, queries: list[_Query],
                         until: float | None) -> list[np.ndarray]:
        """Each query's candidate scores: the stored-feature queries in one scoring call
        (batched with other requests), those with user features by ``rank_with_features``."""
        stored = [q for q in queries if q.features is None]
        jobs = [self.scorer.call(servable, RANK_WITH_FEATURES,
                                 {servable.user_input: np.int64(q.user_id), ITEM_IDS: q.items,
                                  **q.features})
                for q in queries if q.features is not None]
        if stored:
            users = np.concatenate([np.full(q.items.shape, q.user_id, np.int64)
                                    for q in stored])
            jobs.append(self.scorer.score(servable, users,
                                          np.concatenate([q.items for q in stored]), until))
        results = list(await asyncio.gather(*jobs))
        parts = (np.split(results.pop(), np.cumsum([q.items.size for q in stored])[:-1])
                 if stored else [])
        featured = iter(r["scores"] for r in results)
        stored_parts = iter(parts)
        out = [next(stored_parts) if q.features is None else next(featured) for q in queries]
        for q, scores in zip(queries, out, strict=True):
            if scores.shape != q.items.shape:
                raise RuntimeError(f"model returned {scores.shape} scores for {q.items.size} "
                                   "items")
        return out

    @rpc("Rank")
    async def Rank(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """The k best candidates for the user (or for each query), best first."""
        servable = self.manager.get(request.model_spec.name,
                                    requested_version(request.model_spec))
        queries = self.check_batch(request)
        batched = bool(request.queries)
        checked = [self._checked(servable, q, f"queries[{i}]." if batched else "")
                   for i, q in enumerate(queries)]
        if batched:
            self.check_pairs(sum(q.items.size for q in checked))
        scores = await self._score_all(servable, checked, deadline_of(context))
        replica = self.manager.replica_label(servable.name)
        response = ranking_pb2.RankResponse(request_id=request.request_id, replica=replica)
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        for query, query_scores in zip(checked, scores, strict=True):
            if self.shadow is not None and query.features is None:
                self.shadow.offer(servable, query.user_id, query.items, query_scores,
                                  replica == "a")
            target = (response.results.add(request_id=query.request_id) if batched
                      else response)
            for i in topk_indices(query_scores, query.k):
                target.items.add(item_id=int(query.items[i]), score=float(query_scores[i]))
        return response


def _is_set(message: Any, field: str) -> bool:
    """Whether a proto3 field without presence differs from its default."""
    value = getattr(message, field)
    return len(value) > 0 if hasattr(value, "__len__") else bool(value)
