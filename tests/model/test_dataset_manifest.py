"""The one helper every dataset folder's manifest.json goes through: written atomically with
each file's SHA-256 and a combined checksum, read back verified, bad folders named."""

import json

import pytest

from steadyrank.core.errors import DataError
from steadyrank.core.fileio import combined_checksum, sha256_file
from steadyrank.model.data import dataset_manifest


def folder_with_files(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"alpha")
    (folder / "b.bin").write_bytes(b"beta")
    (folder / ".hidden.tmp").write_bytes(b"in progress")  # never listed
    return folder


def test_write_lists_every_visible_file_and_reads_back_verified(tmp_path):
    folder = folder_with_files(tmp_path)
    written = dataset_manifest.write(folder, {"kind": "k", "rows": 3})
    assert set(written["files"]) == {"a.bin", "b.bin"}
    assert written["files"]["a.bin"] == sha256_file(folder / "a.bin")
    assert written["checksum"] == combined_checksum(written["files"])
    assert list(written)[:2] == ["kind", "rows"]  # the record first, in its order
    assert dataset_manifest.read(folder, kind="k") == written
    assert json.loads((folder / "manifest.json").read_text()) == written
    assert not list(folder.glob(".manifest.json*"))  # no temporary file left
    # Given digests are taken as they are (a stream's shards, hashed as written).
    given = dataset_manifest.write(folder, {"kind": "k"}, {"a.bin": written["files"]["a.bin"]})
    assert set(given["files"]) == {"a.bin"}


def test_bad_folders_are_named(tmp_path):
    folder = folder_with_files(tmp_path)
    with pytest.raises(DataError, match="manifest.json: run the generator first"):
        dataset_manifest.read(folder, missing="run the generator first")
    assert dataset_manifest.verified(folder) is None
    dataset_manifest.write(folder, {"kind": "k"})
    with pytest.raises(DataError, match="not a other dataset \\(kind 'k'\\)"):
        dataset_manifest.read(folder, kind="other")
    (folder / "b.bin").write_bytes(b"changed")
    with pytest.raises(DataError, match="b.bin: SHA-256 does not match"):
        dataset_manifest.read(folder)
    assert dataset_manifest.read(folder, verify=False)["kind"] == "k"
    assert dataset_manifest.verified(folder) is None
    (folder / "b.bin").unlink()
    with pytest.raises(DataError, match="b.bin: missing \\(listed in manifest.json\\)"):
        dataset_manifest.read(folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        dataset_manifest.read(folder)
    (folder / "manifest.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="not a dataset manifest"):
        dataset_manifest.read(folder)
