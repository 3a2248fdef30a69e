"""``steadyrank data synth --schema criteo``: Criteo-shaped click logs from a planted model.

Each row has a 0/1 ``label``, 13 heavy-tailed integer counts ``I1``..``I13`` (log-normal,
some missing) and 26 categorical ids ``C1``..``C26`` as 8-digit hex strings, with Zipf
popularity over cardinalities spaced geometrically from 10 to 10^6 (some missing). Clicks
follow a planted nonlinear model: a random effect per categorical value, low-rank crosses
between pairs of categorical features, a small random network on the log counts, and slow
drift: the effects move linearly from one draw to another over the stream. Rows are in time
order (the Criteo files are days in order); Parquet shards also carry ``ts``, seconds.

Everything is drawn with numpy, vectorised, one shard at a time, written and dropped, so a
10^7-row dataset never sits in memory. The same spec and seed give the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from steadyrank.core.errors import DataError
from steadyrank.core.fileio import atomic_file, sha256_file, staged_folder
from steadyrank.core.log import Log, sayer
from steadyrank.model.data import dataset_manifest
from steadyrank.model.data.presets import CRITEO_CATEGORIES, CRITEO_INTEGERS

KIND = "steadyrank-synthetic-criteo"
FORMATS = ("parquet", "criteo")
CROSSES = ((0, 1), (2, 5), (3, 8), (10, 20), (4, 25), (7, 13))  # crossed feature pairs
SECONDS_PER_ROW = 8.64  # ts: 10^4 rows a day
_say = sayer("synth")


@dataclass(frozen=True)
class CriteoSpec:
    """What to generate; the same spec always gives the same bytes."""

    rows: int
    seed: int = 0
    shard_rows: int = 1_000_000
    format: str = "parquet"
    click_rate: float = 0.25
    zipf_exponent: float = 1.1
    min_cardinality: int = 10
    max_cardinality: int = 1_000_000
    drift: float = 0.5  # how far the effects move over the stream, in their own scale

    def check(self) -> None:
        """ValueError naming the first bad parameter."""
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got "
                             f"{self.format!r}")
        for name in ("rows", "shard_rows", "min_cardinality"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got "
                                 f"{getattr(self, name)}")
        if self.max_cardinality < self.min_cardinality:
            raise ValueError("max_cardinality must be >= min_cardinality")
        if not 0 < self.click_rate < 1:
            raise ValueError(f"--click-rate must be in (0, 1), got {self.click_rate}")
        if not self.zipf_exponent > 0:
            raise ValueError(f"zipf exponent must be > 0, got {self.zipf_exponent}")

    @property
    def cardinalities(self) -> list[int]:
        """C1..C26's cardinalities, geometric from the smallest to the largest."""
        ratio = self.max_cardinality / self.min_cardinality
        return [int(round(self.min_cardinality * ratio ** (j / 25))) for j in range(26)]


@dataclass
class _Planted:
    """The planted model: what decides clicks."""

    cdf: list[np.ndarray]  # per categorical: Zipf CDF over its values
    hex_ids: list[np.ndarray]  # per categorical: each value's 32-bit id
    start: list[np.ndarray]  # per categorical: effect at the stream's start
    end: list[np.ndarray]  # ... and at its end
    cross: list[tuple[np.ndarray, np.ndarray]]  # per crossed pair: factor tables
    mu: np.ndarray  # per count: log-normal location
    sigma: np.ndarray
    missing_int: np.ndarray  # per count: missing rate
    missing_cat: np.ndarray  # per categorical: missing rate
    w1: np.ndarray  # the network on the log counts
    w2: np.ndarray
    bias: float = 0.0


def _plant(spec: CriteoSpec, rng: np.random.Generator) -> _Planted:
    cards = spec.cardinalities
    cdf = []
    for card in cards:
        weights = 1.0 / np.arange(1, card + 1) ** spec.zipf_exponent
        c = np.cumsum(weights)
        cdf.append(c / c[-1])
    hex_ids = [rng.integers(0, 2**32, card, dtype=np.uint64).astype(np.uint32) for card in cards]
    scale = 0.6
    start = [rng.normal(0, scale, card).astype(np.float32) for card in cards]
    end = [s + rng.normal(0, scale * spec.drift, len(s)).astype(np.float32) for s in start]
    cross = [(rng.normal(0, 0.5, (cards[a], 4)).astype(np.float32),
              rng.normal(0, 0.5, (cards[b], 4)).astype(np.float32)) for a, b in CROSSES]
    return _Planted(cdf, hex_ids, start, end, cross,
                    mu=rng.uniform(0.5, 3.0, 13), sigma=rng.uniform(0.5, 1.8, 13),
                    missing_int=rng.uniform(0.0, 0.4, 13),
                    missing_cat=rng.uniform(0.0, 0.2, 26),
                    w1=rng.normal(0, 0.6, (13, 16)).astype(np.float32),
                    w2=rng.normal(0, 0.6, 16).astype(np.float32))


