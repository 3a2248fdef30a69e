"""SmeLU: the custom op's Python wrapper, its gradients, and a pure-TensorFlow reference."""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.ops import control_flow_util  # no public API tells XLA contexts apart

from steadyrank.ops._loader import load_library
from steadyrank.ops.params import check_beta

SUPPORTED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def _check_dtype(x: tf.Tensor) -> None:
    if x.dtype not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise TypeError(f"SmeLU input must be one of {names}; got {x.dtype.name}")


def in_xla_context() -> bool:
    """True while tracing a function that XLA will compile (``jit_compile=True``)."""
    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def smelu_reference(x: tf.Tensor, beta: float = 1.0, name: str | None = None) -> tf.Tensor:
    """SmeLU as a composite of standard TensorFlow ops (XLA-compilable, differentiable).

    Used in tests as the reference, and by :func:`smelu` under XLA, where the custom
    op cannot be compiled.
    """
    beta = check_beta(beta)
    with tf.name_scope(name or "smelu_reference"):
        x = tf.convert_to_tensor(x)
        _check_dtype(x)
        # The op holds beta as float32, except for float64 input (exact, see smelu()).
        b = (tf.constant(beta, tf.float64) if x.dtype == tf.float64
             else tf.cast(tf.constant(beta, tf.float32), x.dtype))
        zero = tf.zeros_like(x)
        t = x + b
        quad = t * t / (4 * b)
        inner = tf.where(x <= -b, zero, quad)
        return tf.where(x >= b, x, inner)


def smelu(x: tf.Tensor, beta: float = 1.0, name: str | None = None) -> tf.Tensor:
    """Smooth ReLU: 0 for x <= -beta, (x+beta)^2/(4 beta) inside, x for x >= beta.

    Runs the compiled SmeLU kernel (CPU, or GPU when built with CUDA); differentiable
    to any order. Inside ``jit_compile=True`` functions it lowers to
    :func:`smelu_reference`, which XLA fuses. float64 input runs the GSmeLU kernel with
    a float64 beta tensor, so beta is exact (the SmeLU op's beta attr is a float32, and
    0.1 would become 0.10000000149); the SmeLU op and its attr stay for every other
    dtype and for graphs exported before.

    Args:
      x: a tensor of half, bfloat16, float32 or float64 (anything convertible).
      beta: half-width of the quadratic region, a finite number > 0.
      name: optional name scope.
    """
    beta = check_beta(beta)
    if in_xla_context():
        return smelu_reference(x, beta, name=name)
    with tf.name_scope(name or "smelu"):
        x = tf.convert_to_tensor(x)
        _check_dtype(x)
        if x.dtype == tf.float64:
            params = (tf.constant(v, tf.float64) for v in (beta, beta, 0.0, 1.0, 0.0))
            return load_library().g_sme_lu(x, *params)
        return load_library().sme_lu(x, beta=beta)


def _zeros_if_none(grad: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor:
    return tf.zeros_like(like) if grad is None else grad


@tf.RegisterGradient("SmeLU")
def _smelu_grad(op: tf.Operation, dy: tf.Tensor) -> tf.Tensor:
    return load_library().sme_lu_grad(dy, op.inputs[0], beta=op.get_attr("beta"))


@tf.RegisterGradient("SmeLUGrad")
def _smelu_grad_grad(op: tf.Operation, ddx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    dy, x = op.inputs
    d_dy, d_x = load_library().sme_lu_grad_grad(ddx, dy, x, beta=op.get_attr("beta"))
    return d_dy, d_x


@tf.RegisterGradient("SmeLUGradGrad")
def _smelu_grad_grad_grad(
    op: tf.Operation, u_dy: tf.Tensor | None, u_x: tf.Tensor | None
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    # Outputs: d_dy = ddx * g(x), d_x = ddx * dy * h(x), with g = smelu', h = smelu''
    # (h is piecewise constant, so h' = 0). With GG(a, b, x) = (a g(x), a b h(x)):
    #   d/d ddx = u_dy g(x) + u_x dy h(x) = GG(u_dy, ., x)[0] + GG(u_x, dy, x)[1]
    #   d/d dy  = u_x ddx h(x)            = GG(u_x, ddx, x)[1]
    #   d/d x   = u_dy ddx h(x)           = GG(u_dy, ddx, x)[1]
    ddx, dy, x = op.inputs
    beta = op.get_attr("beta")
    lib = load_library()
    u_dy = _zeros_if_none(u_dy, x)
    u_x = _zeros_if_none(u_x, x)
    g_part, x_grad = lib.sme_lu_grad_grad(u_dy, ddx, x, beta=beta)
    _, h_dy_part = lib.sme_lu_grad_grad(u_x, dy, x, beta=beta)
    _, dy_grad = lib.sme_lu_grad_grad(u_x, ddx, x, beta=beta)
    return g_part + h_dy_part, dy_grad, x_grad
