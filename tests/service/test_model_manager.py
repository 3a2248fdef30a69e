"""Model management: version discovery, switching, broken versions, rollback, replicas."""

import shutil

import grpc
import pytest

from steadyrank.model.artifact.manifest import Manifest
from steadyrank.service.serve.manager import ModelManager, replica_of, version_folders
from steadyrank.service.serve.servable import LoadError
from steadyrank.service.serve.status import ServiceError
from steadyrank.service.serve.telemetry import ServerMetrics


class Loaded:
    def __init__(self, name, version, path):
        self.name, self.version, self.path = name, version, path
        self.manifest = Manifest.from_dict({
            "training": {"seconds": 12.5}, "created": 1.7e9 + version,
            "offline_reproducibility": {"relative_pd": 0.03, "top10_swap_rate": 0.2}})


def loader(name, version, path):
    """Loads a version folder whose 'model' file says 'ok'."""
    content = (path / "model").read_text() if (path / "model").exists() else ""
    if content != "ok":
        raise LoadError(f"{path}: bad model {content!r}")
    return Loaded(name, version, path)


def write(base, name, version, content="ok"):
    folder = base / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model").write_text(content)
    return folder


def state(manager, name):
    return {s.version: (s.state, bool(s.error)) for s in manager.status(name)}


@pytest.fixture
def manager(tmp_path):
    return ModelManager(tmp_path, ServerMetrics(), poll_seconds=0, loader=loader)


def test_serves_the_highest_version_and_switches_to_a_new_one(tmp_path, manager):
    write(tmp_path, "m", 1)
    write(tmp_path, "m", 2)
    (tmp_path / "m" / ".tmp-export-x").mkdir()  # an export in progress is not a version
    manager.poll()
    assert manager.get("m").version == 2
    assert state(manager, "m") == {2: ("AVAILABLE", False)}
    held = manager.get("m")
    write(tmp_path, "m", 3)
    manager.poll()
    assert manager.get("m").version == 3
    assert held.version == 2  # a request holding the old version finishes on it
    assert state(manager, "m")[2] == ("END", False)


def test_a_broken_version_never_replaces_a_good_one(tmp_path, manager):
    write(tmp_path, "m", 1)
    manager.poll()
    write(tmp_path, "m", 2, "half-written")
    manager.poll()
    assert manager.get("m").version == 1
    assert state(manager, "m")[2] == ("END", True)
    assert "bad model 'half-written'" in manager.status("m")[1].error
    gauge = manager.metrics.version_state.labels("m", "2", "END", "1")._value.get()
    assert gauge == 1
    manager.poll()  # unchanged: not retried
    assert manager.get("m").version == 1
    write(tmp_path, "m", 2, "ok")  # the copy finished: its folder changed, so it is retried
    manager.poll()
    assert manager.get("m").version == 2
    assert state(manager, "m")[2] == ("AVAILABLE", False)


def test_broken_latest_at_startup_falls_back_to_an_older_version(tmp_path, manager):
    write(tmp_path, "m", 1)
    write(tmp_path, "m", 2, "corrupt")
    manager.poll()
    assert manager.get("m").version == 1


def test_removing_the_serving_version_rolls_back(tmp_path, manager):
    write(tmp_path, "m", 1)
    folder = write(tmp_path, "m", 2)
    manager.poll()
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
    manager.poll()
    assert manager.get("m").version == 1
    assert 2 not in state(manager, "m")


def test_removing_a_model_unloads_it(tmp_path, manager):
    folder = write(tmp_path, "m", 1)
    manager.poll()
    (folder / "model").unlink()
    folder.rmdir()
    (tmp_path / "m").rmdir()
    manager.poll()
    with pytest.raises(ServiceError) as err:
        manager.get("m")
    assert err.value.code == grpc.StatusCode.NOT_FOUND


def test_not_found_messages_name_the_model_and_version(tmp_path, manager):
    write(tmp_path, "m", 1)
    write(tmp_path, "broken", 1, "x")
    manager.poll()
    cases = [("nope", None, "model 'nope' is not served (2 model(s) are;"),
             ("m", 7, "model 'm' version 7 is not loaded (serving version 1)"),
             ("broken", None, "model 'broken' has no loaded version (version 1:")]
    for name, version, message in cases:
        with pytest.raises(ServiceError) as err:
            manager.get(name, version)
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        assert message in err.value.message
    with pytest.raises(ServiceError) as err:
        manager.get("")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "model_spec.name: required" in err.value.message


