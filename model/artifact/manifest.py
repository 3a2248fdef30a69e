"""The export manifest: the contract between the trainer and the server, in one place.

``manifest.json`` beside each export's SavedModel records what the version is: the config it
trained with, its seeds, its schema record (each feature's declaration, table size and
statistics), its data, accuracy, parameters, training record and distribution, the version,
when it was written, its signatures and TensorFlow version; a trainer that compares
replicas adds their offline reproducibility, and a comparison the split it used.

Every writer and reader goes through :class:`Manifest`: the trainer builds it, the export
writer stamps and writes it (atomically), the production trainer updates it, the server,
the reader, ``compare`` and the monitor read its typed fields. Older exports' layouts are
read here alone (an export made before schemas has none: its task comes from its config,
its ids from its signatures). Keys this module does not know are kept as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from steadyrank.core.errors import SteadyRankError
from steadyrank.core.fileio import atomic_write_json
from steadyrank.model.artifact.layout import ITEM_IDS, MANIFEST, RANK, SERVING_DEFAULT
from steadyrank.model.schema import Schema, SchemaError, parse_schema

# What the schema record adds to each feature's declaration (not part of the declaration).
RECORD_ONLY = ("distinct_values", "statistics")


class ManifestError(SteadyRankError, RuntimeError):
    """A manifest cannot be read or written; the message names the folder."""


@dataclass(frozen=True)
class Manifest(Mapping):
    """One export's manifest. Read-only as a mapping too (``manifest["metrics"]``): the
    JSON record, for whoever inspects it."""

    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    order_seed: int | None = None
    member_seeds: list[int] = field(default_factory=list)
    techniques: dict[str, Any] = field(default_factory=dict)
    warm_start: str | None = None
    schema: dict[str, Any] | None = None  # the schema record; None: made before schemas
    ranking: str | None = None  # why the export has no rankings (None: it ranks)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    parameters: int = 0
    training: dict[str, Any] = field(default_factory=dict)
    distribution: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    created: float | None = None
    signatures: list[str] = field(default_factory=list)
    tensorflow: str = ""
    offline_reproducibility: dict[str, Any] = field(default_factory=dict)
    split: str | None = None  # the split a comparison's replica was measured on
    extra: dict[str, Any] = field(default_factory=dict)  # other keys, kept as written

    # ---------------------------------------------------------------- the record
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Manifest:
        """A manifest from its JSON record (any layout SteadyRank ever wrote)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in raw.items() if k in known}
        extra = {k: v for k, v in raw.items() if k not in known}
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (keys at their defaults included, as the trainer writes them)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        for key in ("version", "created", "tensorflow"):
            if out[key] in (None, ""):
                del out[key]  # set when the export is written
        for key in ("offline_reproducibility", "split"):
            if not out[key]:
                del out[key]
        return {**out, **self.extra}

    @classmethod
    def read(cls, version: str | Path) -> Manifest:
        """The manifest of a version folder; ManifestError naming it when unreadable."""
        path = Path(version) / MANIFEST
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ManifestError(f"{version}: unreadable {MANIFEST}: {err}") from None
        if not isinstance(raw, dict):
            raise ManifestError(f"{version}: {MANIFEST} is not a JSON object")
        return cls.from_dict(raw)

    def write(self, version: str | Path) -> None:
        """Writes ``manifest.json`` into a version folder, atomically."""
        atomic_write_json(Path(version) / MANIFEST, self.to_dict())

    def updated(self, **values: Any) -> Manifest:
        """A copy with fields (or, for names it does not know, extra keys) set."""
        known = {f.name for f in fields(self)} - {"extra"}
        mine = {k: v for k, v in values.items() if k in known}
        extra = {**self.extra, **{k: v for k, v in values.items() if k not in known}}
        return replace(self, **mine, extra=extra)

    # ---------------------------------------------------------------- typed reads
    @property
    def task(self) -> str:
        """``rating`` or ``binary``: the schema's label task, else the config's."""
        if self.schema:
            return str(self.schema["label"]["task"])
        return str(self.config.get("model", {}).get("task", "rating"))

    @property
    def ranks(self) -> bool:
        """Whether the export ranks items for users: its schema has a user id and an item
        id (an export made before schemas always did)."""
        if self.schema is None:
            return True
        roles = {f.get("role") for f in self.schema.get("features", [])}
        return {"user_id", "item_id"} <= roles

    def id_inputs(self, signature_defs: Mapping[str, Any]) -> tuple[str, str]:
        """(user id input, item id input) of a ranking export: from its schema's roles, or,
        for an export made before schemas, ``rank``'s one input beside ``item_ids`` and
        ``serving_default``'s other one."""
        if self.schema:
            roles = {f.get("role"): f["name"] for f in self.schema["features"]}
            return roles["user_id"], roles["item_id"]
        (user,) = set(signature_defs[RANK].inputs) - {ITEM_IDS}
        (item,) = set(signature_defs[SERVING_DEFAULT].inputs) - {user}
        return user, item

    def parsed_schema(self) -> Schema:
        """The schema record parsed by the schema module (ManifestError without one)."""
        if not self.schema:
            raise ManifestError("this export was made before schemas: it has no schema")
        features = [{k: v for k, v in f.items() if k not in RECORD_ONLY}
                    for f in self.schema["features"]]
        try:
            return parse_schema(self.schema["label"], features)
        except SchemaError as err:
            raise ManifestError(f"the manifest's schema record: {err}") from None

    @property
    def order_seeds(self) -> tuple[int | None, int | None]:
        """(init seed, order seed): the order seed is the init seed unless recorded."""
        return self.seed, self.order_seed if self.order_seed is not None else self.seed

    @property
    def data_checksum(self) -> str | None:
        """The checksum of the data the version trained on."""
        return self.data.get("checksum")

    @property
    def training_seconds(self) -> float:
        """Seconds of training (0 when not recorded)."""
        return float(self.training.get("seconds", 0.0))

    @property
    def examples_per_second(self) -> float:
        """Training throughput (0 when not recorded)."""
        return float(self.training.get("examples_per_second", 0.0))

    # ---------------------------------------------------------------- the mapping
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())
