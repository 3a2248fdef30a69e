"""SmeLU and g-SmeLU in TensorFlow's own ops, and a graph rewrite that puts them in place of
the custom ops, so that a SavedModel loads where the op library is absent (stock TensorFlow
Serving, converters, a plain ``tensorflow`` install).

The composites follow the kernels' arithmetic step by step (``smelu_math.h``,
``gsmelu_math.h``): half and bfloat16 are computed in float32 and rounded once, SmeLU
multiplies by the precomputed 1 / (4 beta), g-SmeLU takes a zero slope's product as exactly
0. So the rewritten graph computes what the op computed, to float rounding: SmeLU bit for
bit, g-SmeLU within an ulp or two where the compiled kernel fuses a multiply and an add.

:func:`rewrite` replaces every ``SmeLU`` and ``GSmeLU`` node of a SavedModel's functions by
the composite's nodes, inlined under the node's name, and rewires its consumers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import function_pb2, node_def_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

from steadyrank.ops._loader import OP_TYPES

CUSTOM_OPS = ("SmeLU", "GSmeLU")
_COMPUTE = {tf.float16: tf.float32, tf.bfloat16: tf.float32}


def _compute(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(x, _COMPUTE[x.dtype]) if x.dtype in _COMPUTE else x


def smelu_composite(x: tf.Tensor, beta: float) -> tf.Tensor:
    """SmeLU in standard ops, in the kernel's order: x >= beta -> x; x <= -beta -> 0; else
    (x + beta)^2 * (1 / (4 beta)), with beta held as a float32 (the op's attr)."""
    dtype = x.dtype
    c = _compute(x)
    np_type = np.float64 if c.dtype == tf.float64 else np.float32
    b = np.float32(beta).astype(np_type)
    quarter = np_type(1) / (np_type(4) * b)
    t = c + b
    quad = t * t * quarter
    out = tf.where(c >= b, c, tf.where(c <= -b, tf.zeros_like(c), quad))
    return tf.cast(out, dtype) if out.dtype != dtype else out


def _scale_or_zero(g: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """g * v, but exactly 0 where g is 0 (no 0 * inf = NaN)."""
    product = g * v
    return tf.where(tf.equal(g, 0), tf.zeros_like(product), product)


def gsmelu_composite(x: tf.Tensor, alpha: tf.Tensor, beta: tf.Tensor, slope_left: tf.Tensor,
                     slope_right: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """g-SmeLU in standard ops, in the kernel's order (parameters scalars or one per unit of
    the last axis)."""
    dtype = x.dtype
    c = _compute(x)
    alpha, beta, gl, gr, t = (tf.cast(p, c.dtype) for p in (alpha, beta, slope_left,
                                                             slope_right, offset))
    s = alpha + beta
    d = gr - gl
    q = d / (2 * s)
    c_right = t + d * ((alpha - beta) / 2)
    u = c + alpha
    left = _scale_or_zero(gl, c) + t
    mid = _scale_or_zero(gl, c) + t + u * u * q
    right = _scale_or_zero(gr, c) + c_right
    out = tf.where(c >= beta, right, tf.where(c <= -alpha, left, mid))
    return tf.cast(out, dtype) if out.dtype != dtype else out


def _composite_function(node: node_def_pb2.NodeDef, defaults: dict[str, float]
                        ) -> function_pb2.FunctionDef:
    """The traced composite that replaces ``node`` (its dtype and, for SmeLU, its beta: a
    SavedModel leaves out an attr at its default, ``defaults`` has those)."""
    dtype = tf.as_dtype(node.attr["T"].type)
    if node.op == "SmeLU":
        beta = node.attr["beta"].f if "beta" in node.attr else defaults["beta"]
        fn = tf.function(lambda x: smelu_composite(x, beta), autograph=False,
                         input_signature=[tf.TensorSpec(None, dtype)])
    else:
        fn = tf.function(gsmelu_composite, autograph=False,
                         input_signature=[tf.TensorSpec(None, dtype)] * 6)
    return fn.get_concrete_function().function_def


def _inline(node: node_def_pb2.NodeDef, defaults: dict[str, float]
            ) -> tuple[list[node_def_pb2.NodeDef], str, str]:
    """The composite's nodes for ``node`` (named under it), the reference that replaces
    ``node``'s output, and the replacing control input's node name."""
    composite = _composite_function(node, defaults)
    data_inputs = [i for i in node.input if not i.startswith("^")]
    controls = [i for i in node.input if i.startswith("^")]
    args = {arg.name: data_inputs[k] for k, arg in enumerate(composite.signature.input_arg)}
    prefix = f"{node.name}/portable"

    def remap(ref: str) -> str:
        if ref.startswith("^"):
            return f"^{prefix}/{ref[1:]}"
        name, _, rest = ref.partition(":")
        if name in args and not rest:
            return args[name]
        return f"{prefix}/{name}:{rest}" if rest else f"{prefix}/{name}"

    nodes = []
    for inner in composite.node_def:
        if inner.op in CUSTOM_OPS or "f" in inner.attr:
            raise ValueError(f"the composite of {node.op} calls {inner.op}: cannot inline")
        copy = node_def_pb2.NodeDef()
        copy.CopyFrom(inner)
        copy.name = f"{prefix}/{inner.name}"
        del copy.input[:]
        copy.input.extend([remap(i) for i in inner.input] + controls)
        copy.device = node.device
        nodes.append(copy)
    (output,) = composite.signature.output_arg
    result = remap(composite.ret[output.name])
    return nodes, result, result.split(":")[0]


def _rewrite_function(function: function_pb2.FunctionDef, defaults: dict[str, float]) -> int:
    """Replaces the custom-op nodes of one function; returns how many."""
    found = [n for n in function.node_def if n.op in CUSTOM_OPS]
    if not found:
        return 0
    replaced: dict[str, str] = {}  # "node:activations:0" -> the composite's output
    controls: dict[str, str] = {}
    kept = []
    for node in function.node_def:
        if node.op not in CUSTOM_OPS:
            kept.append(node)
            continue
        nodes, result, last = _inline(node, defaults)
        kept.extend(nodes)
        replaced[f"{node.name}:activations:0"] = result
        controls[f"^{node.name}"] = f"^{last}"
    for node in kept:
        for k, ref in enumerate(node.input):
            if ref in replaced or ref in controls:
                node.input[k] = replaced.get(ref, controls.get(ref, ref))
    for key, ref in list(function.ret.items()):
        if ref in replaced:
            function.ret[key] = replaced[ref]
    for key, ref in list(function.control_ret.items()):
        if f"^{ref}" in controls:
            function.control_ret[key] = controls[f"^{ref}"][1:]
    del function.node_def[:]
    function.node_def.extend(kept)
    return len(found)


def op_types(proto: saved_model_pb2.SavedModel) -> set[str]:
    """Every op type a SavedModel's graph and function library use."""
    graph = proto.meta_graphs[0].graph_def
    found = {n.op for n in graph.node}
    for function in graph.library.function:
        found.update(n.op for n in function.node_def)
    return found


def rewrite(proto: saved_model_pb2.SavedModel) -> int:
    """Replaces every SmeLU and g-SmeLU node of the SavedModel ``proto`` (in place) by the
    standard ops of the composites, and lists the ops it now uses in its meta graph;
    returns how many nodes were replaced. ValueError if a custom op is left (one outside a
    function, or a gradient op)."""
    meta = proto.meta_graphs[0]
    defaults = {"beta": 1.0}  # SmeLU's registered default, unless the graph records its own
    for op in meta.meta_info_def.stripped_op_list.op:
        if op.name == "SmeLU":
            defaults.update({a.name: a.default_value.f for a in op.attr
                             if a.name == "beta" and a.HasField("default_value")})
    count = sum(_rewrite_function(f, defaults) for f in meta.graph_def.library.function)
    library = {f.signature.name for f in meta.graph_def.library.function}
    left = sorted(op_types(proto) & OP_TYPES)
    if left:
        raise ValueError(f"the graph still uses {', '.join(left)} after the rewrite (outside "
                         "a function, or a training op): it cannot be made portable")
    ops = sorted(t for t in op_types(proto) if t not in library)
    stripped = meta.meta_info_def.stripped_op_list
    del stripped.op[:]
    for name in ops:
        op_def = op_def_registry.get(name)
        if op_def is not None:
            stripped.op.append(op_def)
    return count


def portable_copy(proto: Any) -> saved_model_pb2.SavedModel:
    """A rewritten copy of a SavedModel proto (the original is left as it is)."""
    copy = saved_model_pb2.SavedModel()
    copy.CopyFrom(proto)
    rewrite(copy)
    return copy
