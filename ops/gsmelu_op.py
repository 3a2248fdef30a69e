"""Generalized SmeLU (g-SmeLU): the custom op's Python wrapper, gradients and a pure-TF reference.

With left slope ``slope_left`` (g-), right slope ``slope_right`` (g+), transition region
``[-alpha, beta]`` and offset ``t``::

    y = g- x + t                                   x <= -alpha
        a quadratic, continuous in value and slope  -alpha < x < beta
        g+ x + t + (g+ - g-)(alpha - beta) / 2     x >= beta

``slope_left=0, slope_right=1, alpha=beta, offset=0`` is SmeLU(beta). Every parameter is a
tensor input of the features' dtype (so it is exact in float64 and can be learned), either a
scalar or one value per unit of the last axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import numpy as np
import tensorflow as tf

from steadyrank.ops._loader import load_library
from steadyrank.ops.smelu_op import SUPPORTED_DTYPES, in_xla_context

PARAM_NAMES = ("alpha", "beta", "slope_left", "slope_right", "offset")

ParamLike = float | tf.Tensor | tf.Variable | np.ndarray | Sequence[float]


def _check_dtype(x: tf.Tensor) -> None:
    if x.dtype not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise TypeError(f"GSmeLU input must be one of {names}; got {x.dtype.name}")


def _static_values(value: ParamLike) -> np.ndarray | None:
    """The parameter's values when they are known in Python (numbers, lists, numpy)."""
    if isinstance(value, bool):
        raise ValueError(f"GSmeLU parameters must be numbers, got {value!r}")
    if isinstance(value, Real):
        return np.asarray([float(value)])
    if isinstance(value, np.ndarray | list | tuple):
        return np.asarray(value, dtype=np.float64).reshape(-1)
    return None


def check_params(alpha: ParamLike, beta: ParamLike, slope_left: ParamLike,
                 slope_right: ParamLike, offset: ParamLike) -> None:
    """Raises ValueError naming the bad value when Python-known parameters are invalid.

    Every value must be finite and alpha + beta > 0. Tensor parameters are checked by the
    kernels when they run (CPU) or give NaN outputs (GPU, which cannot raise without a sync).
    """
    values = {}
    for name, value in zip(PARAM_NAMES, (alpha, beta, slope_left, slope_right, offset),
                           strict=True):
        static = _static_values(value)
        if static is None:
            continue
        if static.size == 0:
            raise ValueError(f"GSmeLU {name} is empty")
        bad = static[~np.isfinite(static)]
        if bad.size:
            raise ValueError(f"GSmeLU {name} must be finite, got {bad[0]!r}")
        values[name] = static
    if "alpha" in values and "beta" in values:
        width = values["alpha"] + values["beta"]
        if np.any(width <= 0):
            i = int(np.argmax(width <= 0))
            a = values["alpha"][min(i, values["alpha"].size - 1)]
            b = values["beta"][min(i, values["beta"].size - 1)]
            raise ValueError(f"GSmeLU alpha + beta must be > 0 (the transition region "
                             f"[-alpha, beta] must not be empty), got alpha={a!r}, beta={b!r}")


def _as_param(value: ParamLike, dtype: tf.DType, name: str) -> tf.Tensor:
    if isinstance(value, tf.Tensor | tf.Variable):
        value = tf.convert_to_tensor(value)
        return value if value.dtype == dtype else tf.cast(value, dtype)
    # Python numbers go straight to the dtype: 0.1 in float64 is the float64 0.1.
    return tf.constant(value, dtype=dtype, name=name)


def _prepare(x: tf.Tensor, params: tuple[ParamLike, ...]) -> tuple[tf.Tensor, list[tf.Tensor]]:
    check_params(*params)
    x = tf.convert_to_tensor(x)
    _check_dtype(x)
    tensors = [_as_param(p, x.dtype, n) for p, n in zip(params, PARAM_NAMES, strict=True)]
    return x, tensors


