"""Loads the compiled op library, building it first when missing or stale."""

from __future__ import annotations

import functools
import importlib
import os
import threading
from types import ModuleType

_lock = threading.Lock()


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
    return tf.load_op_library(str(lib_path))


def load_library() -> ModuleType:
    """The loaded op module (``sme_lu``, ``g_sme_lu`` and their gradient ops), with the ops'
    Python gradients registered; thread-safe, loads once."""
    with _lock:
        library = _load_cached()
    # The gradient functions are registered by the wrapper modules.
    importlib.import_module("steadyrank.ops.smelu_op")
    importlib.import_module("steadyrank.ops.gsmelu_op")
    return library
