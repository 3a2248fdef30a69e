"""The named datasets of ``data.dataset``: MovieLens 100K (fetched and cached) and the
synthetic generator's folders, loaded as :class:`Interactions`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steadyrank.core.errors import DataError
from steadyrank.model.config import DATASETS
from steadyrank.model.data import movielens, synth
from steadyrank.model.data.interactions import Interactions

__all__ = ["DATASETS", "fetch_movielens", "load_dataset", "load_movielens", "load_synthetic"]


def fetch_movielens(data_dir: str | Path = "data", source: str | Path | None = None,
                    force: bool = False) -> Path:
    """Fetches and caches MovieLens 100K; see :func:`steadyrank.model.data.movielens.fetch`."""
    return movielens.fetch(Path(data_dir), Path(source) if source else None, force=force)


def load_movielens(folder: str | Path) -> Interactions:
    """Loads a fetched MovieLens 100K folder (verified against its manifest)."""
    tables, manifest = movielens.read_tables(Path(folder))
    ratings = tables["ratings.tsv"]
    users = sorted(tables["users.tsv"], key=lambda r: int(r["user_id"]))
    items = sorted(tables["items.tsv"], key=lambda r: int(r["item_id"]))
    data = Interactions(
        user_id=np.array([int(r["user_id"]) for r in ratings], np.int64),
        item_id=np.array([int(r["item_id"]) for r in ratings], np.int64),
        rating=np.array([float(r["rating"]) for r in ratings], np.float32),
        timestamp=np.array([int(r["timestamp"]) for r in ratings], np.int64),
        user_ids=np.array([int(u["user_id"]) for u in users], np.int64),
        users={
            "age": np.array([int(u["age"]) for u in users], np.int64),
            "gender": np.array([u["gender"] for u in users]),
            "occupation": np.array([u["occupation"] for u in users]),
            "zip": np.array([u["zip"] for u in users]),
        },
        item_ids=np.array([int(i["item_id"]) for i in items], np.int64),
        items={"year": np.array([int(i["year"]) for i in items], np.int64)},
        item_genres=_multi_hot([i["genres"].split("|") for i in items], movielens.GENRES),
        genres=movielens.GENRES,
        checksum=manifest["checksum"],
        meta={"name": manifest.get("name", ""), "source": manifest.get("source", "")},
    )
    unknown_users = np.setdiff1d(data.user_id, data.user_ids)
    unknown_items = np.setdiff1d(data.item_id, data.item_ids)
    if unknown_users.size or unknown_items.size:
        raise DataError(Path(folder) / "ratings.tsv",
                        f"{unknown_users.size} user ids and {unknown_items.size} item ids have "
                        "no row in users.tsv/items.tsv")
    return data


def load_synthetic(folder: str | Path) -> Interactions:
    """Loads a folder written by ``steadyrank data synth`` (verified against its manifest)."""
    manifest, users, items = synth.load_tables(folder)
    shards = list(synth.iter_shards(folder, manifest))
    column = lambda key: np.concatenate([s[key] for s in shards])  # noqa: E731
    return Interactions(
        user_id=column("user_id"), item_id=column("item_id"), rating=column("rating"),
        timestamp=column("timestamp"), user_ids=users["user_id"],
        users={k: users[k] for k in ("age", "gender", "occupation", "zip")},
        item_ids=items["item_id"], items={"year": items["year"]},
        item_genres=items["genres"], genres=tuple(manifest["genres"]),
        checksum=manifest["checksum"], meta={"name": "synthetic", "spec": manifest["spec"]})


def load_dataset(dataset: str, data_dir: str | Path) -> Interactions:
    """Loads a dataset by config name.

    ``movielens-100k`` reads ``data_dir/movielens-100k``, fetching it first when it is not
    cached; ``synthetic`` reads the folder ``data_dir`` written by ``steadyrank data synth``.
    """
    if dataset == "movielens-100k":
        folder = Path(data_dir) / movielens.NAME
        if movielens.read_cache_manifest(folder) is None:
            fetch_movielens(data_dir)
        return load_movielens(folder)
    if dataset == "synthetic":
        return load_synthetic(data_dir)
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")


def _multi_hot(values: list[list[str]], names: tuple[str, ...]) -> np.ndarray:
    index = {name: j for j, name in enumerate(names)}
    out = np.zeros((len(values), len(names)), np.uint8)
    for row, row_values in enumerate(values):
        for value in row_values:
            if value:
                out[row, index[value]] = 1
    return out
