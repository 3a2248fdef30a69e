"""The README's Python snippets work as written, each in a fresh process."""

import re
import shutil

import numpy as np

from tests.conftest import REPO, run_python, train_small_models


def snippets() -> list[str]:
    """The README's ```python blocks that use steadyrank.ops."""
    text = (REPO / "README.md").read_text()
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S)
            if "import steadyrank.ops as sro" in b]


def test_the_readme_has_the_snippets_this_test_runs():
    found = snippets()
    assert len(found) == 2
    assert any("tf.saved_model.load(" in s for s in found)


def test_the_usage_snippet_runs():
    usage = next(s for s in snippets() if "keras.Sequential" in s)
    result = run_python(usage + "\nprint(y.numpy().tolist(), model(tf.ones([2, 3])).shape)\n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "[0.0, 0.25, 0.5625, 3.0] (2, 1)"


def test_loading_an_export_as_the_readme_says(tiny_data, tmp_path_factory, tmp_path):
    base = train_small_models(tiny_data, tmp_path_factory, prefix="readme")
    shutil.copytree(base / "ml" / "1", tmp_path / "models" / "movielens" / "1")
    loading = next(s for s in snippets() if "tf.saved_model.load(" in s)
    result = run_python(loading, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [float(v) for v in result.stdout.strip().splitlines()[-1].strip("[]").split()]
    from steadyrank.model.artifact import reader

    expected = reader.load(base / "ml" / "1").score_pairs(np.array([1, 1]), np.array([1, 50]))
    np.testing.assert_allclose(printed, expected, rtol=1e-5)
    assert "SmeLU" in reader.op_types(reader.read_saved_model(base / "ml" / "1"))


def _own_data_block() -> list[str]:
    """The commands of README's "Run the stack on your data" block."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"<!-- readme-test: own-data -->\n```sh\n(.*?)```", text, re.S)
    assert found, "README has no own-data block"
    return [line.split("#")[0].strip() for line in found.group(1).strip().splitlines()]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_own_data_steps_run_as_the_readme_says(tmp_path):
    """A newcomer's path: a CSV, the draft, `make up CONFIG=...` (its command, `steadyrank up`),
    then `rank` with a context feature; the model is named after the config."""
    import os
    import shlex
    import signal
    import subprocess
    import sys

    from tests.conftest import wait_for
    from tests.model.test_draft import _events, _write

    lines = _own_data_block()
    draft_cmd, up_cmd, rank_cmd = lines[0], lines[1], " ".join(
        part.rstrip("\\").strip() for part in lines[2:])
    assert draft_cmd == "steadyrank data schema userdata/events.csv > configs/shop.toml"
    assert up_cmd == "make up CONFIG=configs/shop.toml"
    assert rank_cmd.startswith("steadyrank rank --server localhost:8500 --model shop --user ")
    (tmp_path / "userdata").mkdir()
    (tmp_path / "configs").mkdir()
    events = _events(n=1500)
    del events["discount"]  # the README's columns
    _write(events, tmp_path / "userdata" / "events.csv", "csv")
    cli = [sys.executable, "-m", "steadyrank.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # 1. The draft, written where the README writes it.
    args = shlex.split(draft_cmd.split(">")[0])[1:]
    done = subprocess.run([*cli, *args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    (tmp_path / "configs" / "shop.toml").write_text(done.stdout)
    # 2. `make up CONFIG=configs/shop.toml` runs `steadyrank up --config configs/shop.toml`
    # (free ports here, one epoch to be quick).
    assert "$(PY) -m steadyrank.cli up $(if $(CONFIG),--config $(CONFIG))" in (
        REPO / "Makefile").read_text()
    port, metrics, prometheus = _free_port(), _free_port(), _free_port()
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115
    up = subprocess.Popen([*cli, "up", "--config", "configs/shop.toml", "--work", "run",
                           "--port", str(port), "--metrics-port", str(metrics),
                           "--prometheus-port", str(prometheus), "--traffic-rate", "2",
                           "--set", "train.epochs=1"], cwd=tmp_path, env=env, stdout=log,
                          stderr=subprocess.STDOUT)
    try:
        def served() -> bool:
            check = subprocess.run([*cli, "health", "--server", f"localhost:{port}",
                                    "--model", "shop-b"], capture_output=True, env=env)
            return check.returncode == 0

        assert wait_for(served, timeout=600, every=3), (tmp_path / "up.log").read_text()[-4000:]
        assert (tmp_path / "run" / "models" / "shop" / "1" / "manifest.json").exists()
        assert (tmp_path / "run" / "logs" / "trainer.log").exists()
        # 3. The README's rank, on this server's port.
        rank = shlex.split(rank_cmd.replace("localhost:8500", f"localhost:{port}"))[1:]
        done = subprocess.run([*cli, *rank], capture_output=True, text=True, env=env,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert len([line for line in done.stdout.splitlines() if line.strip()]) >= 5
        import urllib.request

        def monitored() -> bool:
            text = urllib.request.urlopen(f"http://localhost:{metrics}/metrics",
                                          timeout=10).read().decode()
            return 'steadyrank_replica_prediction_difference_relative_count{model="shop"' in text

        assert wait_for(monitored, timeout=120, every=2)
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=120)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()[-4000:]
