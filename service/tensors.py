"""TensorProto inputs checked against a SignatureDef, and numpy outputs back to TensorProtos."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from steadyrank.service.errors import invalid


def dtype_name(dtype: int) -> str:
    """``DT_INT64`` for the enum value of tf.int64."""
    return types_pb2.DataType.Name(dtype)


def _shape(info: meta_graph_pb2.TensorInfo) -> tuple[int, ...] | None:
    if info.tensor_shape.unknown_rank:
        return None
    return tuple(d.size for d in info.tensor_shape.dim)


def _shape_text(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "any shape"
    return "[" + ", ".join("?" if d < 0 else str(d) for d in shape) + "]"


def parse_inputs(inputs: Mapping[str, tensor_pb2.TensorProto],
                 signature: meta_graph_pb2.SignatureDef,
                 signature_name: str) -> dict[str, np.ndarray]:
    """Numpy arrays of a request's inputs; INVALID_ARGUMENT naming the input on any mismatch.

    Checks: no unknown or missing inputs, the signature's dtype, rank and fixed sizes, and
    the same length for every input whose first dimension is the batch (``?``).
    """
    expected = dict(signature.inputs)
    unknown = sorted(set(inputs) - set(expected))
    if unknown:
        raise invalid(f"inputs: unknown input {unknown[0]!r} for signature "
                      f"{signature_name!r}; expected {sorted(expected)}")
    missing = sorted(set(expected) - set(inputs))
    if missing:
        raise invalid(f"inputs: missing input {missing[0]!r} for signature "
                      f"{signature_name!r}; expected {sorted(expected)}")
    arrays: dict[str, np.ndarray] = {}
    batch: dict[str, int] = {}
    for key, info in sorted(expected.items()):
        proto = inputs[key]
        if proto.dtype != info.dtype:
            raise invalid(f"inputs[{key!r}]: dtype {dtype_name(proto.dtype)}, signature "
                          f"{signature_name!r} expects {dtype_name(info.dtype)}")
        try:
            array = tf.make_ndarray(proto)
        except Exception as err:  # noqa: BLE001  (malformed TensorProto content)
            raise invalid(f"inputs[{key!r}]: malformed tensor: {err}") from None
        shape = _shape(info)
        if shape is not None:
            ok = len(array.shape) == len(shape) and all(
                want < 0 or want == got for want, got in zip(shape, array.shape, strict=True))
            if not ok:
                raise invalid(f"inputs[{key!r}]: shape {list(array.shape)}, signature "
                              f"{signature_name!r} expects {_shape_text(shape)}")
            if shape and shape[0] < 0:
                batch[key] = array.shape[0]
        arrays[key] = array
    if len(set(batch.values())) > 1:
        sizes = ", ".join(f"{k} {v}" for k, v in sorted(batch.items()))
        raise invalid(f"inputs: batch inputs must have the same length, got {sizes}")
    return arrays


def output_filter(available: list[str], wanted: list[str], signature_name: str) -> list[str]:
    """The outputs to return: all, or the requested ones (INVALID_ARGUMENT for unknown)."""
    if not wanted:
        return sorted(available)
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise invalid(f"output_filter: unknown output {unknown[0]!r} for signature "
                      f"{signature_name!r}; outputs are {sorted(available)}")
    return list(dict.fromkeys(wanted))


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto of a numpy array."""
    return tf.make_tensor_proto(array)
