"""g-SmeLU custom op: values and every gradient against an independent float64 reference,
finite differences, the exact reduction to SmeLU, broadcasting, bad parameters."""

import numpy as np
import pytest
import tensorflow as tf

import steadyrank.ops as sro
from tests.ops.test_smelu_op import DTYPES, TOLERANCES, as_dtype, numpy64

LIB = sro.load_library()
NAMES = ("alpha", "beta", "slope_left", "slope_right", "offset")


def ref_pieces(x, alpha, beta, gl, gr, t):
    """The generalized SmeLU paper's form, in float64: y = a x^2 + b x + c inside, lines
    outside, plus the derivatives by hand from that form (independent of the kernels'
    regrouped form)."""
    x = np.asarray(x, np.float64)
    alpha, beta, gl, gr, t = (np.asarray(v, np.float64) for v in (alpha, beta, gl, gr, t))
    s = alpha + beta
    tp = t - gl * alpha
    a = (gr - gl) / (2 * s)
    b = (alpha * gr + beta * gl) / s
    c = tp + (alpha**2 * (gr + gl) + 2 * alpha * beta * gl) / (2 * s)
    left, right = x <= -alpha, x >= beta
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.where(right, gr * (x - beta) + tp + s * (gr + gl) / 2,
                     np.where(left, gl * x + t, a * x * x + b * x + c))
        dx = np.where(right, gr, np.where(left, gl, 2 * a * x + b))
        d2x = np.where(right | left, 0.0, 2 * a + 0 * x)
        # d/dparam of each piece, differentiating a, b, c, tp by the quotient rule.
        da_ds = -(gr - gl) / (2 * s**2)
        mid_gl = (-x * x / (2 * s) + x * beta / s - alpha
                  + (alpha**2 + 2 * alpha * beta) / (2 * s))
        mid_gr = x * x / (2 * s) + x * alpha / s + alpha**2 / (2 * s)
        db_dalpha = (gr * s - (alpha * gr + beta * gl)) / s**2
        db_dbeta = (gl * s - (alpha * gr + beta * gl)) / s**2
        num = alpha**2 * (gr + gl) + 2 * alpha * beta * gl
        dc_dalpha = -gl + ((2 * alpha * (gr + gl) + 2 * beta * gl) * 2 * s - 2 * num) / (4 * s**2)
        dc_dbeta = (2 * alpha * gl * 2 * s - 2 * num) / (4 * s**2)
        mid_alpha = da_ds * x * x + db_dalpha * x + dc_dalpha
        mid_beta = da_ds * x * x + db_dbeta * x + dc_dbeta
        grads = {
            "alpha": np.where(right, -gl + (gr + gl) / 2, np.where(left, 0.0, mid_alpha)),
            "beta": np.where(right, -gr + (gr + gl) / 2, np.where(left, 0.0, mid_beta)),
            "slope_left": np.where(right, -alpha + s / 2, np.where(left, x, mid_gl)),
            "slope_right": np.where(right, x - beta + s / 2, np.where(left, 0.0, mid_gr)),
            "offset": np.ones_like(x),
        }
    return y, dx, d2x, grads


def reduce_like(g: np.ndarray, param: np.ndarray) -> np.ndarray:
    """Sums a per-element gradient to the parameter's shape (scalar or per unit)."""
    param = np.asarray(param)
    if param.ndim == 1 and param.size > 1:
        return g.reshape(-1, param.size).sum(axis=0)
    return np.asarray(g.sum()).reshape(param.shape)


