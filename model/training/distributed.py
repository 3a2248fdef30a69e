"""Training past one machine, on TensorFlow's own distribution strategies.

- ``parameter-server``: ``tf.distribute.experimental.ParameterServerStrategy`` over the
  cluster in ``TF_CONFIG`` (chief, workers, parameter servers). A ``MinSizePartitioner``
  shards every variable over 256 KiB (the embedding tables) across the parameter servers;
  workers train asynchronously, each on its own shard of the data, scheduled by the chief.
- ``mirrored``: ``tf.distribute.MultiWorkerMirroredStrategy`` (synchronous all-reduce over
  the workers in ``TF_CONFIG``, or the local devices without it), for dense-heavy models.
- ``default``: no strategy, the single-machine path.

A parameter-server or worker process runs :func:`serve_node`; ``steadyrank cluster`` starts a
whole cluster on loopback (:mod:`steadyrank.model.training.local_cluster`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tensorflow as tf

from steadyrank.model.config import STRATEGIES, ConfigError

MIN_SHARD_BYTES = 256 << 10


class ClusterError(ConfigError):
    """The cluster settings (TF_CONFIG) do not fit the requested strategy."""

    exit_code = 2


def cluster_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG`` ({} when unset); ClusterError naming what is wrong."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ClusterError(f"TF_CONFIG is not JSON: {err}") from None
    if not isinstance(config, dict) or "cluster" not in config:
        raise ClusterError("TF_CONFIG must be an object with a 'cluster' entry")
    return config


def make_strategy(name: str) -> tf.distribute.Strategy | None:
    """The strategy called ``name`` (None for ``default``), built from ``TF_CONFIG``."""
    if name not in STRATEGIES:
        raise ClusterError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    if name == "default":
        return None
    config = cluster_config()
    if name == "mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    cluster = config.get("cluster", {})
    if not cluster.get("ps") or not cluster.get("worker"):
        raise ClusterError("strategy parameter-server needs TF_CONFIG with 'ps' and 'worker' "
                           "tasks (or run it under `steadyrank cluster --ps N --workers M -- "
                           "train ...`)")
    task = config.get("task", {}).get("type")
    if task not in ("chief", None):
        raise ClusterError(f"this process is TF_CONFIG task {task!r}: only the chief trains; "
                           "parameter servers and workers run `steadyrank cluster-node`")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=MIN_SHARD_BYTES, max_shards=len(cluster["ps"]))
    return tf.distribute.experimental.ParameterServerStrategy(
        resolver, variable_partitioner=partitioner)


def is_parameter_server(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether ``strategy`` is a ParameterServerStrategy (async, scheduled by the chief)."""
    return isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy)


def shard_layout(variable: Any) -> list[dict[str, Any]]:
    """[{"device", "rows"}] of each shard of a (possibly sharded) variable."""
    parts = getattr(variable, "variables", [variable])
    return [{"device": str(p.device), "rows": int(p.shape[0])} for p in parts]


def serve_node() -> None:
    """Runs this process as the ``TF_CONFIG`` task (a parameter server or a worker) forever."""
    from steadyrank.ops import load_library

    load_library()  # workers run the SmeLU ops

    config = cluster_config()
    task = config.get("task", {})
    if task.get("type") not in ("ps", "worker"):
        raise ClusterError(f"cluster-node runs a 'ps' or 'worker' task, TF_CONFIG says "
                           f"{task.get('type')!r}")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=task["type"],
                                  task_index=int(task.get("index", 0)), protocol="grpc",
                                  start=True)
    print(f"cluster node {task['type']}:{task.get('index', 0)} serving at {server.target}",
          flush=True)
    server.join()


def per_worker_dataset_fn(columns: dict[str, np.ndarray], order: np.ndarray, batch_size: int):
    """A ``DatasetCreator`` function: each worker its shard of the epoch's rows in ``order``,
    batched and repeated (the chief schedules ``steps_per_epoch`` steps)."""
    shuffled = {k: v[order] for k, v in columns.items()}

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        dataset = tf.data.Dataset.from_tensor_slices(shuffled)
        dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        return dataset.batch(batch_size).repeat().prefetch(2)

    return dataset_fn
