"""Python stubs of ``proto/steadyrank/*.proto``, generated with grpcio-tools.

``make install`` runs ``python -m steadyrank.service.protos``; importing this module also
(re)generates the stubs when they are missing or older than their ``.proto``. They go to
``steadyrank/service/_generated/`` (not committed), with the generated gRPC module's import
of its messages made package-relative.
"""

from __future__ import annotations

import importlib
import importlib.resources
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from steadyrank.ops._errors import SteadyRankError


def _proto_root() -> Path:
    """The folder holding ``steadyrank/*.proto``: the package data ``steadyrank.proto``
    (the checkout's ``proto/``, or the installed copy), or ``$STEADYRANK_PROTO_ROOT``."""
    override = os.environ.get("STEADYRANK_PROTO_ROOT")
    if override:
        return Path(override)
    return Path(str(importlib.resources.files("steadyrank.proto")))


PROTO_ROOT = _proto_root()
OUT_DIR = Path(__file__).resolve().parent / "_generated"
PROTOS = ("steadyrank/ranking.proto",)
PACKAGE = "steadyrank.service._generated"


class ProtoError(SteadyRankError, RuntimeError):
    """The stubs cannot be generated; the message names the file and protoc's output."""


def _targets(proto: str) -> list[Path]:
    stem = Path(proto).stem
    return [OUT_DIR / f"{stem}_pb2.py", OUT_DIR / f"{stem}_pb2_grpc.py"]


def stale() -> bool:
    """Whether any stub is missing or older than its ``.proto``."""
    for proto in PROTOS:
        source = PROTO_ROOT / proto
        for target in _targets(proto):
            if not target.exists():
                return True
            if source.exists() and source.stat().st_mtime > target.stat().st_mtime:
                return True
    return False


def generate() -> list[Path]:
    """Runs protoc (grpcio-tools) on :data:`PROTOS`; each file is replaced atomically."""
    import grpc_tools

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"  # google/protobuf/*.proto
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    init = OUT_DIR / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated stubs (see steadyrank.service.protos)."""\n')
    written = []
    for proto in PROTOS:
        if not (PROTO_ROOT / proto).exists():
            raise ProtoError(f"{PROTO_ROOT / proto}: no such file")
        with tempfile.TemporaryDirectory(dir=OUT_DIR, prefix=".protoc-") as tmp:
            # In a child process: protoc's C++ protobuf runtime must not share a process with
            # TensorFlow's (they crash each other at exit).
            done = subprocess.run(
                [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}",
                 f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}",
                 str(PROTO_ROOT / proto)], capture_output=True, text=True)
            if done.returncode != 0:
                raise ProtoError(f"{PROTO_ROOT / proto}: protoc failed "
                                 f"({done.returncode}): {done.stderr.strip()}")
            stem = Path(proto).stem
            module = proto[:-len(".proto")].replace("/", ".")  # steadyrank.ranking
            for name in (f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"):
                path = Path(tmp) / Path(proto).parent / name
                text = path.read_text()
                # "from steadyrank import ranking_pb2" -> our package's generated module.
                text = re.sub(rf"^from {re.escape(module.rsplit('.', 1)[0])} import ",
                              f"from {PACKAGE} import ", text, flags=re.MULTILINE)
                path.write_text(text)
                os.replace(path, OUT_DIR / name)
                written.append(OUT_DIR / name)
    return written


def ensure() -> None:
    """Generates the stubs if they are missing or stale."""
    if stale():
        generate()


def load(stem: str = "ranking") -> tuple[ModuleType, ModuleType]:
    """The ``(messages, grpc)`` stub modules of ``proto/steadyrank/<stem>.proto``."""
    ensure()
    return (importlib.import_module(f"{PACKAGE}.{stem}_pb2"),
            importlib.import_module(f"{PACKAGE}.{stem}_pb2_grpc"))


def main() -> int:
    """``python -m steadyrank.service.protos``: (re)generate the stubs."""
    try:
        for path in generate():
            print(path)
    except ProtoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
