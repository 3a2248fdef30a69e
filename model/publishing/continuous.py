"""Continuous training: new shards arrive, and each version learns from them, warm-started.

``steadyrank trainer --follow`` (or ``[data] follow = true``) watches the files the config's
``data.train`` globs name. When files appear that no round has consumed, a round:

1. takes them in time order (by name) as its shards, with the most recent consumed shards
   before them as a replay window of at least ``train.replay_rows`` rows (whole shards);
2. scores the newest shard with the serving version before training on it (progressive
   validation): its log loss (or RMSE) and the share of its rows that meet an
   out-of-vocabulary row;
3. carries the statistics across rounds (each table's value counts, the numeric moments,
   the facts), so the vocabularies grow: a value seen ``min_count`` times gets a row, at most
   ``max_size`` per table by frequency, the rest share the out-of-vocabulary row;
4. trains replicas A and B one pass over its rows, each warm-started from its serving
   version with the rows of every surviving value mapped by value (new values' rows start
   from ``model.embedding_init``), and the optimizer state likewise: the tables' slots by
   value, the tower's Adam moments (saved by the previous round beside its statistics;
   :mod:`steadyrank.model.training.slot_carry`);
5. measures them against each other and the new A against the serving A (the churn gate),
   and publishes them unless the gate holds them back.

Each round's record (its shards, rows, progressive numbers, churn, the gate's decision) goes
into both manifests and into the follow state, ``BASE/.follow-NAME/state.json``, written
atomically after the publish; the round's statistics are written before it. A trainer killed
at any point and started again neither skips nor repeats a shard: a round killed before its
publish is trained again; one published but not yet recorded is recovered from the served
manifest. A round the gate holds back leaves its shards pending, to be trained again (with
the next shards) when more arrive.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from steadyrank.core.errors import DataError
from steadyrank.core.fileio import atomic_write_json
from steadyrank.core.log import Log, say
from steadyrank.model.artifact import reader
from steadyrank.model.artifact.gate import write_follow_status
from steadyrank.model.artifact.layout import RARITY, versions
from steadyrank.model.config import Config
from steadyrank.model.data.batches import concat
from steadyrank.model.data.readers import expand
from steadyrank.model.data.splits import prepare_data
from steadyrank.model.data.stats import merge_stats
from steadyrank.model.data.stats_store import load_stats, save_stats
from steadyrank.model.evaluation.breakdown import rarest_counts
from steadyrank.model.evaluation.evalset import eval_scores
from steadyrank.model.measures.accuracy import accuracy
from steadyrank.model.publishing.replicas import Gate, Round, train_round
from steadyrank.model.training.warmstart import table_row_maps

STATE = "state.json"


@dataclass
class Shard:
    """A consumed file: its path and its rows."""

    path: str
    rows: int


@dataclass
class FollowState:
    """What a following trainer has consumed and published, round by round."""

    round: int = 0
    consumed: list[Shard] = field(default_factory=list)
    stats: str = ""  # the folder (in the state folder) of the statistics so far
    held: list[str] = field(default_factory=list)  # a held-back round's shards
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, folder: Path) -> FollowState:
        """The state in ``folder`` (a fresh one when there is none)."""
        path = folder / STATE
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls(raw["round"], [Shard(**s) for s in raw["consumed"]], raw["stats"],
                   raw.get("held", []), raw.get("rounds", []))

    def write(self, folder: Path) -> None:
        """Writes the state atomically."""
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / STATE, asdict(self))

    @property
    def consumed_paths(self) -> set[str]:
        """The consumed files' paths."""
        return {s.path for s in self.consumed}


# The optimizer state of a round's replicas (tables' slots, tower's moments), beside its
# statistics (``.follow-NAME/stats-ROUND/slots/REPLICA/member-I.npz``): written, kept and
# removed with them, so the next round's replicas carry it (:mod:`..training.slot_carry`).
SLOTS = "slots"


