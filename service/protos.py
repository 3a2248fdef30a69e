"""Python stubs of ``proto/steadyrank/*.proto``, generated with grpcio-tools.

They are generated when SteadyRank is installed or built, never on import: ``make install``
and ``pip install -e .`` write them to ``steadyrank/service/_generated/`` (not committed), a
wheel carries them, and ``python -m steadyrank.service.protos`` regenerates them after a
``.proto`` edit. Importing the stubs when they are missing or were made from other sources
is an error that says how to regenerate them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.resources
import os
import sys
from pathlib import Path
from types import ModuleType

from steadyrank.core.errors import SteadyRankError
from steadyrank.proto import codegen


def _proto_root() -> Path:
    """The folder holding ``steadyrank/*.proto``: the package data ``steadyrank.proto``
    (the checkout's ``proto/``, or the installed copy), or ``$STEADYRANK_PROTO_ROOT``."""
    override = os.environ.get("STEADYRANK_PROTO_ROOT")
    if override:
        return Path(override)
    return Path(str(importlib.resources.files("steadyrank.proto")))


PROTO_ROOT = _proto_root()
OUT_DIR = Path(__file__).resolve().parent / "_generated"
PROTOS = codegen.PROTOS
PACKAGE = codegen.PACKAGE
REGENERATE = "run 'make install' or 'python -m steadyrank.service.protos'"


class ProtoError(SteadyRankError, RuntimeError):
    """The stubs are missing, stale or cannot be generated; the message says what to do."""


def stale() -> bool:
    """Whether a stub is missing or was generated from other ``.proto`` sources."""
    if any(not (OUT_DIR / name).exists() for proto in PROTOS for name in codegen.outputs(proto)):
        return True
    return codegen.recorded_digest(OUT_DIR) != codegen.source_digest(PROTO_ROOT, PROTOS)


def generate() -> list[Path]:
    """Runs protoc (grpcio-tools) on :data:`PROTOS` into :data:`OUT_DIR`."""
    try:
        return codegen.generate(PROTO_ROOT, OUT_DIR, PROTOS, PACKAGE)
    except RuntimeError as err:
        raise ProtoError(str(err)) from None


def check() -> None:
    """ProtoError saying how to regenerate the stubs when they are missing or stale."""
    if not stale():
        return
    if codegen.recorded_digest(OUT_DIR) is None:
        raise ProtoError(f"the gRPC stubs of {PROTO_ROOT / PROTOS[0]} are missing in "
                         f"{OUT_DIR}: {REGENERATE}")
    raise ProtoError(f"the gRPC stubs in {OUT_DIR} were generated from another version of "
                     f"{PROTO_ROOT / PROTOS[0]}: {REGENERATE}")


def load(stem: str = "ranking") -> tuple[ModuleType, ModuleType]:
    """The ``(messages, grpc)`` stub modules of ``proto/steadyrank/<stem>.proto``."""
    check()
    return (importlib.import_module(f"{PACKAGE}.{stem}_pb2"),
            importlib.import_module(f"{PACKAGE}.{stem}_pb2_grpc"))


def main(argv: list[str] | None = None) -> int:
    """``python -m steadyrank.service.protos [--force]``: (re)generate stale stubs."""
    parser = argparse.ArgumentParser(prog="python -m steadyrank.service.protos",
                                     description="generate the gRPC stubs of the .proto files")
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = parser.parse_args(argv)
    if not args.force and not stale():
        print(f"{OUT_DIR}: up to date")
        return 0
    try:
        for path in generate():
            print(path)
    except ProtoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
