"""Requests built from what a served model takes, never from a dataset's feature names.

:class:`ModelInputs` asks the server for a model's request schema
(``RankingService.GetRequestSchema``: task, ids, context and user features, and the rows of
``serving_default``, each with its dtype), with grpc alone, no TensorFlow. From it the
command-line ``rank`` sorts ``--feature NAME=VALUE`` pairs into context and user features
and parses each by its dtype, and ``traffic`` and ``loadtest`` draw random requests: known
users and catalog items for a ranking model, and values of each declared dtype for the
context features and the rows of a model without ids (``Predict`` on ``serving_default``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from steadyrank.service.request_schema import InputSpec, feature_value, parse_text
from steadyrank.service.stubs import ranking_pb2, ranking_pb2_grpc


@dataclass(frozen=True)
class ModelInputs:
    """What one served model takes in its requests."""

    model: str
    task: str  # binary | rating
    rows: dict[str, InputSpec]  # serving_default's inputs, one row each
    user: InputSpec | None  # None: the model does not rank
    item: InputSpec | None
    context: dict[str, InputSpec]
    user_features: dict[str, InputSpec]
    item_input: str | None = None  # the item id's name (serving_default's input)

    @property
    def ranks(self) -> bool:
        """Whether the model ranks items (its schema has user and item ids)."""
        return self.user is not None

    @classmethod
    def from_response(cls, model: str, response: Any) -> ModelInputs:
        """From a ``RequestSchemaResponse``."""
        def spec(message: Any) -> InputSpec:
            return InputSpec(message.name, message.dtype, message.max_len or None)

        ranks = response.HasField("user_id")
        return cls(model, response.task or "rating",
                   {m.name: spec(m) for m in response.rows},
                   spec(response.user_id) if ranks else None,
                   spec(response.item_id) if ranks else None,
                   {m.name: spec(m) for m in response.context_features},
                   {m.name: spec(m) for m in response.user_features},
                   response.item_id.name if ranks else None)

    @classmethod
    def read(cls, channel: Any, model: str, timeout: float = 30.0) -> ModelInputs:
        """Asks a server (over ``channel``) what ``model`` takes."""
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        request = ranking_pb2.RequestSchemaRequest()
        request.model_spec.name = model
        return cls.from_response(model, stub.GetRequestSchema(request, timeout=timeout))

    def parse_features(self, pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``NAME=VALUE`` pairs as (context features, user features), each value parsed by
        its declared dtype; ValueError names an unknown feature or a bad value."""
        context: dict[str, Any] = {}
        facts: dict[str, Any] = {}
        for pair in pairs:
            name, sep, text = pair.partition("=")
            if not sep or not name:
                raise ValueError(f"--feature {pair!r}: expected NAME=VALUE")
            if name in self.context:
                context[name] = parse_text(text, self.context[name])
            elif name in self.user_features:
                facts[name] = parse_text(text, self.user_features[name])
            else:
                known = ", ".join([*self.context, *self.user_features]) or "none"
                raise ValueError(f"--feature {name}: model {self.model!r} takes no feature "
                                 f"{name!r}; its request features: {known}")
        return context, facts

    def parse_id(self, text: str, what: str) -> Any:
        """A command-line user or item id as the model's ids are (int64 or string);
        ValueError for a model without ids or an id that is not an int64 one."""
        if self.user is None or self.item is None:
            raise ValueError(f"model {self.model!r} has no user and item ids: there is "
                             "nothing to rank; use Predict or Classify")
        spec = self.user if what == "user" else self.item
        if spec.dtype != "int64":
            return text
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"--{what} {text!r}: model {self.model!r} has int64 {what} "
                             "ids") from None


def rank_request(model: str, user: Any, k: int, candidates: Any = None,
                 features: dict[str, Any] | None = None, version: int | None = None,
                 request_id: str = "", context: dict[str, Any] | None = None,
                 inputs: ModelInputs | None = None) -> Any:
    """A ``RankRequest``. A str id goes in the string id fields, an int in the int64 ones;
    ``features`` (user features) and ``context`` by name, typed by ``inputs`` when given,
    else by their Python type (a list for a multi-hot feature)."""
    request = ranking_pb2.RankRequest(k=k, request_id=request_id)
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    fill_query(request, user, candidates, features, context, inputs)
    return request


def fill_query(query: Any, user: Any, candidates: Any, features: dict[str, Any] | None,
               context: dict[str, Any] | None, inputs: ModelInputs | None) -> None:
    """Sets a RankRequest's (or RankQuery's) user, candidates and features."""
    if isinstance(user, str | bytes):
        query.string_user_id = user.decode() if isinstance(user, bytes) else user
    else:
        query.user_id = int(user)
    for item in ([] if candidates is None else candidates):
        if isinstance(item, str | bytes):
            query.string_candidate_item_ids.append(
                item.decode() if isinstance(item, bytes) else item)
        else:
            query.candidate_item_ids.append(int(item))
    for field, values, specs in (
            ("user_features", features, inputs.user_features if inputs else {}),
            ("context_features", context, inputs.context if inputs else {})):
        for name, value in (values or {}).items():
            feature_value(getattr(query, field)[name], value, specs.get(name) or guess(value))


def guess(value: Any) -> InputSpec:
    """The spec of a Python value: int -> int64, float -> float, else string; a list is a
    multi-hot list of its values' type."""
    items = list(value) if isinstance(value, list | tuple | np.ndarray) else None
    sample = (items[0] if items else "") if items is not None else value
    dtype = ("int64" if isinstance(sample, int | np.integer) else
             "float" if isinstance(sample, float | np.floating) else "string")
    return InputSpec("", dtype, None if items is None else max(1, len(items)))


def random_value(rng: np.random.Generator, spec: InputSpec) -> Any:
    """A value of the declared dtype: small ints, positive floats, short codes; a list of
    1 to max_len of them for a multi-hot feature."""
    def one() -> Any:
        if spec.dtype == "int64":
            return int(rng.integers(0, 100))
        if spec.dtype == "float":
            return float(np.round(rng.exponential(10.0), 3))
        return f"v{int(rng.integers(0, 20))}"
    if spec.max_len is None:
        return one()
    return [one() for _ in range(int(rng.integers(1, spec.max_len + 1)))]


def random_rows(rng: np.random.Generator, specs: dict[str, InputSpec], rows: int
                ) -> dict[str, np.ndarray]:
    """``rows`` random rows of a row-wise signature's inputs, as numpy arrays."""
    out = {}
    for name, spec in specs.items():
        values = [random_value(rng, spec) for _ in range(rows)]
        if spec.max_len is not None:
            pad = {"int64": -1, "float": 0.0, "string": ""}[spec.dtype]
            values = [v + [pad] * (spec.max_len - len(v)) for v in values]
        out[name] = np.array(values, {"int64": np.int64, "float": np.float32,
                                      "string": object}[spec.dtype])
    return out


def sample_rows(rng: np.random.Generator, inputs: ModelInputs, rows: int,
                known: tuple[np.ndarray, np.ndarray | None] | None = None
                ) -> dict[str, np.ndarray]:
    """Random ``serving_default`` rows; for a ranking model, with ``known`` (its catalog and
    user ids, :func:`steadyrank.service.client.catalog_and_users`), ids the model knows."""
    out = random_rows(rng, inputs.rows, rows)
    if inputs.ranks and known is not None and inputs.item_input:
        catalog, users = known
        out[inputs.item_input] = rng.choice(catalog, rows)
        if users is not None:
            out[inputs.user.name] = rng.choice(users, rows)
    return out
