"""SmeLU custom op: numerics against a float64 reference, gradients, shapes, bad input."""

import numpy as np
import pytest
import tensorflow as tf

import steadyrank.ops as sro

LIB = sro.load_library()

# Tolerances per dtype: kernels compute half/bfloat16 in float, so the error is the
# final rounding (half: 2^-11, bfloat16: 2^-8 relative) plus subnormal slack.
TOLERANCES = {
    tf.float16: dict(rtol=1e-3, atol=1e-4),
    tf.bfloat16: dict(rtol=8e-3, atol=1e-5),
    tf.float32: dict(rtol=2e-6, atol=1e-7),
    tf.float64: dict(rtol=1e-13, atol=1e-15),
}
DTYPES = list(TOLERANCES)


def op_beta(beta: float, dtype: tf.DType = tf.float32) -> float:
    """The beta the kernels use: the float32 attr, except float64 input (exact beta)."""
    return float(beta) if dtype == tf.float64 else float(np.float32(beta))


def ref_forward(x: np.ndarray, beta: float, dtype: tf.DType = tf.float32) -> np.ndarray:
    """float64 SmeLU with the beta the op uses for ``dtype``."""
    b = op_beta(beta, dtype)
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        quad = (x + b) ** 2 / (4 * b)
        return np.where(x >= b, x, np.where(x <= -b, 0.0, quad))


def ref_slope(x: np.ndarray, beta: float, dtype: tf.DType = tf.float32) -> np.ndarray:
    b = op_beta(beta, dtype)
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(x >= b, 1.0, np.where(x <= -b, 0.0, (x + b) / (2 * b)))


def ref_curvature(x: np.ndarray, beta: float, dtype: tf.DType = tf.float32) -> np.ndarray:
    b = op_beta(beta, dtype)
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        return np.where((x >= b) | (x <= -b), 0.0, 1.0 / (2 * b) + 0.0 * x)


def sample(beta: float, n: int = 20000, seed: int = 0) -> np.ndarray:
    """Random inputs spanning all three pieces, plus exact joins and values around 0."""
    rng = np.random.default_rng(seed)
    b = float(np.float32(beta))
    special = [b, -b, 0.0, -0.0, np.nextafter(b, 0), np.nextafter(-b, 0),
               np.nextafter(b, 10), np.nextafter(-b, -10), 1e-7, -1e-7, 1e-30, -1e-30]
    return np.concatenate([rng.normal(0, 2 * b, n), rng.uniform(-1.5 * b, 1.5 * b, n),
                           special])


def as_dtype(values: np.ndarray, dtype: tf.DType) -> tf.Tensor:
    return tf.cast(tf.constant(values, tf.float64), dtype)


def numpy64(t: tf.Tensor) -> np.ndarray:
    return tf.cast(t, tf.float64).numpy()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("beta", [1.0, 0.5, 0.3, 2.0])
