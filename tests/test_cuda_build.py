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


def test_standalone_cuda_harness_compiles(tmp_path):
    out = tmp_path / "cuda_smelu_check"
    proc = subprocess.run(
        [NVCC, "-O3", "-std=c++17", "-gencode=arch=compute_90,code=sm_90",
         f"-I{REPO / 'ops/cc/kernels'}", str(REPO / "bench/cuda_smelu_check.cu"), "-o", str(out)],
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
    for kernel in ("LaunchSmelu<", "LaunchSmeluGrad<", "LaunchSmeluGradGrad<"):
        assert kernel in symbols
    assert "ElementwiseKernel" in symbols  # device code linked in, not just declared
