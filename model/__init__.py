"""SteadyRank model: what trains, measures and writes a model, in five rooms.

- ``config``: the experiment's settings (``[data]``, ``[model]``, ``[train]`` of a TOML
  file), validated; every room reads them. ``schema``: the declared feature schema
  (``[label]``, ``[[features]]``).
- ``data/``: readers that stream (Parquet, CSV, Criteo TSV; MovieLens 100K and the
  synthetic generators as presets), splits, the statistics pass and row orders.
- ``network/``: the schema's input layer, the Keras layers, the TFRS ranking model and
  co-distillation.
- ``training/``: the trainer (checkpoints, ensembles, warm start, weight averaging, the
  distribution strategies) and the train-evaluate-export workflow.
- ``evaluation/``: reproducibility metrics, accuracy, ``steadyrank compare`` and its report,
  and the replica trainer with its churn gate.
- ``artifact/``: the export in TF Serving's layout: its layout facts, the writer, the reader
  (which loads an export with TensorFlow alone) and the churn gate record.

Imports run one way: ``evaluation`` -> ``training`` -> ``network`` -> ``data`` -> ``config``
-> ``schema``,
with ``artifact``'s writer below ``training`` and its reader, layout and gate record on
``core`` and ``ops`` only, so a server can read exports without any training code.
Evaluation's two measures, ``metrics`` and ``accuracy``, are leaves (numpy and the config):
training uses them to evaluate what it exports, the server's monitor uses ``metrics``. Importing
this package sets nothing; ``network`` sets the Keras 2 switch TFRS needs (see
:mod:`steadyrank.model.network.keras2`).
"""