def gsmelu_reference(x: tf.Tensor, alpha: ParamLike = 1.0, beta: ParamLike = 1.0,
                     slope_left: ParamLike = 0.0, slope_right: ParamLike = 1.0,
                     offset: ParamLike = 0.0, name: str | None = None) -> tf.Tensor:
    """g-SmeLU as a composite of standard TensorFlow ops (XLA-compilable, differentiable).

    Used in tests as the reference, by :func:`gsmelu` under XLA, and for the op's second
    derivatives.
    """
    with tf.name_scope(name or "gsmelu_reference"):
        x, (alpha, beta, gl, gr, t) = _prepare(x, (alpha, beta, slope_left, slope_right,
                                                   offset))
        right, left = x >= beta, x <= -alpha
        mid = tf.logical_not(right | left)
        zero = tf.zeros_like(x)
        # Each piece sees x only where it is selected (0 elsewhere), so no inf or NaN from
        # an unselected piece reaches a gradient through tf.where.
        x_left, x_mid, x_right = (tf.where(m, x, zero) for m in (left, mid, right))
        s = alpha + beta
        d = gr - gl
        u = x_mid + alpha
        lin_left = tf.math.multiply_no_nan(x_left, gl) + t
        quad = tf.math.multiply_no_nan(x_mid, gl) + t + u * u * (d / (2 * s))
        lin_right = tf.math.multiply_no_nan(x_right, gr) + (t + d * ((alpha - beta) / 2))
        return tf.where(right, lin_right, tf.where(left, lin_left, quad))


def gsmelu(x: tf.Tensor, alpha: ParamLike = 1.0, beta: ParamLike = 1.0,
           slope_left: ParamLike = 0.0, slope_right: ParamLike = 1.0, offset: ParamLike = 0.0,
           name: str | None = None) -> tf.Tensor:
    """Generalized SmeLU with (learnable) tensor parameters; differentiable in x and in every
    parameter, to second order in x.

    Runs the compiled GSmeLU kernel (CPU, or GPU when built with CUDA). Inside
    ``jit_compile=True`` functions it lowers to :func:`gsmelu_reference`, which XLA fuses.

    Args:
      x: features of half, bfloat16, float32 or float64.
      alpha, beta: the transition region is ``[-alpha, beta]``; alpha + beta > 0.
      slope_left, slope_right: slopes left of -alpha and right of beta.
      offset: the value at ``x = -alpha``.
      name: optional name scope.

    Each parameter is a number, a scalar tensor or variable, or one value per unit of
    ``x``'s last axis; tensors of another float dtype are cast to ``x``'s.
    """
    params = (alpha, beta, slope_left, slope_right, offset)
    if in_xla_context():
        return gsmelu_reference(x, *params, name=name)
    with tf.name_scope(name or "gsmelu"):
        x, tensors = _prepare(x, params)
        return load_library().g_sme_lu(x, *tensors)


@tf.RegisterGradient("GSmeLU")
def _gsmelu_grad(op: tf.Operation, dy: tf.Tensor) -> list[tf.Tensor]:
    return list(load_library().g_sme_lu_grad(dy, *op.inputs))


def _sum_to(t: tf.Tensor, param: tf.Tensor) -> tf.Tensor:
    """Sums a per-element term over the axes ``param`` is broadcast along."""
    axes, _ = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(param), s1=tf.shape(t))
    return tf.reshape(tf.reduce_sum(t, axis=axes), tf.shape(param))


