"""Network: the Keras layers, the TFRS ranking model and co-distillation.

May import: ``steadyrank.core``, ``steadyrank.ops``, ``steadyrank.model.config`` and
``steadyrank.model.data``. Importing it sets the Keras 2 switch TFRS needs (``keras2``),
before TFRS is imported.
"""

from steadyrank.model.network import keras2  # noqa: F401  (Keras 2 for TFRS, before any import of it)
