"""TensorProto inputs checked against a SignatureDef, and numpy outputs back to TensorProtos.

Sizes are checked on the *declared* shape before any array exists: TensorFlow fills a
tensor whose proto holds a single value up to its declared shape, so a 72-byte request can
ask for a billion elements. Every input's element count, string bytes and content length
must fit :class:`Limits` first.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from steadyrank.service.serve.status import invalid, shown

# Bytes per element of the fixed-size dtypes an input may carry.
ITEMSIZE = {types_pb2.DT_FLOAT: 4, types_pb2.DT_DOUBLE: 8, types_pb2.DT_INT32: 4,
            types_pb2.DT_INT64: 8, types_pb2.DT_HALF: 2, types_pb2.DT_BFLOAT16: 2,
            types_pb2.DT_BOOL: 1, types_pb2.DT_INT8: 1, types_pb2.DT_UINT8: 1,
            types_pb2.DT_INT16: 2, types_pb2.DT_UINT16: 2, types_pb2.DT_UINT32: 4,
            types_pb2.DT_UINT64: 8}
# The repeated field holding typed values of each dtype (TensorFlow's own mapping).
VALUE_FIELDS = {types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
                types_pb2.DT_INT32: "int_val", types_pb2.DT_INT64: "int64_val",
                types_pb2.DT_HALF: "half_val", types_pb2.DT_BFLOAT16: "half_val",
                types_pb2.DT_BOOL: "bool_val", types_pb2.DT_INT8: "int_val",
                types_pb2.DT_UINT8: "int_val", types_pb2.DT_INT16: "int_val",
                types_pb2.DT_UINT16: "int_val", types_pb2.DT_UINT32: "uint32_val",
                types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_STRING: "string_val"}


# The numpy dtype of the values a request lists one by one, for the fast path of
# :func:`to_array` (other dtypes, and packed ``tensor_content``, go through TensorFlow).
LISTED_DTYPES = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64,
                 types_pb2.DT_INT32: np.int32, types_pb2.DT_INT64: np.int64,
                 types_pb2.DT_STRING: object}


@dataclass(frozen=True)
class Limits:
    """Per-input bounds, checked on the declared shape before anything is materialized."""

    max_elements: int = 100_000  # --max-request-elements
    max_string_bytes: int = 1 << 20  # --max-string-bytes: all strings of one input


def dtype_name(dtype: int) -> str:
    """``DT_INT64`` for the enum value of tf.int64 (``DataType 999`` for unknown values)."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType {dtype}"


def check_declared(key: str, proto: tensor_pb2.TensorProto, limits: Limits) -> int:
    """The declared element count of an input; INVALID_ARGUMENT naming the bound (and its
    server flag) when the shape, the content or the strings are over a limit or malformed."""
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise invalid(f"{_where(key)}: the tensor shape has unknown rank; give its dimensions")
    count = 1
    for dim in shape.dim:
        size = dim.size
        if size < 0:
            raise invalid(f"{_where(key)}: dimension {size} is negative")
        count *= size
        if count > limits.max_elements:
            raise invalid(f"{_where(key)}: declared shape "
                          f"{[d.size for d in shape.dim]} holds more than "
                          f"{limits.max_elements} elements (server flag "
                          "--max-request-elements)")
    dtype = proto.dtype
    # The serialized size bounds the strings' bytes: count them only when it is over.
    if dtype == types_pb2.DT_STRING and proto.ByteSize() > limits.max_string_bytes:
        total = sum(map(len, proto.string_val))
        if total > limits.max_string_bytes:
            raise invalid(f"{_where(key)}: {total} bytes of strings, at most "
                          f"{limits.max_string_bytes} (server flag --max-string-bytes)")
    content = proto.tensor_content
    if content:
        size = ITEMSIZE.get(dtype)
        if size is None or len(content) != count * size:
            raise invalid(f"{_where(key)}: tensor_content holds {len(content)} bytes, "
                          f"the declared shape and dtype need {count * (size or 0)}")
    field = VALUE_FIELDS.get(dtype)
    values = len(getattr(proto, field)) if field else 0
    if values > count or (values not in (0, 1) and values != count):
        raise invalid(f"{_where(key)}: {values} values for a declared shape of {count} "
                      "elements (give all of them, or one to fill the shape)")
    return count


def _where(key: str) -> str:
    return f"inputs[{shown(key)!r}]"


