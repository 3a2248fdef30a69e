"""Arrow columns to the numpy arrays a model takes, by the schema, vectorised.

Each declared feature's column becomes one array: int64 or float32 ``[B]``, strings as an
object array ``[B]``, a multi-hot list as ``[B, max_len]`` padded with :data:`PAD_INT`
(-1) or :data:`PAD_STRING` (""). Missing values take the feature's ``fill``, or are an error
naming the file, the column and the row; so is a value that does not parse as its dtype,
and a ``binary`` label outside {0, 1}. Only the rows' values are converted here: what a value
means (its vocabulary row, bucket or transform) is computed inside the model.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from steadyrank.core.errors import DataError
from steadyrank.model.data.readers import Chunk
from steadyrank.model.schema import Feature, Label

PAD_INT = -1  # an empty place in an int64 multi-hot row
PAD_STRING = ""  # an empty place in a string multi-hot row
ARROW = {"int64": pa.int64(), "float": pa.float64(), "string": pa.string()}
NUMPY = {"int64": np.int64, "float": np.float32}


def bucketize(values: np.ndarray, boundaries: tuple[float, ...]) -> np.ndarray:
    """The bucket of each value among ascending ``boundaries`` (0 below the first), as
    ``tf.raw_ops.Bucketize`` computes it inside the model."""
    return np.searchsorted(np.asarray(boundaries, np.float64), np.asarray(values, np.float64),
                           side="right").astype(np.int64)


def truncated(values: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` characters of each string (as the model cuts them)."""
    arr = pc.utf8_slice_codeunits(pa.array(values, pa.string()), 0, length)
    return arr.to_numpy(zero_copy_only=False).astype(object)


def _fail(chunk: Chunk, name: str, index: int, problem: str) -> DataError:
    return DataError(chunk.where(index), f"column {name!r}: {problem}")


