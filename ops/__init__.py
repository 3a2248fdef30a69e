"""SmeLU and generalized SmeLU as TensorFlow custom ops, with gradients and Keras layers.

The compiled op library is loaded on first use (like TensorFlow Addons' ``LazySO``): by the
first call of :func:`smelu` or :func:`gsmelu`, or by :func:`load_library`, which anything that
loads a SavedModel using the ops calls first. Importing this package loads nothing and sets
nothing in the environment. A missing library, or one built for another TensorFlow version,
is built on that first load (``STEADYRANK_OPS_NO_BUILD=1`` forbids it).

    import steadyrank.ops as sro
    y = sro.smelu(x, beta=1.0)
    layer = tf_keras.layers.Dense(64, activation="smelu")
"""

from steadyrank.ops._errors import BuildError
from steadyrank.ops._loader import load_library
from steadyrank.ops.gsmelu import check_params, gsmelu, gsmelu_reference
from steadyrank.ops.keras import GSmeLU, SmeLU, smelu_activation
from steadyrank.ops.params import check_beta
from steadyrank.ops.smelu import smelu, smelu_reference

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
