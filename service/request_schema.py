"""A served model's request schema, read from its SignatureDefs, and Rank API values parsed
by it.

The export's ``rank`` signature takes the user id (a scalar), ``item_ids`` and the context
features; ``rank_with_features`` adds the user features. Each input's dtype and shape say
what a request must send: a scalar is one value, a ``[L]`` input a multi-hot list of at most
L values, padded here as the trainer pads it. The server checks requests with it and the
client builds them with it, so this module imports no TensorFlow (enum values are
TensorFlow's ``DataType`` numbers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from steadyrank.model.artifact.layout import ITEM_IDS, RANK, RANK_WITH_FEATURES
from steadyrank.service.serve.status import invalid, shown
from steadyrank.service.settings import MAX_ID_CHARS, MAX_VALUE_CHARS

DT_FLOAT, DT_STRING, DT_INT64 = 1, 7, 9  # tensorflow.DataType values
DTYPE_NAMES = {DT_INT64: "int64", DT_FLOAT: "float", DT_STRING: "string"}
# What an empty place of a multi-hot list holds (the trainer's PAD_INT and PAD_STRING).
PADS: dict[str, Any] = {"int64": -1, "string": b"", "float": 0.0}
LIST_KINDS = {"int64": "int64_list", "string": "string_list", "float": "float_list"}
# FeatureValue fields each dtype accepts for one value (an int64 is taken for a float).
SCALAR_KINDS = {"int64": ("int64_value",), "string": ("string_value",),
                "float": ("float_value", "int64_value")}


@dataclass(frozen=True)
class InputSpec:
    """One request value: its name, dtype and, for a multi-hot list, its most values."""

    name: str
    dtype: str  # int64 | float | string
    max_len: int | None = None  # None: one value

    def describe(self) -> str:
        """``one int64`` or ``a list of at most 8 string values``."""
        if self.max_len is None:
            return f"one {self.dtype}"
        return f"a list of at most {self.max_len} {self.dtype} values"


def input_spec(name: str, info: Any, scalar_rank: int) -> InputSpec:
    """The spec of a signature input whose one value has ``scalar_rank`` dimensions before
    a multi-hot list's (0 for ``rank``'s inputs, 1 for a batch of rows)."""
    dims = [d.size for d in info.tensor_shape.dim]
    dtype = DTYPE_NAMES.get(info.dtype, "string")
    return InputSpec(name, dtype, dims[scalar_rank] if len(dims) > scalar_rank else None)


@dataclass(frozen=True)
class RankSchema:
    """What a Rank request for one model carries, by the names of its schema."""

    user: InputSpec
    item: InputSpec
    context: dict[str, InputSpec]
    user_features: dict[str, InputSpec]

    @classmethod
    def read(cls, signature_defs: Mapping[str, Any], user_name: str) -> RankSchema | None:
        """The schema of a model's ``rank`` signatures (None without ``rank``);
        ``user_name``: the user id's input (from the export's manifest or signatures)."""
        if RANK not in signature_defs:
            return None
        rank = {n: input_spec(n, i, 0) for n, i in signature_defs[RANK].inputs.items()}
        item = rank.pop(ITEM_IDS)
        user = rank.pop(user_name)
        facts = {}
        if RANK_WITH_FEATURES in signature_defs:
            facts = {n: input_spec(n, i, 0) for n, i in
                     sorted(signature_defs[RANK_WITH_FEATURES].inputs.items())
                     if n not in rank and n not in (user_name, ITEM_IDS)}
        return cls(user, InputSpec(ITEM_IDS, item.dtype), dict(sorted(rank.items())), facts)


def _text(value: str, where: str, limit: int = MAX_VALUE_CHARS) -> bytes:
    if len(value) > limit:
        raise invalid(f"{where}: {len(value)} characters, at most {limit}")
    return value.encode()


def parse_value(where: str, value: Any, spec: InputSpec) -> Any:
    """A ``FeatureValue`` as the signature input ``spec`` takes it: a numpy scalar, or a
    ``[max_len]`` array padded with :data:`PADS`. INVALID_ARGUMENT names ``where`` and what
    was expected."""
    kind = value.WhichOneof("kind")
    if kind is None:
        raise invalid(f"{where}: no value; expected {spec.describe()}")
    if spec.max_len is None:
        if kind not in SCALAR_KINDS[spec.dtype]:
            raise invalid(f"{where}: got {kind}, expected {spec.describe()} "
                          f"({SCALAR_KINDS[spec.dtype][0]})")
        raw = getattr(value, kind)
        if spec.dtype == "string":
            return np.bytes_(_text(raw, where))
        return np.int64(raw) if spec.dtype == "int64" else np.float32(raw)
    if kind == LIST_KINDS[spec.dtype]:
        field = getattr(value, kind).value
        if len(field) > spec.max_len:
            raise invalid(f"{where}: {len(field)} values, at most {spec.max_len}")
        values = list(field)
    elif kind == SCALAR_KINDS[spec.dtype][0]:  # one value is a list of one
        values = [getattr(value, kind)]
    else:
        raise invalid(f"{where}: got {kind}, expected {spec.describe()} "
                      f"({LIST_KINDS[spec.dtype]})")
    if len(values) > spec.max_len:
        raise invalid(f"{where}: {len(values)} values, at most {spec.max_len}")
    if spec.dtype == "string":
        values = [_text(v, f"{where}[{i}]") for i, v in enumerate(values)]
    values += [PADS[spec.dtype]] * (spec.max_len - len(values))
    return np.array(values, {"int64": np.int64, "float": np.float32,
                             "string": object}[spec.dtype])


def parse_features(field: str, values: Mapping[str, Any], specs: Mapping[str, InputSpec],
                   elsewhere: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every feature of ``specs`` from a request's map ``field``; INVALID_ARGUMENT names an
    unknown feature (``elsewhere``: name -> the field it belongs in), a missing one or a bad
    value."""
    for name in sorted(values):
        if name not in specs:
            home = (elsewhere or {}).get(name)
            hint = (f" ({name} goes in {home})" if home else
                    f"; known: {', '.join(specs) or 'none'}")
            raise invalid(f"{field}: unknown feature {shown(name)!r}{hint}")
    missing = [n for n in specs if n not in values]
    if missing:
        raise invalid(f"{field}: missing feature {missing[0]!r} ({specs[missing[0]].describe()}); "
                      f"this model needs {', '.join(specs)}")
    return {name: parse_value(f"{field}[{name!r}]", values[name], spec)
            for name, spec in specs.items()}


