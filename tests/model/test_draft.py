"""`steadyrank data schema`: the draft's guesses on files of known shapes (CSV and Parquet):
joined lists, skewed numbers, the two ids and the ids' facts."""

import csv
import tomllib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steadyrank.model.data import draft


def _events(n=4000, seed=0):
    """A click log as a new user's: event_time, customer (few, repeating), article_code
    (many), category_path joined with '|', a log-normal price with 5% missing, channel, a
    segment fixed per customer and a colour fixed per article, purchased."""
    rng = np.random.default_rng(seed)
    customers = np.array([f"c{i:04d}" for i in range(250)])
    articles = np.array([f"A{i:05d}" for i in range(1500)])
    segment = dict(zip(customers, rng.choice(["gold", "silver", "basic"], 250), strict=True))
    colour = dict(zip(articles, rng.choice(["red", "blue", "green", "black"], 1500),
                      strict=True))
    tags = np.array(["men", "women", "kids", "sale", "new", "eco"])
    who = customers[np.minimum(rng.zipf(1.4, n) - 1, 249)]
    what = articles[rng.integers(0, 1500, n)]
    rows = {"event_time": 1_700_000_000 + 60 * np.arange(n), "customer": who,
            "article_code": what,
            "category_path": ["|".join(rng.choice(tags, rng.integers(1, 4), replace=False))
                              for _ in range(n)],
            "unit_price": np.where(rng.random(n) < 0.05, np.nan,
                                   np.round(rng.lognormal(3, 1.5, n), 2)),
            "channel": rng.choice(["web", "app", "store"], n),
            "segment": [segment[c] for c in who], "colour": [colour[a] for a in what],
            "discount": np.round(rng.normal(10, 2, n), 2),
            "purchased": (rng.random(n) < 0.1).astype(int)}
    return rows


def _write(rows, path, fmt):
    if fmt == "parquet":
        pq.write_table(pa.table(rows), path)
        return
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(list(rows))
        for i in range(len(next(iter(rows.values())))):
            out.writerow(["" if isinstance(v[i], float) and np.isnan(v[i]) else v[i]
                          for v in rows.values()])


def _features(text):
    parsed = tomllib.loads(text)
    return parsed, {f["name"]: f for f in parsed["features"]}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_draft_guesses_lists_skew_ids_and_facts(tmp_path, fmt):
    path = tmp_path / f"events.{fmt}"
    _write(_events(), path, fmt)
    text = draft.draft(str(path), rows=3000)
    parsed, features = _features(text)
    assert parsed["data"]["time_column"] == "event_time"
    assert parsed["label"] == {"column": "purchased", "task": "binary"}
    # A '|'-joined column is a list, its max_len the 99th percentile of the sample's lengths.
    path_feature = features["category_path"]
    assert path_feature["kind"] == "multi_hot" and path_feature["separator"] == "|"
    assert path_feature["max_len"] == 3
    # Log-normal prices span orders of magnitude: log1p; a normal number: standardize.
    assert features["unit_price"]["transform"] == "log1p"
    assert features["discount"]["transform"] == "standardize"
    # The two ids, with why; the customer's segment and the article's colour as facts.
    assert features["customer"]["role"] == "user_id"
    assert features["article_code"]["role"] == "item_id"
    assert features["segment"]["role"] == "user" and features["colour"]["role"] == "item"
    assert features["channel"]["role"] == "context"
    assert "its name hints at a user" in text and "its name hints at an item" in text


def test_ids_without_name_hints_are_ranked_by_how_often_they_repeat(tmp_path):
    rows = _events()
    renamed = {"event_time": rows["event_time"], "a": rows["customer"],
               "b": rows["article_code"], "purchased": rows["purchased"]}
    path = tmp_path / "plain.parquet"
    _write(renamed, path, "parquet")
    text = draft.draft(str(path), rows=3000)
    _, features = _features(text)
    # Names say nothing; string columns of many values are ids: the one whose values
    # repeat more is the user (a user acts many times), the other the item.
    assert features["a"]["role"] == "user_id" and features["b"]["role"] == "item_id"
    assert "no name hint; more repeats per value" in text


def test_a_comma_is_not_a_separator_in_a_comma_delimited_file_but_is_in_a_tsv(tmp_path):
    rows = {"user_id": ["u1", "u2", "u3"] * 30, "genres": ["a;b", "b;c", "a"] * 30,
            "label": [0, 1, 0] * 30}
    path = tmp_path / "g.csv"
    _write(rows, path, "csv")
    _, features = _features(draft.draft(str(path), rows=100))
    assert features["genres"]["kind"] == "multi_hot" and features["genres"]["separator"] == ";"
    tsv = tmp_path / "t.csv"
    tsv.write_text("user_id\ttags\tlabel\n" + "".join(f"u{i % 7}\tx,y\t{i % 2}\n"
                                                        for i in range(60)))
    _, features = _features(draft.draft(str(tsv), rows=100, delimiter="\t"))
    assert features["tags"]["kind"] == "multi_hot" and features["tags"]["separator"] == ","
    summary = draft.summarize(pa.table({"x": ["a,b", "c,d"]}), delimiter=",")
    assert summary[0].separator == ""  # a comma-delimited file has no comma lists
