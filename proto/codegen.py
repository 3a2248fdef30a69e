"""Generates the Python stubs of ``steadyrank/*.proto`` with grpcio-tools' protoc.

Standalone on purpose (the standard library and grpcio-tools only): the wheel build
(``setup.py``) loads this file by path to put the stubs into the wheel, and
``steadyrank.service.protos`` uses it for ``make install`` and an editable install. The
generated package records a SHA-256 of the ``.proto`` sources it was made from, so a stale
copy is recognised by content, not by file times.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PROTOS = ("steadyrank/ranking.proto",)
PACKAGE = "steadyrank.service._generated"
DIGEST_FILE = "SOURCES.sha256"  # in the generated package: the digest of the sources


def source_digest(proto_root: Path, protos: tuple[str, ...] = PROTOS) -> str:
    """SHA-256 over the names and bytes of the ``.proto`` sources."""
    digest = hashlib.sha256()
    for proto in protos:
        digest.update(proto.encode() + b"\0" + (proto_root / proto).read_bytes() + b"\0")
    return digest.hexdigest()


def recorded_digest(out_dir: Path) -> str | None:
    """The source digest the stubs in ``out_dir`` were generated from (None: no stubs)."""
    try:
        return (out_dir / DIGEST_FILE).read_text().strip()
    except OSError:
        return None


def outputs(proto: str) -> tuple[str, ...]:
    """The files protoc writes for one ``.proto``."""
    stem = Path(proto).stem
    return (f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py")


def generate(proto_root: Path, out_dir: Path, protos: tuple[str, ...] = PROTOS,
             package: str = PACKAGE) -> list[Path]:
    """Runs protoc on ``protos`` into ``out_dir`` (each file replaced atomically, the digest
    file last); RuntimeError naming the file and protoc's output when it fails."""
    import grpc_tools

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"  # google/protobuf/*.proto
    out_dir.mkdir(parents=True, exist_ok=True)
    init = out_dir / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated stubs (see steadyrank.service.protos)."""\n')
    written = []
    for proto in protos:
        if not (proto_root / proto).exists():
            raise RuntimeError(f"{proto_root / proto}: no such file")
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".protoc-") as tmp:
            # In a child process: protoc's C++ protobuf runtime must not share a process with
            # TensorFlow's (they crash each other at exit).
            done = subprocess.run(
                [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}", f"-I{include}",
                 f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}",
                 str(proto_root / proto)], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{proto_root / proto}: protoc failed "
                                   f"({done.returncode}): {done.stderr.strip()}")
            module = proto[:-len(".proto")].replace("/", ".")  # steadyrank.ranking
            for name in outputs(proto):
                path = Path(tmp) / Path(proto).parent / name
                text = path.read_text()
                # "from steadyrank import ranking_pb2" -> our package's generated module.
                text = re.sub(rf"^from {re.escape(module.rsplit('.', 1)[0])} import ",
                              f"from {package} import ", text, flags=re.MULTILINE)
                path.write_text(text)
                os.replace(path, out_dir / name)
                written.append(out_dir / name)
    digest = out_dir / DIGEST_FILE
    digest.with_suffix(".tmp").write_text(source_digest(proto_root, protos) + "\n")
    os.replace(digest.with_suffix(".tmp"), digest)
    return [*written, digest]