def test_forward_matches_float64_reference(dtype, beta):
    x = as_dtype(sample(beta), dtype)
    y = sro.smelu(x, beta=beta)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(numpy64(y), ref_forward(numpy64(x), beta, dtype),
                               **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_gradient_matches_float64_reference(dtype, beta):
    x = as_dtype(sample(beta, seed=1), dtype)
    dy = as_dtype(np.random.default_rng(2).normal(size=x.shape), dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = sro.smelu(x, beta=beta)
    dx = tape.gradient(y, x, output_gradients=dy)
    expected = numpy64(dy) * ref_slope(numpy64(x), beta, dtype)
    np.testing.assert_allclose(numpy64(dx), expected, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_second_derivative_matches_reference(dtype):
    beta = 0.5
    x = as_dtype(sample(beta, n=2000, seed=3), dtype)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = sro.smelu(x, beta=beta)
        g = inner.gradient(y, x)
    h = outer.gradient(g, x)
    np.testing.assert_allclose(numpy64(g), ref_slope(numpy64(x), beta, dtype),
                               **TOLERANCES[dtype])
    np.testing.assert_allclose(numpy64(h), ref_curvature(numpy64(x), beta, dtype),
                               **TOLERANCES[dtype])


def _away_from_joins(n: int, beta: float, seed: int) -> np.ndarray:
    """Points at least 0.05 from the kinks at +-beta, where finite differences are exact."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2 * beta, 2 * beta, n)
    near = np.abs(np.abs(x) - beta) < 0.05
    x[near] += 0.1
    return x


def test_compute_gradient_first_order():
    x = tf.constant(_away_from_joins(64, 1.0, 4))
    theoretical, numerical = tf.test.compute_gradient(lambda v: sro.smelu(v, 1.0), [x])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_compute_gradient_second_order():
    x = tf.constant(_away_from_joins(64, 1.0, 5))

    def first_derivative(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            y = sro.smelu(v, 1.0)
        return tape.gradient(y, v)

    theoretical, numerical = tf.test.compute_gradient(first_derivative, [x])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_grad_ops_have_correct_gradients_in_every_input():
    """SmeLUGrad and SmeLUGradGrad gradients checked numerically in all inputs."""
    rng = np.random.default_rng(6)
    x = tf.constant(_away_from_joins(32, 0.7, 7))
    dy = tf.constant(rng.normal(size=32))
    ddx = tf.constant(rng.normal(size=32))
    theoretical, numerical = tf.test.compute_gradient(
        lambda a, b: LIB.sme_lu_grad(a, b, beta=0.7), [dy, x])
    for t, n in zip(theoretical, numerical, strict=False):
        np.testing.assert_allclose(t, n, atol=1e-6)
    for out in (0, 1):
        theoretical, numerical = tf.test.compute_gradient(
            lambda a, b, c, out=out: LIB.sme_lu_grad_grad(a, b, c, beta=0.7)[out],
            [ddx, dy, x])
        for t, n in zip(theoretical, numerical, strict=False):
            np.testing.assert_allclose(t, n, atol=1e-6)


def test_hessian_vector_product_matches_reference():
    rng = np.random.default_rng(8)
    w = tf.Variable(rng.normal(size=(16, 8)))
    x = tf.constant(rng.normal(size=(32, 16)))
    v = tf.constant(rng.normal(size=(16, 8)))

    def hvp(act):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = tf.reduce_sum(act(x @ w, 0.8) ** 2)
            g = inner.gradient(loss, w)
            gv = tf.reduce_sum(g * v)
        return outer.gradient(gv, w)

    np.testing.assert_allclose(hvp(sro.smelu).numpy(), hvp(sro.smelu_reference).numpy(),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (2, 3, 4, 5), (10_000_000,)],
                         ids=["scalar", "empty", "empty-rank3", "rank4", "1e7"])
def test_shapes(shape):
    rng = np.random.default_rng(9)
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = sro.smelu(x, 1.0)
    dx = tape.gradient(y, x)
    assert y.shape == shape and dx.shape == shape
    np.testing.assert_allclose(y.numpy(), ref_forward(x.numpy(), 1.0), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(dx.numpy(), ref_slope(x.numpy(), 1.0), rtol=2e-6, atol=1e-7)


def test_unknown_shape_in_graph_keeps_rank_and_dims():
    @tf.function(input_signature=[tf.TensorSpec([None, 7], tf.float32)])
    def f(x):
        y = sro.smelu(x)
        assert y.shape.as_list() == [None, 7]
        return y

    assert f(tf.ones((3, 7))).shape == (3, 7)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_nan_and_inf(dtype):
    x = as_dtype(np.array([np.nan, np.inf, -np.inf, 0.0]), dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = sro.smelu(x, 1.0)
        g = tape.gradient(y, x)
    h = tape.gradient(g, x)
    y, g, h = numpy64(y), numpy64(g), numpy64(h)
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == 0.0 and y[3] == 0.25
    assert np.isnan(g[0]) and g[1] == 1.0 and g[2] == 0.0 and g[3] == 0.5
    assert np.isnan(h[0]) and h[1] == 0.0 and h[2] == 0.0 and h[3] == 0.5


@pytest.mark.parametrize("beta", [0, 0.0, -1.0, float("nan"), float("inf"), -float("inf"),
                                  1e-60, 1e60, "1", None, True])
def test_bad_beta_is_rejected_by_python_api(beta):
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        sro.smelu(tf.ones(3), beta=beta)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        sro.smelu_reference(tf.ones(3), beta=beta)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        sro.SmeLU(beta=beta)


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_beta_is_rejected_by_raw_op(beta):
    # Eager: the kernel refuses it.
    with pytest.raises(tf.errors.InvalidArgumentError, match="beta must be a finite number"):
        LIB.sme_lu(tf.ones(3), beta=beta)

    # Graph: the shape function refuses it when the op is added, before anything runs.
    @tf.function
    def build(x):
        return LIB.sme_lu_grad(x, x, beta=beta)

    with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                       match="beta must be a finite number"):
        build.get_concrete_function(tf.TensorSpec([3], tf.float32))


def test_bad_dtype_and_mismatched_shapes():
    with pytest.raises(TypeError, match="int32"):
        sro.smelu(tf.constant([1, 2, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="shape"):
        LIB.sme_lu_grad(tf.ones(3), tf.ones(4))

    @tf.function
    def build(a, b):
        return LIB.sme_lu_grad(a, b)

    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        build.get_concrete_function(tf.TensorSpec([3]), tf.TensorSpec([4]))


def test_inside_tf_function_and_under_xla():
    x = tf.constant(sample(0.5, n=1000, seed=10), tf.float32)

    def loss_and_grad(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            loss = tf.reduce_sum(sro.smelu(v, 0.5) ** 2)
        return loss, tape.gradient(loss, v)

    eager = loss_and_grad(x)
    graph = tf.function(loss_and_grad)(x)
    xla_fn = tf.function(loss_and_grad, jit_compile=True)
    xla = xla_fn(x)
    for a, b in zip(eager, graph, strict=False):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    for a, b in zip(eager, xla, strict=False):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    # The XLA function really is compiled, with the composite and not the custom op.
    hlo = xla_fn.experimental_get_compiler_ir(x)(stage="hlo")
    assert "SmeLU" not in hlo and "select" in hlo
    graph_ops = {op.type for op in tf.function(loss_and_grad).get_concrete_function(x)
                 .graph.get_operations()}
    assert {"SmeLU", "SmeLUGrad"} <= graph_ops
