"""The export manifest's one owner: its record round-trips, older layouts read, the schema
record parses, and bad files are named."""

import json
from types import SimpleNamespace

import pytest

from steadyrank.model.artifact.manifest import Manifest, ManifestError
from steadyrank.model.artifact.reader import ExportError, read_export_manifest

SCHEMA = {"label": {"column": "clicked", "task": "binary"},
          "features": [{"name": "shopper", "kind": "categorical", "role": "user_id",
                        "dtype": "string", "distinct_values": 120},
                       {"name": "sku", "kind": "categorical", "role": "item_id",
                        "dtype": "int64", "distinct_values": 200},
                       {"name": "price", "kind": "numeric", "role": "item", "dtype": "float",
                        "statistics": {"mean": 3.0}}],
          "time_column": "ts", "statistics": {"rows": 4800}}


def test_the_record_round_trips_and_keeps_what_it_does_not_know(tmp_path):
    raw = {"config": {"model": {"task": "binary"}}, "seed": 3, "order_seed": 4,
           "schema": SCHEMA, "training": {"seconds": 12.5, "examples_per_second": 400.0},
           "version": 2, "created": 1.5, "signatures": ["serving_default"],
           "tensorflow": "2.21.0", "split": "eval", "churn_vs_previous": {"relative_pd": 0.1}}
    manifest = Manifest.from_dict(raw)
    assert manifest.to_dict() == {**Manifest().to_dict(), **raw}
    assert manifest.extra == {"churn_vs_previous": {"relative_pd": 0.1}}
    assert manifest.order_seeds == (3, 4) and manifest.training_seconds == 12.5
    assert manifest["split"] == "eval" and manifest.get("nothing") is None  # a mapping too
    manifest.write(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest.to_dict()
    again = Manifest.read(tmp_path).updated(offline_reproducibility={"relative_pd": 0.2},
                                            note="kept")
    assert again.offline_reproducibility == {"relative_pd": 0.2}
    assert again.extra["note"] == "kept" and again.extra["churn_vs_previous"]
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # written atomically


def test_typed_reads_of_a_schema_export():
    manifest = Manifest.from_dict({"schema": SCHEMA, "config": {"model": {"task": "rating"}}})
    assert manifest.task == "binary"  # the schema's label wins over the config's
    assert manifest.ranks and manifest.id_inputs({}) == ("shopper", "sku")
    schema = manifest.parsed_schema()
    assert schema.user_id.name == "shopper" and schema.feature("price").role == "item"
    no_ids = Manifest.from_dict({"schema": {**SCHEMA, "features": SCHEMA["features"][2:]}})
    assert not no_ids.ranks


def test_an_export_made_before_schemas_reads_from_its_config_and_signatures():
    old = Manifest.from_dict({"config": {"model": {"task": "rating"}}, "seed": 1})
    assert old.schema is None and old.task == "rating" and old.ranks
    assert old.order_seeds == (1, 1)  # no order seed recorded: the init seed's
    signatures = {"rank": SimpleNamespace(inputs={"user_id": 0, "item_ids": 0}),
                  "serving_default": SimpleNamespace(inputs={"user_id": 0, "item_id": 0})}
    assert old.id_inputs(signatures) == ("user_id", "item_id")
    with pytest.raises(ManifestError, match="made before schemas"):
        old.parsed_schema()


def test_bad_manifests_are_named(tmp_path):
    with pytest.raises(ExportError, match=f"{tmp_path}: unreadable manifest.json"):
        read_export_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="manifest.json is not a JSON object"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError, match="unreadable manifest.json"):
        read_export_manifest(tmp_path)
    broken = Manifest.from_dict({"schema": {"label": {"column": "y", "task": "binary"},
                                            "features": [{"name": "a", "kind": "nope"}]}})
    with pytest.raises(ManifestError, match="the manifest's schema record"):
        broken.parsed_schema()
