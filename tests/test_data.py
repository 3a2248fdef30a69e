"""MovieLens 100K fetching, caching, parsing of bad files, and deterministic splits."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.core.errors import DataError
from steadyrank.model.data import movielens
from steadyrank.model.data.interactions import split
from steadyrank.model.data.sources import fetch_movielens, load_movielens


def _write_grouplens(canonical: Path, out: Path) -> Path:
    """Writes the original GroupLens layout (u.data, u.user, u.item) from canonical files."""
    tables, _ = movielens.read_tables(canonical)
    out.mkdir(parents=True, exist_ok=True)
    (out / "u.data").write_text("".join(
        f"{r['user_id']}\t{r['item_id']}\t{r['rating']}\t{r['timestamp']}\n"
        for r in tables["ratings.tsv"]))
    (out / "u.user").write_text("".join(
        f"{u['user_id']}|{u['age']}|{u['gender']}|{u['occupation']}|{u['zip']}\n"
        for u in tables["users.tsv"]))
    lines = []
    for item in tables["items.tsv"]:
        genres = set(item["genres"].split("|"))
        flags = "|".join("1" if g in genres else "0" for g in movielens.GENRES)
        date = f"01-Jan-{item['year']}" if item["year"] != "0" else ""
        lines.append(f"{item['item_id']}|Title {item['item_id']}|{date}||http://x|{flags}\n")
    (out / "u.item").write_bytes("".join(lines).encode("latin-1"))
    return out


def test_fetch_from_wheel_verifies_and_caches(ml100k, recbole_wheel, capsys):
    manifest = json.loads((ml100k / "manifest.json").read_text())
    assert manifest["rows"] == {"ratings.tsv": 100_000, "users.tsv": 943, "items.tsv": 1682}
    assert manifest["source"] == "recbole==1.2.1"
    # A second fetch finds the verified cache and does not rewrite it.
    before = (ml100k / "ratings.tsv").stat().st_mtime_ns
    assert movielens.fetch(ml100k.parent, wheel=recbole_wheel) == ml100k
    assert (ml100k / "ratings.tsv").stat().st_mtime_ns == before
    assert "cached and verified" in capsys.readouterr().err


def test_loaded_arrays_are_consistent(ml100k):
    data = load_movielens(ml100k)
    assert len(data) == 100_000
    assert data.rating.min() == 1 and data.rating.max() == 5
    assert abs(float(data.rating.mean()) - 3.52986) < 1e-4  # the published mean rating
    assert len(data.user_ids) == 943 and len(data.item_ids) == 1682
    assert set(np.unique(data.users["gender"])) == {"F", "M"}
    assert len(np.unique(data.users["occupation"])) == 21
    assert (data.item_genres.sum(axis=1) > 1).sum() > 500  # multi-hot genres
    assert len(data.checksum) == 64


def test_grouplens_folder_and_zip_give_the_same_data(ml100k, tmp_path):
    folder = _write_grouplens(ml100k, tmp_path / "ml-100k")
    from_folder = fetch_movielens(tmp_path / "a", source=folder)
    zpath = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name in ("u.data", "u.user", "u.item"):
            zf.write(folder / name, f"ml-100k/{name}")
    from_zip = fetch_movielens(tmp_path / "b", source=zpath)
    ref = json.loads((ml100k / "manifest.json").read_text())
    for got in (from_folder, from_zip):
        files = json.loads((got / "manifest.json").read_text())["files"]
        assert files == ref["files"]


def test_corrupted_cache_is_detected(ml100k, tmp_path):
    copy = tmp_path / "movielens-100k"
    copy.mkdir()
    for f in ml100k.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    with open(copy / "ratings.tsv", "a") as f:
        f.write("1\t1\t5\t0\n")
    with pytest.raises(DataError, match="do not match manifest.json"):
        load_movielens(copy)
    with pytest.raises(DataError, match="manifest.json: missing"):
        load_movielens(tmp_path / "nowhere")


@pytest.mark.parametrize("corruption, message", [
    (lambda d: (d / "u.item").unlink(), "missing u.item"),
    (lambda d: (d / "u.data").write_text("1\t2\tfive\t3\n"), "u.data: line 1: rating is not"),
    (lambda d: (d / "u.data").write_text("1\t2\t9\t3\n"), "u.data: line 1: rating 9 is outside"),
    (lambda d: (d / "u.data").write_text("1 2 3 4\n"), "u.data: line 1: expected 4 fields"),
    (lambda d: (d / "u.user").write_text("1|x|M|writer|00000\n"), "u.user: line 1: age"),
    (lambda d: (d / "u.data").write_text("1\t2\t3\t4\n"), "expected 100000 rows, got 1"),
])
def test_bad_grouplens_files_name_the_file_and_problem(ml100k, tmp_path, corruption, message):
    folder = _write_grouplens(ml100k, tmp_path / "src")
    corruption(folder)
    with pytest.raises(DataError, match=message):
        fetch_movielens(tmp_path / "out", source=folder)
    assert not (tmp_path / "out" / "movielens-100k").exists()  # nothing half-written


def test_bad_sources(tmp_path, recbole_wheel):
    not_zip = tmp_path / "ml.zip"
    not_zip.write_text("hello")
    with pytest.raises(DataError, match="not a zip file"):
        fetch_movielens(tmp_path / "o", source=not_zip)
    with pytest.raises(DataError, match="no such file"):
        fetch_movielens(tmp_path / "o", source=tmp_path / "missing.zip")
    fake = tmp_path / movielens.RECBOLE_WHEEL_FILE
    fake.write_bytes(recbole_wheel.read_bytes()[:-10])
    with pytest.raises(DataError, match="does not match the pinned"):
        movielens.fetch(tmp_path / "o", wheel=fake)


def test_cli_fetch_reports_errors_with_the_file(tmp_path, capsys):
    assert cli_main(["data", "fetch", "movielens-100k", "--data-dir", str(tmp_path),
                     "--from", str(tmp_path / "nope.zip")]) == 1
    assert "nope.zip: no such file or folder" in capsys.readouterr().err
    assert cli_main(["data", "fetch", "netflix", "--data-dir", str(tmp_path)]) == 2


def test_split_is_deterministic_and_disjoint(ml100k):
    data = load_movielens(ml100k)
    a_train, a_eval = split(data, 0.2, seed=7)
    b_train, b_eval = split(data, 0.2, seed=7)
    c_train, _ = split(data, 0.2, seed=8)
    assert len(a_eval) == 20_000 and len(a_train) == 80_000
    np.testing.assert_array_equal(a_train.user_id, b_train.user_id)
    np.testing.assert_array_equal(a_eval.timestamp, b_eval.timestamp)
    assert not np.array_equal(a_train.item_id, c_train.item_id)
    keys = lambda d: set(zip(d.user_id.tolist(), d.item_id.tolist(), strict=True))  # noqa: E731
    assert not keys(a_train) & keys(a_eval)


def test_time_split_puts_the_latest_rows_in_eval(ml100k):
    data = load_movielens(ml100k)
    train, evaluation = split(data, 0.1, by="time")
    assert train.timestamp.max() <= evaluation.timestamp.min()
    with pytest.raises(ValueError, match="'random' or 'time'"):
        split(data, by="user")
    with pytest.raises(ValueError, match="eval_fraction"):
        split(data, 1.5)
