"""Atomic writes: a reader sees the old file or the whole new one; a failed write leaves the
old file and no temporary file behind."""

import numpy as np
import pytest

from steadyrank.core.fileio import atomic_file, atomic_write_json, atomic_write_text


def test_a_finished_write_replaces_the_file(tmp_path):
    path = tmp_path / "a.npz"
    with atomic_file(path, "wb") as out:
        np.savez(out, x=np.arange(3))
        assert not path.exists()  # nothing there until the block ends
    with np.load(path) as saved:
        assert saved["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_json(path, {"round": 1})
    with pytest.raises(RuntimeError), atomic_file(path) as out:
        out.write('{"round": 2, "cons')
        raise RuntimeError("killed mid-write")
    assert path.read_text() == '{\n  "round": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_text_is_written_whole(tmp_path):
    atomic_write_text(tmp_path / "t.md", "one\ntwo\n")
    assert (tmp_path / "t.md").read_text() == "one\ntwo\n"
