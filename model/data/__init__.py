"""Data: where training rows come from and in what order they are read.

Sources (``sources``, ``movielens``, ``synth``), the interaction arrays and their
deterministic splits (``interactions``, ``splits``), each epoch's row order (``order``), and
the per-id feature tables and vocabularies built from the training rows (``tables``).

May import: ``steadyrank.core``, ``steadyrank.model.config``. Never TensorFlow's model code,
the network, training, evaluation or the artifact.
"""
