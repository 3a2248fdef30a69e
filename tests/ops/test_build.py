"""Building and loading the op library: staleness, concurrency, missing compiler."""

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import steadyrank.ops.build as build
from tests.conftest import run_python

IMPORT_AND_USE = """
import steadyrank.ops as sro, tensorflow as tf
print(float(sro.smelu(tf.constant(0.0), beta=2.0)))
"""


def test_rebuilds_a_library_built_for_another_tensorflow(tmp_path):
    src = build.lib_dir()
    shutil.copy(src / build.LIB_NAME, tmp_path / build.LIB_NAME)
    meta = json.loads((src / build.META_NAME).read_text())
    meta["tensorflow_version"] = "0.0.1"
    (tmp_path / build.META_NAME).write_text(json.dumps(meta))

    result = run_python(IMPORT_AND_USE, env={"STEADYRANK_OPS_LIB_DIR": str(tmp_path),
                                             "STEADYRANK_CUDA": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "0.5"  # beta/4 at x = 0
    assert "building CPU library" in result.stderr
    rebuilt = json.loads((tmp_path / build.META_NAME).read_text())
    assert rebuilt["tensorflow_version"] == build.wanted_info().tensorflow_version


def test_concurrent_imports_build_once(tmp_path):
    env = {"STEADYRANK_OPS_LIB_DIR": str(tmp_path), "STEADYRANK_CUDA": "0"}
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: run_python(IMPORT_AND_USE, env=env), range(3)))
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.strip().splitlines()[-1] == "0.5"
    builds = sum(r.stderr.count("building CPU library") for r in results)
    assert builds == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted([
        build.LIB_NAME, build.META_NAME])


def test_missing_compiler_says_what_to_install(tmp_path):
    result = run_python(IMPORT_AND_USE, env={"STEADYRANK_OPS_LIB_DIR": str(tmp_path),
                                             "CXX": "no-such-g++"})
    assert result.returncode != 0
    assert "BuildError" in result.stderr and "install g++" in result.stderr
    assert not (tmp_path / build.LIB_NAME).exists()


def _build_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "steadyrank.ops.build", *args],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=600)


def test_build_cli_says_which_library_it_built(tmp_path):
    result = _build_cli("--no-cuda", env={"STEADYRANK_OPS_LIB_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(CPU; TensorFlow" in result.stdout
    assert result.stderr.count("building CPU library") == 1  # built once, not on import too
    assert json.loads((tmp_path / build.META_NAME).read_text())["cuda"] is False


def test_forced_cuda_without_nvcc_is_an_error(tmp_path):
    result = _build_cli("--cuda", env={"STEADYRANK_OPS_LIB_DIR": str(tmp_path),
                                       "NVCC": "no-such-nvcc"})
    assert result.returncode == 1
    assert "nvcc is not on the PATH" in result.stderr
    assert not (tmp_path / build.LIB_NAME).exists()


def test_op_types_are_the_ops_the_library_registers():
    import re

    from steadyrank.ops import OP_TYPES, build

    sources = (build.CC_DIR / "ops").glob("*.cc")
    registered = {m for f in sources for m in re.findall(r'REGISTER_OP\("(\w+)"\)',
                                                        f.read_text())}
    assert registered and OP_TYPES == registered
