"""Synthetic interactions with Zipf item popularity, side features and a planted model.

The generator streams rows to sharded ``.npz`` files (one shard in memory at a time), so
10^7 rows over 10^6 items take seconds and a few hundred MiB. The folder it writes:

    users.npz              each user's id and facts (the MovieLens preset's user features)
    items.npz              each item's id and facts (a multi-hot one as uint8, its value
                           names in the manifest)
    planted.npz            the ground-truth model the ratings come from
    interactions-NNNNN.npz user id, item id, label, timestamp
    manifest.json          parameters, per-file SHA-256, row counts and the dataset checksum

The planted score is ``b_user + b_item + 2 <u, v> + affinity[user fact] . item facts`` (the
preset's ``SYNTH_AFFINITY``: a user fact against an item multi-hot fact; the
bilinear model, ``planted="bilinear"``), or, with ``planted="mlp"``, biases and affinity plus
a small random deep network (two ReLU layers) over the user and item factors and their
product, a nonlinearity an MLP has to learn. With ``task="rating"`` the rating is
``3.5 + score + noise``, rounded and clipped to 1..5; with ``task="click"`` it is a click
(1) or not (0), Bernoulli of a sigmoid of the standardised score shifted so that about
``click_rate`` of the rows are clicks (train with ``model.task = "binary"`` and
``binary_threshold = 1``). Timestamps increase with the row, so the data is a stream in
time order. The folder is written under a temporary name and renamed into place: an
interrupted run leaves nothing half done.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from steadyrank.core.errors import DataError
from steadyrank.core.fileio import staged_folder
from steadyrank.core.log import Log, sayer
from steadyrank.model.data import dataset_manifest
from steadyrank.model.data.presets import TIME_COLUMN, movielens_schema
from steadyrank.model.data.presets.movielens import (
    SYNTH_AFFINITY,
    SYNTH_ITEM_FACTS,
    SYNTH_ITEM_STORED,
    SYNTH_USER_FACTS,
    SYNTH_USER_STORED,
    Draw,
)

KIND = "steadyrank-synthetic"
# The files' columns are the preset schema's names: ids, label and time per interaction
# shard, each id's facts in users.npz and items.npz, drawn as the preset declares them.
_SCHEMA = movielens_schema()
USER_ID, ITEM_ID = _SCHEMA.user_id.name, _SCHEMA.item_id.name
SHARD_KEYS = (USER_ID, ITEM_ID, _SCHEMA.label.column, TIME_COLUMN)
USER_KEYS = (USER_ID, *SYNTH_USER_STORED)
ITEM_KEYS = (ITEM_ID, *SYNTH_ITEM_STORED)
_DRAWS = {d.column: d for d in (*SYNTH_USER_FACTS, *SYNTH_ITEM_FACTS)}
AFFINITY_USER, AFFINITY_ITEM = (_DRAWS[c] for c in SYNTH_AFFINITY)
MULTI_HOT = tuple(d.column for d in _DRAWS.values() if d.kind == "multi_hot")


@dataclass(frozen=True)
class SynthSpec:
    """What to generate; the same spec and seed always give the same bytes."""

    users: int
    items: int
    rows: int
    seed: int = 0
    shard_rows: int = 1_000_000
    zipf_exponent: float = 1.1
    latent_dim: int = 8
    noise: float = 0.5
    planted: str = "bilinear"
    task: str = "rating"
    click_rate: float = 0.1

    def check(self) -> None:
        """Raises ValueError naming the first bad parameter."""
        if self.planted not in ("bilinear", "mlp"):
            raise ValueError(f"--planted must be bilinear or mlp, got {self.planted!r}")
        if self.task not in ("rating", "click"):
            raise ValueError(f"--task must be rating or click, got {self.task!r}")
        if not 0 < self.click_rate < 1:
            raise ValueError(f"--click-rate must be in (0, 1), got {self.click_rate}")
        for name in ("users", "items", "rows", "shard_rows", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got "
                                 f"{getattr(self, name)}")
        if not self.zipf_exponent > 0:
            raise ValueError(f"zipf exponent must be > 0, got {self.zipf_exponent}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")


_say = sayer("synth")


def _save(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _draw(draw: Draw, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values of one declared fact."""
    if draw.kind == "integers":
        return rng.integers(draw.low, draw.high, n).astype(np.int64)
    if draw.kind == "choice":
        return rng.choice(np.array(draw.values), n, p=list(draw.p) if draw.p else None)
    if draw.kind == "digits":
        return np.char.zfill(rng.integers(0, 10 ** draw.width, n).astype(str), draw.width)
    if draw.kind == "multi_hot":
        count = rng.integers(draw.low, draw.high, n)
        ranks = np.argsort(rng.random((n, len(draw.values) - 1)), axis=1)
        out = np.zeros((n, len(draw.values)), np.uint8)
        out[:, 1:] = ranks < count[:, None]
        return out
    raise ValueError(f"unknown draw kind {draw.kind!r} for {draw.column!r}")


