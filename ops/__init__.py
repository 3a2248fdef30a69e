"""SmeLU as a TensorFlow custom op, with gradients to any order and Keras integration.

Importing this package loads the compiled op library, building it first when it is
missing or was built for another TensorFlow version.

    import steadyrank.ops as sro
    y = sro.smelu(x, beta=1.0)
    layer = tf.keras.layers.Dense(64, activation="smelu")
"""

import os
import sys

# tensorflow-recommenders needs Keras 2 (tf-keras); this must precede TensorFlow's import.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from steadyrank.ops._errors import BuildError  # noqa: E402
from steadyrank.ops._loader import load_library  # noqa: E402
from steadyrank.ops.gsmelu import check_params, gsmelu, gsmelu_reference  # noqa: E402
from steadyrank.ops.keras import GSmeLU, SmeLU, smelu_activation  # noqa: E402
from steadyrank.ops.smelu import check_beta, smelu, smelu_reference  # noqa: E402


def _autoload_disabled() -> bool:
    """True under ``python -m steadyrank.ops.build`` (which builds before it loads), or when
    ``STEADYRANK_OPS_NO_AUTOLOAD=1`` (tools that only inspect or build the library)."""
    if os.environ.get("STEADYRANK_OPS_NO_AUTOLOAD") == "1":
        return True
    argv = getattr(sys, "orig_argv", [])
    pairs = zip(argv, argv[1:], strict=False)
    return any(a == "-m" and b == "steadyrank.ops.build" for a, b in pairs)


if not _autoload_disabled():
    load_library()

__all__ = [
    "BuildError",
    "GSmeLU",
    "SmeLU",
    "check_beta",
    "check_params",
    "gsmelu",
    "gsmelu_reference",
    "load_library",
    "smelu",
    "smelu_activation",
    "smelu_reference",
]
