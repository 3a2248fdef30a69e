"""Atomic writes and checksums: a reader sees the old file or the new one, never a part.

Folders (exports, fetched datasets) are published by writing into a hidden temporary folder
beside the target and renaming it into place; the helpers here do the same for single files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from steadyrank.core.errors import DataError


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A temporary file beside ``path``, open in ``mode``, to write; renamed into place when
    the block ends without an error, else removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes ``text`` to a temporary file beside ``path`` and renames it into place."""
    with atomic_file(path) as f:
        f.write(text)


def atomic_write_json(path: str | Path, payload: Any, sort_keys: bool = True) -> None:
    """:func:`atomic_write_text` of indented JSON (keys sorted unless ``sort_keys`` is off,
    for payloads whose order means something, such as a report's variants)."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def combined_checksum(file_digests: dict[str, str]) -> str:
    """One SHA-256 over named file digests, independent of the dict's order."""
    joined = "".join(f"{name}:{file_digests[name]}\n" for name in sorted(file_digests))
    return hashlib.sha256(joined.encode()).hexdigest()


@contextlib.contextmanager
def staged_folder(out: str | Path, force: bool = False) -> Iterator[Path]:
    """A hidden temporary folder beside ``out`` to write into; when the block ends without
    an error it replaces ``out`` (renamed into place, so readers see the old folder or the
    whole new one), else it is removed. DataError when ``out`` exists and not ``force``."""
    out = Path(out)
    if out.exists() and not force:
        raise DataError(out, "already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
