"""SmeLU and generalized SmeLU as TensorFlow custom ops, with gradients and Keras layers.

Importing this package imports nothing heavy and sets nothing: each name below is imported
on first access (so ``steadyrank.ops.params`` and the error classes stay TensorFlow-free),
and the compiled op library is loaded on first use (like TensorFlow Addons' ``LazySO``): by
the first call of :func:`smelu` or :func:`gsmelu`, or by :func:`load_library`. A missing
library, or one built for another TensorFlow version, is built on that first load
(``STEADYRANK_OPS_NO_BUILD=1`` forbids it).

To load a model that uses the ops, call :func:`register` first: it loads the library (so
``tf.saved_model.load`` finds the ops) and registers the ``SmeLU``/``GSmeLU`` Keras layers and
the ``"smelu"`` activation (so ``.keras`` files load and ``activation="smelu"`` works).

    import steadyrank.ops as sro
    import tensorflow as tf
    sro.register()
    model = tf.saved_model.load("models/movielens/1")
    y = sro.smelu(tf.constant([-2.0, 0.0, 3.0]), beta=1.0)
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the submodule that defines it
_EXPORTS = {
    "BuildError": "_errors",
    "SteadyRankError": "_errors",
    "load_library": "_loader",
    "OP_TYPES": "_loader",
    "register": "_loader",
    "check_beta": "params",
    "smelu": "smelu_op",
    "smelu_reference": "smelu_op",
    "gsmelu": "gsmelu_op",
    "gsmelu_reference": "gsmelu_op",
    "check_params": "gsmelu_op",
    "SmeLU": "keras",
    "GSmeLU": "keras",
    "smelu_activation": "keras",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'steadyrank.ops' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"steadyrank.ops.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