def state_folder(base: str | Path, name: str) -> Path:
    """Where the follow state of model ``name`` lives: ``BASE/.follow-NAME`` (hidden, so a
    server never takes it for a model)."""
    return Path(base) / f".follow-{name}"


def pending(config: Config, state: FollowState) -> list[Path]:
    """The files the config's train globs name that no round has consumed, by name (time
    order)."""
    try:
        found = expand(config.data.train)
    except DataError:  # nothing has arrived yet: no file matches
        return []
    done = state.consumed_paths
    return sorted((p for p in found if str(p) not in done), key=lambda p: p.name)


def replay(state: FollowState, rows: int) -> list[str]:
    """The most recent consumed shards holding at least ``rows`` rows (oldest first)."""
    picked: list[str] = []
    total = 0
    for shard in reversed(state.consumed):
        if total >= rows:
            break
        picked.insert(0, shard.path)
        total += shard.rows
    return picked


def _serving(base: Path, name: str) -> Path | None:
    found = versions(base / name)
    return base / name / str(found[-1]) if found else None


def recover(state: FollowState, base: Path, name: str, folder: Path) -> FollowState:
    """The state with a round that was published but not recorded (the trainer stopped
    between the publish and the state write) taken from the served manifest."""
    serving = _serving(base, name)
    if serving is None:
        return state
    record = reader.read_export_manifest(serving).extra.get("follow")
    if not record or record["round"] <= state.round:
        return state
    stats = f"stats-{record['round']}"
    if not (folder / stats).exists():
        return state
    shards = [Shard(s["path"], s["rows"]) for s in record["shard_rows"]]
    state = replace(state, round=record["round"], stats=stats, held=[],
                    consumed=[*state.consumed, *shards],
                    rounds=[*state.rounds, {**record, "recovered": True}])
    state.write(folder)
    return state


def progressive(serving: Path, prepared: Any) -> dict[str, float]:
    """The serving version on the round's newest shard, before training on it: its accuracy
    and the share of rows that meet an out-of-vocabulary row (``oov_share``)."""
    model = reader.load(serving)
    scores, labels = eval_scores(model, prepared)
    out = {f"progressive_{k}": float(v)
           for k, v in accuracy(prepared.schema.label.task, labels, scores).items()}
    if RARITY in model.signature_defs:
        rows = concat(list(prepared.eval_batches()))
        out["oov_share"] = float(np.mean(rarest_counts(model, rows.inputs) == 0))
    return out


