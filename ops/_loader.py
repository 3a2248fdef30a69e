"""Loads the compiled op library, building it first when missing or stale."""

from __future__ import annotations

import functools
import importlib
import os
import threading
from types import ModuleType

_lock = threading.Lock()
# The op types the library registers (ops/cc/ops/*.cc); a graph using one needs it loaded.
OP_TYPES = frozenset({"SmeLU", "SmeLUGrad", "SmeLUGradGrad", "GSmeLU", "GSmeLUGrad"})


@functools.cache
def _load_cached() -> ModuleType:
    import tensorflow as tf

    from steadyrank.ops import build as _build

    lib_path = _build.lib_dir() / _build.LIB_NAME
    have = _build.read_info()
    if have is None or not have.matches(_build.wanted_info()):
        # Missing, or built for another TensorFlow or other sources: rebuild (under a file
        # lock, so concurrent importers build once).
        if os.environ.get("STEADYRANK_OPS_NO_BUILD") == "1":
            raise _build.BuildError(
                f"the op library at {lib_path} is missing or was built for another TensorFlow "
                "version, and STEADYRANK_OPS_NO_BUILD=1 forbids building it here; run "
                "'python -m steadyrank.ops.build'."
            )
        lib_path = _build.build()
    library = tf.load_op_library(str(lib_path))
    # The gradient functions are registered by the wrapper modules. Imported here, once: the
    # ops call load_library() inside traced functions, where AutoGraph would otherwise try
    # (and fail, with a warning that holds a frame) to convert the import machinery.
    importlib.import_module("steadyrank.ops.smelu_op")
    importlib.import_module("steadyrank.ops.gsmelu_op")
    return library


def load_library() -> ModuleType:
    """The loaded op module (``sme_lu``, ``g_sme_lu`` and their gradient ops), with the ops'
    Python gradients registered; thread-safe, loads once."""
    with _lock:
        return _load_cached()


def register() -> ModuleType:
    """Makes models that use the ops loadable: loads the op library (for
    ``tf.saved_model.load``) and registers the Keras layers and the ``"smelu"`` activation
    (for ``.keras`` files and ``activation="smelu"``). Returns the op module."""
    library = load_library()
    importlib.import_module("steadyrank.ops.keras")
    return library
