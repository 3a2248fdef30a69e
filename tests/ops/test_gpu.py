"""The op library on a GPU: SmeLU and GSmeLU kernels against the CPU kernels, placement on the
GPU, and a model trained on the GPU that serves on a CPU-only machine.

Runs wherever TensorFlow sees a GPU and the library has CUDA kernels; skipped otherwise (CI has
no GPU). On a GPU machine: ``TF_ENABLE_ONEDNN_OPTS=0 python -m pytest -m gpu tests/ops/test_gpu.py``
(the ``steadyrank`` command sets that variable itself on NVIDIA machines: see
``steadyrank.cli.environment``).
"""

import json

import numpy as np
import pytest
import tensorflow as tf

import steadyrank.ops as sro
from steadyrank.ops import build
from tests.conftest import REPO, run_python
from tests.ops.test_smelu_op import DTYPES, TOLERANCES, as_dtype, numpy64

GPUS = tf.config.list_physical_devices("GPU")
INFO = build.read_info()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not GPUS, reason="no GPU visible to TensorFlow"),
    pytest.mark.skipif(INFO is None or not INFO.cuda, reason="op library built without CUDA"),
]
NAMES = ("alpha", "beta", "slope_left", "slope_right", "offset")


def _inputs(dtype, n=200_003, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([[0.5, -0.5, 0.0, np.nan, np.inf, -np.inf], rng.normal(0, 1.5, n)])
    return as_dtype(x, dtype), as_dtype(rng.normal(size=x.size), dtype)


def _smelu_derivatives(device, x, dy):
    with tf.device(device):
        x = tf.identity(x)
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = sro.smelu(x, 0.5)
            g = inner.gradient(y, x, output_gradients=dy)
        h = outer.gradient(g, x)
    return [numpy64(t) for t in (y, g, h)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_smelu_values_and_gradients_on_gpu_match_cpu(dtype):
    x, dy = _inputs(dtype)
    cpu = _smelu_derivatives("/CPU:0", x, dy)
    gpu = _smelu_derivatives("/GPU:0", x, dy)
    for name, a, b in zip(("value", "first", "second"), cpu, gpu, strict=True):
        np.testing.assert_allclose(b, a, err_msg=name, **TOLERANCES[dtype])


def _gsmelu_derivatives(device, x, dy, values):
    with tf.device(device):
        x = tf.identity(x)
        params = [tf.Variable(values[n], dtype=x.dtype) for n in NAMES]
        with tf.GradientTape(persistent=True) as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = sro.gsmelu(x, *params)
            grads = inner.gradient(y, [x, *params], output_gradients=dy)
        second = outer.gradient(grads[0], x)
    return [numpy64(t) for t in (y, *grads, second)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("layout", ["shared", "per-unit"])
def test_gsmelu_values_and_gradients_on_gpu_match_cpu(dtype, layout):
    units = 64
    x, dy = _inputs(dtype, n=units * 3000 - 6)
    x, dy = tf.reshape(x, (-1, units)), tf.reshape(dy, (-1, units))
    rng = np.random.default_rng(1)
    values = dict(alpha=0.7, beta=1.3, slope_left=-0.2, slope_right=1.1, offset=0.3)
    if layout == "per-unit":
        values["beta"] = 1.3 + rng.uniform(0, 0.5, units)
        values["slope_right"] = 1.1 + rng.uniform(0, 0.5, units)
    # The specials make every parameter sum NaN; keep them for values and dx, not sums.
    finite = tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))
    cpu = _gsmelu_derivatives("/CPU:0", x, dy, values)
    gpu = _gsmelu_derivatives("/GPU:0", x, dy, values)
    cpu_sums = _gsmelu_derivatives("/CPU:0", finite, dy, values)[2:7]
    gpu_sums = _gsmelu_derivatives("/GPU:0", finite, dy, values)[2:7]
    tol = TOLERANCES[dtype]
    for name, i in (("value", 0), ("dx", 1), ("second", 7)):
        np.testing.assert_allclose(gpu[i], cpu[i], err_msg=name, **tol)
    for name, a, b in zip(NAMES, cpu_sums, gpu_sums, strict=True):
        # Both sum in double, in different orders; the result is rounded to the dtype.
        scale = np.abs(a).max() + 1.0
        np.testing.assert_allclose(b, a, rtol=tol["rtol"] * 4, atol=tol["rtol"] * 4 * scale,
                                   err_msg=name)


def test_invalid_parameters_give_nan_on_the_gpu():
    with tf.device("/GPU:0"):
        y = sro.gsmelu(tf.ones([4, 3]), tf.Variable(-1.0), tf.Variable(0.5), 0.0, 1.0, 0.0)
    assert y.device.endswith("GPU:0") and np.isnan(y.numpy()).all()


def test_kernels_run_on_the_gpu_not_the_cpu():
    graph = tf.Graph()
    with graph.as_default(), tf.device("/GPU:0"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 8])
        beta = tf.Variable(tf.fill([8], 0.5))
        y = sro.smelu(x, 0.5) + sro.gsmelu(x, beta, beta, 0.0, 1.0, 0.0)
        grads = tf.gradients(tf.reduce_sum(y * y), [x, beta])
        init = tf.compat.v1.global_variables_initializer()
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    meta = tf.compat.v1.RunMetadata()
    config = tf.compat.v1.ConfigProto(allow_soft_placement=False)
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        sess.run(init)
        sess.run(grads, {x: np.ones((4, 8), np.float32)}, options=options, run_metadata=meta)
    placed = {}
    for dev in meta.step_stats.dev_stats:
        for node in dev.node_stats:
            placed.setdefault(node.timeline_label.split(" = ")[-1].split("(")[0], set()).add(
                dev.device)
    by_op = {op: devs for op, devs in placed.items()
             if op in ("SmeLU", "SmeLUGrad", "GSmeLU", "GSmeLUGrad")}
    assert set(by_op) == {"SmeLU", "SmeLUGrad", "GSmeLU", "GSmeLUGrad"}, placed
    for op, devs in by_op.items():
        assert all("GPU" in d.upper() for d in devs), (op, devs)