def _times(value: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """value * weight, exactly 0 where weight is 0 (an unused upstream), even for inf value."""
    return tf.math.multiply_no_nan(value, weight)


@tf.RegisterGradient("GSmeLUGrad")
def _gsmelu_grad_grad(op: tf.Operation, g_dx: tf.Tensor, g_alpha: tf.Tensor, g_beta: tf.Tensor,
                      g_gl: tf.Tensor, g_gr: tf.Tensor, g_t: tf.Tensor) -> list[tf.Tensor]:
    """Gradient of GSmeLUGrad in closed form (the kernel header's tables, differentiated
    once more), so second derivatives keep the op's NaN/inf semantics.

    With f the activation, P_k = df/dp_k per element and H_kj = dP_k/dp_j:
      d dy = g_dx f'(x) + sum_k g_k P_k
      d x  = dy (g_dx f''(x) + sum_k g_k dP_k/dx)
      d p_j = sum over broadcast axes of dy (g_dx df'/dp_j + sum_k g_k H_kj)
    """
    dy, x, alpha, beta, gl, gr, t = op.inputs
    dtype = x.dtype
    zero, one, half = (tf.constant(v, dtype) for v in (0.0, 1.0, 0.5))
    right, left = x >= beta, x <= -alpha
    mid = tf.logical_not(right | left)  # NaN x falls here, as in the kernels
    s, d = alpha + beta, gr - gl
    u = tf.where(mid, x + alpha, zero)  # finite outside the middle
    q = u * u / (2 * s)
    d_s = d / s
    # df'/dp (= dP/dx) per element.
    slope_gl = tf.where(right, zero, tf.where(left, one, one - u / s))
    slope_gr = tf.where(right, one, tf.where(left, zero, u / s))
    slope_alpha = tf.where(mid, d_s * (one - u / s), zero)
    slope_beta = tf.where(mid, -d_s * u / s, zero)
    curvature = tf.where(mid, x * zero + d_s, zero)  # NaN for NaN x, like SmeLU's
    # P_k per element.
    half_amb = (alpha - beta) / 2
    p_gl = tf.where(right, -half_amb + zero * u, tf.where(left, x, x - q))
    p_gr = tf.where(right, x + half_amb, tf.where(left, zero, q))
    p_alpha = tf.where(right, d / 2 + zero * u, tf.where(left, zero, d_s * (u - q)))
    p_beta = tf.where(right, -d / 2 + zero * u, tf.where(left, zero, -d_s * q))
    # H_kj, the nonzero ones (gl-gl, gr-gr, gl-gr and every t entry are 0).
    qa, qb = (u - q) / s, -q / s  # dq/dalpha, dq/dbeta in the middle
    h_gl_alpha = tf.where(right, -half + zero * u, tf.where(left, zero, -qa))
    h_gl_beta = tf.where(right, half + zero * u, tf.where(left, zero, -qb))
    h_gr_alpha, h_gr_beta = -h_gl_alpha, -h_gl_beta
    h_alpha_alpha = tf.where(mid, d * (s - 2 * (u - q)) / (s * s), zero)
    h_alpha_beta = tf.where(mid, d * (2 * q - u) / (s * s), zero)
    h_beta_beta = tf.where(mid, d * 2 * q / (s * s), zero)

    lib = load_library()
    d_dy = (lib.g_sme_lu_grad(g_dx, x, alpha, beta, gl, gr, t)[0]
            + _times(p_alpha, g_alpha) + _times(p_beta, g_beta) + _times(p_gl, g_gl)
            + _times(p_gr, g_gr) + _times(tf.ones_like(x), g_t))
    d_x = dy * (_times(curvature, g_dx) + slope_alpha * g_alpha + slope_beta * g_beta
                + slope_gl * g_gl + slope_gr * g_gr)
    cross = {
        "alpha": g_gl * h_gl_alpha + g_gr * h_gr_alpha + g_alpha * h_alpha_alpha
        + g_beta * h_alpha_beta,
        "beta": g_gl * h_gl_beta + g_gr * h_gr_beta + g_alpha * h_alpha_beta
        + g_beta * h_beta_beta,
        "gl": g_alpha * h_gl_alpha + g_beta * h_gl_beta,
        "gr": g_alpha * h_gr_alpha + g_beta * h_gr_beta,
    }
    d_alpha = _sum_to(dy * (g_dx * slope_alpha + cross["alpha"]), alpha)
    d_beta = _sum_to(dy * (g_dx * slope_beta + cross["beta"]), beta)
    d_gl = _sum_to(dy * (g_dx * slope_gl + cross["gl"]), gl)
    d_gr = _sum_to(dy * (g_dx * slope_gr + cross["gr"]), gr)
    d_t = tf.zeros_like(t)
    return [d_dy, d_x, d_alpha, d_beta, d_gl, d_gr, d_t]
