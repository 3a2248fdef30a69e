"""Shared test setup: quiet TensorFlow, Keras 2, and helpers for fresh-process checks."""

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def run_python(code: str, env: dict | None = None, timeout: float = 300,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh Python process (this interpreter) and returns the result."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd,
    )


def reloaded_in_fresh_process(model, x, folder: Path, fmt: str, op: str) -> dict:
    """Saves the Keras ``model`` (``fmt``: "keras" or "savedmodel") under ``folder`` and
    loads it in a fresh process with the op library: the largest difference of its
    predictions on ``x`` from this process's ("keras"), its layers' class names, and for a
    SavedModel the raw signature's difference ("raw") and whether its graph calls ``op``."""
    import numpy as np

    path = folder / ("model.keras" if fmt == "keras" else "model")
    model.save(str(path))
    np.save(folder / "x.npy", x)
    np.save(folder / "expected.npy", model.predict(x, verbose=0))
    result = run_python(f"""
        import json, numpy as np, tensorflow as tf, tf_keras as keras
        import steadyrank.ops, steadyrank.ops.keras  # the layers and "smelu" for Keras
        steadyrank.ops.load_library()  # the op, before a SavedModel graph that uses it
        x = np.load({str(folder / 'x.npy')!r})
        expected = np.load({str(folder / 'expected.npy')!r})
        model = keras.models.load_model({str(path)!r})
        out = {{"keras": float(np.abs(model.predict(x, verbose=0) - expected).max()),
               "layers": [type(l).__name__ for l in model.layers]}}
        if {fmt!r} == "savedmodel":
            loaded = tf.saved_model.load({str(path)!r})
            serve = loaded.signatures["serving_default"]
            y = list(serve(tf.constant(x)).values())[0].numpy()
            out["raw"] = float(np.abs(y - expected).max())
            graph_ops = {{n.op for f in serve.graph.as_graph_def().library.function
                          for n in f.node_def}}
            out["uses_op"] = {op!r} in graph_ops
        print(json.dumps(out))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def declared_shape_request(size: int, model: str = "ml"):
    """A Predict request for ``model`` whose user_id and item_id declare ``size`` elements
    and carry one value (TensorFlow fills the rest from it): a few bytes on the wire."""
    from tensorflow.core.framework import tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key in ("user_id", "item_id"):
        tensor = request.inputs[key]
        tensor.dtype = types_pb2.DT_INT64
        tensor.tensor_shape.dim.append(tensor_shape_pb2.TensorShapeProto.Dim(size=size))
        tensor.int64_val.append(1)
    return request


SMALL = {"model": {"embedding_dim": 8, "deep_layers": [16, 8]},
         "train": {"epochs": 1, "batch_size": 1024}}


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05) -> bool:
    """Polls ``predicate`` every ``every`` s until it is true (True) or ``timeout`` s pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return False


# The tiny generated dataset most tests train on: MovieLens-shaped (user and item side
# features, ratings 1-5 from a planted model), made in about a second, no download.
TINY = {"users": 400, "items": 600, "rows": 30_000, "seed": 0, "shard_rows": 10_000}


def data_section(folder: Path) -> dict[str, str]:
    """The ``[data]`` settings that read ``folder`` (a ``data synth`` folder, such as the
    ``tiny_data`` fixture's, or a fetched ``movielens-100k`` folder)."""
    if folder.name == "movielens-100k":
        return {"dataset": "movielens-100k", "data_dir": str(folder.parent)}
    return {"dataset": "synthetic", "data_dir": str(folder)}


def data_overrides(folder: Path) -> list[str]:
    """``--set`` arguments of a command that reads ``folder`` (see :func:`data_section`)."""
    return [a for key, value in data_section(folder).items()
            for a in ("--set", f"data.{key}={value}")]


def small_config(folder: Path, **sections: dict):
    """A quick-to-train config on the dataset folder ``folder`` (see :func:`data_section`),
    with section overrides."""
    from steadyrank.model import config as cfg

    raw = {"data": data_section(folder), **SMALL}
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return cfg.from_dict(raw)


def train_small_models(data: Path, tmp_path_factory, seeds: dict[str, int] | None = None,
                       prefix: str = "models") -> Path:
    """A fresh model base folder of small models (``NAME/1``) trained on the dataset folder
    ``data``, one per name and init seed (default ``ml`` with seed 1; ``{"ml": 1, "ml-b": 2}``
    adds a second replica)."""
    from steadyrank.model.training.workflow import train_and_export

    base, ckpt = tmp_path_factory.mktemp(prefix), tmp_path_factory.mktemp("ckpt")
    for name, seed in (seeds or {"ml": 1}).items():
        train_and_export(small_config(data), seed, base / name, ckpt / name,
                         log=lambda _: None)
    return base


def train_shop_models(base: Path, work: Path) -> Path:
    """Two models of schemas SteadyRank never saw, in ``base``: ``shop`` (string shopper and
    sku ids, context device and hour, a user fact, numeric and multi-hot item facts; binary)
    with its replica ``shop-b``, and ``clicks`` (Criteo-format TSV, no ids)."""
    from steadyrank.model import config as cfg
    from steadyrank.model.training.workflow import train_and_export
    from tests.shop_data import (
        CONFIG,
        click_log,
        criteo_lines,
        serving_config,
        serving_table,
        write_dataset,
    )

    folder = write_dataset(work / "clicks", "parquet", serving_table(click_log()))
    text = serving_config(CONFIG.format(fmt="parquet", folder=folder, ext="parquet", csv=""))
    (work / "shop.toml").write_text(text)
    shop = cfg.load(work / "shop.toml")
    for name, seed in (("shop", 1), ("shop-b", 2)):
        train_and_export(shop, seed, base / name, work / "ck" / name, log=lambda _: None)
    (work / "day_0.tsv").write_text(criteo_lines())
    criteo = cfg.from_dict({"data": {"format": "criteo", "train": [str(work / "day_*.tsv")]},
                            "model": {"embedding_dim": 4, "deep_layers": [8]},
                            "train": {"epochs": 1, "batch_size": 256}})
    train_and_export(criteo, 1, base / "clicks", work / "ck" / "clicks", log=lambda _: None)
    return base


@pytest.fixture(scope="session")
def shop_models(tmp_path_factory):
    """A model base folder of :func:`train_shop_models`' models (trained once a session)."""
    return train_shop_models(tmp_path_factory.mktemp("shop-models"),
                             tmp_path_factory.mktemp("shop-work"))


@pytest.fixture(scope="module")
def chan(server):
    """A channel to the module's ``server`` fixture."""
    from steadyrank.service import client

    with client.channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


@pytest.fixture
def fresh_python():
    """Fixture form of :func:`run_python`."""
    return run_python


@pytest.fixture(scope="session")
def recbole_wheel(tmp_path_factory) -> Path:
    """The pinned recbole wheel, downloaded once per test session with pip."""
    from steadyrank.model.data import movielens

    return movielens.download_recbole_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny generated dataset (:data:`TINY`), made once per test session."""
    from steadyrank.model.data import synth

    return synth.generate(synth.SynthSpec(**TINY), tmp_path_factory.mktemp("tiny") / "data",
                          log=lambda _: None)


@pytest.fixture(scope="session")
def ml100k(request, tmp_path_factory) -> Path:
    """MovieLens 100K fetched once per test session; the folder data_dir/movielens-100k.

    ``STEADYRANK_TEST_DATA=DIR`` uses the already fetched ``DIR/movielens-100k`` instead (for
    machines without a package index, such as a lent GPU machine).
    """
    from steadyrank.model.data import movielens

    given = os.environ.get("STEADYRANK_TEST_DATA")
    if given:
        return Path(given) / "movielens-100k"
    wheel = request.getfixturevalue("recbole_wheel")
    return movielens.fetch(tmp_path_factory.mktemp("data"), wheel=wheel)


def rss_mb(pid: int | None = None) -> float:
    """A process's resident memory in MB (this process by default; 0 if it has exited)."""
    try:
        with open(f"/proc/{pid or os.getpid()}/status") as f:
            return next((int(line.split()[1]) / 1024 for line in f
                         if line.startswith("VmRSS:")), 0.0)
    except OSError:
        return 0.0


def start_serve(log: Path, *flags: str) -> subprocess.Popen:
    """``steadyrank serve FLAGS`` as a subprocess logging to ``log`` (on loopback, ports
    picked by the system unless FLAGS say otherwise)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "steadyrank.cli", "serve", "--host", "127.0.0.1",
             "--port", "0", *flags],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def serve_ports(log: Path) -> tuple[int, int | None]:
    """(gRPC port, metrics port or None) once ``serve`` has logged that it listens."""
    import re

    assert wait_for(lambda: "gRPC on port" in log.read_text(), timeout=240), \
        log.read_text()[-3000:]
    found = re.search(r"gRPC on port (\d+), metrics on (?:port (\d+)|no port)",
                      log.read_text())
    return int(found.group(1)), int(found.group(2)) if found.group(2) else None


def kill_serve(proc: subprocess.Popen) -> None:
    """Kills a ``serve`` supervisor left running by a failed test, and its workers."""
    import signal

    from steadyrank.service.serve import supervisor as workers

    children = workers.worker_pids(proc.pid)  # before the kill: then they are re-parented
    if proc.poll() is None:
        proc.kill()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def eval_inputs(prepared, n: int = 2000) -> dict:
    """The model inputs of a prepared dataset's first ``n`` eval rows (numpy arrays)."""
    rows = next(prepared.eval_batches())
    return {k: v[:n] for k, v in rows.inputs.items()}


def train_batch(prepared, n: int = 256) -> dict:
    """The first ``n`` train rows with their labels, as tensors (a training batch)."""
    import tensorflow as tf

    from steadyrank.model.data.batches import LABEL

    rows = next(prepared.train_batches())
    return {**{k: tf.constant(v[:n]) for k, v in rows.inputs.items()},
            LABEL: tf.constant(rows.labels[:n])}


def eval_columns(prepared):
    """Every eval row's model inputs as attributes (``.user_id``, ``.item_id``, ...) and
    its ``labels``, held whole (the tests' small datasets only)."""
    from types import SimpleNamespace

    from steadyrank.model.data.batches import concat

    rows = concat(list(prepared.eval_batches()))
    return SimpleNamespace(**rows.inputs, labels=rows.labels, inputs=rows.inputs)
