// Helpers shared by the standalone CUDA checks (cuda_smelu_check.cu, cuda_gsmelu_check.cu):
// error checks, host conversions and tolerances per dtype, event timing, random fills.
#ifndef STEADYRANK_BENCH_CUDA_HARNESS_CUH_
#define STEADYRANK_BENCH_CUDA_HARNESS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../ops/cc/kernels/smelu_launch.h"

using steadyrank::cuda::BFloat16;
using steadyrank::cuda::Half;

#define CHECK_CUDA(expr)                                                               \
  do {                                                                                 \
    cudaError_t err_ = (expr);                                                         \
    if (err_ != cudaSuccess) {                                                         \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr,             \
                   cudaGetErrorString(err_));                                          \
      std::exit(2);                                                                    \
    }                                                                                  \
  } while (0)

// Host conversions between storage types and double.
template <typename T>
struct Host {
  static T From(double v) { return static_cast<T>(v); }
  static double To(T v) { return static_cast<double>(v); }
  static const char* Name();
  static double Rtol();
  static double Atol();
};
template <> const char* Host<float>::Name() { return "float32"; }
template <> double Host<float>::Rtol() { return 2e-6; }
template <> double Host<float>::Atol() { return 1e-7; }
template <> const char* Host<double>::Name() { return "float64"; }
template <> double Host<double>::Rtol() { return 1e-13; }
template <> double Host<double>::Atol() { return 1e-15; }
template <>
struct Host<Half> {
  static Half From(double v) {
    __half h = __float2half_rn(static_cast<float>(v));
    Half out;
    std::memcpy(&out, &h, 2);
    return out;
  }
  static double To(Half v) {
    __half h;
    std::memcpy(&h, &v, 2);
    return __half2float(h);
  }
  static const char* Name() { return "float16"; }
  static double Rtol() { return 1e-3; }
  static double Atol() { return 1e-4; }
};
template <>
struct Host<BFloat16> {
  static BFloat16 From(double v) {
    __nv_bfloat16 h = __float2bfloat16_rn(static_cast<float>(v));
    BFloat16 out;
    std::memcpy(&out, &h, 2);
    return out;
  }
  static double To(BFloat16 v) {
    __nv_bfloat16 h;
    std::memcpy(&h, &v, 2);
    return __bfloat162float(h);
  }
  static const char* Name() { return "bfloat16"; }
  static double Rtol() { return 8e-3; }
  static double Atol() { return 1e-5; }
};

static int g_failures = 0;

template <typename T>
bool Close(T got_raw, double want) {
  const double got = Host<T>::To(got_raw);
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= Host<T>::Atol() + Host<T>::Rtol() * std::fabs(want);
}

template <typename T>
void Report(const char* kernel, int64_t n, int offset, int64_t bad, int64_t first_bad,
            double got, double want) {
  if (bad == 0) {
    std::printf("  ok    %-9s %-14s n=%-8lld offset=%d\n", Host<T>::Name(), kernel,
                static_cast<long long>(n), offset);
  } else {
    ++g_failures;
    std::printf("  FAIL  %-9s %-14s n=%-8lld offset=%d: %lld bad, first at %lld: got %.9g "
                "want %.9g\n", Host<T>::Name(), kernel, static_cast<long long>(n), offset,
                static_cast<long long>(bad), static_cast<long long>(first_bad), got, want);
  }
}

float MedianMs(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename Fn>
float TimeMs(Fn fn, int repeats) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  fn();  // warm up
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> samples;
  for (int r = 0; r < repeats; ++r) {
    CHECK_CUDA(cudaEventRecord(start));
    fn();
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    samples.push_back(ms);
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  return MedianMs(samples);
}

// Fills p[0..n) with values uniform in [lo, hi) from a hash of the index (never zeros:
// timing on zeros can flatter a kernel and hides unwritten outputs).
__global__ void FillUniformKernel(float* p, int64_t n, float lo, float hi, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    p[i] = lo + (hi - lo) * (h * (1.0f / 4294967296.0f));
  }
}

inline void FillUniform(float* p, int64_t n, float lo, float hi, uint32_t seed) {
  FillUniformKernel<<<1024, 256>>>(p, n, lo, hi, seed);
  CHECK_CUDA(cudaGetLastError());
}

#endif  // STEADYRANK_BENCH_CUDA_HARNESS_CUH_
