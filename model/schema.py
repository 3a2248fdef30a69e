"""The declared feature schema: ``[label]`` and ``[[features]]`` of an experiment config.

A schema says what each column of the training data means, and from it come the reader's
checks, the vocabularies and statistics, the model's embedding tables and dense inputs, the
export's signatures and the server's request checks. It is declared in the config::

    [label]
    column = "clicked"
    task = "binary"            # binary (log loss, score in [0, 1]) | rating (regression)

    [[features]]
    name = "shopper"
    kind = "categorical"       # categorical | numeric | multi_hot
    role = "user_id"           # user_id | item_id | user | item | context
    dtype = "int64"            # int64 | string (categorical, multi_hot), float (numeric)

or implied by a format that has a preset (``movielens-100k``, ``synthetic``, ``criteo``).
This module only declares and checks; it imports nothing else from SteadyRank but the error
base, so the config, the data room and the artifact can all use it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from steadyrank.core.errors import SteadyRankError
from steadyrank.model.artifact import layout

KINDS = ("categorical", "numeric", "multi_hot")
ROLES = ("user_id", "item_id", "user", "item", "context")
ID_ROLES = ("user_id", "item_id")
FACT_ROLES = {"user": "user_id", "item": "item_id"}  # a fact's role -> the id it is keyed by
TASKS = ("binary", "rating")
TRANSFORMS = ("none", "log1p", "standardize")
DTYPES = {"categorical": ("int64", "string"), "multi_hot": ("int64", "string"),
          "numeric": ("float",)}
# Names the exported signatures use beside the features (their owner: artifact/layout.py),
# and the prefix of every name the training batches add (data/batches.py's LABEL, ROWS,
# FACT_ROWS): no feature may take them.
RESERVED_NAMES = layout.RESERVED_NAMES
RESERVED_PREFIX = "sr_"
# Why a model without both ids has no rankings (no rank signature, no top-k swap rates).
NO_RANKING = ("the schema has no user_id and item_id features, so there are no rankings "
              "to compare or serve: PD only, and no rank signature")


class SchemaError(SteadyRankError, ValueError):
    """A schema declaration is invalid; the message names the feature and the key."""

    exit_code = 2


@dataclass(frozen=True)
class Label:
    """The training target: a column, and the task that says how it is scored.

    ``binary``: the column holds 0 or 1; the model's score is a probability (log loss, AUC).
    ``rating``: a number; the score is the predicted value (RMSE). ``threshold``: for
    ``binary`` on a numeric column (a rating), the label is 1 where the value >= threshold;
    None means the column itself must be 0 or 1.
    """

    column: str = "label"
    task: str = "binary"
    threshold: float | None = None


@dataclass(frozen=True)
class Feature:
    """One declared input column.

    - ``kind``: ``categorical`` (one value, embedded), ``numeric`` (a number into the dense
      part of the tower) or ``multi_hot`` (a list of values, mean-pooled embeddings).
    - ``role``: ``user_id``/``item_id`` (the ids; at most one each), ``user``/``item`` (facts
      of the user or item, stored in the export and looked up by id) or ``context`` (comes
      with every request).
    - ``dtype``: ``int64`` or ``string`` for categorical and multi-hot values, ``float`` for
      numeric ones.
    - Vocabulary (categorical, multi-hot): values seen at least ``min_count`` times in the
      training rows, at most ``max_size`` of them (the most frequent; 0: no cap), each get an
      embedding row; the rest share the out-of-vocabulary row. Or ``hash_buckets`` = N rows
      chosen by a hash of the value, and no vocabulary.
    - ``boundaries``: the category is the value's bucket among these ascending boundaries
      (``age`` into age bands); ``dtype`` is then the values' (``int64`` or ``float``).
    - ``truncate``: for a string categorical, only the first N characters count (a zip
      code's first digit).
    - ``embedding_dim``: the width of this feature's table (0: ``model.embedding_dim``);
      ``shared``: features naming the same table share one vocabulary and embedding.
    - ``transform`` (numeric): ``none``, ``log1p`` (sign(x) * log(1 + |x|)) or
      ``standardize`` ((x - mean) / std, with the training data's statistics, stored in the
      export).
    - ``fill``: the value of a missing entry; without it a missing value is an error.
    - ``separator`` (multi-hot in CSV: the values joined by it) and ``max_len`` (at most this
      many values are kept per row).
    """

    name: str
    kind: str
    role: str = "context"
    dtype: str = ""
    min_count: int = 1
    max_size: int = 0
    hash_buckets: int = 0
    boundaries: tuple[float, ...] = ()
    truncate: int = 0
    embedding_dim: int = 0
    shared: str = ""
    transform: str = "none"
    fill: Any = None
    separator: str = "|"
    max_len: int = 8

    def __post_init__(self) -> None:
        if not self.dtype:  # the kind's default: float for numeric, else int64
            object.__setattr__(self, "dtype", "float" if self.kind == "numeric" else "int64")

    @property
    def table(self) -> str:
        """The name of the embedding table (and vocabulary) this feature uses."""
        return self.shared or self.name

    @property
    def embedded(self) -> bool:
        """Whether the feature has an embedding table (categorical or multi-hot)."""
        return self.kind in ("categorical", "multi_hot")

    @property
    def is_fact(self) -> bool:
        """Whether the feature is a fact of the user or item (stored, looked up by id)."""
        return self.role in FACT_ROLES

    @property
    def value_dtype(self) -> str:
        """The dtype of the column's raw values: int64, float or string."""
        return self.dtype

    def to_dict(self) -> dict[str, Any]:
        """The declaration as it is written in a config (defaults left out)."""
        default = {f.name: f.default for f in fields(Feature) if f.name not in ("name", "kind")}
        out = {"name": self.name, "kind": self.kind}
        for key, value in asdict(self).items():
            if key in default and value != default[key]:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class Schema:
    """A label and the declared features, checked as a whole."""

    label: Label
    features: tuple[Feature, ...] = field(default_factory=tuple)

    def feature(self, name: str) -> Feature:
        """The feature named ``name``; KeyError if there is none."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def with_role(self, *roles: str) -> tuple[Feature, ...]:
        """The features with one of ``roles``, in declaration order."""
        return tuple(f for f in self.features if f.role in roles)

    @property
    def user_id(self) -> Feature | None:
        """The ``user_id`` feature, if declared."""
        found = self.with_role("user_id")
        return found[0] if found else None

    @property
    def item_id(self) -> Feature | None:
        """The ``item_id`` feature, if declared."""
        found = self.with_role("item_id")
        return found[0] if found else None

    @property
    def ranks(self) -> bool:
        """Whether the model ranks items for users (it has both ids)."""
        return self.user_id is not None and self.item_id is not None

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the reader needs: the features' and the label's."""
        return (*(f.name for f in self.features), self.label.column)

    def to_dict(self) -> dict[str, Any]:
        """``{"label": ..., "features": [...]}`` as written in a config."""
        label = {k: v for k, v in asdict(self.label).items() if v is not None}
        return {"label": label, "features": [f.to_dict() for f in self.features]}


def _where(index: int, raw: dict[str, Any]) -> str:
    name = raw.get("name")
    return f"features[{index}]" + (f" ({name!r})" if isinstance(name, str) else "")


def _typed(where: str, key: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of the key's default."""
    if isinstance(default, bool) or key == "fill":
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise SchemaError(f"{where}.{key} must be a list of numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"{where}.{key} must be a whole number, got {value!r}")
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise SchemaError(f"{where}.{key} must be a string, got {value!r}")
    return value


def parse_feature(raw: Any, index: int = 0) -> Feature:
    """A :class:`Feature` from its config table; SchemaError naming the feature and key."""
    if not isinstance(raw, dict):
        raise SchemaError(f"features[{index}] must be a table ([[features]]), got {raw!r}")
    where = _where(index, raw)
    known = {f.name: f for f in fields(Feature)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SchemaError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(known)}")
    for key in ("name", "kind"):
        if key not in raw:
            raise SchemaError(f"{where}: missing key {key!r}")
    values = {k: _typed(where, k, v, known[k].default if k not in ("name", "kind") else "")
              for k, v in raw.items()}
    feature = Feature(**values)
    check_feature(feature, where)
    return feature


def check_feature(f: Feature, where: str) -> None:
    """SchemaError naming ``where`` and the key when a declaration is inconsistent."""
    if not f.name or not f.name.replace("_", "a").replace("-", "a").isalnum():
        raise SchemaError(f"{where}.name must be letters, digits, '_' or '-', got {f.name!r}")
    if f.name in RESERVED_NAMES or f.name.startswith(RESERVED_PREFIX):
        raise SchemaError(f"{where}.name {f.name!r} is reserved (the signatures use "
                          f"{', '.join(RESERVED_NAMES)} and names starting with "
                          f"{RESERVED_PREFIX}); rename the feature")
    if f.kind not in KINDS:
        raise SchemaError(f"{where}.kind must be one of {', '.join(KINDS)}, got {f.kind!r}")
    if f.role not in ROLES:
        raise SchemaError(f"{where}.role must be one of {', '.join(ROLES)}, got {f.role!r}")
    if f.dtype not in DTYPES[f.kind] and not (f.boundaries and f.dtype == "float"):
        raise SchemaError(f"{where}.dtype must be {' or '.join(DTYPES[f.kind])} for a "
                          f"{f.kind} feature, got {f.dtype!r}")
    if f.role in ID_ROLES and f.kind != "categorical":
        raise SchemaError(f"{where}: an id ({f.role}) must be categorical, not {f.kind}")
    if f.role in ID_ROLES and (f.hash_buckets or f.boundaries or f.truncate):
        raise SchemaError(f"{where}: an id ({f.role}) takes a vocabulary, not hash_buckets, "
                          "boundaries or truncate")
    for key in ("min_count", "max_len"):
        if getattr(f, key) < 1:
            raise SchemaError(f"{where}.{key} must be >= 1, got {getattr(f, key)}")
    for key in ("max_size", "hash_buckets", "embedding_dim", "truncate"):
        if getattr(f, key) < 0:
            raise SchemaError(f"{where}.{key} must be >= 0, got {getattr(f, key)}")
    if f.hash_buckets and (f.min_count > 1 or f.max_size):
        raise SchemaError(f"{where}: hash_buckets replaces the vocabulary; drop min_count "
                          "and max_size")
    if f.kind == "numeric":
        if f.transform not in TRANSFORMS:
            raise SchemaError(f"{where}.transform must be one of {', '.join(TRANSFORMS)}, "
                              f"got {f.transform!r}")
        if f.hash_buckets or f.min_count > 1 or f.max_size or f.shared or f.embedding_dim:
            raise SchemaError(f"{where}: a numeric feature has no embedding (no "
                              "hash_buckets, min_count, max_size, shared or embedding_dim)")
    elif f.transform != "none":
        raise SchemaError(f"{where}.transform applies to numeric features only")
    if f.boundaries:
        if f.kind != "categorical" or f.dtype not in ("int64", "float"):
            raise SchemaError(f"{where}.boundaries bucket a number into a category: declare "
                              "kind = \"categorical\" and dtype = \"int64\" or \"float\"")
        if list(f.boundaries) != sorted(set(f.boundaries)) or not all(
                math.isfinite(b) for b in f.boundaries):
            raise SchemaError(f"{where}.boundaries must be finite and strictly ascending, "
                              f"got {list(f.boundaries)}")
    if f.truncate and (f.kind != "categorical" or f.dtype != "string"):
        raise SchemaError(f"{where}.truncate applies to string categorical features only")
    if f.fill is not None:
        want = {"float": (int, float), "int64": (int,), "string": (str,)}[f.value_dtype]
        if isinstance(f.fill, bool) or not isinstance(f.fill, want):
            raise SchemaError(f"{where}.fill must be a {f.value_dtype} value, got {f.fill!r}")
        if f.value_dtype == "float" and not math.isfinite(float(f.fill)):
            raise SchemaError(f"{where}.fill must be finite, got {f.fill!r}")
    if not f.separator:
        raise SchemaError(f"{where}.separator must not be empty")


def parse_label(raw: Any) -> Label:
    """A :class:`Label` from the ``[label]`` table; SchemaError naming the key."""
    if not isinstance(raw, dict):
        raise SchemaError(f"[label] must be a table, got {raw!r}")
    known = {f.name for f in fields(Label)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SchemaError(f"label: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}")
    if "column" not in raw or not isinstance(raw["column"], str) or not raw["column"]:
        raise SchemaError(f"label.column must name the label's column, got "
                          f"{raw.get('column')!r}")
    task = raw.get("task", "binary")
    if task not in TASKS:
        raise SchemaError(f"label.task must be one of {', '.join(TASKS)}, got {task!r}")
    threshold = raw.get("threshold")
    if threshold is not None and (isinstance(threshold, bool)
                                  or not isinstance(threshold, int | float)):
        raise SchemaError(f"label.threshold must be a number, got {threshold!r}")
    return Label(raw["column"], task, None if threshold is None else float(threshold))


def check_schema(schema: Schema) -> Schema:
    """Checks the schema as a whole: unique names, at most one of each id, facts keyed by a
    declared id, shared tables of one kind and dtype. Returns it."""
    if not schema.features:
        raise SchemaError("the schema declares no features ([[features]])")
    names = [f.name for f in schema.features]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SchemaError(f"features: {', '.join(repeated)} declared more than once")
    if schema.label.column in names:
        raise SchemaError(f"label.column {schema.label.column!r} is also a feature")
    for role in ID_ROLES:
        found = [f.name for f in schema.with_role(role)]
        if len(found) > 1:
            raise SchemaError(f"features: {len(found)} features have role {role!r} "
                              f"({', '.join(found)}); at most one may")
    for f in schema.features:
        if f.is_fact and not schema.with_role(FACT_ROLES[f.role]):
            raise SchemaError(f"feature {f.name!r} has role {f.role!r} (a fact looked up by "
                              f"{FACT_ROLES[f.role]}) but no feature has role "
                              f"{FACT_ROLES[f.role]!r}")
    tables: dict[str, Feature] = {}
    for f in schema.features:
        if not f.embedded:
            continue
        first = tables.setdefault(f.table, f)
        if (first.dtype, first.hash_buckets, first.embedding_dim, bool(first.boundaries)) != (
                f.dtype, f.hash_buckets, f.embedding_dim, bool(f.boundaries)):
            raise SchemaError(f"features {first.name!r} and {f.name!r} share table "
                              f"{f.table!r} but differ in dtype, hash_buckets, "
                              "embedding_dim or boundaries")
    return schema


def parse_schema(label: Any, features: Any) -> Schema:
    """A checked :class:`Schema` from a config's ``[label]`` and ``[[features]]``."""
    if not isinstance(features, list):
        raise SchemaError(f"features must be an array of tables ([[features]]), got "
                          f"{features!r}")
    return check_schema(Schema(parse_label(label),
                               tuple(parse_feature(raw, i) for i, raw in enumerate(features))))