def sample(n=4000, units=8, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, scale, (n // units, units))


PARAM_SETS = {
    "smelu": dict(alpha=1.0, beta=1.0, slope_left=0.0, slope_right=1.0, offset=0.0),
    "general": dict(alpha=0.7, beta=1.3, slope_left=-0.2, slope_right=1.1, offset=0.3),
    "narrow-left": dict(alpha=-0.4, beta=0.9, slope_left=0.1, slope_right=2.0, offset=-1.0),
    "equal-slopes": dict(alpha=0.5, beta=0.5, slope_left=0.5, slope_right=0.5, offset=0.0),
}


def per_unit(params, units=8, seed=3):
    """The parameter set with alpha, beta and slope_right varied per unit."""
    rng = np.random.default_rng(seed)
    out = dict(params)
    for name in ("alpha", "beta", "slope_right"):
        out[name] = params[name] + rng.uniform(0.0, 0.5, units)
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("which", list(PARAM_SETS))
def test_forward_matches_float64_reference(dtype, which):
    p = PARAM_SETS[which]
    x = as_dtype(sample(), dtype)
    got = numpy64(sro.gsmelu(x, **p))
    want, *_ = ref_pieces(numpy64(x), *(float(np.asarray(v, np.float64).astype(
        dtype.as_numpy_dtype)) for v in p.values()))
    np.testing.assert_allclose(got, want, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=lambda d: d.name)
@pytest.mark.parametrize("which", list(PARAM_SETS))
@pytest.mark.parametrize("layout", ["shared", "per-unit"])
def test_all_gradients_match_float64_reference(dtype, which, layout):
    p = PARAM_SETS[which] if layout == "shared" else per_unit(PARAM_SETS[which])
    x_np = sample(seed=1)
    dy_np = np.random.default_rng(2).normal(size=x_np.shape)
    x, dy = as_dtype(x_np, dtype), as_dtype(dy_np, dtype)
    params = [tf.Variable(np.asarray(p[n], np.float64), dtype=dtype) for n in NAMES]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = sro.gsmelu(x, *params)
    got = tape.gradient(y, [x, *params], output_gradients=dy)
    p64 = [numpy64(tf.convert_to_tensor(v)) for v in params]
    _, dx, _, grads = ref_pieces(numpy64(x), *p64)
    np.testing.assert_allclose(numpy64(got[0]), numpy64(dy) * dx, **TOLERANCES[dtype])
    for name, g, pv in zip(NAMES, got[1:], p64, strict=True):
        want = reduce_like(numpy64(dy) * grads[name], pv)
        assert g.shape == params[NAMES.index(name)].shape, name
        # Sums of ~4000 terms: float32 inputs are summed in double, so the error is the
        # per-element rounding of the float32 partials.
        tol = dict(rtol=1e-12, atol=1e-10) if dtype == tf.float64 else dict(rtol=1e-5,
                                                                             atol=1e-3)
        np.testing.assert_allclose(numpy64(g), want, err_msg=name, **tol)


def test_gradients_match_finite_differences():
    x = tf.constant(sample(n=48, units=4, seed=4), tf.float64)
    params = [tf.constant(np.asarray(v, np.float64)) for v in
              per_unit(PARAM_SETS["general"], units=4).values()]

    def f(x, *params):
        return sro.gsmelu(x, *params)

    theoretical, numerical = tf.test.compute_gradient(f, [x, *params], delta=1e-6)
    for name, t, n in zip(("x", *NAMES), theoretical, numerical, strict=True):
        np.testing.assert_allclose(t, n, rtol=1e-5, atol=1e-6, err_msg=name)


def test_second_order_in_x_and_mixed():
    p = per_unit(PARAM_SETS["general"])
    x = tf.constant(sample(seed=5), tf.float64)
    params = [tf.Variable(np.asarray(p[n], np.float64)) for n in NAMES]
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = sro.gsmelu(x, *params)
        dydx = inner.gradient(y, x)
        total = tf.reduce_sum(dydx)
    d2 = outer.gradient(dydx, x)
    _, _, d2x, _ = ref_pieces(x.numpy(), *(v.numpy() for v in params))
    np.testing.assert_allclose(d2.numpy(), d2x, rtol=1e-12, atol=1e-14)
    # Mixed: d/dparams of sum(dy/dx), against the composite differentiated twice.
    zero = tf.UnconnectedGradients.ZERO
    mixed = outer.gradient(total, params, unconnected_gradients=zero)
    with tf.GradientTape() as o2:
        with tf.GradientTape() as i2:
            i2.watch(x)
            yr = sro.gsmelu_reference(x, *params)
        ref_total = tf.reduce_sum(i2.gradient(yr, x))
    ref_mixed = o2.gradient(ref_total, params, unconnected_gradients=zero)
    for name, g, r in zip(NAMES, mixed, ref_mixed, strict=True):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-10, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_reduces_bit_for_bit_to_smelu(dtype, beta):
    rng = np.random.default_rng(6)
    special = [beta, -beta, 0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30]
    x = as_dtype(np.concatenate([rng.normal(0, 2 * beta, 20000), special]), dtype)
    dy = as_dtype(rng.normal(size=x.shape[0]), dtype)
    smelu_op = LIB.sme_lu(x, beta=beta)  # the SmeLU op itself, for every dtype
    g = sro.gsmelu(x, beta, beta, 0.0, 1.0, 0.0)
    bits = {tf.float16: np.uint16, tf.bfloat16: np.uint16, tf.float32: np.uint32,
            tf.float64: np.uint64}[dtype]

    def raw(t):
        return tf.bitcast(t, tf.as_dtype(bits)).numpy()

    np.testing.assert_array_equal(raw(g), raw(smelu_op))
    params = [tf.constant(v, dtype) for v in (beta, beta, 0.0, 1.0, 0.0)]
    dx_g = LIB.g_sme_lu_grad(dy, x, *params)[0]
    dx_s = LIB.sme_lu_grad(dy, x, beta=beta)
    np.testing.assert_array_equal(raw(dx_g), raw(dx_s))


@pytest.mark.parametrize("x_shape,param_shape", [
    ((), ()), ((5,), ()), ((5,), (1,)), ((5,), (5,)), ((3, 5), (5,)), ((2, 3, 5), (5,)),
    ((2, 3, 5), ()), ((0, 5), (5,)), ((4, 1), (1,)),
])
def test_broadcast_and_per_unit_gradient_shapes(x_shape, param_shape):
    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(size=x_shape))
    values = {n: np.full(param_shape, v) + (0.1 * rng.random(param_shape) if n == "beta" else 0)
              for n, v in PARAM_SETS["general"].items()}
    params = [tf.Variable(values[n]) for n in NAMES]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = sro.gsmelu(x, *params)
        loss = tf.reduce_sum(y * y)
    grads = tape.gradient(loss, [x, *params])
    assert y.shape == x.shape and grads[0].shape == x.shape
    _, dx, _, ref = ref_pieces(x.numpy(), *(values[n] for n in NAMES))
    y_ref, *_ = ref_pieces(x.numpy(), *(values[n] for n in NAMES))
    dy = 2 * y_ref
    for name, g in zip(NAMES, grads[1:], strict=True):
        assert g.shape == tuple(param_shape), name
        np.testing.assert_allclose(g.numpy(), reduce_like(dy * ref[name], values[name]),
                                   rtol=1e-12, atol=1e-12, err_msg=name)


def test_float64_beta_is_exact():
    beta = 0.1
    x = np.linspace(-0.3, 0.3, 1001)
    exact = np.where(x >= beta, x, np.where(x <= -beta, 0.0, (x + beta) ** 2 / (4 * beta)))
    got = sro.smelu(tf.constant(x, tf.float64), beta).numpy()
    inside = np.abs(x) < beta
    rel = np.abs(got - exact)[inside] / np.abs(exact)[inside]
    assert rel.max() <= 1e-15
    # The SmeLU op's float32 attr is off by ~4e-10 relative, which is what this fixes.
    old = LIB.sme_lu(tf.constant(x, tf.float64), beta=beta).numpy()
    assert (np.abs(old - exact)[inside] / np.abs(exact)[inside]).max() > 1e-11
    # And its gradient is exact too.
    xt = tf.constant(x, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = sro.smelu(xt, beta)
    slope = np.where(x >= beta, 1.0, np.where(x <= -beta, 0.0, (x + beta) / (2 * beta)))
    np.testing.assert_allclose(tape.gradient(y, xt).numpy(), slope, rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize("bad,message", [
    (dict(alpha=-1.0, beta=1.0), "alpha \\+ beta must be > 0"),
    (dict(alpha=0.5, beta=-0.5), "alpha \\+ beta must be > 0"),
    (dict(beta=float("nan")), "beta must be finite"),
    (dict(slope_left=float("inf")), "slope_left must be finite"),
    (dict(offset=[0.0, float("-inf")]), "offset must be finite"),
])
def test_bad_parameters_python_numbers(bad, message):
    with pytest.raises(ValueError, match=message):
        sro.gsmelu(tf.ones([3, 2]), **bad)


@pytest.mark.parametrize("bad,message", [
    (dict(alpha=-1.0, beta=1.0), "alpha \\+ beta must be > 0"),
    (dict(alpha=np.array([0.5, -2.0]), beta=1.0), "alpha \\+ beta must be > 0.*unit 1"),
    (dict(beta=np.nan), "beta must be finite"),
    (dict(slope_right=np.inf), "slope_right must be finite"),
])
def test_bad_parameter_tensors_are_rejected_by_the_kernel(bad, message):
    # The CPU kernels check every value; GPU kernels give NaN instead (test_gpu.py), since
    # raising would need a device-to-host synchronisation on every call.
    values = {**PARAM_SETS["smelu"], **bad}
    with tf.device("/CPU:0"):
        params = [tf.Variable(np.asarray(values[n], np.float32)) for n in NAMES]
        x = tf.ones([3, 2])
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            sro.gsmelu(x, *params)
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            tf.function(lambda: sro.gsmelu(x, *params))()
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            LIB.g_sme_lu_grad(x, x, *params)


def test_constant_parameters_are_checked_when_the_graph_is_built():
    @tf.function
    def f(x):
        return LIB.g_sme_lu(x, tf.constant(-2.0), tf.constant(1.0), tf.constant(0.0),
                            tf.constant(1.0), tf.constant(0.0))

    with pytest.raises(ValueError, match="alpha \\+ beta must be > 0"):
        f.get_concrete_function(tf.TensorSpec([None, 3]))


def test_bad_shapes_and_dtypes():
    x = tf.ones([4, 3])
    shape_errors = (ValueError, tf.errors.InvalidArgumentError)  # graph build / eager kernel
    with pytest.raises(shape_errors, match="alpha has 2 values but features has"):
        sro.gsmelu(x, alpha=[1.0, 1.0], beta=1.0)
    with pytest.raises(ValueError, match="alpha has 2 values but features has 3 units"):
        tf.function(lambda x: sro.gsmelu(x, alpha=[1.0, 1.0])).get_concrete_function(x)
    with pytest.raises(shape_errors, match="must be a scalar or a vector"):
        sro.gsmelu(x, alpha=np.ones((1, 3)))
    with pytest.raises(shape_errors, match="is empty"):
        sro.gsmelu(x, beta=tf.zeros([0]))
    with pytest.raises(shape_errors, match="beta has 2 values but features (is a scalar|has "
                                           "shape \\[\\])"):
        sro.gsmelu(tf.constant(1.0), beta=[1.0, 2.0])
    with pytest.raises(TypeError, match="GSmeLU input must be one of"):
        sro.gsmelu(tf.constant([1, 2]))
    # Per-unit sizes known only at run time are checked by the kernel (CPU or GPU).
    f = tf.function(lambda x, b: sro.gsmelu(x, beta=b),
                    input_signature=[tf.TensorSpec([None, None]), tf.TensorSpec([None])])
    with pytest.raises(tf.errors.InvalidArgumentError, match="beta has 2 values"):
        f(x, tf.ones([2]))


def test_gradients_are_deterministic():
    x = tf.constant(sample(n=200000, units=64, seed=8), tf.float32)
    params = [tf.Variable(np.asarray(v, np.float32))
              for v in per_unit(PARAM_SETS["general"], units=64).values()]
    params[4] = tf.Variable(0.3)  # one shared parameter too

    def grads():
        with tf.GradientTape() as tape:
            y = sro.gsmelu(x, *params)
        return [g.numpy() for g in tape.gradient(y, params, output_gradients=x)]

    first = grads()
    for _ in range(3):
        for a, b in zip(first, grads(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_under_xla_uses_the_reference():
    x = tf.constant(sample(seed=9), tf.float32)
    p = per_unit(PARAM_SETS["general"])
    params = [tf.constant(np.asarray(p[n], np.float32)) for n in NAMES]

    @tf.function(jit_compile=True)
    def f(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = sro.gsmelu(x, *params)
        return y, tape.gradient(y, x)

    y, dx = f(x)
    y_ref, dx_ref, _, _ = ref_pieces(x.numpy(), *(p[n] for n in NAMES))
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx.numpy(), dx_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["shared", "per-unit"])
def test_hessian_in_every_input_matches_the_composite(layout):
    """The closed-form gradient of GSmeLUGrad, with upstream on dx and on every parameter
    gradient at once, against the pure-TF composite differentiated twice."""
    p = PARAM_SETS["general"] if layout == "shared" else per_unit(PARAM_SETS["general"], 4)
    rng = np.random.default_rng(11)
    x = tf.constant(rng.normal(0, 1.5, (6, 4)))
    dy = tf.constant(rng.normal(size=(6, 4)))
    params = [tf.constant(np.asarray(p[n], np.float64)) for n in NAMES]
    ups = [tf.constant(rng.normal(size=np.shape(p[n]))) for n in NAMES]
    up_dx = tf.constant(rng.normal(size=(6, 4)))
    zero = tf.UnconnectedGradients.ZERO

    def first_order(fn):
        with tf.GradientTape() as tape:
            tape.watch([x, *params])
            y = fn(x, *params)
        return tape.gradient(y, [x, *params], output_gradients=dy, unconnected_gradients=zero)

    results = []
    for fn in (sro.gsmelu, sro.gsmelu_reference):
        with tf.GradientTape() as outer:
            outer.watch([dy, x, *params])
            grads = first_order(fn)
            total = tf.reduce_sum(grads[0] * up_dx) + sum(
                tf.reduce_sum(g * u) for g, u in zip(grads[1:], ups, strict=True))
        results.append(outer.gradient(total, [dy, x, *params], unconnected_gradients=zero))
    for name, got, want in zip(("dy", "x", *NAMES), *results, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)


def test_second_derivative_at_special_values():
    x = tf.constant([np.nan, np.inf, -np.inf, 0.0], tf.float64)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = sro.gsmelu(x, 1.0, 1.0, 0.0, 1.0, 0.0)
        g = inner.gradient(y, x)
    h = outer.gradient(g, x).numpy()
    assert np.isnan(h[0]) and h[1] == 0.0 and h[2] == 0.0 and h[3] == 0.5