def read_ids(where: str, spec: InputSpec, int_ids: Iterable[int], string_ids: Iterable[str],
             int_field: str, string_field: str) -> np.ndarray:
    """Ids from the request's int64 or string field, whichever the model's ids are;
    INVALID_ARGUMENT when the other one is set."""
    ints, strings = list(int_ids), list(string_ids)
    if spec.dtype == "string":
        if any(ints):
            raise invalid(f"{where}{int_field}: this model's {spec.name} ids are strings; "
                          f"send {string_field}")
        return np.array([_text(s, f"{where}{string_field}", MAX_ID_CHARS) for s in strings],
                        dtype=object)
    if strings and any(strings):
        raise invalid(f"{where}{string_field}: this model's {spec.name} ids are int64; "
                      f"send {int_field}")
    return np.array(ints, np.int64)


def feature_value(message: Any, value: Any, spec: InputSpec) -> None:
    """Fills a ``FeatureValue`` (``message``) with a Python value for ``spec`` (a list for a
    multi-hot feature)."""
    if spec.max_len is not None:
        items = list(value) if isinstance(value, list | tuple | np.ndarray) else [value]
        field = getattr(message, LIST_KINDS[spec.dtype])
        field.value.extend(_cast(v, spec.dtype) for v in items)
        return
    setattr(message, SCALAR_KINDS[spec.dtype][0], _cast(value, spec.dtype))


def _cast(value: Any, dtype: str) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    return {"int64": int, "float": float, "string": str}[dtype](value)


def parse_text(text: str, spec: InputSpec) -> Any:
    """A command-line value for ``spec``: ``3``, ``0.5``, ``mobile``; a multi-hot list
    comma-separated (``drama,comedy``). ValueError names the feature and the dtype."""
    parts = text.split(",") if spec.max_len is not None else [text]
    try:
        values = [_cast(p, spec.dtype) for p in parts if spec.max_len is None or p != ""]
    except ValueError:
        raise ValueError(f"--feature {spec.name}={text!r}: not {spec.describe()}") from None
    return values if spec.max_len is not None else values[0]
