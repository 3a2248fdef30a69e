// Standalone check of the SmeLU CUDA kernels, without TensorFlow.
//
//   make bench-cuda        (or: nvcc -O3 -std=c++17 -I ops/cc/kernels
//                            bench/cuda_smelu_check.cu -o bench/out/cuda_smelu_check)
//   bench/out/cuda_smelu_check [--json FILE] [--max-n 1e9] [--repeats 20]
//
// 1. Correctness: every kernel (forward, backward, gradient of backward) for half,
//    bfloat16, float and double, on random data plus the joins +-beta, 0, NaN and
//    +-inf, with outputs poisoned beforehand, at aligned (vector path) and misaligned
//    (scalar path) offsets and odd lengths (tails). Compared with a float64 CPU
//    reference computed by the same smelu_math.h, with tolerances per dtype.
// 2. Bandwidth: forward and backward float32 at 1e6 .. 1e9 elements against a
//    device-to-device cudaMemcpy of the same bytes, medians over repeats.
//
// Exit status 0 only if every correctness check passes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../ops/cc/kernels/smelu_kernels.cu.h"
#include "cuda_harness.cuh"

using steadyrank::SmeluBackprop;
using steadyrank::SmeluCurvature;
using steadyrank::SmeluParams;
using steadyrank::SmeluValue;

