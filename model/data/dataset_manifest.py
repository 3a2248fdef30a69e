"""A dataset folder's ``manifest.json``: what the folder holds, each file's SHA-256 and
one checksum over them. Every dataset the project writes (MovieLens' verified cache,
``steadyrank data synth``'s folders, Criteo-shaped streams) writes it with :func:`write`
(atomically) and reads it with :func:`read` (verifying the files on request)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steadyrank.core.errors import DataError
from steadyrank.core.fileio import atomic_write_json, combined_checksum, sha256_file

MANIFEST = "manifest.json"


def write(folder: str | Path, record: dict[str, Any],
          digests: dict[str, str] | None = None) -> dict[str, Any]:
    """Writes ``record`` with ``files`` (each file's SHA-256: ``digests``, else computed
    over the folder's visible files) and their combined ``checksum`` to the folder's
    manifest, atomically; returns the manifest."""
    folder = Path(folder)
    if digests is None:
        digests = {p.name: sha256_file(p) for p in sorted(folder.iterdir())
                   if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")}
    manifest = {**record, "files": digests, "checksum": combined_checksum(digests)}
    atomic_write_json(folder / MANIFEST, manifest, sort_keys=False)
    return manifest


def read(folder: str | Path, kind: str | None = None, verify: bool = True,
         missing: str = "missing") -> dict[str, Any]:
    """The folder's manifest; DataError naming the file when it is missing (``missing``:
    what to say, e.g. how to make it), not JSON, of another ``kind``, or (with ``verify``)
    when a listed file is missing or its bytes do not match."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, missing) from None
    except json.JSONDecodeError as err:
        raise DataError(path, f"not valid JSON: {err}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise DataError(path, "not a dataset manifest (no files listed)")
    if kind is not None and manifest.get("kind") != kind:
        raise DataError(path, f"not a {kind} dataset (kind {manifest.get('kind')!r})")
    if verify:
        for name, digest in manifest["files"].items():
            if not (folder / name).is_file():
                raise DataError(folder / name, f"missing (listed in {MANIFEST})")
            if sha256_file(folder / name) != digest:
                raise DataError(folder / name, f"SHA-256 does not match {MANIFEST}")
    return manifest


def verified(folder: str | Path) -> dict[str, Any] | None:
    """The manifest when every listed file is there and matches it, else None."""
    try:
        return read(folder)
    except DataError:
        return None
