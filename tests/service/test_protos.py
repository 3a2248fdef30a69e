"""The ranking API's stubs: generated from proto/ with grpcio-tools at install or build time;
a missing or stale copy is a clear error, never regenerated on import."""

import shutil

import pytest

from steadyrank.service import protos


def test_stubs_are_generated_with_package_imports(tmp_path, monkeypatch):
    monkeypatch.setattr(protos, "OUT_DIR", tmp_path / "gen")
    assert protos.stale()
    written = {p.name for p in protos.generate()}
    assert written == {"ranking_pb2.py", "ranking_pb2.pyi", "ranking_pb2_grpc.py",
                       "SOURCES.sha256"}
    grpc_module = (tmp_path / "gen" / "ranking_pb2_grpc.py").read_text()
    assert "from steadyrank.service._generated import ranking_pb2" in grpc_module
    assert "class RankingServiceStub" in grpc_module
    assert not protos.stale()
    protos.check()


def test_stale_or_missing_stubs_are_refused_with_the_command_that_fixes_them(tmp_path,
                                                                          monkeypatch):
    root = tmp_path / "proto"
    shutil.copytree(protos.PROTO_ROOT / "steadyrank", root / "steadyrank")
    monkeypatch.setattr(protos, "PROTO_ROOT", root)
    monkeypatch.setattr(protos, "OUT_DIR", tmp_path / "gen")
    with pytest.raises(protos.ProtoError, match="missing.*python -m steadyrank.service.protos"):
        protos.load()
    protos.generate()
    protos.check()
    proto = root / protos.PROTOS[0]
    proto.write_text(proto.read_text() + "\n// an edit\n")  # same mtime order would not do
    assert protos.stale()
    with pytest.raises(protos.ProtoError, match="another version.*make install"):
        protos.check()
    assert protos.main([]) == 0 and not protos.stale()


def test_a_missing_proto_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(protos, "OUT_DIR", tmp_path / "gen")
    monkeypatch.setattr(protos, "PROTO_ROOT", tmp_path / "nowhere")
    with pytest.raises(protos.ProtoError, match="nowhere/steadyrank/ranking.proto: no such"):
        protos.generate()


def test_messages_have_the_documented_fields():
    pb2, grpc_module = protos.load()
    request = pb2.RankRequest(user_id=7, k=3, candidate_item_ids=[1, 2], request_id="r")
    request.model_spec.name = "m"
    request.model_spec.version.value = 2
    request.user_features["age"].int64_value = 30
    assert pb2.RankRequest.FromString(request.SerializeToString()) == request
    assert {"items", "model_spec", "replica", "request_id"} <= set(
        pb2.RankResponse.DESCRIPTOR.fields_by_name)
    assert hasattr(grpc_module, "RankingServiceServicer")


def test_a_broken_proto_reports_protoc_output(tmp_path, monkeypatch):
    (tmp_path / "steadyrank").mkdir()
    (tmp_path / "steadyrank" / "ranking.proto").write_text('syntax = "proto3";\nmessage {\n')
    monkeypatch.setattr(protos, "OUT_DIR", tmp_path / "gen")
    monkeypatch.setattr(protos, "PROTO_ROOT", tmp_path)
    with pytest.raises(protos.ProtoError, match="ranking.proto: protoc failed"):
        protos.generate()


def test_the_new_fields_keep_old_clients_working():
    """Fields added for any schema leave the old ones (and their numbers) where they were,
    so an old client's bytes mean what they meant."""
    pb2, _ = protos.load()
    fields = pb2.RankRequest.DESCRIPTOR.fields_by_name
    assert {n: fields[n].number for n in ("model_spec", "user_id", "user_features",
                                          "candidate_item_ids", "k", "request_id",
                                          "queries")} == {
        "model_spec": 1, "user_id": 2, "user_features": 3, "candidate_item_ids": 4, "k": 5,
        "request_id": 6, "queries": 7}
    assert {"context_features", "string_user_id", "string_candidate_item_ids"} <= set(fields)
    assert {"context_features", "string_user_id", "string_candidate_item_ids"} <= set(
        pb2.RankQuery.DESCRIPTOR.fields_by_name)
    kinds = pb2.FeatureValue.DESCRIPTOR.oneofs_by_name["kind"].fields
    assert [f.name for f in kinds][:2] == ["string_value", "int64_value"]
    assert {"float_value", "int64_list", "string_list", "float_list"} <= {f.name for f in kinds}
    old = pb2.FeatureValue(int64_value=30).SerializeToString()
    assert old == b"\x10\x1e"  # field 2, varint 30: as before
    assert "string_item_id" in pb2.ScoredItem.DESCRIPTOR.fields_by_name
