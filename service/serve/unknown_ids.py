"""One policy for ids a model has never seen, on every API (Predict, Regress, Classify and
Rank, candidates and user alike), and their count.

- ``score`` (the default): the server answers what the export computes for them: the
  out-of-vocabulary row and, for an item or user with stored facts, the facts' defaults
  (the in-process ``serving_default`` answer).
- ``reject``: INVALID_ARGUMENT naming the ids.

Under both, every request whose ids a ranking model can check (the items of its catalog,
the users it has stored facts for) counts its unknown ids in
``steadyrank_unknown_ids_total{model,role}`` and itself in
``steadyrank_id_checked_requests_total{model}`` (and, with one or more unknown ids, in
``steadyrank_unknown_id_requests_total{model}``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from steadyrank.service.serve.servable import Servable, shown_ids
from steadyrank.service.serve.status import invalid

POLICIES = ("score", "reject")


class UnknownIds:
    """Applies the unknown-id policy and counts unknown ids in ``metrics``."""

    def __init__(self, policy: str, metrics: Any) -> None:
        if policy not in POLICIES:
            raise ValueError(f"--unknown-ids {policy!r}: must be one of {', '.join(POLICIES)}")
        self.policy = policy
        self.metrics = metrics

    def check(self, servable: Servable, ids: dict[str, tuple[str, np.ndarray]],
              hint: str = "") -> None:
        """``ids``: role (``user`` or ``item``) -> (the request field they came in, the ids).
        Counts the unknown ones; under ``reject``, INVALID_ARGUMENT naming them (the first
        role with any)."""
        if servable.ranking is None or not ids:
            return
        found = {role: (field, servable.unknown(role, values))
                 for role, (field, values) in ids.items()}
        found = {role: v for role, v in found.items() if v[1] is not None}
        if not found:
            return
        m = self.metrics
        m.id_checked_requests.labels(servable.name).inc()
        unknown = {role: v for role, v in found.items() if v[1].size}
        if not unknown:
            return
        m.unknown_id_requests.labels(servable.name).inc()
        for role, (_, values) in unknown.items():
            m.unknown_ids.labels(servable.name, role).inc(int(values.size))
        if self.policy == "reject":
            role, (field, values) = next(iter(unknown.items()))
            where = (f"not in the catalog of model {servable.name!r} version "
                     f"{servable.version}" if role == "item" else
                     f"model {servable.name!r} version {servable.version} has no features "
                     "for them")
            raise invalid(f"{field}: unknown {role} ids {shown_ids(values)} ({where}; the "
                          f"server runs with --unknown-ids reject){hint}")

    def check_rows(self, servable: Servable, inputs: dict[str, np.ndarray],
                   field: str = "inputs") -> None:
        """The ids among a ranking model's ``serving_default`` rows."""
        if servable.ranking is None:
            return
        ids = {}
        user, item = servable.user_input, servable.item_input
        if user in inputs:
            ids["user"] = (f"{field}[{user!r}]", np.asarray(inputs[user]))
        if item in inputs:
            ids["item"] = (f"{field}[{item!r}]", np.asarray(inputs[item]))
        self.check(servable, ids)

    def check_examples(self, servable: Servable, examples: np.ndarray) -> None:
        """The ids inside serialized tf.Examples (Regress, Classify)."""
        if servable.ranking is None or examples.size == 0:
            return
        user, item = servable.user_input, servable.item_input
        specs = {}
        for name, spec in ((user, servable.ranking.user), (item, None)):
            dtype = tf.string if (spec or servable.ranking.item).dtype == "string" \
                else tf.int64
            specs[name] = tf.io.VarLenFeature(dtype)
        try:
            parsed = tf.io.parse_example(tf.constant(examples), specs)
        except tf.errors.InvalidArgumentError:
            return  # the model refuses such examples itself, with its own reason
        ids = {}
        for role, name in (("user", user), ("item", item)):
            values = parsed[name].values.numpy()
            if values.size:
                ids[role] = (f"input.examples[{name!r}]", values.astype(object)
                             if values.dtype == object else values)
        self.check(servable, ids)
