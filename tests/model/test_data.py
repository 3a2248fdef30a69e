"""MovieLens 100K fetching, caching, parsing of bad files, and deterministic splits."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from steadyrank.cli.main import main as cli_main
from steadyrank.core.errors import DataError
from steadyrank.model import config as cfg
from steadyrank.model.data import movielens
from steadyrank.model.data.sources import fetch_movielens, movielens_table
from steadyrank.model.data.splits import carve, prepare_data


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


def test_loaded_rows_are_consistent(ml100k):
    table, checksum = movielens_table(ml100k)
    assert table.num_rows == 100_000
    rating = table.column("rating").to_numpy()
    assert rating.min() == 1 and rating.max() == 5
    assert abs(float(rating.mean()) - 3.52986) < 1e-4  # the published mean rating
    users = np.unique(table.column("user_id").to_numpy())
    items = np.unique(table.column("item_id").to_numpy())
    assert len(users) == 943 and len(items) == 1682
    assert set(table.column("gender").to_pylist()) == {"F", "M"}
    assert len(set(table.column("occupation").to_pylist())) == 21
    genres = table.column("genres").to_pylist()
    assert sum(len(g) > 1 for g in genres) > 50_000  # multi-hot genres, joined per row
    assert len(checksum) == 64


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
        movielens_table(copy)
    with pytest.raises(DataError, match="manifest.json: missing"):
        movielens_table(tmp_path / "nowhere")


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


def test_split_is_deterministic_disjoint_and_the_same_as_before(ml100k):
    config = cfg.from_dict({"data": {"data_dir": str(ml100k.parent), "split_seed": 7}})
    a, b = prepare_data(config), prepare_data(config)
    assert a.train.rows == 80_000 and a.eval.rows == 20_000
    np.testing.assert_array_equal(a.train.mask, b.train.mask)
    assert not (a.train.mask & a.eval.mask).any() and (a.train.mask | a.eval.mask).all()
    # The eval rows are the last fifth of a permutation drawn from the split seed, as they
    # were when datasets were loaded whole (so committed reports compare like with like).
    order = np.random.default_rng(7).permutation(100_000)
    np.testing.assert_array_equal(np.flatnonzero(a.eval.mask), np.sort(order[80_000:]))
    other = carve(100_000, 0.2, 8, "random", None)
    assert not np.array_equal(other, a.eval.mask)


def test_time_split_puts_the_latest_rows_in_eval(ml100k):
    config = cfg.from_dict({"data": {"data_dir": str(ml100k.parent), "split": "time",
                                     "eval_fraction": 0.1}})
    prepared = prepare_data(config)
    table, _ = movielens_table(ml100k)
    times = table.column("timestamp").to_numpy()
    assert times[prepared.train.mask].max() <= times[prepared.eval.mask].min()
    assert prepared.eval.rows == 10_000
    with pytest.raises(ValueError, match="'random' or 'time'"):
        carve(10, 0.2, 0, "user", None)
    with pytest.raises(ValueError, match="eval_fraction"):
        carve(10, 1.5, 0, "random", None)
