"""The CUDA sources compile here (nvcc), and the op library links with its GPU kernels.

Running the kernels needs a GPU: that is bench/cuda_smelu_check.cu (make bench-cuda),
run on a lent GPU machine; see bench/RESULTS.md.
"""

import os
import shutil
import subprocess

import pytest

import steadyrank.ops.build as build
from tests.conftest import REPO

NVCC = shutil.which(os.environ.get("NVCC", "nvcc"))
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found: CUDA compile not tested")


@pytest.mark.parametrize("harness", ["cuda_smelu_check", "cuda_gsmelu_check"])
def test_standalone_cuda_harness_compiles(tmp_path, harness):
    out = tmp_path / harness
    proc = subprocess.run(
        [NVCC, "-O3", "-std=c++17", "-gencode=arch=compute_90,code=sm_90",
         f"-I{REPO / 'ops/cc/kernels'}", str(REPO / f"bench/{harness}.cu"), "-o", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.stat().st_size > 0


@pytest.mark.skipif(os.environ.get("STEADYRANK_CUDA") == "0", reason="STEADYRANK_CUDA=0")
def test_op_library_links_gpu_kernels():
    info = build.read_info()
    import tensorflow as tf

    if not tf.test.is_built_with_cuda():
        pytest.skip("TensorFlow is not a CUDA build: the library is CPU-only by design")
    assert info is not None and info.cuda, "nvcc is here, so the library should have GPU kernels"
    assert info.cuda_archs, "GPU architectures were not recorded"
    symbols = subprocess.run(["nm", "-C", str(build.lib_dir() / build.LIB_NAME)],
                             capture_output=True, text=True, check=True).stdout
    for kernel in ("LaunchSmelu<", "LaunchSmeluGrad<", "LaunchSmeluGradGrad<", "LaunchGSmelu<",
                   "LaunchGSmeluGrad<"):
        assert kernel in symbols
    # device code linked in, not just declared
    assert "ElementwiseKernel" in symbols and "BackwardPerUnitKernel" in symbols
    # One CUDA runtime in the process: the op calls the one TensorFlow exports and loads.
    dynamic = subprocess.run(["nm", "-D", str(build.lib_dir() / build.LIB_NAME)],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    cudart = [line.split()[-1] for line in dynamic if line.split()[-1] == "cudaGetLastError"]
    assert cudart and all(" U " in f" {line} " for line in dynamic
                          if line.endswith(" cudaGetLastError"))
