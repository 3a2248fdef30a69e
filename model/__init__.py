"""SteadyRank model: data, the ranking model, training, export and evaluation."""

from steadyrank.model import keras2  # noqa: F401  (Keras 2 for TFRS, before any import of it)