def test_replicas(tmp_path, manager):
    write(tmp_path, "m", 1)
    write(tmp_path, "m-b", 1)
    write(tmp_path, "solo-b", 1)
    manager.poll()
    assert manager.replica_b("m").name == "m-b"
    assert manager.replica_label("m") == "a"
    assert manager.replica_label("m-b") == "b"
    assert manager.replica_label("solo-b") == "a"  # no "solo" beside it: its own model
    assert replica_of("x-b", {"x", "x-b"}) == ("x", "b")


def test_a_loader_crash_is_an_error_state_not_a_server_crash(tmp_path):
    def crashing(name, version, path):
        raise MemoryError("out of memory")

    manager = ModelManager(tmp_path, ServerMetrics(), poll_seconds=0, loader=crashing)
    write(tmp_path, "m", 1)
    manager.poll()
    assert "MemoryError: out of memory" in manager.status("m")[0].error


def test_version_folders_skip_files_and_hidden_folders(tmp_path):
    write(tmp_path, "m", 3)
    (tmp_path / "m" / "7").write_text("a file")
    (tmp_path / "m" / ".tmp-export-1").mkdir()
    assert list(version_folders(tmp_path / "m")) == [3]


def test_the_replaced_version_is_kept_for_the_churn_window(tmp_path, monkeypatch):
    clock = {"now": 100.0}
    monkeypatch.setattr("steadyrank.service.serve.manager.time.monotonic", lambda: clock["now"])
    metrics = ServerMetrics()
    manager = ModelManager(tmp_path, metrics, poll_seconds=0, loader=loader, churn_seconds=60)
    write(tmp_path, "m", 1)
    manager.poll()
    assert manager.previous("m") is None  # the first load replaces nothing
    write(tmp_path, "m", 2)
    manager.poll()
    assert manager.previous("m").version == 1
    assert metrics.churn_window_open.labels("m")._value.get() == 1
    clock["now"] += 59
    assert manager.previous("m").version == 1
    clock["now"] += 1
    assert manager.previous("m") is None  # window over: the old version is let go
    assert metrics.churn_window_open.labels("m")._value.get() == 0


def test_no_churn_window_when_turned_off(tmp_path):
    manager = ModelManager(tmp_path, ServerMetrics(), poll_seconds=0, loader=loader,
                           churn_seconds=0)
    write(tmp_path, "m", 1)
    manager.poll()
    write(tmp_path, "m", 2)
    manager.poll()
    assert manager.previous("m") is None


def test_a_failing_loaded_version_shows_in_its_status_until_it_answers(tmp_path, manager):
    write(tmp_path, "m-b", 4)
    manager.poll()
    replica = manager.get("m-b")
    manager.report_health(replica, "shadow call failed: out of memory")
    (status,) = manager.status("m-b")
    assert (status.state, status.health) == ("AVAILABLE", "shadow call failed: out of memory")
    manager.report_health(replica, "")
    assert manager.status("m-b")[0].health == ""


def test_loaded_versions_export_their_training_and_offline_numbers(tmp_path, manager):
    write(tmp_path, "m", 1)
    manager.poll()
    m = manager.metrics
    assert m.offline_pd.labels("m", "1")._value.get() == 0.03
    assert m.offline_swap.labels("m", "1", "10")._value.get() == 0.2
    assert m.training_seconds.labels("m", "1")._value.get() == 12.5
    assert m.created.labels("m", "1")._value.get() == 1.7e9 + 1
    write(tmp_path, "m", 2)
    manager.poll()
    shutil.rmtree(tmp_path / "m" / "1")
    manager.poll()  # version 1's folder is gone: so are its series
    names = {s.labels.get("version") for f in m.registry.collect() for s in f.samples
             if f.name == "steadyrank_model_offline_prediction_difference_relative"}
    assert names == {"2"}
