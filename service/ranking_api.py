"""``steadyrank.RankingService``: the top k candidates for a user, from the primary replica."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np

from steadyrank.model.metrics import topk_indices
from steadyrank.service.batching import Scorer
from steadyrank.service.errors import invalid, shown
from steadyrank.service.manager import ModelManager
from steadyrank.service.rpc import deadline_of, requested_version, rpc
from steadyrank.service.servable import Servable
from steadyrank.service.shadow import ShadowScorer
from steadyrank.service.stubs import ranking_pb2, ranking_pb2_grpc
from steadyrank.service.telemetry import ServerMetrics

# The user features of rank_with_features and the value kind each one takes.
USER_FEATURES = {"gender": "string_value", "occupation": "string_value",
                 "zip": "string_value", "age": "int64_value"}
MAX_FEATURE_CHARS = 256  # a feature value is a word (gender, occupation, zip), not a text
NEW_USER_HINT = "; send user_features (gender, occupation, zip, age) to rank for a new user"


def parse_user_features(features: Mapping[str, Any]) -> dict[str, Any] | None:
    """The user's features as signature inputs, or None when none were sent.

    INVALID_ARGUMENT names an unknown feature, a missing one, or a value of the wrong type.
    """
    if not features:
        return None
    unknown = sorted(set(features) - set(USER_FEATURES))
    if unknown:
        raise invalid(f"user_features: unknown feature {shown(unknown[0])!r}; "
                      f"known: {', '.join(USER_FEATURES)}")
    missing = [f for f in USER_FEATURES if f not in features]
    if missing:
        raise invalid(f"user_features: missing feature {missing[0]!r} (send all of "
                      f"{', '.join(USER_FEATURES)}, or none)")
    values: dict[str, Any] = {}
    for name, kind in USER_FEATURES.items():
        got = features[name].WhichOneof("kind")
        if got != kind:
            raise invalid(f"user_features[{name!r}]: expected {kind.split('_')[0]}, "
                          f"got {got.split('_')[0] if got else 'no value'}")
        value = getattr(features[name], kind)
        if kind == "string_value" and len(value) > MAX_FEATURE_CHARS:
            raise invalid(f"user_features[{name!r}]: {len(value)} characters, at most "
                          f"{MAX_FEATURE_CHARS}")
        values[name] = np.int64(value) if kind == "int64_value" else np.bytes_(value.encode())
    return values


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    """Ranks candidates with the scoring path shared with Predict (batched)."""

    def __init__(self, manager: ModelManager, scorer: Scorer, metrics: ServerMetrics,
                 max_candidates: int = 10_000, shadow: ShadowScorer | None = None) -> None:
        self.manager = manager
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

    async def scores(self, servable: Servable, request: Any, items: np.ndarray,
                     until: float | None) -> np.ndarray:
        """Scores of the candidates for the request's user (stored or given features)."""
        features = parse_user_features(request.user_features)
        if features is None:
            servable.check_users("user_id", np.array([request.user_id], np.int64),
                                 NEW_USER_HINT)
            users = np.full(items.shape, request.user_id, np.int64)
            return await self.scorer.score(servable, users, items, until)
        if "rank_with_features" not in servable.signature_defs:
            raise invalid(f"user_features: model {servable.name!r} version "
                          f"{servable.version} has no rank_with_features signature")
        inputs = {"user_id": np.int64(request.user_id), "item_ids": items, **features}
        return (await self.scorer.call(servable, "rank_with_features", inputs))["scores"]

    @rpc("Rank")
    async def Rank(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """The k best candidates for the user, best first."""
        servable = self.manager.get(request.model_spec.name,
                                    requested_version(request.model_spec))
        items = self.candidates(servable, request.candidate_item_ids)
        if not 1 <= request.k <= items.size:
            raise invalid(f"k: {request.k} is out of range [1, {items.size}] (1 to the number "
                          "of candidates)")
        scores = await self.scores(servable, request, items, deadline_of(context))
        if scores.shape != items.shape:
            raise RuntimeError(f"model returned {scores.shape} scores for {items.size} items")
        top = topk_indices(scores, request.k)
        replica = self.manager.replica_label(servable.name)
        if self.shadow is not None and not request.user_features:
            self.shadow.offer(servable, request.user_id, items, scores, replica == "a")
        response = ranking_pb2.RankResponse(request_id=request.request_id, replica=replica)
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        for i in top:
            response.items.add(item_id=int(items[i]), score=float(scores[i]))
        return response
