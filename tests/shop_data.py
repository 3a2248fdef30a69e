"""A shop's click log with column names SteadyRank never saw (string shopper ids, int sku
ids, item facts, context features, a multi-hot list), its config, and a Criteo-format TSV:
the generated data of the bring-your-own-data and the serving tests."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROWS = 6000
CONFIG = """
[data]
format = "{fmt}"
train = ["{folder}/train-*.{ext}"]
eval = ["{folder}/eval-*.{ext}"]
time_column = "ts"
{csv}

[label]
column = "clicked"
task = "binary"

[[features]]
name = "shopper"
kind = "categorical"
role = "user_id"
dtype = "string"

[[features]]
name = "sku"
kind = "categorical"
role = "item_id"
dtype = "int64"

[[features]]
name = "brand"
kind = "categorical"
role = "item"
dtype = "string"
min_count = 3

[[features]]
name = "price"
kind = "numeric"
role = "item"
transform = "log1p"
fill = 0.0

[[features]]
name = "device"
kind = "categorical"
role = "context"
dtype = "string"
hash_buckets = 64

[[features]]
name = "hour"
kind = "numeric"
role = "context"
transform = "standardize"

[[features]]
name = "tags"
kind = "multi_hot"
role = "item"
dtype = "string"
separator = "|"
max_len = 4

[model]
embedding_dim = 8
deep_layers = [16, 8]

[train]
epochs = 2
batch_size = 256
learning_rate = 0.01
"""


def click_log(n: int = ROWS, seed: int = 0) -> pa.Table:
    """A click log from a planted model: shoppers and skus with a taste each, a device
    effect, and a sku's brand, price and tags fixed per sku."""
    rng = np.random.default_rng(seed)
    shoppers = np.array([f"s{i:03d}" for i in range(120)], object)
    skus = np.arange(1000, 1200)
    brand = rng.choice(np.array(["acme", "bolt", "core", "dyna", "rare1", "rare2"], object),
                       len(skus), p=[0.3, 0.3, 0.2, 0.19, 0.005, 0.005])
    price = np.round(rng.lognormal(3, 1, len(skus)), 2)
    tag_names = np.array(["new", "sale", "eco", "kids", "pro"], object)
    tags = [list(rng.choice(tag_names, rng.integers(0, 4), replace=False)) for _ in skus]
    taste_s, taste_i = rng.normal(0, 1, len(shoppers)), rng.normal(0, 1, len(skus))
    s, i = rng.integers(0, len(shoppers), n), rng.integers(0, len(skus), n)
    device = rng.choice(np.array(["ios", "android", "web"], object), n)
    hour = rng.integers(0, 24, n).astype(np.float64)
    logit = taste_s[s] + taste_i[i] + np.where(device == "ios", 0.5, -0.3) - 0.8
    clicked = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    price_col = price[i].astype(object)
    price_col[rng.random(n) < 0.1] = None  # 10% missing: filled with 0
    return pa.table({"shopper": shoppers[s], "sku": skus[i], "brand": brand[i],
                     "price": pa.array(list(price_col), pa.float64()), "device": device,
                     "hour": hour, "tags": pa.array([tags[k] for k in i],
                                                    pa.list_(pa.string())),
                     "ts": np.arange(n, dtype=np.int64) * 60, "clicked": clicked})


def write_csv(table: pa.Table, path: Path, header: bool = True) -> None:
    """The table as CSV, multi-hot lists joined with '|', missing values empty."""
    columns = table.column_names
    lines = [",".join(columns)] if header else []
    for row in table.to_pylist():
        cells = []
        for c in columns:
            value = row[c]
            cells.append("|".join(value) if isinstance(value, list)
                         else "" if value is None else str(value))
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def write_dataset(folder: Path, fmt: str, table: pa.Table | None = None) -> Path:
    """Train in two files, eval in one."""
    folder.mkdir(parents=True, exist_ok=True)
    table = table if table is not None else click_log()
    parts = {"train-0": table.slice(0, 2500), "train-1": table.slice(2500, 2300),
             "eval-0": table.slice(4800)}
    for name, part in parts.items():
        if fmt == "parquet":
            pq.write_table(part, folder / f"{name}.parquet", row_group_size=700)
        else:
            write_csv(part, folder / f"{name}.csv")
    return folder


def write_config(path: Path, folder: Path, fmt: str) -> Path:
    ext = "parquet" if fmt == "parquet" else "csv"
    csv = 'delimiter = ","\nheader = true' if fmt == "csv" else ""
    path.write_text(CONFIG.format(fmt=fmt, folder=folder, ext=ext, csv=csv))
    return path




def criteo_lines(rows: int = 3000, seed: int = 3) -> str:
    """Criteo-format TSV: a label, 13 integer counts and 26 hex categories, 20% and 10% of
    them missing, the label planted on the first category."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(rows):
        ints = [str(int(v)) if rng.random() > 0.2 else "" for v in rng.poisson(5, 13)]
        cats = [f"{rng.integers(0, 30):08x}" if rng.random() > 0.1 else "" for _ in range(26)]
        label = int(rng.random() < 1 / (1 + np.exp(-(int(cats[0] or "0", 16) % 7 - 3))))
        lines.append("\t".join([str(label), *ints, *cats]))
    return "\n".join(lines) + "\n"


def serving_table(table: pa.Table) -> pa.Table:
    """The click log with string sku ids ("k1000") and two user facts: ``tier`` and the
    multi-hot ``likes``."""
    skus = pa.array([f"k{v}" for v in table.column("sku").to_pylist()])
    shoppers = [int(s[1:]) for s in table.column("shopper").to_pylist()]
    tiers = pa.array(["gold" if s % 3 == 0 else "basic" for s in shoppers])
    topics = ["games", "books", "garden", "music"]
    likes = pa.array([topics[s % 4:s % 4 + 1 + s % 2] for s in shoppers],
                     pa.list_(pa.string()))
    table = table.set_column(table.column_names.index("sku"), "sku", skus)
    return table.append_column("tier", tiers).append_column("likes", likes)


def serving_config(config: str) -> str:
    """The config of :func:`serving_table`: string item ids and the user facts."""
    item = 'role = "item_id"\ndtype = "int64"'
    assert item in config
    facts = ('[[features]]\nname = "tier"\nkind = "categorical"\nrole = "user"\n'
             'dtype = "string"\n\n[[features]]\nname = "likes"\nkind = "multi_hot"\n'
             'role = "user"\ndtype = "string"\nmax_len = 3\n\n')
    return config.replace(item, 'role = "item_id"\ndtype = "string"').replace(
        "[model]", facts + "[model]")
