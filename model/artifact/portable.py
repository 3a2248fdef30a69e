"""Portable exports: the same model, signatures and manifest, with SmeLU and g-SmeLU written in
TensorFlow's own ops, in a TensorFlow Serving model base path (``BASE/VERSION/``).

Stock TensorFlow Serving, converters and a plain ``tensorflow`` install load it without
SteadyRank's op library. The graph is rewritten (:mod:`steadyrank.ops.portable`); the
variables, assets and manifest are copied as they are. The version is staged in a hidden
folder and renamed into place, so a server watching BASE never sees half of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from steadyrank.model.artifact.layout import MANIFEST
from steadyrank.model.artifact.reader import (
    ExportError,
    read_export_manifest,
    read_saved_model,
    resolve,
)
from steadyrank.ops import OP_TYPES
from steadyrank.ops.portable import op_types, portable_copy

SAVED_MODEL = "saved_model.pb"


def make_portable(export: str | Path, base: str | Path) -> Path:
    """Writes the portable copy of ``export`` (a version folder, or a model base folder's
    latest version) as ``base/VERSION`` (the same version number); returns the path.
    ExportError when that version exists already or the export cannot be read."""
    source = resolve(export)
    manifest = read_export_manifest(source)
    number = int(manifest.version or source.name)
    base = Path(base)
    target = base / str(number)
    if target.exists():
        raise ExportError(f"{target}: version already exists")
    try:
        proto = portable_copy(read_saved_model(source))
    except ValueError as err:
        raise ExportError(f"{source}: {err}") from None
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".tmp-portable-"))
    try:
        staged = tmp / "model"
        staged.mkdir()
        for folder in ("variables", "assets"):
            if (source / folder).is_dir():
                shutil.copytree(source / folder, staged / folder)
        shutil.copy2(source / MANIFEST, staged / MANIFEST)
        (staged / SAVED_MODEL).write_bytes(proto.SerializeToString())
        try:
            os.rename(staged, target)
        except OSError as err:
            raise ExportError(f"{target}: cannot move the portable export into place: "
                              f"{err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def is_portable(version: str | Path) -> bool:
    """Whether a version folder's graph uses no SteadyRank op (any TensorFlow loads it)."""
    return not op_types(read_saved_model(resolve(version))) & OP_TYPES
