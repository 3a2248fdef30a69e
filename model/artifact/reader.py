"""Reading an export: its manifest, and its SavedModel loaded with TensorFlow alone.

Nothing here imports the network, TFRS or training code: a server, a notebook or a batch
job loads an export with :func:`load` (or plain ``tf.saved_model.load`` after
``steadyrank.ops.load_library()``). The op library is loaded only when the graph uses the
SmeLU ops, found by scanning the SavedModel's graph and function library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from steadyrank.core.errors import SteadyRankError
from steadyrank.model.artifact.layout import (
    CATALOG,
    MANIFEST,
    RANK,
    SERVING_DEFAULT,
    versions,
)
from steadyrank.ops import OP_TYPES, load_library


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


def read_export_manifest(version: Path) -> dict[str, Any]:
    """The manifest of a version folder, without loading its graph."""
    try:
        return json.loads((Path(version) / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise ExportError(f"{version}: unreadable {MANIFEST}: {err}") from None


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


def op_types(proto: saved_model_pb2.SavedModel) -> set[str]:
    """Every op type the SavedModel's graph and function library use."""
    graph = proto.meta_graphs[0].graph_def
    found = {node.op for node in graph.node}
    for function in graph.library.function:
        found.update(node.op for node in function.node_def)
    return found


def uses_custom_ops(proto: saved_model_pb2.SavedModel) -> bool:
    """Whether the graph needs steadyrank.ops' library (SmeLU or g-SmeLU ops)."""
    return bool(op_types(proto) & OP_TYPES)


def score_in_batches(serve: Any, user_id: np.ndarray, item_id: np.ndarray,
                     batch: int = 65536) -> np.ndarray:
    """Scores of (user, item) pairs through ``serve(user_id=, item_id=)["score"]``, batched."""
    user_id, item_id = np.asarray(user_id, np.int64), np.asarray(item_id, np.int64)
    parts = [serve(user_id=tf.constant(user_id[i:i + batch]),
                   item_id=tf.constant(item_id[i:i + batch]))["score"].numpy()
             for i in range(0, len(user_id), batch)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


@dataclass
class LoadedModel:
    """An export loaded for scoring in Python."""

    path: Path
    manifest: dict[str, Any]
    module: Any
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]

    @property
    def item_ids(self) -> np.ndarray:
        """The catalog of item ids."""
        return self.module.signatures[CATALOG]()["item_ids"].numpy()

    def score(self, user_id: np.ndarray, item_id: np.ndarray, batch: int = 65536) -> np.ndarray:
        """serving_default scores of (user, item) pairs, float32 [B]."""
        return score_in_batches(self.module.signatures[SERVING_DEFAULT], user_id, item_id,
                                batch)

    def rank(self, user_id: int, item_ids: np.ndarray) -> np.ndarray:
        """``rank`` signature scores of candidate items for one user."""
        return self.module.signatures[RANK](
            user_id=tf.constant(user_id, tf.int64),
            item_ids=tf.constant(np.asarray(item_ids, np.int64)))["scores"].numpy()


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
