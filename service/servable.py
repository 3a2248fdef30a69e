"""One loaded, warmed-up model version, with what the server needs to validate requests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from steadyrank.core.errors import SteadyRankError
from steadyrank.model.artifact import reader
from steadyrank.model.artifact.layout import (
    ITEM_IDS,
    RANK,
    RANK_WITH_FEATURES,
    RANKING_SIGNATURES,
    REQUIRED_SIGNATURES,
    SERVING_DEFAULT,
    USERS,
)
from steadyrank.service.status import invalid

SHOWN_IDS = 5  # unknown ids listed in an error message
_DTYPES = {types_pb2.DT_INT64: "int64", types_pb2.DT_FLOAT: "float",
           types_pb2.DT_STRING: "string"}


class LoadError(SteadyRankError, RuntimeError):
    """A version folder does not hold a servable model; the message says why."""


def _missing(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The distinct values of ``ids`` not in ``sorted_ids``."""
    if sorted_ids.size == 0:
        return np.unique(ids)
    pos = np.searchsorted(sorted_ids, ids)
    pos[pos == sorted_ids.size] = 0
    unknown = sorted_ids[pos] != ids
    return np.unique(ids[unknown]) if unknown.any() else ids[:0]


def _shown(ids: np.ndarray) -> str:
    listed = ", ".join(str(int(i)) for i in ids[:SHOWN_IDS])
    more = f" and {ids.size - SHOWN_IDS} more" if ids.size > SHOWN_IDS else ""
    return f"{listed}{more}"


@dataclass
class Servable:
    """A model version the server answers from."""

    name: str
    version: int
    path: Path
    model: reader.LoadedModel
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    catalog: np.ndarray  # item ids in the model's order
    catalog_sorted: np.ndarray
    users_sorted: np.ndarray | None  # None: an export without the ``users`` signature
    loaded_at: float

    @property
    def manifest(self) -> dict[str, Any]:
        """The export's manifest (config, seed, training, offline reproducibility)."""
        return self.model.manifest

    @property
    def task(self) -> str:
        """``rating`` or ``binary``, from the export's manifest."""
        schema = self.model.manifest.get("schema")
        if schema:
            return str(schema["label"]["task"])
        return str(self.model.manifest.get("config", {}).get("model", {}).get("task",
                                                                               "rating"))

    @property
    def user_input(self) -> str:
        """The name of the user id among ``rank``'s inputs (its one scalar id)."""
        return reader.id_inputs(self.manifest, self.signature_defs)[0]

    @property
    def item_input(self) -> str:
        """The name of the item id among ``serving_default``'s inputs."""
        return reader.id_inputs(self.manifest, self.signature_defs)[1]

    @property
    def user_feature_types(self) -> dict[str, str]:
        """The user facts ``rank_with_features`` takes (name -> int64, float or string), in
        its order; {} without that signature."""
        if RANK_WITH_FEATURES not in self.signature_defs:
            return {}
        rank = set(self.signature_defs[RANK].inputs)
        inputs = self.signature_defs[RANK_WITH_FEATURES].inputs
        return {name: _DTYPES.get(inputs[name].dtype, "string") for name in sorted(inputs)
                if name not in rank}

    def check_items(self, field: str, item_ids: np.ndarray) -> None:
        """INVALID_ARGUMENT naming ``field`` if an item id is not in the catalog."""
        unknown = _missing(self.catalog_sorted, item_ids)
        if unknown.size:
            raise invalid(f"{field}: unknown item ids {_shown(unknown)} (not in the catalog "
                          f"of model {self.name!r} version {self.version}, "
                          f"{self.catalog.size} items)")

    def check_users(self, field: str, user_ids: np.ndarray, hint: str = "") -> None:
        """INVALID_ARGUMENT naming ``field`` if a user id has no stored features."""
        if self.users_sorted is None:
            return
        unknown = _missing(self.users_sorted, user_ids)
        if unknown.size:
            raise invalid(f"{field}: unknown user ids {_shown(unknown)} (model {self.name!r} "
                          f"version {self.version} has no features for them){hint}")

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """``serving_default`` scores of (user, item) pairs, float32 [B]."""
        out = self.model.module.signatures[SERVING_DEFAULT](**{
            self.user_input: tf.constant(user_ids, tf.int64),
            self.item_input: tf.constant(item_ids, tf.int64)})
        scores = out["score"].numpy()
        if scores.shape != (len(item_ids),):
            raise RuntimeError(f"model {self.name} version {self.version} returned shape "
                               f"{scores.shape} for {len(item_ids)} pairs")
        return scores

    def call(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs a signature on numpy inputs; numpy outputs."""
        fn = self.model.module.signatures[signature]
        out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in out.items()}


def load_servable(name: str, version: int, path: Path) -> Servable:
    """Loads a version folder and warms it up; :class:`LoadError` if it cannot serve."""
    if not (path / "saved_model.pb").exists():
        raise LoadError(f"{path}: no saved_model.pb")
    try:
        saved_model = reader.read_saved_model(path)
    except reader.ExportError as err:
        raise LoadError(str(err)) from None
    signature_defs = reader.signature_defs(saved_model)
    missing = [s for s in (*REQUIRED_SIGNATURES, *RANKING_SIGNATURES) if s not in signature_defs]
    if missing:
        raise LoadError(f"{path}: missing signatures {missing} (has {sorted(signature_defs)})")
    try:
        model = reader.load(path, saved_model)
    except reader.ExportError as err:
        raise LoadError(str(err)) from None
    except Exception as err:  # noqa: BLE001  (TF raises many types for a corrupt model)
        raise LoadError(f"{path}: cannot load: {type(err).__name__}: {err}") from None
    try:
        catalog = model.item_ids.astype(np.int64)
        users = (model.module.signatures[USERS]()["user_ids"].numpy().astype(np.int64)
                 if USERS in signature_defs else None)
    except Exception as err:  # noqa: BLE001
        raise LoadError(f"{path}: catalog signature failed: {err}") from None
    if catalog.size == 0:
        raise LoadError(f"{path}: empty catalog")
    servable = Servable(name, version, path, model, signature_defs, catalog, np.sort(catalog),
                        None if users is None else np.sort(users), time.time())
    warm_up(servable)
    return servable


def warm_up(servable: Servable) -> None:
    """Runs every scoring path once, so the first request does not pay for tracing."""
    items = servable.catalog[:min(16, servable.catalog.size)]
    user = (int(servable.users_sorted[0]) if servable.users_sorted is not None
            and servable.users_sorted.size else 0)
    try:
        scores = servable.score(np.full(items.shape, user, np.int64), items)
        ranked = servable.call(RANK, {servable.user_input: np.int64(user),
                                      ITEM_IDS: items})["scores"]
    except Exception as err:  # noqa: BLE001
        raise LoadError(f"{servable.path}: warm-up failed: {type(err).__name__}: "
                        f"{err}") from None
    if not np.isfinite(scores).all() or not np.isfinite(ranked).all():
        raise LoadError(f"{servable.path}: warm-up produced non-finite scores")
    if not np.allclose(scores, ranked, rtol=1e-5, atol=1e-6):
        raise LoadError(f"{servable.path}: warm-up: rank and serving_default disagree")
