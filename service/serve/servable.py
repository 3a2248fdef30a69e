"""One loaded, warmed-up model version, with what the server needs to validate requests.

What a request must carry comes from the export itself: its SignatureDefs (names, dtypes and
shapes of every input) and, for a ranking model, which input is the user id and which the
item id (the manifest's schema record, or the signatures of an export made before schemas).
Nothing here knows a dataset's feature names.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from steadyrank.core.errors import SteadyRankError
from steadyrank.model.artifact import reader
from steadyrank.model.artifact.layout import (
    CATALOG,
    ITEM_IDS,
    RANK,
    RANKING_SIGNATURES,
    REQUIRED_SIGNATURES,
    SCORE,
    SCORES,
    SERVING_DEFAULT,
    USER_IDS,
    USERS,
)
from steadyrank.model.artifact.manifest import Manifest
from steadyrank.service.request_schema import PADS, InputSpec, RankSchema, input_spec
from steadyrank.service.serve.status import invalid

SHOWN_IDS = 5  # unknown ids listed in an error message
WARM_ROWS = 16


class LoadError(SteadyRankError, RuntimeError):
    """A version folder does not hold a servable model; the message says why."""


def as_ids(values: Any, like: np.ndarray) -> np.ndarray:
    """Request ids in the dtype of the model's sorted ids (int64, or bytes for string ids)."""
    array = np.asarray(values)
    if like.dtype.kind == "S":
        return array.astype(like.dtype.kind) if array.dtype.kind in "OSU" else array
    return array.astype(np.int64) if array.dtype.kind in "iu" else array


