"""A bounded, rotating sample of the requests a server answered, for replay.

``steadyrank serve --record-requests DIR`` keeps a fraction (``--record-rate``) of the rows
it scores with ``serving_default`` (``Predict`` rows, and each ``Rank`` query as its rows) in
``DIR/MODEL/requests-NNNNNN.npz`` files (``DIR/worker-N/MODEL/`` under ``--workers``) of
``REQUESTS_PER_FILE`` requests each, at most ``--record-files`` files per model and worker
(the oldest go first). Files are written by a background thread, to a temporary name and
renamed, so a reader never sees half a file; recording never blocks or fails a request (a full queue
drops the sample). ``steadyrank monitor --requests DIR`` replays them.

A file holds, for request k, one array per input (``k/NAME``; strings as unicode) and
``k/__ranked__`` (whether the rows are one user's candidates). No pickles.
"""

from __future__ import annotations

import logging
import queue
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steadyrank.core.fileio import atomic_file

log = logging.getLogger("steadyrank.recorder")
REQUESTS_PER_FILE = 200
RANKED = "__ranked__"
FILE_RE = re.compile(r"^requests-(\d{6})\.npz$")


@dataclass(frozen=True)
class Recorded:
    """One recorded request: its rows by input name, and whether it ranks one user's
    candidates."""

    rows: dict[str, np.ndarray]
    ranked: bool


def _storable(values: np.ndarray) -> np.ndarray:
    """Arrays savez can hold without pickles: strings (object or bytes) as unicode."""
    values = np.asarray(values)
    if values.dtype == object or values.dtype.kind == "S":
        return np.array([v.decode() if isinstance(v, bytes) else str(v)
                         for v in values.reshape(-1).tolist()], str).reshape(values.shape)
    return values


class RequestRecorder:
    """Samples answered requests into rotating files under ``folder``."""

    def __init__(self, folder: str | Path, rate: float = 0.01, max_files: int = 50,
                 per_file: int = REQUESTS_PER_FILE, seed: int | None = None,
                 max_queue: int = 1000) -> None:
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"--record-rate {rate}: must be in (0, 1]")
        if max_files < 1 or per_file < 1:
            raise ValueError(f"--record-files {max_files}: must be >= 1")
        self.folder = Path(folder)
        self.rate, self.max_files, self.per_file = rate, max_files, per_file
        self._random = random.Random(seed)
        self._queue: queue.Queue[tuple[str, Recorded] | None] = queue.Queue(max_queue)
        self._pending: dict[str, list[Recorded]] = {}
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def start(self) -> None:
        """Starts the writer thread."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Writes what is pending and stops the writer thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def offer(self, model: str, rows: dict[str, np.ndarray], ranked: bool) -> bool:
        """Samples one answered request's rows; never blocks. Whether it was kept."""
        if self._thread is None or self._random.random() >= self.rate:
            return False
        try:
            self._queue.put_nowait((model, Recorded(dict(rows), ranked)))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                for model in list(self._pending):
                    self._flush(model)
                return
            model, record = item
            self._pending.setdefault(model, []).append(record)
            if len(self._pending[model]) >= self.per_file:
                self._flush(model)

    def _flush(self, model: str) -> None:
        records = self._pending.pop(model, [])
        if not records:
            return
        try:
            folder = self.folder / model
            folder.mkdir(parents=True, exist_ok=True)
            existing = files(folder)
            number = int(FILE_RE.match(existing[-1].name).group(1)) + 1 if existing else 0
            arrays = {}
            for k, record in enumerate(records):
                arrays[f"{k}/{RANKED}"] = np.array(record.ranked)
                for name, values in record.rows.items():
                    arrays[f"{k}/{name}"] = _storable(values)
            target = folder / f"requests-{number:06d}.npz"
            with atomic_file(target, "wb") as out:
                np.savez(out, **arrays)
            for old in files(folder)[:-self.max_files]:
                old.unlink(missing_ok=True)
        except OSError as err:  # a full disk drops samples, never a request
            log.warning("could not record %d request(s) of %s: %s", len(records), model, err)


def files(folder: str | Path) -> list[Path]:
    """The request files of a model folder, oldest first."""
    try:
        return sorted(p for p in Path(folder).iterdir() if FILE_RE.match(p.name))
    except OSError:
        return []


def model_files(folder: str | Path, model: str) -> list[Path]:
    """Every request file of ``model`` under a --record-requests folder (``DIR/MODEL``, and
    ``DIR/worker-N/MODEL`` of a server with several workers), oldest first."""
    folder = Path(folder)
    places = [folder / model, *sorted(p / model for p in folder.glob("worker-*"))]
    found = [f for place in places for f in files(place)]
    return sorted(found, key=lambda f: (f.stat().st_mtime, str(f)))


def read(folder: str | Path, model: str) -> Iterator[Recorded]:
    """The recorded requests of ``model`` under a --record-requests folder, oldest file
    first. ValueError naming a file that is not a request file."""
    for path in model_files(folder, model):
        try:
            with np.load(path, allow_pickle=False) as data:
                grouped: dict[int, dict[str, np.ndarray]] = {}
                for key in data.files:
                    index, _, name = key.partition("/")
                    grouped.setdefault(int(index), {})[name] = data[key]
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path}: not a recorded-requests file: {err}") from None
        for index in sorted(grouped):
            rows = grouped[index]
            ranked = bool(rows.pop(RANKED, np.array(False)))
            yield Recorded({k: v.astype(object) if v.dtype.kind == "U" else v
                            for k, v in rows.items()}, ranked)