def test_train_on_gpu_then_serve_on_a_cpu_only_machine(tiny_data, tmp_path):
    from steadyrank.model import config as cfg
    from steadyrank.model.data.splits import prepare_data
    from steadyrank.model.training.workflow import train_and_export

    config = cfg.load(REPO / "configs" / "smelu.toml",
                      ['data.dataset="synthetic"', f'data.data_dir="{tiny_data}"',
                       "train.epochs=1"])
    splits = prepare_data(config)
    path = train_and_export(config, 1, tmp_path / "models" / "smelu", tmp_path / "ckpt",
                            splits=splits, log=print)
    users, items = splits.eval.user_id[:512], splits.eval.item_id[:512]
    np.save(tmp_path / "pairs.npy", np.stack([users, items]))
    code = f"""
        import json, numpy as np, tensorflow as tf
        from steadyrank.model.artifact import reader
        users, items = np.load({str(tmp_path / 'pairs.npy')!r})
        scores = reader.load({str(path)!r}).score_pairs(users, items)
        print(json.dumps({{"gpus": len(tf.config.list_physical_devices("GPU")),
                          "scores": scores.tolist()}}))
    """
    # On the GPU machine (oneDNN's graph rewrite off: with it on, TensorFlow 2.21 fuses the
    # layer norm into _MklLayerNorm, a CPU-only kernel, and then places it on the GPU).
    on_gpu = run_python(code, env={"TF_ENABLE_ONEDNN_OPTS": "0"})
    on_cpu = run_python(code, env={"CUDA_VISIBLE_DEVICES": ""})
    for result in (on_gpu, on_cpu):
        assert result.returncode == 0, result.stderr[-3000:]
    gpu, cpu = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (on_gpu, on_cpu))
    assert gpu["gpus"] == 1 and cpu["gpus"] == 0
    assert np.isfinite(gpu["scores"]).all()
    np.testing.assert_allclose(cpu["scores"], gpu["scores"], rtol=1e-4, atol=1e-4)