def _missing(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The distinct values of ``ids`` not in ``sorted_ids``."""
    ids = as_ids(ids, sorted_ids).reshape(-1)
    if ids.dtype.kind != sorted_ids.dtype.kind:
        return np.unique(ids)  # ints for string ids, or strings for int64 ones
    if sorted_ids.size == 0:
        return np.unique(ids)
    pos = np.searchsorted(sorted_ids, ids)
    pos[pos == sorted_ids.size] = 0
    unknown = sorted_ids[pos] != ids
    return np.unique(ids[unknown]) if unknown.any() else ids[:0]


def shown_ids(ids: np.ndarray) -> str:
    """Ids for an error message: the first few, and how many more."""
    def one(value: Any) -> str:
        return repr(value.decode(errors="replace")[:64]) if isinstance(value, bytes) else \
            str(value)
    listed = ", ".join(one(i.item() if hasattr(i, "item") else i) for i in ids[:SHOWN_IDS])
    more = f" and {ids.size - SHOWN_IDS} more" if ids.size > SHOWN_IDS else ""
    return f"{listed}{more}"


def _ids(values: np.ndarray) -> np.ndarray:
    """Sorted ids as int64, or as fixed-width bytes for string ids."""
    return np.sort(values.astype("S") if values.dtype == object else values.astype(np.int64))


@dataclass
class Servable:
    """A model version the server answers from."""

    name: str
    version: int
    path: Path
    model: reader.LoadedModel
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    catalog: np.ndarray | None  # item ids in the model's order; None: the model does not rank
    catalog_sorted: np.ndarray | None
    users_sorted: np.ndarray | None  # None: no ``users`` signature
    ranking: RankSchema | None  # what a Rank request carries; None: the model does not rank
    loaded_at: float

    @property
    def manifest(self) -> Manifest:
        """The export's manifest (config, schema, seed, training, offline reproducibility)."""
        return self.model.manifest

    @property
    def task(self) -> str:
        """``rating`` or ``binary``, from the export's manifest."""
        return self.model.manifest.task

    @property
    def ranks(self) -> bool:
        """Whether the model ranks items for users (its schema has both ids)."""
        return self.ranking is not None

    @property
    def user_input(self) -> str:
        """The user id's input name (a ranking model)."""
        assert self.ranking is not None
        return self.ranking.user.name

    @functools.cached_property
    def item_input(self) -> str:
        """The item id's input name in ``serving_default`` (a ranking model)."""
        assert self.ranking is not None
        return self.manifest.id_inputs(self.signature_defs)[1]

    def row_specs(self, signature: str = SERVING_DEFAULT) -> dict[str, InputSpec]:
        """The inputs of a row-wise signature, one row each."""
        return {n: input_spec(n, i, 1) for n, i in
                sorted(self.signature_defs[signature].inputs.items())}

    def unknown(self, role: str, ids: np.ndarray) -> np.ndarray | None:
        """The distinct ``ids`` of ``role`` (``user`` or ``item``) the model has never seen:
        not in its catalog (items) or without stored features (users); None when the model
        cannot tell (no catalog, or no stored user features)."""
        known = self.catalog_sorted if role == "item" else self.users_sorted
        if known is None:
            return None
        return _missing(known, np.asarray(ids))

    def rank_rows(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        """``rank``'s inputs (one user, N ``item_ids``, the context) as N
        ``serving_default`` rows: what the batcher scores."""
        items = np.asarray(inputs[ITEM_IDS])
        rows = {self.item_input: items}
        for name, value in inputs.items():
            if name != ITEM_IDS:
                rows[name] = np.repeat(np.asarray(value)[None], items.shape[0], axis=0)
        return rows

    def score(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """``serving_default`` scores of rows given by input name, float32 [rows]."""
        return self.call(SERVING_DEFAULT, inputs)[SCORE]

    def call(self, signature: str, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Runs a signature on numpy inputs; numpy outputs. Inputs the model itself refuses
        (a tf.Example without a required feature, or with a value of the wrong type) are
        INVALID_ARGUMENT with TensorFlow's reason."""
        fn = self.model.module.signatures[signature]
        try:
            out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.InvalidArgumentError as err:
            raise invalid(f"{signature}: {model_error(err)}") from None
        return {k: v.numpy() for k, v in out.items()}


def model_error(err: Exception) -> str:
    """The reason of a TensorFlow error without its graph context (the "Graph execution
    error" banner, node and function names, the op, stack notes)."""
    text = getattr(err, "message", str(err))
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.split(r"\s+\[\[|\s+\[Op:", text, maxsplit=1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith((
        "Graph execution error", "Detected at node", "<stack traces", "  "))]
    reason = lines[-1] if lines else text.strip()
    return re.sub(r"^Name: <unknown>, ", "", reason)[:300]


def _required(manifest: Manifest) -> tuple[str, ...]:
    """The signatures a version must have: the ranking ones when it ranks."""
    return (*REQUIRED_SIGNATURES, *(RANKING_SIGNATURES if manifest.ranks else ()))


def load_servable(name: str, version: int, path: Path) -> Servable:
    """Loads a version folder and warms it up; :class:`LoadError` if it cannot serve."""
    if not (path / "saved_model.pb").exists():
        raise LoadError(f"{path}: no saved_model.pb")
    try:
        saved_model = reader.read_saved_model(path)
        manifest = reader.read_export_manifest(path)
    except reader.ExportError as err:
        raise LoadError(str(err)) from None
    signature_defs = reader.signature_defs(saved_model)
    missing = [s for s in _required(manifest) if s not in signature_defs]
    if missing:
        raise LoadError(f"{path}: missing signatures {missing} (has {sorted(signature_defs)})")
    try:
        model = reader.load(path, saved_model)
    except reader.ExportError as err:
        raise LoadError(str(err)) from None
    except Exception as err:  # noqa: BLE001  (TF raises many types for a corrupt model)
        raise LoadError(f"{path}: cannot load: {type(err).__name__}: {err}") from None
    catalog = catalog_sorted = users = ranking = None
    if RANK in signature_defs and CATALOG in signature_defs:
        try:
            user_name, _ = manifest.id_inputs(signature_defs)
            ranking = RankSchema.read(signature_defs, user_name)
            catalog = model.module.signatures[CATALOG]()[ITEM_IDS].numpy()
            users = (_ids(model.module.signatures[USERS]()[USER_IDS].numpy())
                     if USERS in signature_defs else None)
        except Exception as err:  # noqa: BLE001
            raise LoadError(f"{path}: catalog signature failed: {err}") from None
        if catalog.size == 0:
            raise LoadError(f"{path}: empty catalog")
        catalog_sorted = _ids(catalog)
    servable = Servable(name, version, path, model, signature_defs, catalog, catalog_sorted,
                        users, ranking, time.time())
    warm_up(servable)
    return servable


def sample_rows(servable: Servable, rows: int = WARM_ROWS) -> dict[str, np.ndarray]:
    """``serving_default`` rows a model can score: known ids (a ranking model) and neutral
    values (0, "", a list of pads) for everything else."""
    if servable.catalog is not None:
        rows = min(rows, servable.catalog.size)
    out: dict[str, np.ndarray] = {}
    for name, spec in servable.row_specs().items():
        fill = PADS[spec.dtype] if spec.max_len is not None else {
            "int64": 0, "float": 0.0, "string": b""}[spec.dtype]
        shape = (rows,) if spec.max_len is None else (rows, spec.max_len)
        out[name] = np.full(shape, fill, {"int64": np.int64, "float": np.float32,
                                          "string": object}[spec.dtype])
    if servable.ranking is not None and servable.catalog is not None:
        out[servable.item_input] = servable.catalog[:rows]
        if servable.users_sorted is not None and servable.users_sorted.size:
            user = servable.users_sorted[0]
            out[servable.user_input] = np.full(rows, user, object if isinstance(
                user, bytes) else np.int64)
    return out


def warm_up(servable: Servable) -> None:
    """Runs every scoring path once, so the first request does not pay for tracing; a
    ranking model's ``rank`` must agree with ``serving_default``."""
    rows = sample_rows(servable)
    try:
        scores = servable.score(rows)
        ranked = None
        if servable.ranking is not None:
            request = {name: values[0] for name, values in rows.items()
                       if name != servable.item_input}
            request[ITEM_IDS] = rows[servable.item_input]
            ranked = servable.call(RANK, request)[SCORES]
    except Exception as err:  # noqa: BLE001
        raise LoadError(f"{servable.path}: warm-up failed: {type(err).__name__}: "
                        f"{err}") from None
    if not np.isfinite(scores).all() or (ranked is not None and not np.isfinite(ranked).all()):
        raise LoadError(f"{servable.path}: warm-up produced non-finite scores")
    if ranked is not None and not np.allclose(scores, ranked, rtol=1e-5, atol=1e-6):
        raise LoadError(f"{servable.path}: warm-up: rank and serving_default disagree")