def _facts(id_name: str, n: int, draws: tuple[Draw, ...], stored: tuple[str, ...],
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Ids 1..n and each declared fact, drawn in the declared order, stored in ``stored``'s."""
    drawn = {d.column: _draw(d, n, rng) for d in draws}
    return {id_name: np.arange(1, n + 1, dtype=np.int64), **{c: drawn[c] for c in stored}}


def _side_features(spec: SynthSpec, rng: np.random.Generator) -> tuple[dict, dict]:
    if {f.name for f in _SCHEMA.with_role("user")} != set(SYNTH_USER_STORED) or \
            {f.name for f in _SCHEMA.with_role("item")} != set(SYNTH_ITEM_STORED):
        raise AssertionError("the preset's synthetic facts differ from its schema's")
    return (_facts(USER_ID, spec.users, SYNTH_USER_FACTS, SYNTH_USER_STORED, rng),
            _facts(ITEM_ID, spec.items, SYNTH_ITEM_FACTS, SYNTH_ITEM_STORED, rng))


def affinity_codes(users: dict[str, np.ndarray]) -> np.ndarray:
    """Each user's index into the planted affinity's rows (its affinity fact's value)."""
    return np.searchsorted(np.array(AFFINITY_USER.values), users[AFFINITY_USER.column])


HIDDEN = (32, 16)  # the planted MLP's layers


def _planted(spec: SynthSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    d = spec.latent_dim
    out = {
        "user_factors": rng.normal(0, 1 / np.sqrt(d), (spec.users, d)).astype(np.float32),
        "item_factors": rng.normal(0, 1 / np.sqrt(d), (spec.items, d)).astype(np.float32),
        "user_bias": rng.normal(0, 0.3, spec.users).astype(np.float32),
        "item_bias": rng.normal(0, 0.4, spec.items).astype(np.float32),
        "affinity": rng.normal(0, 0.4, (len(AFFINITY_USER.values), len(AFFINITY_ITEM.values))
                               ).astype(np.float32),
        # Zipf popularity over a random order of the items, so popular ids are spread out.
        "popularity_order": rng.permutation(spec.items).astype(np.int64),
    }
    if spec.planted == "mlp":  # drawn after the bilinear parts: those stay as they were
        sizes = (3 * d, *HIDDEN, 1)
        for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
            out[f"w{k}"] = rng.normal(0, np.sqrt(2.0 / n_in), (n_in, n_out)).astype(np.float32)
            out[f"b{k}"] = rng.normal(0, 0.1, n_out).astype(np.float32)
    return out


def _mlp(planted: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    layers = len(HIDDEN) + 1
    for k in range(layers):
        x = x @ planted[f"w{k}"] + planted[f"b{k}"]
        if k < layers - 1:
            x = np.maximum(x, 0.0)
    return x[:, 0]


def planted_score(planted: dict[str, np.ndarray], user_code: np.ndarray,
                  item_hot: np.ndarray, user_row: np.ndarray, item_row: np.ndarray
                  ) -> np.ndarray:
    """The noise-free planted score of (user row, item row) pairs (0-based rows): bilinear,
    or through the planted MLP when ``planted`` holds one."""
    u, v = planted["user_factors"][user_row], planted["item_factors"][item_row]
    item_share = item_hot[item_row].astype(np.float32)
    item_share /= np.maximum(item_share.sum(axis=1, keepdims=True), 1)
    affinity = np.einsum("ij,ij->i", planted["affinity"][user_code[user_row]],
                         item_share)
    if "w0" in planted:
        d = u.shape[1]
        interaction = _mlp(planted, np.concatenate([u, v, u * v * np.sqrt(d)], axis=1))
    else:
        interaction = 2.0 * np.einsum("ij,ij->i", u, v)
    return planted["user_bias"][user_row] + planted["item_bias"][item_row] + interaction \
        + affinity


def planted_rating(planted: dict[str, np.ndarray], user_code: np.ndarray,
                   item_hot: np.ndarray, user_row: np.ndarray, item_row: np.ndarray
                   ) -> np.ndarray:
    """The noise-free planted rating of (user row, item row) pairs (0-based rows)."""
    return 3.5 + planted_score(planted, user_code, item_hot, user_row, item_row)


def click_logit(planted: dict[str, np.ndarray], score: np.ndarray) -> np.ndarray:
    """The click logit of planted scores: standardised, shifted to the click rate."""
    return (score - planted["score_mean"]) / planted["score_std"] + planted["logit_shift"]


def _calibrate_clicks(spec: SynthSpec, planted: dict[str, np.ndarray],
                      user_code: np.ndarray, item_hot: np.ndarray,
                      rng: np.random.Generator) -> None:
    """Score scale and shift from 10^5 random pairs, so about click_rate of rows click."""
    n = 100_000
    score = planted_score(planted, user_code, item_hot, rng.integers(0, spec.users, n),
                          rng.integers(0, spec.items, n))
    planted["score_mean"] = np.float32(score.mean())
    planted["score_std"] = np.float32(score.std() + 1e-6)
    z = (score - score.mean()) / (score.std() + 1e-6)
    lo, hi = -20.0, 20.0  # bisect the shift: mean click probability = click_rate
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(z + mid)))) < spec.click_rate:
            lo = mid
        else:
            hi = mid
    planted["logit_shift"] = np.float32((lo + hi) / 2)