def _hex(ids: np.ndarray, missing: np.ndarray) -> pa.Array:
    """8-digit lowercase hex strings of 32-bit ids (null where missing), built from one
    byte buffer: no per-row Python."""
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    shifts = np.arange(28, -4, -4, dtype=np.uint32)
    chars = digits[(ids[:, None] >> shifts) & 0xF]  # [n, 8]
    keep = ~missing
    data = chars[keep].reshape(-1)
    lengths = np.where(keep, 8, 0).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    valid = pa.py_buffer(np.packbits(keep, bitorder="little"))
    return pa.StringArray.from_buffers(len(ids), pa.py_buffer(offsets), pa.py_buffer(data),
                                       valid)


def _draw(spec: CriteoSpec, planted: _Planted, rng: np.random.Generator, first: int,
          n: int) -> tuple[dict[str, pa.Array], np.ndarray]:
    """The feature columns of rows ``first`` .. ``first + n`` and their click logits
    (without the bias)."""
    progress = ((first + np.arange(n)) / max(spec.rows - 1, 1)).astype(np.float32)
    logit = np.zeros(n, np.float32)
    columns: dict[str, pa.Array] = {}
    values = []
    for j, name in enumerate(CRITEO_CATEGORIES):
        k = np.searchsorted(planted.cdf[j], rng.random(n), side="right")
        k = np.minimum(k, len(planted.cdf[j]) - 1)
        values.append(k)
        missing = rng.random(n) < planted.missing_cat[j]
        effect = planted.start[j][k] + progress * (planted.end[j][k] - planted.start[j][k])
        logit += np.where(missing, 0.0, effect / np.sqrt(26.0)).astype(np.float32)
        columns[name] = _hex(planted.hex_ids[j][k], missing)
    for (a, b), (u, v) in zip(CROSSES, planted.cross, strict=True):
        logit += 0.5 * np.einsum("ij,ij->i", u[values[a]], v[values[b]])
    counts = np.exp(planted.mu + planted.sigma * rng.standard_normal((n, 13))).astype(np.int64)
    hidden = np.tanh(np.log1p(counts).astype(np.float32) @ planted.w1 / 4.0)
    logit += hidden @ planted.w2
    ints = {}
    for j, name in enumerate(CRITEO_INTEGERS):
        missing = rng.random(n) < planted.missing_int[j]
        ints[name] = pa.array(counts[:, j], pa.int64(), mask=missing)
    return {**ints, **columns}, logit


def _shard(spec: CriteoSpec, planted: _Planted, rng: np.random.Generator, first: int,
           n: int) -> pa.Table:
    """Rows ``first`` .. ``first + n`` of the stream, with their clicks."""
    columns, logit = _draw(spec, planted, rng, first, n)
    label = (rng.random(n) < 1 / (1 + np.exp(-(logit + planted.bias)))).astype(np.int64)
    table = {"label": pa.array(label), **columns}
    if spec.format == "parquet":
        table["ts"] = pa.array(((first + np.arange(n)) * SECONDS_PER_ROW).astype(np.int64))
    return pa.table(table)


def calibrated_bias(spec: CriteoSpec, planted: _Planted, sample: int = 50_000) -> float:
    """The bias that makes the expected click share ``click_rate``, on a sample of rows
    drawn along the whole stream (bisection on the mean probability)."""
    n = min(sample, spec.rows)
    rng = np.random.default_rng([spec.seed, 99])
    firsts = np.linspace(0, max(spec.rows - 1000, 0), 10).astype(int)
    logits = np.concatenate([_draw(spec, planted, rng, int(f), max(n // 10, 1))[1]
                             for f in firsts]).astype(np.float64)
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(logits + mid)))).mean() > spec.click_rate:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def _planted(spec: CriteoSpec) -> _Planted:
    """The planted model of ``spec`` (its bias calibrated): the same spec, the same model."""
    planted = _plant(spec, np.random.default_rng(spec.seed))
    planted.bias = calibrated_bias(spec, planted)
    return planted


