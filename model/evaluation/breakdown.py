"""Where two replicas disagree: their prediction difference by slice of rows and by part of
the model, on the same rows, by inference alone.

- **By rarity:** each row's rarest categorical value, by how many training values its table
  row took (the export's ``rarity`` signature): out of vocabulary (a row training never
  reached), 1, 2-4, 5-99, 100 and more.
- **By score decile:** the deciles of the two replicas' mean score.
- For each slice: its share of the rows, its relative and absolute PD, and its share of the
  total PD (the sum of per-example relative PD over the slice's rows over the sum over all).
- **By component:** replica B with A's embedding tables (the networks alone still differ)
  and B with A's network (the tables alone still differ), each against A. Where the
  disagreement lives is where swapping removes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from steadyrank.model.artifact.layout import RAREST_COUNT, RARITY, RARITY_BUCKETS, rarity_bucket
from steadyrank.model.artifact.reader import ExportError, LoadedModel, as_tensors
from steadyrank.model.measures import metrics

PARTS = ("tables", "network")
DECILES = 10


def rarest_counts(model: LoadedModel, inputs: Mapping[str, np.ndarray], batch: int = 65536
                  ) -> np.ndarray:
    """Each row's rarest value's training count, from the export's ``rarity`` signature."""
    if RARITY not in model.signature_defs:
        raise ExportError(f"{model.path}: no {RARITY} signature (exported before it existed, "
                          "or its schema has no categorical inputs); export it again")
    signature = model.module.signatures[RARITY]
    names = list(model.signature_defs[RARITY].inputs)
    n = len(next(iter(inputs.values())))
    parts = [signature(**as_tensors({k: inputs[k][i:i + batch] for k in names}))[
        RAREST_COUNT].numpy() for i in range(0, n, batch)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def slices(p1: np.ndarray, p2: np.ndarray, labels: np.ndarray, names: list[str]
           ) -> list[dict[str, Any]]:
    """Per slice (``labels`` index into ``names``): rows, share of rows, relative and
    absolute PD, and share of the total relative PD."""
    rel = metrics.relative_pd_per_example(p1, p2)
    ab = metrics.absolute_pd_per_example(p1, p2)
    total = float(rel.sum())
    out = []
    for i, name in enumerate(names):
        inside = labels == i
        n = int(inside.sum())
        out.append({"slice": name, "rows": n, "row_share": n / len(rel),
                    "relative_pd": float(rel[inside].mean()) if n else None,
                    "absolute_pd": float(ab[inside].mean()) if n else None,
                    "pd_share": float(rel[inside].sum()) / total if total > 0 else 0.0})
    return out


def deciles(scores: np.ndarray) -> np.ndarray:
    """The decile (0..9) of each score among ``scores``."""
    cuts = np.quantile(scores, np.linspace(0, 1, DECILES + 1)[1:-1])
    return np.searchsorted(cuts, scores, side="right")


def part_variables(member: Any, part: str) -> list[Any]:
    """A loaded member's variables of one part: ``tables`` (the feature encoder's
    embeddings) or ``network`` (the tower)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
    return list((member.encoder if part == "tables" else member.tower).variables)


def _pairs_of(target: LoadedModel, source: LoadedModel, part: str) -> list[tuple[Any, Any]]:
    """(target's, source's) variables of ``part``, member by member. ExportError when the
    two do not match."""
    ours, theirs = list(target.module.members), list(source.module.members)
    if len(ours) != len(theirs):
        raise ExportError(f"{target.path} has {len(ours)} member(s), {source.path} "
                          f"{len(theirs)}: not replicas of one config")
    pairs = []
    for mine, other in zip(ours, theirs, strict=True):
        a, b = part_variables(mine, part), part_variables(other, part)
        if len(a) != len(b) or any(tuple(x.shape) != tuple(y.shape)
                                   for x, y in zip(a, b, strict=True)):
            raise ExportError(f"{target.path} and {source.path}: their {part} differ in "
                              "shape: not replicas of one config")
        pairs += list(zip(a, b, strict=True))
    return pairs


@contextmanager
def part_swapped(target: LoadedModel, source: LoadedModel, part: str) -> Iterator[None]:
    """``target`` with ``source``'s ``part`` inside the block, its own values put back after
    it (even on an error). One loaded model serves every swap: TensorFlow never frees a
    loaded SavedModel's variables (tensorflow/tensorflow#40171), so loading a fresh copy
    per swap grew a long comparison's memory by two exports a pair."""
    pairs = _pairs_of(target, source, part)
    own = [mine.numpy() for mine, _ in pairs]
    try:
        for mine, other in pairs:
            mine.assign(other)
        yield
    finally:
        for (mine, _), value in zip(pairs, own, strict=True):
            mine.assign(value)


def explain(a: LoadedModel, b: LoadedModel, inputs: Mapping[str, np.ndarray]
            ) -> dict[str, Any]:
    """The breakdown of A's and B's disagreement on the rows ``inputs`` (see the module's
    docstring). B's parts are swapped for A's in place and put back before it returns."""
    pa, pb = a.score(inputs), b.score(inputs)
    counts = rarest_counts(a, inputs)
    out: dict[str, Any] = {
        "rows": int(len(pa)), "relative_pd": metrics.relative_pd(pa, pb),
        "absolute_pd": metrics.absolute_pd(pa, pb),
        "by_rarity": slices(pa, pb, rarity_bucket(counts), [n for n, _ in RARITY_BUCKETS]),
        "by_score_decile": slices(pa, pb, deciles((pa + pb) / 2),
                                  [f"d{i + 1}" for i in range(DECILES)])}
    components = {}
    for part in PARTS:
        with part_swapped(b, a, part):
            pd = metrics.relative_pd(pa, b.score(inputs))
        # With A's tables B differs by its network only, and the other way round.
        left = "network" if part == "tables" else "tables"
        components[left] = {"relative_pd": pd, "share": pd / out["relative_pd"]
                            if out["relative_pd"] > 0 else 0.0,
                            "how": f"B with A's {part}, against A"}
    out["by_component"] = components
    # Replicas from different inits hold their embeddings in different coordinates: then a
    # swapped part does not fit the other's network, and the split does not apply.
    out["parts_interchangeable"] = all(c["relative_pd"] <= out["relative_pd"]
                                       for c in components.values())
    return out


def flat(result: dict[str, Any]) -> dict[str, float]:
    """A breakdown as the scalar metrics of a pair record: each slice's share of the rows
    (``rows_SLICE``) and of the PD (``pd_share_SLICE``), and the PD with only the tables or
    only the network differing (``pd_tables_only``, ``pd_network_only``)."""
    out = {}
    for key in ("by_rarity", "by_score_decile"):
        for s in result[key]:
            out[f"rows_{s['slice']}"] = s["row_share"]
            out[f"pd_share_{s['slice']}"] = s["pd_share"]
    for left, c in result["by_component"].items():
        out[f"pd_{left}_only"] = c["relative_pd"]
    return out


def format_breakdown(result: dict[str, Any]) -> str:
    """The breakdown as text tables."""
    lines = [f"{result['rows']:,} rows: relative PD {result['relative_pd']:.4f}, absolute PD "
             f"{result['absolute_pd']:.4f}", "",
             "where the disagreement lives (B with one part of A, against A):"]
    for left, c in result["by_component"].items():
        lines.append(f"  only the {left} {'differ' if left == 'tables' else 'differs'}: "
                     f"relative PD {c['relative_pd']:.4f} ({c['share']:.0%} of the whole)")
    if not result["parts_interchangeable"]:
        lines.append("  (a swapped part disagrees more than the whole: these replicas' parts "
                     "are not interchangeable, as after different inits, so this split does "
                     "not place the disagreement)")
    for key, title in (("by_rarity", "rarest value's training count"),
                       ("by_score_decile", "score decile")):
        lines += ["", f"{title:32s} {'rows':>8s} {'of rows':>8s} {'rel. PD':>8s} "
                      f"{'abs. PD':>8s} {'of PD':>7s}"]
        for s in result[key]:
            rel = f"{s['relative_pd']:.4f}" if s["relative_pd"] is not None else "-"
            ab = f"{s['absolute_pd']:.4f}" if s["absolute_pd"] is not None else "-"
            lines.append(f"  {s['slice']:30s} {s['rows']:8,} {s['row_share']:8.1%} {rel:>8s} "
                         f"{ab:>8s} {s['pd_share']:7.1%}")
    return "\n".join(lines)
