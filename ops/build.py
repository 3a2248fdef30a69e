"""Build the SmeLU and g-SmeLU op library with g++ (and nvcc for the GPU kernels).

Usage: ``python -m steadyrank.ops.build [--cuda | --no-cuda] [--force]``

The library is written to ``ops/_lib/`` (or ``$STEADYRANK_OPS_LIB_DIR``) as
``_smelu_ops.so`` with a ``_smelu_ops.json`` beside it recording the TensorFlow
version, the source digest and whether CUDA kernels are in it. Both are written
to temporary names and renamed into place, so a crash never leaves a half
library that a later import would load.

CUDA: ``STEADYRANK_CUDA=1`` forces the GPU kernels (a failed nvcc compile is an
error), ``STEADYRANK_CUDA=0`` disables them, and unset builds them when nvcc is
found and the installed TensorFlow is a CUDA build.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from steadyrank.ops._errors import BuildError

PACKAGE_DIR = Path(__file__).resolve().parent
CC_DIR = PACKAGE_DIR / "cc"
LIB_NAME = "_smelu_ops.so"
META_NAME = "_smelu_ops.json"

CPU_SOURCES = ("kernels/smelu_op.cc", "ops/smelu_ops.cc", "kernels/gsmelu_op.cc",
               "kernels/gsmelu_op_cpu.cc", "ops/gsmelu_ops.cc")
GPU_HOST_SOURCES = ("kernels/smelu_op_gpu.cc", "kernels/gsmelu_op_gpu.cc")
CUDA_SOURCES = ("kernels/smelu_kernels.cu.cc", "kernels/gsmelu_kernels.cu.cc")
HEADERS = ("kernels/smelu_math.h", "kernels/smelu_op.h", "kernels/smelu_kernels.cu.h",
           "kernels/smelu_launch.h", "kernels/op_device.h", "kernels/gsmelu_math.h",
           "kernels/gsmelu_op.h", "kernels/gsmelu_kernels.cu.h", "kernels/gsmelu_launch.h",
           "kernels/launch_type.h", "kernels/float_types.h")


@dataclass(frozen=True)
class LibraryInfo:
    """What a built library was built for; stored as JSON beside the .so."""

    tensorflow_version: str
    source_digest: str
    cuda: bool
    cuda_archs: tuple[str, ...] = ()
    cxx: str = ""
    built_at: float = 0.0

    def matches(self, other: LibraryInfo) -> bool:
        """True when a library built for ``self`` can be used where ``other`` is wanted."""
        return (
            self.tensorflow_version == other.tensorflow_version
            and self.source_digest == other.source_digest
        )


def lib_dir() -> Path:
    """Folder that holds the built library (``$STEADYRANK_OPS_LIB_DIR`` overrides)."""
    return Path(os.environ.get("STEADYRANK_OPS_LIB_DIR") or PACKAGE_DIR / "_lib")


def source_digest() -> str:
    """SHA-256 over every C++/CUDA source and header, so edits trigger a rebuild."""
    digest = hashlib.sha256()
    for rel in sorted(CPU_SOURCES + GPU_HOST_SOURCES + CUDA_SOURCES + HEADERS):
        path = CC_DIR / rel
        digest.update(rel.encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()


def read_info(directory: Path | None = None) -> LibraryInfo | None:
    """The recorded build info of the library in ``directory``, or None if absent or bad."""
    directory = directory or lib_dir()
    meta, lib = directory / META_NAME, directory / LIB_NAME
    if not (meta.is_file() and lib.is_file()):
        return None
    try:
        data = json.loads(meta.read_text())
        data["cuda_archs"] = tuple(data.get("cuda_archs", ()))
        return LibraryInfo(**data)
    except (ValueError, TypeError):
        return None


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def wanted_info() -> LibraryInfo:
    """The build info a library must have to be loaded by this installation."""
    tf = _tf()
    return LibraryInfo(tensorflow_version=tf.__version__, source_digest=source_digest(),
                       cuda=False)


def _find_cxx() -> str:
    cxx = os.environ.get("CXX", "g++")
    found = shutil.which(cxx)
    if not found:
        raise BuildError(
            f"no C++ compiler: '{cxx}' is not on the PATH. The SmeLU op library is compiled "
            "from source at install time; install g++ (Debian/Ubuntu: "
            "'apt-get install g++', Fedora: 'dnf install gcc-c++') or set CXX to a C++17 "
            "compiler, then run 'python -m steadyrank.ops.build'."
        )
    return found


def _cpu_arch_flags() -> list[str]:
    """Vector ISA flags: AVX2/FMA when the build machine has them, overridable."""
    override = os.environ.get("STEADYRANK_CXXFLAGS")
    if override is not None:
        return override.split()
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return ["-mavx2", "-mfma"] if (" avx2" in flags and " fma" in flags) else []


def _want_cuda(requested: bool | None) -> tuple[bool, str]:
    """Whether to build the GPU kernels, and why."""
    nvcc = shutil.which(os.environ.get("NVCC", "nvcc"))
    is_cuda_tf = bool(_tf().test.is_built_with_cuda())
    if requested is False:
        return False, "CUDA disabled (STEADYRANK_CUDA=0 or --no-cuda)"
    if requested is True:
        if not nvcc:
            raise BuildError("CUDA kernels were asked for (STEADYRANK_CUDA=1 or --cuda) but "
                             "nvcc is not on the PATH: install the CUDA toolkit or set NVCC.")
        if not is_cuda_tf:
            raise BuildError("CUDA kernels were asked for but the installed TensorFlow is not "
                             "a CUDA build; install a CUDA build of tensorflow.")
        return True, "CUDA forced"
    if not nvcc:
        return False, "nvcc not found"
    if not is_cuda_tf:
        return False, "TensorFlow is not a CUDA build"
    return True, "nvcc found and TensorFlow is a CUDA build"


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        # Compiler errors first: the tail of a long log is often only notes.
        lines = proc.stderr.splitlines()
        errors = [ln for ln in lines
                  if any(k in ln for k in ("error", "cannot find", "undefined reference"))]
        detail = "\n".join(errors[:20] + ["..."] + lines[-8:]) if errors else "\n".join(
            lines[-40:])
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n  {' '.join(cmd)}\n{detail}")


def cuda_archs() -> list[str]:
    """GPU architectures to compile for: those of the TensorFlow build, or $STEADYRANK_CUDA_ARCHS.

    TensorFlow lists real archs as ``sm_XY`` and PTX ones as ``compute_XY``; we emit
    SASS for every ``sm_``, and SASS plus PTX for ``compute_`` so newer GPUs can JIT it.
    """
    override = os.environ.get("STEADYRANK_CUDA_ARCHS")
    if override:
        return override.replace(",", " ").split()
    info = _tf().sysconfig.get_build_info()
    return list(info.get("cuda_compute_capabilities", []))


def _nvcc_arch_flags(archs: list[str]) -> list[str]:
    flags = []
    for arch in archs:
        num = arch.split("_", 1)[1]
        if arch.startswith("sm_"):
            flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        else:  # PTX for newer GPUs to JIT, plus SASS so this arch needs no JIT
            flags.append(f"-gencode=arch=compute_{num},code=[sm_{num},compute_{num}]")
    return flags


def _supported_archs(nvcc: str, archs: list[str]) -> list[str]:
    """Drops archs this nvcc cannot target (CUDA 13 dropped sm_60 and sm_70)."""
    proc = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True)
    if proc.returncode != 0:
        return archs
    known = {line.strip().split("_", 1)[1] for line in proc.stdout.split() if "_" in line}
    kept = [a for a in archs if a.split("_", 1)[1] in known]
    return kept or archs


def build(cuda: bool | None = None, force: bool = False, quiet: bool = False) -> Path:
    """Compile the op library if it is missing or stale; returns the .so path.

    Safe to call from several processes at once: one builds under a file lock,
    the others wait and then reuse its result.
    """
    import fcntl

    env = os.environ.get("STEADYRANK_CUDA", "").strip()
    if cuda is None and env in ("0", "1"):
        cuda = env == "1"
    directory = lib_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        want = wanted_info()
        have = read_info(directory)
        if not force and have is not None and have.matches(want) and (
            cuda is None or have.cuda == cuda
        ):
            return directory / LIB_NAME
        return _build_locked(directory, want, cuda, quiet)


def _build_locked(directory: Path, want: LibraryInfo, cuda: bool | None, quiet: bool) -> Path:
    tf = _tf()
    say = (lambda *a: None) if quiet else (lambda *a: print("[steadyrank.ops.build]", *a,
                                                            file=sys.stderr, flush=True))
    cxx = _find_cxx()
    use_cuda, why = _want_cuda(cuda)
    started = time.time()
    tf_cflags = tf.sysconfig.get_compile_flags()
    tf_lflags = tf.sysconfig.get_link_flags()
    # -fno-trapping-math: no code here reads floating-point exception flags, and it lets GCC
    # turn the g-SmeLU kernels' selects into vector blends (values are unchanged).
    cxxflags = ["-std=c++17", "-O3", "-fPIC", "-DNDEBUG", "-Wno-deprecated-declarations",
                "-fno-trapping-math",
                *tf_cflags, *_cpu_arch_flags(), f"-I{CC_DIR / 'kernels'}"]
    archs: list[str] = []
    with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as tmp:
        tmp_path = Path(tmp)
        jobs: list[tuple[list[str], str]] = []
        objects: list[str] = []
        sources = list(CPU_SOURCES) + (list(GPU_HOST_SOURCES) if use_cuda else [])
        for rel in sources:
            obj = str(tmp_path / (Path(rel).name + ".o"))
            flags = [*cxxflags, "-DSTEADYRANK_WITH_CUDA=1"] if use_cuda else cxxflags
            jobs.append(([cxx, *flags, "-c", str(CC_DIR / rel), "-o", obj], f"compiling {rel}"))
            objects.append(obj)
        link_extra: list[str] = []
        if use_cuda:
            nvcc = shutil.which(os.environ.get("NVCC", "nvcc")) or "nvcc"
            archs = _supported_archs(nvcc, cuda_archs())
            for rel in CUDA_SOURCES:
                obj = str(tmp_path / (Path(rel).name + ".o"))
                jobs.append(([nvcc, "-std=c++17", "-O3", "-x", "cu", "-Xcompiler", "-fPIC",
                              "--expt-relaxed-constexpr", *_nvcc_arch_flags(archs),
                              f"-I{CC_DIR / 'kernels'}", "-c", str(CC_DIR / rel), "-o", obj],
                             f"compiling {rel} with nvcc for {' '.join(archs)}"))
                objects.append(obj)
            # No CUDA runtime of our own: the kernels' cudart calls resolve to the runtime
            # that TensorFlow's framework library exports and loads, so the op and TensorFlow
            # share one runtime and one context, whatever CUDA version TensorFlow was built
            # against. (Linking cudart_static after the framework library pulled in nothing.)
            link_extra = []
        say(f"building {'CPU+CUDA' if use_cuda else 'CPU'} library ({why}) with {cxx} "
            f"for TensorFlow {want.tensorflow_version}")
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            for fut in [pool.submit(_run, cmd, what) for cmd, what in jobs]:
                fut.result()
        tmp_lib = tmp_path / LIB_NAME
        _run([cxx, "-shared", "-o", str(tmp_lib), *objects, *tf_lflags, *link_extra],
             "linking the op library")
        info = LibraryInfo(tensorflow_version=want.tensorflow_version,
                           source_digest=want.source_digest, cuda=use_cuda,
                           cuda_archs=tuple(archs), cxx=cxx, built_at=time.time())
        tmp_meta = tmp_path / META_NAME
        tmp_meta.write_text(json.dumps(asdict(info), indent=2) + "\n")
        # Library first, then the metadata that vouches for it.
        os.replace(tmp_lib, directory / LIB_NAME)
        os.replace(tmp_meta, directory / META_NAME)
    say(f"built {directory / LIB_NAME} ({'CPU+CUDA' if use_cuda else 'CPU only'}) in "
        f"{time.time() - started:.1f}s")
    return directory / LIB_NAME


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: build the library and say which kind was built."""
    parser = argparse.ArgumentParser(prog="python -m steadyrank.ops.build",
                                     description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cuda", dest="cuda", action="store_true", default=None,
                       help="require the CUDA kernels (fail if they cannot be built)")
    group.add_argument("--no-cuda", dest="cuda", action="store_false",
                       help="build the CPU kernels only")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    try:
        path = build(cuda=args.cuda, force=args.force)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    info = read_info(path.parent)
    kind = "CPU+CUDA" if info and info.cuda else "CPU"
    print(f"{path} ({kind}; TensorFlow {info.tensorflow_version if info else '?'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