def generate(spec: SynthSpec, out: str | Path, force: bool = False, log: Log = _say) -> Path:
    """Writes the synthetic dataset described by ``spec`` to the folder ``out``; progress
    lines go to ``log``."""
    spec.check()
    out = Path(out)
    rng = np.random.default_rng(spec.seed)
    started = time.perf_counter()
    with staged_folder(out, force) as tmp_path:
        users, items = _side_features(spec, rng)
        planted = _planted(spec, rng)
        user_code = affinity_codes(users)
        item_hot = items[AFFINITY_ITEM.column]
        if spec.task == "click":
            _calibrate_clicks(spec, planted, user_code, item_hot, rng)
        _save(tmp_path / "users.npz", **users)
        _save(tmp_path / "items.npz", **items)
        _save(tmp_path / "planted.npz", **planted)
        item_cdf = np.cumsum(1.0 / np.arange(1, spec.items + 1) ** spec.zipf_exponent)
        item_cdf /= item_cdf[-1]
        user_cdf = np.cumsum(1.0 / np.arange(1, spec.users + 1) ** 0.5)  # skewed activity
        user_cdf /= user_cdf[-1]
        user_order = rng.permutation(spec.users)
        shards, written = [], 0
        while written < spec.rows:
            n = min(spec.shard_rows, spec.rows - written)
            user_row = user_order[np.minimum(np.searchsorted(user_cdf, rng.random(n)),
                                             spec.users - 1)]
            item_row = planted["popularity_order"][
                np.minimum(np.searchsorted(item_cdf, rng.random(n)), spec.items - 1)]
            score = planted_score(planted, user_code, item_hot, user_row, item_row)
            if spec.task == "click":
                p = 1 / (1 + np.exp(-click_logit(planted, score)))
                label = (rng.random(n) < p).astype(np.float32)
            else:
                raw = 3.5 + score + rng.normal(0, spec.noise, n)
                label = np.clip(np.rint(raw), 1, 5).astype(np.float32)
            name = f"interactions-{len(shards):05d}.npz"
            _save(tmp_path / name, **dict(zip(SHARD_KEYS, (
                users[USER_ID][user_row], items[ITEM_ID][item_row], label,
                (880_000_000 + written + np.arange(n)).astype(np.int64)), strict=True)))
            shards.append({"file": name, "rows": int(n)})
            written += n
            log(f"{written:,}/{spec.rows:,} rows ({len(shards)} shards, "
                 f"{time.perf_counter() - started:.1f}s)")
        manifest = dataset_manifest.write(tmp_path, {
            "kind": KIND, "spec": asdict(spec),
            **{c: list(_DRAWS[c].values) for c in MULTI_HOT}, "shards": shards})
    log(f"wrote {out} ({spec.rows:,} rows, {spec.users:,} users, {spec.items:,} items, "
         f"checksum {manifest['checksum'][:12]}) in {time.perf_counter() - started:.1f}s")
    return out


def read_dataset_manifest(folder: str | Path, verify: bool = True) -> dict:
    """The folder's manifest; with ``verify`` every file is checked against its SHA-256."""
    return dataset_manifest.read(folder, KIND, verify,
                                 missing="missing; generate the data with 'steadyrank data synth'")


def _load(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(path, f"lacks array(s) {', '.join(missing)}")
            return {k: npz[k] for k in keys}
    except (OSError, ValueError) as err:
        raise DataError(path, f"not a readable .npz file: {err}") from None


def iter_shards(folder: str | Path, manifest: dict | None = None, skip: int = 0
                ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yields (first row, arrays) of each interaction shard in turn (user_id, item_id,
    rating, timestamp); shards wholly before row ``skip`` are not read."""
    folder = Path(folder)
    manifest = manifest or read_dataset_manifest(folder)
    first = 0
    for shard in manifest["shards"]:
        if first + shard["rows"] <= skip:
            first += shard["rows"]
            continue
        arrays = _load(folder / shard["file"], SHARD_KEYS)
        if len(arrays[USER_ID]) != shard["rows"]:
            raise DataError(folder / shard["file"], f"has {len(arrays[USER_ID])} rows, "
                            f"manifest says {shard['rows']}")
        yield first, arrays
        first += shard["rows"]


def multi_hot_names(manifest: dict, column: str) -> tuple[str, ...]:
    """The value names of a multi-hot item column (the matrix's columns, in order), as the
    dataset's manifest records them."""
    if column not in MULTI_HOT:
        raise KeyError(f"a synthetic dataset has no multi-hot column {column!r} "
                       f"(it has {', '.join(repr(c) for c in MULTI_HOT)})")
    return tuple(manifest[column])


def load_tables(folder: str | Path) -> tuple[dict, dict[str, np.ndarray],
                                              dict[str, np.ndarray]]:
    """(manifest, users, items) of a synthetic dataset folder, verified."""
    folder = Path(folder)
    manifest = read_dataset_manifest(folder)
    users = _load(folder / "users.npz", USER_KEYS)
    items = _load(folder / "items.npz", ITEM_KEYS)
    return manifest, users, items
