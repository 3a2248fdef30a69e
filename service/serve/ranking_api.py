"""``steadyrank.RankingService``: the top k candidates for a user, from the primary replica.

A request carries what the model's schema declares (:mod:`steadyrank.service.request_schema`):
the user id (``user_id`` or ``string_user_id``, as the model's ids are), the candidates,
every context feature in ``context_features``, and, for a user the model has not seen,
every user feature in ``user_features``. A model without user and item ids (a Criteo-style
click model) has nothing to rank: its Rank answers UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from steadyrank.model.artifact.layout import ITEM_IDS, RANK_WITH_FEATURES, SCORES, SERVING_DEFAULT
from steadyrank.model.measures.metrics import topk_indices
from steadyrank.service.recorded_requests import RequestRecorder
from steadyrank.service.request_schema import InputSpec, RankSchema, parse_features, read_ids
from steadyrank.service.serve.batching import Scorer
from steadyrank.service.serve.manager import ModelManager
from steadyrank.service.serve.rpc import deadline_of, requested_version, rpc
from steadyrank.service.serve.servable import Servable
from steadyrank.service.serve.shadow import ShadowScorer
from steadyrank.service.serve.status import ServiceError, invalid, unimplemented
from steadyrank.service.serve.telemetry import ServerMetrics
from steadyrank.service.serve.unknown_ids import UnknownIds
from steadyrank.service.settings import ServerConfig
from steadyrank.service.stubs import ranking_pb2, ranking_pb2_grpc

# The fields of a single-query RankRequest, left unset in a batched one (request_id stays
# the caller's id of the whole call).
SINGLE_QUERY_FIELDS = ("user_id", "string_user_id", "user_features", "context_features",
                       "candidate_item_ids", "string_candidate_item_ids", "k")


def new_user_hint(schema: RankSchema) -> str:
    """What to send to rank for a user the model has not seen."""
    if not schema.user_features:
        return ""
    return f"; send user_features ({', '.join(schema.user_features)}) to rank for a new user"


@dataclass(frozen=True)
class _Query:
    """One checked query: the user, the candidates, the context and the user's features
    (None: the stored ones), k."""

    user: Any  # np.int64 or bytes
    items: np.ndarray
    context: dict[str, Any]
    features: dict[str, Any] | None
    k: int
    request_id: str
    rows: dict[str, np.ndarray] | None  # serving_default rows (stored features), built once

    def rank_inputs(self, schema: RankSchema) -> dict[str, Any]:
        """The ``rank`` (or ``rank_with_features``) signature's inputs."""
        return {schema.user.name: self.user, ITEM_IDS: self.items, **self.context,
                **(self.features or {})}


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    """Ranks candidates with the scoring path shared with Predict (batched)."""

    def __init__(self, manager: ModelManager, scorer: Scorer, metrics: ServerMetrics,
                 max_candidates: int = ServerConfig.max_candidates,
                 shadow: ShadowScorer | None = None,
                 max_queries: int = ServerConfig.max_queries,
                 max_rank_pairs: int = ServerConfig.max_rank_pairs,
                 unknown_ids: UnknownIds | None = None,
                 recorder: RequestRecorder | None = None) -> None:
        self.manager = manager
        self.recorder = recorder
        self.unknown_ids = unknown_ids or UnknownIds("score", metrics)
        self.max_queries = max_queries
        self.max_rank_pairs = max_rank_pairs
        self.scorer = scorer
        self.metrics = metrics
        self.max_candidates = max_candidates
        self.shadow = shadow

    def candidates(self, servable: Servable, query: Any) -> np.ndarray:
        """The candidate item ids: the request's (checked), or the whole catalog."""
        assert servable.ranking is not None and servable.catalog is not None
        count = len(query.candidate_item_ids) + len(query.string_candidate_item_ids)
        if not count:
            return servable.catalog
        if count > self.max_candidates:
            raise invalid(f"candidate_item_ids: {count} candidates, at most "
                          f"{self.max_candidates} (server flag --max-candidates)")
        items = read_ids("", servable.ranking.item, query.candidate_item_ids,
                         query.string_candidate_item_ids, "candidate_item_ids",
                         "string_candidate_item_ids")
        ordered = np.sort(items.astype("S") if items.dtype == object else items)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if repeated.size:
            item = repeated[0]
            shown_item = repr(item.decode(errors="replace")) if isinstance(item, bytes) \
                else int(item)
            raise invalid(f"candidate_item_ids: item {shown_item} is listed more than once")
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

    def _user(self, schema: RankSchema, query: Any) -> Any:
        ids = read_ids("", schema.user, [query.user_id] if query.user_id else [],
                       [query.string_user_id] if query.string_user_id else [],
                       "user_id", "string_user_id")
        if schema.user.dtype == "string":
            if ids.size == 0:
                raise invalid(f"string_user_id: empty; this model's {schema.user.name} ids "
                              "are strings")
            return ids[0]
        return np.int64(query.user_id)

    def _checked(self, servable: Servable, query: Any, field: str) -> _Query:
        """A query's ids, candidates and features, checked (error messages start with
        ``field``)."""
        schema = servable.ranking
        assert schema is not None
        try:
            user = self._user(schema, query)
            items = self.candidates(servable, query)
            if not 1 <= query.k <= items.size:
                raise invalid(f"k: {query.k} is out of range [1, {items.size}] (1 to the "
                              "number of candidates)")
            context = parse_features("context_features", query.context_features,
                                     schema.context,
                                     dict.fromkeys(schema.user_features, "user_features"))
            features = None
            if query.user_features:
                if not schema.user_features:
                    raise invalid(f"user_features: model {servable.name!r} version "
                                  f"{servable.version} takes no user features (it has no "
                                  f"{RANK_WITH_FEATURES} signature)")
                features = parse_features("user_features", query.user_features,
                                          schema.user_features,
                                          dict.fromkeys(schema.context, "context_features"))
            known = {"item": ("candidate_item_ids", items)} if query.candidate_item_ids or \
                query.string_candidate_item_ids else {}
            if features is None:
                known["user"] = ("user_id", np.array([user]))
            self.unknown_ids.check(servable, known, new_user_hint(schema)
                                   if features is None else "")
        except ServiceError as err:
            raise ServiceError(err.code, f"{field}{err.message}") from None
        checked = _Query(user, items, context, features, query.k, query.request_id, None)
        if features is None:  # scored (and shadowed) as serving_default rows
            checked = dataclasses.replace(
                checked, rows=servable.rank_rows(checked.rank_inputs(schema)))
        return checked

    async def _score_all(self, servable: Servable, queries: list[_Query],
                         until: float | None) -> list[np.ndarray]:
        """Each query's candidate scores: the stored-feature queries as ``serving_default``
        rows (batched with other requests), those with user features by
        ``rank_with_features``."""
        schema = servable.ranking
        assert schema is not None

        async def one(query: _Query) -> np.ndarray:
            if query.features is not None:
                out = await self.scorer.call(servable, RANK_WITH_FEATURES,
                                             query.rank_inputs(schema))
                return out[SCORES]
            assert query.rows is not None
            return await self.scorer.score(servable, query.rows, until)

        out = list(await asyncio.gather(*(one(q) for q in queries)))
        for q, scores in zip(queries, out, strict=True):
            if scores.shape != q.items.shape:
                raise RuntimeError(f"model returned {scores.shape} scores for {q.items.size} "
                                   "items")
        return out

    @rpc("GetRequestSchema")
    async def GetRequestSchema(  # noqa: N802
            self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """What the model's requests carry: ids, context and user features, Predict rows."""
        servable = self.manager.get(request.model_spec.name,
                                    requested_version(request.model_spec))
        response = ranking_pb2.RequestSchemaResponse(task=servable.task)
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        schema = servable.ranking
        if schema is not None:
            _input(response.user_id, schema.user)
            _input(response.item_id, InputSpec(servable.item_input, schema.item.dtype))
            for spec in schema.context.values():
                _input(response.context_features.add(), spec)
            for spec in schema.user_features.values():
                _input(response.user_features.add(), spec)
        for spec in servable.row_specs().values():
            _input(response.rows.add(), spec)
        return response

    @rpc("Rank")
    async def Rank(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """The k best candidates for the user (or for each query), best first."""
        servable = self.manager.get(request.model_spec.name,
                                    requested_version(request.model_spec))
        if servable.ranking is None:
            raise unimplemented(f"Rank: model {servable.name!r} has no user and item ids in "
                                "its schema, so there is nothing to rank; score rows with "
                                f"Predict ({SERVING_DEFAULT}) or Classify/Regress")
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
        strings = servable.ranking.item.dtype == "string"
        for query, query_scores in zip(checked, scores, strict=True):
            if self.shadow is not None and query.rows is not None:
                self.shadow.offer(servable, SERVING_DEFAULT, query.rows, query_scores,
                                  ranked=True, replica=replica == "a")
            if self.recorder is not None and query.rows is not None:
                self.recorder.offer(servable.name, query.rows, ranked=True)
            target = (response.results.add(request_id=query.request_id) if batched
                      else response)
            for i in topk_indices(query_scores, query.k):
                item = query.items[i]
                if strings:
                    target.items.add(string_item_id=item.decode(errors="replace"),
                                     score=float(query_scores[i]))
                else:
                    target.items.add(item_id=int(item), score=float(query_scores[i]))
        return response


def _input(message: Any, spec: InputSpec) -> None:
    message.name, message.dtype, message.max_len = spec.name, spec.dtype, spec.max_len or 0


def _is_set(message: Any, field: str) -> bool:
    """Whether a proto3 field without presence differs from its default."""
    value = getattr(message, field)
    return len(value) > 0 if hasattr(value, "__len__") else bool(value)