def _first_bad(array: pa.Array, target: pa.DataType) -> int:
    """The index of the first non-null value that does not cast (the error path only)."""
    for i in range(len(array)):
        if array[i].is_valid:
            try:
                pc.cast(array.slice(i, 1), target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return i
    return 0


def cast(chunk: Chunk, name: str, array: pa.Array, dtype: str) -> pa.Array:
    """``array`` as the Arrow type of ``dtype``; DataError naming the row of a value that
    does not parse (a string read from CSV) or does not fit (a fraction as an int64)."""
    target = ARROW[dtype]
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if array.type == target:
        return array
    if dtype == "string":
        return pc.cast(array, target)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        array = pc.utf8_trim_whitespace(array)
    try:
        return pc.cast(array, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        i = _first_bad(array, target)
        raise _fail(chunk, name, i, f"{str(array[i].as_py())[:40]!r} is not a valid "
                    f"{dtype}") from None


def _missing(values: pa.Array) -> np.ndarray:
    """Where ``values`` is null (or NaN)."""
    missing = values.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(values.type):
        missing |= values.is_nan().fill_null(True).to_numpy(zero_copy_only=False)
    return missing


def filled(chunk: Chunk, name: str, dtype: str, fill: object = None) -> pa.Array:
    """Column ``name`` as ``dtype`` with missing values filled; DataError naming the row of
    a missing value when there is no ``fill``."""
    values = cast(chunk, name, chunk.batch.column(name), dtype)
    missing = _missing(values)
    if not missing.any():
        return values
    if fill is None:
        raise _fail(chunk, name, int(np.argmax(missing)),
                    "missing value (declare fill = ... to use a default)")
    if dtype == "float":  # NaN counts as missing too
        return pc.if_else(pa.array(missing), pa.scalar(float(fill), pa.float64()), values)
    return values.fill_null(pa.scalar(fill, ARROW[dtype]))


def scalar_values(chunk: Chunk, name: str, dtype: str, fill: object = None) -> np.ndarray:
    """One value per row of column ``name``: int64, float32 or an object array of str."""
    values = filled(chunk, name, dtype, fill)
    if dtype == "string":
        return values.to_numpy(zero_copy_only=False).astype(object)
    return values.to_numpy(zero_copy_only=False).astype(NUMPY[dtype])


def _list_parts(chunk: Chunk, feature: Feature) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """A multi-hot column's values (pads and empties dropped, cast to the dtype) with each
    value's row and place in its row."""
    array = chunk.batch.column(feature.name)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        array = pc.split_pattern(array, feature.separator)
    elif not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        array = pc.cast(array, pa.string())
        array = pc.split_pattern(array, feature.separator)
    array = array.fill_null(pa.scalar([], array.type))
    flat = array.flatten()
    if pa.types.is_string(flat.type) or pa.types.is_large_string(flat.type):
        flat = pc.if_else(pc.equal(flat, ""), pa.scalar(None, flat.type), flat)  # no value
    flat = cast(chunk, feature.name, flat, feature.dtype)
    if feature.dtype != "string":
        flat = pc.if_else(pc.equal(flat, PAD_INT), pa.scalar(None, flat.type), flat)
    keep = flat.is_valid().to_numpy(zero_copy_only=False)
    offsets = array.offsets.to_numpy()
    offsets = offsets - offsets[0]
    rows = len(array)
    row_of = np.repeat(np.arange(rows), np.diff(offsets))[keep]
    # Each kept value's place in its row, counting only kept values.
    starts = np.searchsorted(row_of, np.arange(rows))
    place = np.arange(len(row_of)) - starts[row_of] if len(row_of) else row_of
    return flat.filter(pa.array(keep)), row_of, place


def _padded(values: np.ndarray, row_of: np.ndarray, place: np.ndarray, rows: int,
            width: int, pad: object) -> np.ndarray:
    out = np.full((rows, width), pad, dtype=object if isinstance(pad, str) else np.int64)
    fits = place < width
    out[row_of[fits], place[fits]] = values[fits]
    return out


def list_values(chunk: Chunk, feature: Feature) -> np.ndarray:
    """A multi-hot column as ``[rows, max_len]`` values, padded; a list column, or (in
    CSV) a string of values joined by ``separator``. A missing list is an empty one."""
    flat, row_of, place = _list_parts(chunk, feature)
    if feature.dtype == "string":
        values, pad = flat.to_numpy(zero_copy_only=False).astype(object), PAD_STRING
    else:
        values, pad = flat.to_numpy(zero_copy_only=False).astype(np.int64), PAD_INT
    return _padded(values, row_of, place, chunk.batch.num_rows, feature.max_len, pad)


def keys(chunk: Chunk, feature: Feature) -> pa.Array:
    """A categorical feature's lookup keys, in Arrow: the value's bucket for a numeric
    category, the truncated string, or the value itself."""
    values = filled(chunk, feature.name, feature.value_dtype, feature.fill)
    if feature.boundaries:
        return pa.array(bucketize(values.to_numpy(zero_copy_only=False), feature.boundaries))
    if feature.truncate:
        return pc.utf8_slice_codeunits(values, 0, feature.truncate)
    return values


def _rows(found: pa.Array, oov: int) -> np.ndarray:
    """Vocabulary positions (null: not in it) as table rows: position + oov, else row 0."""
    return np.where(found.is_null().to_numpy(zero_copy_only=False), 0,
                    found.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) + oov)


def feature_rows(chunk: Chunk, feature: Feature, vocabulary: pa.Array, oov: int = 1
                 ) -> np.ndarray:
    """A categorical or multi-hot feature's embedding-table rows, looked up in Arrow (no
    Python objects per value): ``[B]``, or ``[B, max_len]`` with -1 for an empty place. The
    rows of the model's own lookup with one out-of-vocabulary row first (``oov`` = 1)."""
    if feature.kind == "multi_hot":
        flat, row_of, place = _list_parts(chunk, feature)
        rows = _rows(pc.index_in(flat, value_set=vocabulary), oov)
        return _padded(rows, row_of, place, chunk.batch.num_rows, feature.max_len, -1)
    return _rows(pc.index_in(keys(chunk, feature), value_set=vocabulary), oov)


def feature_values(chunk: Chunk, feature: Feature) -> np.ndarray:
    """The model's input for one feature of a chunk's rows."""
    if feature.kind == "multi_hot":
        return list_values(chunk, feature)
    return scalar_values(chunk, feature.name, feature.value_dtype, feature.fill)


def label_values(chunk: Chunk, label: Label) -> np.ndarray:
    """The training target, float32: 0 or 1 for ``binary`` (a rating compared with the
    threshold, when one is set), the value for ``rating``."""
    values = filled(chunk, label.column, "float").to_numpy(zero_copy_only=False)
    if label.task == "binary":
        if label.threshold is not None:
            return (values >= label.threshold).astype(np.float32)
        bad = (values != 0) & (values != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(chunk, label.column, i, f"label {values[i]:g} is not 0 or 1 (task "
                        "\"binary\"; set label.threshold to turn a score into a label)")
    elif not np.isfinite(values).all():
        i = int(np.argmax(~np.isfinite(values)))
        raise _fail(chunk, label.column, i, f"label {values[i]} is not finite")
    return values.astype(np.float32)


def time_values(chunk: Chunk, column: str) -> np.ndarray:
    """The time column as float64 (seconds, or any increasing number); no missing values."""
    return filled(chunk, column, "float").to_numpy(zero_copy_only=False).astype(np.float64)
