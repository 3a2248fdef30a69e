"""Artifact: the export in TF Serving's layout (``BASE/NAME/VERSION/``).

- ``layout``: the facts the trainer and the server share (version folders, the manifest's
  name, signature names, replica names);
- ``reader``: loads an export with TensorFlow alone (plus the op library when the graph
  uses the SmeLU ops) and reads its manifest;
- ``writer``: the serving module and the atomic export (imports the network);
- ``gate``: the churn gate's decision record, written by the trainer, read by the server.

``layout``, ``reader`` and ``gate`` import only ``steadyrank.core``, ``steadyrank.ops`` and
TensorFlow: a server that imports them loads no training code.
"""
