"""Data: where training rows come from and in what order they are read.

The formats' readers (``readers``: Parquet, CSV, Criteo TSV; ``sources``: one reader per
format, the presets' sources ``movielens`` and ``synth``, and ``criteo_synth``), the schemas
formats imply (``presets``), the conversion of rows to model inputs (``columns``,
``batches``), the splits and the statistics pass (``splits``, ``stats``: vocabularies,
numeric moments, fact tables), each epoch's row order (``order``) and the schema draft of
``steadyrank data schema`` (``draft``).

May import: ``steadyrank.core``, ``steadyrank.model.config`` and ``steadyrank.model.schema``.
Never the network, training, evaluation or the artifact.
"""