def run_round(config: Config, base: Path, name: str, state: FollowState, shards: list[Path],
              users: int, log: Log, vary: str, gate: Gate | None) -> tuple[Round, FollowState]:
    """Trains, measures and (gate permitting) publishes one round on ``shards``."""
    folder = state_folder(base, name)
    number = state.round + 1
    window = replay(state, config.train.replay_rows) if config.train.replay_rows else []
    files = [*window, *(str(s) for s in shards)]
    round_config = replace(config,
                           data=replace(config.data, train=tuple(files),
                                        eval=(str(shards[-1]),), follow=False),
                           train=replace(config.train, epochs=1))
    started = time.perf_counter()
    prepared = prepare_data(round_config, log=log)
    serving = _serving(base, name)
    numbers = progressive(serving, prepared) if serving is not None else {}
    before = load_stats(folder / state.stats) if state.stats else None
    merged = merge_stats(before, prepared.stats) if before is not None else prepared.stats
    counted = prepared.train.reader.rows_by_file()  # counted once, by prepare_data
    shard_rows = [Shard(str(s), counted[str(s)]) for s in shards]
    stats = f"stats-{number}"
    save_stats(merged, folder / stats)  # before the publish: a restart after it finds them
    warm_rows = (table_row_maps(prepared.schema, config.model, before, merged)
                 if before is not None and serving is not None else None)
    record = {"round": number, "shards": [s.path for s in shard_rows],
              "shard_rows": [asdict(s) for s in shard_rows], "replay": window,
              "rows": int(prepared.train.rows), **numbers}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in numbers.items())
    log(f"round {number}: {len(shards)} new shard(s), {prepared.train.rows:,} rows"
        + (f" ({len(window)} replayed)" if window else "")
        + (f"; the serving version on the newest shard: {shown}" if shown else ""))
    result = train_round(round_config, base, name, users, log, vary,
                         warm_start=serving is not None, gate=gate, warm_epochs=1,
                         warm_lr_scale=1.0, prepared=replace(prepared, stats=merged),
                         warm_rows=warm_rows, record={"follow": record},
                         slot_dirs=(folder / state.stats / SLOTS if state.stats else None,
                                    folder / stats / SLOTS))
    record = {**record, "version": result.version, "published": result.published,
              "churn": result.churn, "seconds": time.perf_counter() - started,
              "time": time.time()}
    if result.published:
        old = state.stats
        state = replace(state, round=number, stats=stats, held=[],
                        consumed=[*state.consumed, *shard_rows],
                        rounds=[*state.rounds, record])
        state.write(folder)
        if old and old != stats:
            shutil.rmtree(folder / old, ignore_errors=True)
    else:
        shutil.rmtree(folder / stats, ignore_errors=True)
        state = replace(state, held=[s.path for s in shard_rows],
                        rounds=[*state.rounds, record])
        state.write(folder)
    return result, state


def follow(config: Config, base: str | Path, name: str, users: int = 100, log: Log = say,
           should_stop: Callable[[float], bool] | None = None, poll_seconds: float = 30.0,
           vary: str = "all", gate: Gate | None = None, max_rounds: int = 0) -> list[Round]:
    """Rounds as shards arrive, until ``should_stop`` (waiting ``poll_seconds`` between
    looks) or ``max_rounds`` rounds (0: no bound)."""
    if poll_seconds <= 0:
        raise ValueError(f"--poll-seconds must be > 0, got {poll_seconds}")
    if max_rounds < 0:
        raise ValueError(f"--max-rounds must be >= 0 (0: no bound), got {max_rounds}")
    base = Path(base)
    folder = state_folder(base, name)
    state = recover(FollowState.read(folder), base, name, folder)
    log(f"following {', '.join(config.data.train)}: {len(state.consumed)} shard(s) consumed "
        f"in {state.round} round(s)")
    rounds: list[Round] = []
    wait = should_stop or (lambda seconds: time.sleep(seconds) or False)
    waiting_since = 0.0
    while not max_rounds or len(rounds) < max_rounds:
        shards = pending(config, state)
        waiting_since = (waiting_since or time.time()) if shards else 0.0
        report(base, name, state, len(shards), waiting_since)
        if not shards or sorted(str(s) for s in shards) == sorted(state.held):
            if wait(poll_seconds):
                break
            continue
        result, state = run_round(config, base, name, state, shards, users, log, vary, gate)
        rounds.append(result)
        left = pending(config, state)
        # Held-back shards have waited since they were first seen; ones that came during
        # a published round, since now.
        since = waiting_since if not result.published else time.time()
        waiting_since = since if left else 0.0
        report(base, name, state, len(left), waiting_since)
    return rounds


def report(base: Path, name: str, state: FollowState, waiting: int, since: float) -> None:
    """Writes the status the server exports: the latest round's numbers, and the shards
    waiting (and since when; 0: none waits)."""
    last = state.rounds[-1] if state.rounds else {}
    numbers = {k: v for k, v in last.items()
               if k.startswith("progressive_") or k in ("oov_share", "rows")}
    write_follow_status(base, name, {
        "model": name, "round": state.round, "published": last.get("published"),
        "round_time": last.get("time"), "pending_shards": waiting, "waiting_since": since,
        "time": time.time(), **numbers})