def to_array(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """``tf.make_ndarray(proto)``, without TensorFlow's per-call overhead in the common
    layouts: every value listed (a client's ``make_tensor_proto`` of strings, or numbers in
    ``*_val``), or numbers packed in ``tensor_content`` (read in place, so the array is
    read-only); a single value filling the shape and other dtypes go through TensorFlow."""
    dtype = LISTED_DTYPES.get(proto.dtype)
    if dtype is not None:
        shape = [d.size for d in proto.tensor_shape.dim]
        content = proto.tensor_content
        if content:
            if dtype is not object:
                return np.frombuffer(content, dtype).reshape(shape)
        else:
            values = getattr(proto, VALUE_FIELDS[proto.dtype])
            count = len(values)
            if count > 0 and count == math.prod(shape):
                if dtype is object:
                    return np.fromiter(values, object, count).reshape(shape)
                return np.array(values, dtype).reshape(shape)
    return tf.make_ndarray(proto)


@dataclass(frozen=True)
class SignatureInputs:
    """A SignatureDef's inputs read once (sorted names, dtypes, shapes), for the per-request
    checks; :meth:`of` keeps them per SignatureDef object."""

    names: frozenset[str]
    specs: tuple[tuple[str, int, tuple[int, ...] | None], ...]

    @staticmethod
    def of(signature: meta_graph_pb2.SignatureDef) -> SignatureInputs:
        """The inputs of ``signature``, read on first use (a bounded cache keyed by the
        object, which it keeps alive so that its id is not reused)."""
        hit = _SIGNATURES.get(id(signature))
        if hit is not None and hit[0] is signature:
            return hit[1]
        inputs = dict(signature.inputs)
        found = SignatureInputs(frozenset(inputs), tuple(
            (key, info.dtype, _shape(info)) for key, info in sorted(inputs.items())))
        with _SIGNATURES_LOCK:  # large requests are parsed in executor threads too
            while len(_SIGNATURES) >= _SIGNATURE_CACHE:
                del _SIGNATURES[next(iter(_SIGNATURES))]
            _SIGNATURES[id(signature)] = (signature, found)
        return found


_SIGNATURE_CACHE = 256
_SIGNATURES: dict[int, tuple[meta_graph_pb2.SignatureDef, SignatureInputs]] = {}
_SIGNATURES_LOCK = threading.Lock()


def _shape(info: meta_graph_pb2.TensorInfo) -> tuple[int, ...] | None:
    if info.tensor_shape.unknown_rank:
        return None
    return tuple(d.size for d in info.tensor_shape.dim)


def _shape_text(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "any shape"
    return "[" + ", ".join("?" if d < 0 else str(d) for d in shape) + "]"


def check_inputs(inputs: Mapping[str, tensor_pb2.TensorProto],
                 signature: meta_graph_pb2.SignatureDef, signature_name: str,
                 limits: Limits) -> int:
    """Checks names, dtypes and declared sizes of a request's inputs (nothing is decoded);
    returns the largest declared element count."""
    expected = SignatureInputs.of(signature)
    given = set(inputs)
    if given != expected.names:
        unknown = sorted(given - expected.names)
        if unknown:
            raise invalid(f"inputs: unknown input {shown(unknown[0])!r} for signature "
                          f"{shown(signature_name)!r}; expected {sorted(expected.names)}")
        missing = sorted(expected.names - given)
        raise invalid(f"inputs: missing input {missing[0]!r} for signature "
                      f"{shown(signature_name)!r}; expected {sorted(expected.names)}")
    largest = 0
    for key, dtype, _ in expected.specs:
        proto = inputs[key]
        if proto.dtype != dtype:
            raise invalid(f"inputs[{key!r}]: dtype {dtype_name(proto.dtype)}, signature "
                          f"{shown(signature_name)!r} expects {dtype_name(dtype)}")
        count = check_declared(key, proto, limits)
        if count > largest:
            largest = count
    return largest


def parse_inputs(inputs: Mapping[str, tensor_pb2.TensorProto],
                 signature: meta_graph_pb2.SignatureDef,
                 signature_name: str, limits: Limits = Limits(),
                 checked: bool = False) -> dict[str, np.ndarray]:
    """Numpy arrays of a request's inputs; INVALID_ARGUMENT naming the input on any mismatch.

    Checks: no unknown or missing inputs, the signature's dtype, declared sizes within
    ``limits`` (skipped when ``checked``: the caller ran :func:`check_inputs`), then rank and
    fixed sizes, and the same length for every input whose first dimension is the batch
    (``?``).
    """
    if not checked:
        check_inputs(inputs, signature, signature_name, limits)
    arrays: dict[str, np.ndarray] = {}
    batch: dict[str, int] = {}
    for key, _, shape in SignatureInputs.of(signature).specs:
        try:
            array = to_array(inputs[key])
        except Exception as err:  # noqa: BLE001  (malformed TensorProto content)
            raise invalid(f"inputs[{key!r}]: malformed tensor: {err}") from None
        if shape is not None:
            got = array.shape
            if len(got) != len(shape) or any(
                    want >= 0 and want != size for want, size in zip(shape, got, strict=True)):
                raise invalid(f"inputs[{key!r}]: shape {list(got)}, signature "
                              f"{shown(signature_name)!r} expects {_shape_text(shape)}")
            if shape and shape[0] < 0:
                batch[key] = got[0]
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
        raise invalid(f"output_filter: unknown output {shown(unknown[0])!r} for signature "
                      f"{shown(signature_name)!r}; outputs are {sorted(available)}")
    return list(dict.fromkeys(wanted))


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto of a numpy array."""
    return tf.make_tensor_proto(array)