def shard_count(spec: CriteoSpec) -> int:
    """How many shards the whole stream has."""
    return -(-spec.rows // spec.shard_rows)


def shard_name(spec: CriteoSpec, index: int) -> str:
    """Shard ``index``'s file name (``part-00003.parquet`` or ``day-00003.tsv``)."""
    return (f"part-{index:05d}.parquet" if spec.format == "parquet"
            else f"day-{index:05d}.tsv")


def _write_shard(spec: CriteoSpec, planted: _Planted, index: int, folder: Path
                 ) -> dict[str, Any]:
    """Writes shard ``index`` (rows ``index * shard_rows`` on) into ``folder``, whole: under
    a hidden temporary name, then renamed. Returns its manifest entry."""
    first = index * spec.shard_rows
    n = min(spec.shard_rows, spec.rows - first)
    table = _shard(spec, planted, np.random.default_rng([spec.seed, index]), first, n)
    name = shard_name(spec, index)
    with atomic_file(folder / name, "wb") as out:
        if spec.format == "parquet":
            pq.write_table(table, out, row_group_size=131_072)
        else:
            pa_csv.write_csv(table, out, pa_csv.WriteOptions(
                include_header=False, delimiter="\t", quoting_style="none"))
    return {"file": name, "rows": int(n), "clicks": int(table.column("label").to_numpy().sum()),
            "sha256": sha256_file(folder / name)}


def _write_manifest(spec: CriteoSpec, shards: list[dict[str, Any]], folder: Path
                    ) -> dict[str, Any]:
    rows = sum(s["rows"] for s in shards)
    return dataset_manifest.write(folder, {
        "kind": KIND, "spec": asdict(spec), "cardinalities": spec.cardinalities,
        "shards": [{k: v for k, v in s.items() if k != "sha256"} for s in shards],
        "click_rate": sum(s["clicks"] for s in shards) / max(rows, 1)},
        {s["file"]: s["sha256"] for s in shards})


def generate(spec: CriteoSpec, out: str | Path, force: bool = False, log: Log = _say
             ) -> Path:
    """Writes the dataset to the folder ``out``, shard by shard (into a temporary folder
    renamed into place); returns the folder."""
    spec.check()
    started = time.perf_counter()
    with staged_folder(out, force) as tmp:
        planted = _planted(spec)
        shards: list[dict[str, Any]] = []
        written = 0
        for index in range(shard_count(spec)):
            shards.append(_write_shard(spec, planted, index, tmp))
            written += shards[-1]["rows"]
            rate = written / (time.perf_counter() - started)
            log(f"{written:,}/{spec.rows:,} rows ({len(shards)} shards, {rate:,.0f} rows/s, "
                f"ETA {(spec.rows - written) / rate:,.0f} s)")
        manifest = _write_manifest(spec, shards, tmp)
    out = Path(out)
    log(f"wrote {out} ({spec.rows:,} rows, click rate {manifest['click_rate']:.3f}) in "
        f"{time.perf_counter() - started:.1f}s")
    return out


def stream(spec: CriteoSpec, out: str | Path, start: int | None = None, count: int = 0,
           every: float = 0.0, log: Log = _say,
           sleep: Callable[[float], object] = time.sleep) -> list[str]:
    """Appends shards of the stream to the folder ``out``, each continuing the last (the
    same bytes ``generate`` writes for them), and keeps its ``manifest.json`` current.

    ``start``: the first shard's index (None: the one after the shards already there);
    ``count``: how many to write (0: to the stream's end); ``every``: seconds between shards
    (0: at once), for a live stream a following trainer reads. A shard already present is
    kept, not rewritten. Returns the names written.
    """
    spec.check()
    if every < 0:
        raise ValueError(f"--every must be >= 0 seconds, got {every}")
    if count < 0:
        raise ValueError(f"--shards must be >= 0, got {count}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    shards: list[dict[str, Any]] = []
    if manifest_path.exists():
        old = dataset_manifest.read(out, verify=False)
        if old.get("kind") != KIND or old.get("spec") != asdict(spec):
            raise DataError(out, "holds a stream of another spec "
                            f"({old.get('spec')}); use a new folder or the same flags")
        shards = [{**s, "sha256": old["files"][s["file"]]} for s in old["shards"]]
    total = shard_count(spec)
    present = {s["file"] for s in shards}
    first = len(shards) if start is None else start
    if start is None and first == total:
        log(f"{out}: the stream is complete ({total} shards); nothing to append")
        return []
    if not 0 <= first < total:
        raise ValueError(f"--start-shard must be in [0, {total - 1}] (the stream has {total} "
                         f"shards of {spec.shard_rows:,} rows), got {first}")
    last = total if not count else min(total, first + count)
    planted = _planted(spec)
    written: list[str] = []
    for index in range(first, last):
        if written and every:
            sleep(every)
        name = shard_name(spec, index)
        if name in present and (out / name).exists():
            log(f"{out / name} is already there: kept")
            continue
        entry = _write_shard(spec, planted, index, out)
        shards = sorted([s for s in shards if s["file"] != name] + [entry],
                        key=lambda s: s["file"])
        _write_manifest(spec, shards, out)
        written.append(name)
        log(f"wrote {out / name} (shard {index + 1}/{total}, rows "
            f"{index * spec.shard_rows:,}+{entry['rows']:,})")
    return written
