"""Reading an export: its manifest, and its SavedModel loaded with TensorFlow alone.

Nothing here imports the network, TFRS or training code: a server, a notebook or a batch
job loads an export with :func:`load` (or plain ``tf.saved_model.load`` after
``steadyrank.ops.load_library()``). The op library is loaded only when the graph uses the
SmeLU ops, found by scanning the SavedModel's graph and function library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from steadyrank.core.errors import SteadyRankError
from steadyrank.model.artifact.layout import (
    CATALOG,
    ITEM_IDS,
    RANK,
    SCORE,
    SCORES,
    SERVING_DEFAULT,
    versions,
)
from steadyrank.model.artifact.manifest import Manifest, ManifestError
from steadyrank.ops import OP_TYPES, load_library
from steadyrank.ops.portable import op_types


class ExportError(SteadyRankError, RuntimeError):
    """An export cannot be written or read; the message names the folder."""


def resolve(path: str | Path) -> Path:
    """A version folder: ``path`` itself, or the latest version under a base folder."""
    path = Path(path)
    if (path / "saved_model.pb").exists():
        return path
    found = versions(path)
    if not found:
        raise ExportError(f"{path}: no model version (expected {path}/VERSION/saved_model.pb)")
    return path / str(found[-1])


def read_export_manifest(version: Path) -> Manifest:
    """The manifest of a version folder, without loading its graph."""
    try:
        return Manifest.read(version)
    except ManifestError as err:
        raise ExportError(str(err)) from None


def read_saved_model(path: Path) -> saved_model_pb2.SavedModel:
    """The parsed ``saved_model.pb`` of a version folder."""
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    except (OSError, ValueError) as err:  # protobuf's DecodeError is a ValueError
        raise ExportError(f"{path}/saved_model.pb: unreadable: {err}") from None
    if not proto.meta_graphs:
        raise ExportError(f"{path}/saved_model.pb: no meta graph")
    return proto


def signature_defs(proto: saved_model_pb2.SavedModel) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of a parsed SavedModel, by name."""
    return dict(proto.meta_graphs[0].signature_def)


def uses_custom_ops(proto: saved_model_pb2.SavedModel) -> bool:
    """Whether the graph needs steadyrank.ops' library (SmeLU or g-SmeLU ops)."""
    return bool(op_types(proto) & OP_TYPES)


def decoded(values: np.ndarray) -> np.ndarray:
    """TensorFlow's bytes as str (an object array); other arrays unchanged."""
    if values.dtype == object:
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values.tolist()],
                        object)
    return values


def as_tensors(inputs: Mapping[str, Any]) -> dict[str, tf.Tensor]:
    """numpy (or list) inputs as tensors: object arrays of str become tf.string."""
    return {k: tf.constant(v.tolist() if isinstance(v, np.ndarray) and v.dtype == object
                           else v) for k, v in inputs.items()}


def score_in_batches(serve: Any, inputs: Mapping[str, np.ndarray], batch: int = 65536
                     ) -> np.ndarray:
    """``serve(inputs)["score"]`` over the rows of ``inputs``, ``batch`` rows a call;
    ``serve`` takes the inputs as one dict (a tf.function) or by name (a signature)."""
    n = len(next(iter(inputs.values())))
    parts = []
    for i in range(0, n, batch):
        part = as_tensors({k: v[i:i + batch] for k, v in inputs.items()})
        try:
            out = serve(**part)
        except TypeError:  # a tf.function taking one dict
            out = serve(part)
        parts.append(out[SCORE].numpy())
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


@dataclass
class LoadedModel:
    """An export loaded for scoring in Python."""

    path: Path
    manifest: Manifest
    module: Any
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]

    @property
    def ranks(self) -> bool:
        """Whether the export ranks items for users (it has ``rank`` and ``catalog``)."""
        return RANK in self.signature_defs and CATALOG in self.signature_defs

    @property
    def item_ids(self) -> np.ndarray:
        """The catalog of item ids (strings decoded); ExportError without a catalog."""
        if CATALOG not in self.signature_defs:
            raise ExportError(f"{self.path}: no {CATALOG} signature (its schema has no "
                              "user and item ids)")
        return decoded(self.module.signatures[CATALOG]()[ITEM_IDS].numpy())

    @property
    def input_names(self) -> tuple[str, ...]:
        """The inputs of ``serving_default``: the ids and context features."""
        return tuple(sorted(self.signature_defs[SERVING_DEFAULT].inputs))

    def score(self, inputs: Mapping[str, np.ndarray], batch: int = 65536) -> np.ndarray:
        """serving_default scores of rows given as arrays by input name, float32 [B]."""
        return score_in_batches(self.module.signatures[SERVING_DEFAULT],
                                {k: inputs[k] for k in self.input_names}, batch)

    def score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """serving_default scores of (user, item) pairs, for a ranking export without
        context features."""
        user, item = self.manifest.id_inputs(self.signature_defs)
        return self.score({user: np.asarray(user_ids), item: np.asarray(item_ids)})

    def rank_items(self, user_id: Any, item_ids: np.ndarray) -> np.ndarray:
        """``rank`` scores of candidate items for one user (no context features)."""
        user, _ = self.manifest.id_inputs(self.signature_defs)
        return self.rank({user: user_id, ITEM_IDS: np.asarray(item_ids)})

    def rank(self, request: Mapping[str, Any]) -> np.ndarray:
        """``rank`` scores: ``request`` holds the user id and context features (scalars) by
        name and the candidates as ``item_ids``."""
        names = self.signature_defs[RANK].inputs
        return self.module.signatures[RANK](**as_tensors(
            {k: np.asarray(request[k]) for k in names}))[SCORES].numpy()


def load(path: str | Path, saved_model: saved_model_pb2.SavedModel | None = None
         ) -> LoadedModel:
    """Loads a version folder (or the latest version under a base folder).

    The SmeLU op library is loaded first when the graph uses its ops, so a plain
    ``tf.saved_model.load`` finds them registered. ``saved_model``: the folder's parsed
    ``saved_model.pb``, when the caller has read it already.
    """
    path = resolve(path)
    manifest = read_export_manifest(path)
    proto = saved_model if saved_model is not None else read_saved_model(path)
    if uses_custom_ops(proto):
        load_library()
    return LoadedModel(path, manifest, tf.saved_model.load(str(path)), signature_defs(proto))
