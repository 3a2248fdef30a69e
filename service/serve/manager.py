"""Model management in TF Serving's layout: ``BASE/NAME/VERSION/``, polled for new versions.

Every non-hidden folder under the base path is a model name; ``NAME-b`` beside ``NAME`` is
the second replica of ``NAME`` (the monitor compares the two). The highest version of a name
that loads and warms up is served. A new version is loaded beside the old one, which keeps
answering until the new one is ready; then the serving reference is swapped, so no request
fails during a switch. A version that fails to load is reported (END with an error) and never
replaces a good one; it is retried only when its folder changes. Removing the serving
version's folder rolls back to the highest remaining good version.

After a switch the replaced version is kept for a churn window (``churn_seconds``) so that
the shadow scorer can measure how much the new version changes answers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from steadyrank.model.artifact.gate import read_follow_status, read_gate
from steadyrank.model.artifact.layout import primary_name, replica_name, version_folders
from steadyrank.service.serve.servable import LoadError, Servable, load_servable
from steadyrank.service.serve.status import invalid, not_found, shown
from steadyrank.service.serve.telemetry import ServerMetrics

log = logging.getLogger("steadyrank.models")
Loader = Callable[[str, int, Path], Servable]


@dataclass
class VersionStatus:
    """What the server knows of one version folder."""

    version: int
    state: str  # LOADING, AVAILABLE, UNLOADING, END (TF Serving's ModelVersionStatus states)
    error: str = ""  # why the version failed to load
    fingerprint: tuple[int, int, int, str] = (0, 0, 0, "")
    health: str = ""  # why the last call to the loaded version failed ("" if it worked)


def fingerprint(path: Path) -> tuple[int, int, int, str]:
    """(files, bytes, newest mtime in ns, digest of the relative file names and sizes) of a
    folder tree: changes when its content does, a rename (which keeps mtimes) included."""
    files = size = newest = 0
    listing = hashlib.sha256()
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            files, size, newest = files + 1, size + st.st_size, max(newest, st.st_mtime_ns)
            listing.update(f"{os.path.relpath(full, path)}\0{st.st_size}\0".encode())
    return files, size, newest, listing.hexdigest()[:16]


def has_versions(base: Path) -> bool:
    """Whether some model folder under ``base`` has a version folder."""
    try:
        names = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return False
    return any(version_folders(p) for p in names)


def replica_of(name: str, names: Collection[str]) -> tuple[str, str]:
    """(primary model name, replica "a" or "b") of a model name among the served ``names``."""
    primary = primary_name(name)
    if primary is not None and primary in names:
        return primary, "b"
    return name, "a"


def _require(name: str) -> None:
    if not name:
        raise invalid("model_spec.name: required; name the model to use")


class ModelManager:
    """Loads, switches and reports the model versions under a base folder."""

    def __init__(self, base: str | Path, metrics: ServerMetrics, poll_seconds: float = 2.0,
                 loader: Loader = load_servable, churn_seconds: float = 600.0,
                 on_load: Callable[[], None] | None = None) -> None:
        """``on_load`` is called after every load attempt (loaded or failed)."""
        self.base = Path(base)
        self._on_load = on_load
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self.churn_seconds = churn_seconds
        self._previous: dict[str, tuple[Servable, float]] = {}  # name -> (old, window end)
        self._loader = loader
        self._serving: dict[str, Servable] = {}
        self._status: dict[str, dict[int, VersionStatus]] = {}
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- reading (request path) ----

    def names(self) -> list[str]:
        """Model names with a folder under the base path, sorted."""
        with self._lock:
            return sorted(self._status)

    def get(self, name: str, version: int | None = None) -> Servable:
        """The servable answering ``name`` (and ``version``, if given); NOT_FOUND otherwise."""
        _require(name)
        servable = self._serving.get(name)
        if servable is None:
            with self._lock:
                known = name in self._status
                names = sorted(self._status)
                errors = [f"version {s.version}: {s.error}"
                          for s in self._status.get(name, {}).values() if s.error]
            if known:
                detail = f" ({'; '.join(errors)})" if errors else ""
                raise not_found(f"model {name!r} has no loaded version{detail}")
            raise not_found(f"model {shown(name)!r} is not served ({len(names)} model(s) are; "
                            "GetModelStatus tells a name's versions)")
        if version is not None and version != servable.version:
            raise not_found(f"model {name!r} version {version} is not loaded "
                            f"(serving version {servable.version})")
        return servable

    def replica_b(self, name: str) -> Servable | None:
        """The second replica (``NAME-b``) of a primary model name, if one is loaded."""
        return self._serving.get(replica_name(name))

    def replica_label(self, name: str) -> str:
        """"a" for a primary model name, "b" for ``NAME-b`` beside ``NAME``."""
        return replica_of(name, self._status.keys())[1]  # every model folder is in _status

    def previous(self, name: str) -> Servable | None:
        """The version ``name`` served before its last switch, while the churn window lasts."""
        entry = self._previous.get(name)
        if entry is None:
            return None
        if time.monotonic() >= entry[1]:
            self._close_churn_window(name, entry)
            return None
        return entry[0]

    def report_health(self, servable: Servable, error: str) -> None:
        """Records that a call to a loaded version failed (``error``) or worked (empty).

        Shown in ``GetModelStatus`` while the version is loaded; a working call clears it.
        """
        with self._lock:
            status = self._status.get(servable.name, {}).get(servable.version)
            if status is None or status.health == error:
                return
            status.health = error
        if error:
            log.warning("model %s version %d is failing: %s", servable.name, servable.version,
                        error)
        else:
            log.info("model %s version %d answers again", servable.name, servable.version)

    def status(self, name: str) -> list[VersionStatus]:
        """The versions of ``name`` the server knows, ascending; NOT_FOUND for an unknown name."""
        _require(name)
        with self._lock:
            if name not in self._status:
                raise not_found(f"model {shown(name)!r} is not served")
            return [VersionStatus(**vars(s)) for _, s in sorted(self._status[name].items())]

    # ---- polling (background) ----

    def start(self) -> None:
        """Loads what is there now, then polls every ``poll_seconds`` in a thread."""
        self.poll()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._run, name="model-poll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stops polling (the loaded models stay usable by requests still holding them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                for name in list(self._previous):
                    self.previous(name)  # closes expired churn windows
                self.poll()
            except Exception:  # noqa: BLE001  (the poller must survive anything)
                log.exception("model poll failed")

    def poll(self) -> None:
        """One pass over the base folder: load new versions, unload removed models."""
        with self._poll_lock:
            try:
                names = sorted(p.name for p in self.base.iterdir()
                               if p.is_dir() and not p.name.startswith("."))
            except OSError as err:
                log.error("cannot list model base path %s: %s", self.base, err)
                return
            for name in names:
                self._poll_model(name)
            for name in set(self._status) - set(names):
                self._drop_model(name)
            self._read_churn_gates(names)

    def _read_churn_gates(self, names: list[str]) -> None:
        """Exports the trainer's churn gate decisions and, for a following trainer, its
        status (hidden files beside the models)."""
        for name in names:
            record = read_gate(self.base, name)
            if record is not None:
                self.metrics.set_churn_gate(name, record)
            status = read_follow_status(self.base, name)
            if status is not None:
                self.metrics.set_follow_status(name, status)

    def _set(self, name: str, status: VersionStatus) -> None:
        with self._lock:
            self._status.setdefault(name, {})[status.version] = status
        self.metrics.set_version_state(name, status.version, status.state, bool(status.error))

    def _poll_model(self, name: str) -> None:
        folders = version_folders(self.base / name)
        with self._lock:
            known = self._status.setdefault(name, {})
            for gone in set(known) - set(folders):
                if not (name in self._serving and self._serving[name].version == gone):
                    del known[gone]
                    self.metrics.forget_version(name, gone)
        current = self._serving.get(name)
        for version in sorted(folders, reverse=True):
            if current is not None and version == current.version:
                return  # the serving version is the best one still on disk
            path = folders[version]
            status = self._status[name].get(version)
            fp = fingerprint(path)
            if status is not None and status.error and status.fingerprint == fp:
                continue  # failed before and unchanged since
            if self._load(name, version, path, fp):
                return
        if current is not None and current.version not in folders:
            self._unload(name, current, reason="its folder was removed")

    def _load(self, name: str, version: int, path: Path, fp: tuple[int, int, int, str]
              ) -> bool:
        self._set(name, VersionStatus(version, "LOADING", fingerprint=fp))
        log.info("loading model %s version %d from %s", name, version, path)
        started = time.perf_counter()
        try:
            servable = self._loader(name, version, path)
        except LoadError as err:
            error = self._relative(str(err))
        except Exception as err:  # noqa: BLE001  (a broken model must not stop the server)
            error = self._relative(f"{type(err).__name__}: {err}")
        else:
            error = None
        if self._on_load is not None:
            self._on_load()
        if error is None:
            seconds = time.perf_counter() - started
            self.metrics.load_seconds.labels(name).observe(seconds)
            self.metrics.loads.labels(name, "ok").inc()
            with self._lock:
                old = self._serving.get(name)
                self._serving[name] = servable  # the switch: new requests see the new version
            self._set(name, VersionStatus(version, "AVAILABLE", fingerprint=fp))
            self.metrics.set_model_info(name, version, servable.manifest)
            log.info("serving model %s version %d (loaded and warmed up in %.1f s)",
                     name, version, seconds)
            if old is not None:
                self._retire(name, old)
                self._open_churn_window(name, old)
            return True
        self.metrics.loads.labels(name, "error").inc()
        self._set(name, VersionStatus(version, "END", error=error, fingerprint=fp))
        current = self._serving.get(name)
        keeps = f"; still serving version {current.version}" if current else ""
        log.error("model %s version %d failed to load: %s%s", name, version, error, keeps)
        return False

    def _relative(self, message: str) -> str:
        """A load error with the server's folders cut to NAME/VERSION (clients see it)."""
        return message.replace(f"{self.base.resolve()}/", "").replace(f"{self.base}/", "")

    def _open_churn_window(self, name: str, old: Servable) -> None:
        if self.churn_seconds > 0:
            self._previous[name] = (old, time.monotonic() + self.churn_seconds)
            self.metrics.churn_window_open.labels(name).set(1)
            log.info("measuring churn between model %s versions %d and %d for %.0f s", name,
                     old.version, self._serving[name].version, self.churn_seconds)

    def _close_churn_window(self, name: str, entry: tuple[Servable, float]) -> None:
        with self._lock:
            if self._previous.get(name) is not entry:
                return
            del self._previous[name]  # the old version's memory is freed with it
        self.metrics.churn_window_open.labels(name).set(0)

    def _retire(self, name: str, old: Servable) -> None:
        """Marks a replaced version; requests that hold it finish on it."""
        self._set(name, VersionStatus(old.version, "UNLOADING"))
        if (self.base / name / str(old.version)).is_dir():
            self._set(name, VersionStatus(old.version, "END"))
        else:
            with self._lock:
                self._status[name].pop(old.version, None)
            self.metrics.forget_version(name, old.version)
        log.info("model %s version %d unloaded", name, old.version)

    def _unload(self, name: str, servable: Servable, reason: str) -> None:
        with self._lock:
            if self._serving.get(name) is servable:
                del self._serving[name]
        log.warning("model %s version %d unloaded: %s", name, servable.version, reason)
        self._retire(name, servable)

    def _drop_model(self, name: str) -> None:
        entry = self._previous.get(name)
        if entry is not None:
            self._close_churn_window(name, entry)
        servable = self._serving.get(name)
        if servable is not None:
            self._unload(name, servable, reason="the model folder was removed")
        with self._lock:
            versions = list(self._status.pop(name, {}))
        for version in versions:
            self.metrics.forget_version(name, version)