template <typename T>
void CheckDtype(float beta, int64_t n, int offset, std::mt19937_64& rng) {
  // Inputs (as doubles first, then rounded to T; the reference uses the rounded values).
  std::normal_distribution<double> normal(0.0, 2.0 * beta);
  const double b = beta;
  const double specials[] = {b, -b, 0.0, -0.0, NAN, INFINITY, -INFINITY, b * 0.999, -b * 0.999};
  std::vector<T> hx(n), hdy(n), hddx(n);
  for (int64_t i = 0; i < n; ++i) {
    hx[i] = Host<T>::From(i < 9 ? specials[i] : normal(rng));
    hdy[i] = Host<T>::From(normal(rng));
    hddx[i] = Host<T>::From(normal(rng));
  }
  const size_t bytes = (n + offset) * sizeof(T);
  T *dx_in, *ddy, *dddx, *dy_out, *dout2;
  CHECK_CUDA(cudaMalloc(&dx_in, bytes));
  CHECK_CUDA(cudaMalloc(&ddy, bytes));
  CHECK_CUDA(cudaMalloc(&dddx, bytes));
  CHECK_CUDA(cudaMalloc(&dy_out, bytes));
  CHECK_CUDA(cudaMalloc(&dout2, bytes));
  T* x = dx_in + offset;
  T* dy = ddy + offset;
  T* ddx = dddx + offset;
  T* out = dy_out + offset;
  T* out2 = dout2 + offset;
  CHECK_CUDA(cudaMemcpy(x, hx.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dy, hdy.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(ddx, hddx.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  const auto p = SmeluParams<double>::Make(beta);
  std::vector<T> h1(n), h2(n);

  auto poison = [&]() {  // 0xFF bytes: NaN in every float format
    CHECK_CUDA(cudaMemset(dy_out, 0xFF, bytes));
    CHECK_CUDA(cudaMemset(dout2, 0xFF, bytes));
  };
  auto verify = [&](const char* name, const std::vector<T>& got, auto reference) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (!Close(got[i], reference(i))) {
        if (bad++ == 0) first = i;
      }
    }
    Report<T>(name, n, offset, bad, first, first >= 0 ? Host<T>::To(got[first]) : 0,
              first >= 0 ? reference(first) : 0);
  };
  auto X = [&](int64_t i) { return Host<T>::To(hx[i]); };

  poison();
  CHECK_CUDA(static_cast<cudaError_t>(steadyrank::cuda::LaunchSmelu(x, out, n, beta, nullptr)));
  CHECK_CUDA(cudaMemcpy(h1.data(), out, n * sizeof(T), cudaMemcpyDeviceToHost));
  verify("smelu", h1, [&](int64_t i) { return SmeluValue(X(i), p); });

  poison();
  CHECK_CUDA(static_cast<cudaError_t>(
      steadyrank::cuda::LaunchSmeluGrad(dy, x, out, n, beta, nullptr)));
  CHECK_CUDA(cudaMemcpy(h1.data(), out, n * sizeof(T), cudaMemcpyDeviceToHost));
  verify("smelu_grad", h1, [&](int64_t i) { return SmeluBackprop(Host<T>::To(hdy[i]), X(i), p); });

  poison();
  CHECK_CUDA(static_cast<cudaError_t>(
      steadyrank::cuda::LaunchSmeluGradGrad(ddx, dy, x, out, out2, n, beta, nullptr)));
  CHECK_CUDA(cudaMemcpy(h1.data(), out, n * sizeof(T), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(h2.data(), out2, n * sizeof(T), cudaMemcpyDeviceToHost));
  verify("gradgrad.d_dy", h1,
         [&](int64_t i) { return SmeluBackprop(Host<T>::To(hddx[i]), X(i), p); });
  verify("gradgrad.d_x", h2, [&](int64_t i) {
    // In the compute type, like the kernel: half/bfloat16 products are rounded once.
    return Host<T>::To(hddx[i]) * Host<T>::To(hdy[i]) * SmeluCurvature(X(i), p);
  });
  for (T* ptr : {dx_in, ddy, dddx, dy_out, dout2}) CHECK_CUDA(cudaFree(ptr));
}

struct BandwidthRow {
  int64_t n;
  double copy_gbps, fwd_gbps, bwd_gbps;
};

BandwidthRow Bandwidth(int64_t n, int repeats) {
  float *x, *dy, *y;
  CHECK_CUDA(cudaMalloc(&x, n * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&dy, n * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&y, n * sizeof(float)));
  FillUniform(x, n, -3.0f, 3.0f, 1);  // all three pieces
  FillUniform(dy, n, -1.0f, 1.0f, 2);
  const double b = static_cast<double>(n) * sizeof(float);
  const float copy_ms = TimeMs([&] {
    CHECK_CUDA(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice));
  }, repeats);
  const float fwd_ms = TimeMs([&] { steadyrank::cuda::LaunchSmelu(x, y, n, 1.0f, nullptr); },
                              repeats);
  const float bwd_ms = TimeMs(
      [&] { steadyrank::cuda::LaunchSmeluGrad(dy, x, y, n, 1.0f, nullptr); }, repeats);
  CHECK_CUDA(cudaGetLastError());
  for (float* p : {x, dy, y}) CHECK_CUDA(cudaFree(p));
  // Copy and forward move 2 arrays, backward 3.
  return {n, 2 * b / copy_ms / 1e6, 2 * b / fwd_ms / 1e6, 3 * b / bwd_ms / 1e6};
}

int main(int argc, char** argv) {
  std::string json_path;
  double max_n = 1e9;
  int repeats = 20;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--max-n" && i + 1 < argc) max_n = std::atof(argv[++i]);
    else if (a == "--repeats" && i + 1 < argc) repeats = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--json FILE] [--max-n N] [--repeats R]\n", argv[0]);
      return 2;
    }
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("GPU: %s (sm_%d%d, %d SMs)\n\nCorrectness (poisoned outputs, float64 reference):\n",
              prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  std::mt19937_64 rng(42);
  for (float beta : {1.0f, 0.3f}) {
    for (int64_t n : {int64_t{1}, int64_t{1000003}}) {
      for (int offset : {0, 1}) {
        CheckDtype<Half>(beta, n < 9 ? 9 : n, offset, rng);
        CheckDtype<BFloat16>(beta, n < 9 ? 9 : n, offset, rng);
        CheckDtype<float>(beta, n < 9 ? 9 : n, offset, rng);
        CheckDtype<double>(beta, n < 9 ? 9 : n, offset, rng);
      }
    }
  }
  std::printf("\nBandwidth, float32 (GB/s; %% of device-to-device copy):\n");
  std::printf("%12s %10s %18s %18s\n", "n", "copy", "forward", "backward");
  std::vector<BandwidthRow> rows;
  for (double n = 1e6; n <= max_n * 1.0001; n *= 10) {
    const BandwidthRow r = Bandwidth(static_cast<int64_t>(n), repeats);
    rows.push_back(r);
    std::printf("%12lld %10.1f %10.1f (%3.0f%%) %10.1f (%3.0f%%)\n",
                static_cast<long long>(r.n), r.copy_gbps, r.fwd_gbps,
                100 * r.fwd_gbps / r.copy_gbps, r.bwd_gbps, 100 * r.bwd_gbps / r.copy_gbps);
  }
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::perror(json_path.c_str());
      return 2;
    }
    std::fprintf(f, "{\"gpu\": \"%s\", \"failures\": %d, \"bandwidth\": [", prop.name,
                 g_failures);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::fprintf(f, "%s{\"n\": %lld, \"copy_gbps\": %.2f, \"forward_gbps\": %.2f, "
                   "\"backward_gbps\": %.2f}", i ? ", " : "", static_cast<long long>(rows[i].n),
                   rows[i].copy_gbps, rows[i].fwd_gbps, rows[i].bwd_gbps);
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  std::printf("\n%s: %d failure(s)\n", g_failures ? "FAILED" : "PASSED", g_failures);
  return g_failures ? 1 : 0;
}
