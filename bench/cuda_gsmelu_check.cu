// Standalone check of the g-SmeLU CUDA kernels, without TensorFlow.
//
//   make bench-cuda   (builds and runs this after cuda_smelu_check)
//   bench/out/cuda_gsmelu_check [--json FILE] [--max-n 1e9] [--repeats 20]
//
// 1. Correctness, for half, bfloat16, float and double, shared parameters (cols = 1) and
//    per-unit parameters (cols = 37 and 128), aligned and misaligned, outputs poisoned:
//    forward values and dx against a float64 host reference (gsmelu_math.h in double), and
//    every parameter gradient against float64 sums over the elements.
// 2. With slope_left = 0, slope_right = 1, alpha = beta, offset = 0 the forward and dx are
//    bit-for-bit the SmeLU kernels' results.
// 3. The parameter gradients are identical over repeated launches (fixed-order sums).
// 4. Invalid parameters (alpha + beta <= 0) give NaN outputs.
// 5. Bandwidth, float32, 1e6 .. 1e9 elements: forward and backward (with parameter
//    gradients), shared and per unit (128), against a device-to-device copy.
//
// Exit status 0 only if every correctness check passes.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <tuple>
#include <string>
#include <vector>

#include "../ops/cc/kernels/gsmelu_kernels.cu.h"
#include "cuda_harness.cuh"

using steadyrank::GSmeluParams;
using steadyrank::cuda::GSmeluParamPtrs;

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t count = 0;
  explicit DeviceBuffer(size_t n) : count(n) {
    CHECK_CUDA(cudaMalloc(&ptr, (n ? n : 1) * sizeof(T)));
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  void Upload(const std::vector<T>& h) {
    CHECK_CUDA(cudaMemcpy(ptr, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> Download(size_t n, size_t offset = 0) const {
    std::vector<T> h(n);
    CHECK_CUDA(cudaMemcpy(h.data(), ptr + offset, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  void Poison() { CHECK_CUDA(cudaMemset(ptr, 0xFF, (count ? count : 1) * sizeof(T))); }
};

struct HostParams {
  std::vector<double> v[5];  // alpha, beta, slope_left, slope_right, offset; 1 or cols values
  double at(int k, int64_t j) const { return v[k].size() == 1 ? v[k][0] : v[k][j]; }
};

HostParams MakeParams(int64_t cols, bool per_unit, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 0.5);
  const double base[5] = {0.7, 1.3, -0.2, 1.1, 0.3};
  HostParams p;
  for (int k = 0; k < 5; ++k) {
    const bool varied = per_unit && (k == 0 || k == 1 || k == 3);  // one shared one too
    p.v[k].assign(varied ? cols : 1, base[k]);
    if (varied) for (auto& x : p.v[k]) x += u(rng);
  }
  return p;
}

static const char* kParamNames[5] = {"alpha", "beta", "slope_left", "slope_right", "offset"};

template <typename T>
void Check(int64_t rows, int64_t cols, bool per_unit, int offset, std::mt19937_64& rng) {
  const int64_t n = rows * cols;
  const int64_t launch_cols = per_unit ? cols : 1;
  HostParams hp = MakeParams(cols, per_unit, rng);
  // Parameters rounded to T, as the kernels see them.
  for (int k = 0; k < 5; ++k)
    for (auto& x : hp.v[k]) x = Host<T>::To(Host<T>::From(x));
  std::normal_distribution<double> normal(0.0, 2.0);
  std::vector<T> hx(n + offset), hdy(n + offset);
  const double specials[] = {NAN, INFINITY, -INFINITY, 0.0};
  for (int64_t i = 0; i < n + offset; ++i) {
    hx[i] = Host<T>::From(i - offset >= 0 && i - offset < 4 ? specials[i - offset] : normal(rng));
    hdy[i] = Host<T>::From(normal(rng));
  }
  DeviceBuffer<T> dx_in(n + offset), ddy(n + offset), dout(n + offset);
  dx_in.Upload(hx);
  ddy.Upload(hdy);
  std::vector<DeviceBuffer<T>*> params, grads;
  GSmeluParamPtrs<T> ptrs;
  T* grad_ptrs[5];
  for (int k = 0; k < 5; ++k) {
    std::vector<T> raw;
    for (double x : hp.v[k]) raw.push_back(Host<T>::From(x));
    params.push_back(new DeviceBuffer<T>(raw.size()));
    params.back()->Upload(raw);
    grads.push_back(new DeviceBuffer<T>(raw.size()));
    grads.back()->Poison();
    ptrs.value[k] = params.back()->ptr;
    ptrs.size[k] = static_cast<int64_t>(raw.size());
    grad_ptrs[k] = grads.back()->ptr;
  }
  const int64_t ws_bytes = steadyrank::cuda::GSmeluWorkspaceBytes<T>(n, launch_cols, true);
  DeviceBuffer<char> ws(ws_bytes);
  const T* x = dx_in.ptr + offset;
  const T* dy = ddy.ptr + offset;
  T* out = dout.ptr + offset;

  char what[96];
  std::snprintf(what, sizeof(what), "%s cols=%lld", per_unit ? "per-unit" : "shared",
                static_cast<long long>(cols));
  auto X = [&](int64_t i) { return Host<T>::To(hx[i + offset]); };
  auto DY = [&](int64_t i) { return Host<T>::To(hdy[i + offset]); };
  auto P = [&](int64_t i) {
    const int64_t j = i % cols;
    return GSmeluParams<double>::Make(hp.at(0, j), hp.at(1, j), hp.at(2, j), hp.at(3, j),
                                      hp.at(4, j));
  };
  // Tolerance relative to the size of the terms summed (|gl x| + |t| + ...), not only of
  // the result: where the terms cancel, the result's relative error grows.
  auto verify = [&](const char* name, const std::vector<T>& got, auto reference,
                    auto magnitude) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; ++i) {
      const double want = reference(i);
      const double value = Host<T>::To(got[i]);
      const bool ok = std::isnan(want) ? std::isnan(value)
                      : std::isinf(want) ? value == want
                      : std::fabs(value - want) <=
                            Host<T>::Atol() + Host<T>::Rtol() * std::fmax(std::fabs(want),
                                                                          magnitude(i));
      if (!ok && bad++ == 0) first = i;
    }
    char label[160];
    std::snprintf(label, sizeof(label), "%s %s", name, what);
    Report<T>(label, n, offset, bad, first, first >= 0 ? Host<T>::To(got[first]) : 0,
              first >= 0 ? reference(first) : 0);
  };

  dout.Poison();
  CHECK_CUDA(static_cast<cudaError_t>(steadyrank::cuda::LaunchGSmelu(
      x, out, n, launch_cols, ptrs, ws.ptr, nullptr)));
  verify("gsmelu", dout.Download(n, offset),
         [&](int64_t i) { return steadyrank::GSmeluValue(X(i), P(i)); },
         [&](int64_t i) {
           const auto p = P(i);
           const double u = X(i) + p.alpha;
           return std::fabs(p.gl * X(i)) + std::fabs(p.t) + std::fabs(u * u * p.q) +
                  std::fabs(p.gr * X(i)) + std::fabs(p.c_right);
         });

  dout.Poison();
  CHECK_CUDA(static_cast<cudaError_t>(steadyrank::cuda::LaunchGSmeluGrad(
      dy, x, out, grad_ptrs, n, launch_cols, ptrs, ws.ptr, nullptr)));
  verify("gsmelu_grad.dx", dout.Download(n, offset),
         [&](int64_t i) { return steadyrank::GSmeluBackprop(DY(i), X(i), P(i)); },
         [&](int64_t i) {
           const auto p = P(i);
           return std::fabs(DY(i)) * (std::fabs(p.gl) + std::fabs(p.gr) +
                                      std::fabs((X(i) + p.alpha) * p.d_over_s));
         });

  // Parameter gradients: the specials (NaN, inf) make every sum NaN, so they are replaced by
  // finite values first; then float64 sums over every element.
  for (int64_t i = 0; i < 4; ++i) hx[i + offset] = Host<T>::From(0.25 * i);
  dx_in.Upload(hx);
  std::vector<double> sums(5 * cols, 0.0), mags(5 * cols, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const auto p = P(i);
    const auto part = steadyrank::GSmeluParamPartials(X(i), p);
    const int64_t j = i % cols;
    const double w = DY(i);
    const double terms[5] = {w, w * part.gl, w * part.gr, w * part.rho, w * part.sigma};
    for (int s = 0; s < 5; ++s) {
      sums[s * cols + j] += terms[s];
      mags[s * cols + j] += std::fabs(terms[s]);
    }
  }
  std::vector<double> want[5], scale[5];
  for (int k = 0; k < 5; ++k) {
    want[k].assign(hp.v[k].size(), 0.0);
    scale[k].assign(hp.v[k].size(), 0.0);
  }
  for (int64_t j = 0; j < cols; ++j) {
    double s[5], m[5], g[5], gm[5];
    for (int t = 0; t < 5; ++t) s[t] = sums[t * cols + j], m[t] = mags[t * cols + j];
    steadyrank::GSmeluColumnGrads(s, hp.at(0, j), hp.at(1, j), hp.at(2, j), hp.at(3, j), g);
    steadyrank::GSmeluColumnGrads(m, hp.at(0, j), hp.at(1, j), hp.at(2, j), hp.at(3, j), gm);
    for (int k = 0; k < 5; ++k) {
      const int64_t idx = hp.v[k].size() == 1 ? 0 : j;
      want[k][idx] += g[k];
      scale[k][idx] += std::fabs(gm[k]);
    }
  }
  for (int k = 0; k < 5; ++k) grads[k]->Poison();
  CHECK_CUDA(static_cast<cudaError_t>(steadyrank::cuda::LaunchGSmeluGrad(
      dy, x, out, grad_ptrs, n, launch_cols, ptrs, ws.ptr, nullptr)));
  std::vector<std::vector<T>> first(5);
  for (int k = 0; k < 5; ++k) {
    first[k] = grads[k]->Download(hp.v[k].size());
    int64_t bad = 0, first_bad = -1;
    for (size_t j = 0; j < first[k].size(); ++j) {
      const double got = Host<T>::To(first[k][j]);
      // Each element's partial is rounded in the compute type; the sum is in double.
      const double tol = 4 * Host<T>::Rtol() * scale[k][j] + 1e-12;
      if (!(std::fabs(got - want[k][j]) <= tol + Host<T>::Rtol() * std::fabs(want[k][j])) &&
          bad++ == 0)
        first_bad = static_cast<int64_t>(j);
    }
    char label[160];
    std::snprintf(label, sizeof(label), "d_%s %s", kParamNames[k], what);
    Report<T>(label, static_cast<int64_t>(first[k].size()), offset, bad, first_bad,
              first_bad >= 0 ? Host<T>::To(first[k][first_bad]) : 0,
              first_bad >= 0 ? want[k][first_bad] : 0);
  }
  // Determinism: a second launch gives the same bits.
  CHECK_CUDA(static_cast<cudaError_t>(steadyrank::cuda::LaunchGSmeluGrad(
      dy, x, out, grad_ptrs, n, launch_cols, ptrs, ws.ptr, nullptr)));
  int64_t differ = 0;
  for (int k = 0; k < 5; ++k) {
    const auto again = grads[k]->Download(hp.v[k].size());
    differ += std::memcmp(again.data(), first[k].data(), again.size() * sizeof(T)) != 0;
  }
  char label[160];
  std::snprintf(label, sizeof(label), "repeatable %s", what);
  Report<T>(label, n, offset, differ, differ ? 0 : -1, 0, 0);
  for (auto* b : params) delete b;
  for (auto* b : grads) delete b;
}

// g-SmeLU at the SmeLU point against the SmeLU kernels, bit for bit.
template <typename T>
void CheckSmeluPoint(float beta, int64_t n, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 2.0 * beta);
  std::vector<T> hx(n), hdy(n);
  const double specials[] = {beta, -beta, 0.0, -0.0, NAN, INFINITY, -INFINITY};
  for (int64_t i = 0; i < n; ++i) {
    hx[i] = Host<T>::From(i < 7 ? specials[i] : normal(rng));
    hdy[i] = Host<T>::From(normal(rng));
  }
  DeviceBuffer<T> x(n), dy(n), a(n), b(n);
  x.Upload(hx);
  dy.Upload(hdy);
  const double values[5] = {beta, beta, 0.0, 1.0, 0.0};
  std::vector<DeviceBuffer<T>*> bufs;
  GSmeluParamPtrs<T> ptrs;
  T* grads[5];
  for (int k = 0; k < 5; ++k) {
    bufs.push_back(new DeviceBuffer<T>(1));
    bufs.back()->Upload({Host<T>::From(values[k])});
    ptrs.value[k] = bufs.back()->ptr;
    ptrs.size[k] = 1;
    bufs.push_back(new DeviceBuffer<T>(1));
    grads[k] = bufs.back()->ptr;
  }
  DeviceBuffer<char> ws(steadyrank::cuda::GSmeluWorkspaceBytes<T>(n, 1, true));
  CHECK_CUDA(static_cast<cudaError_t>(steadyrank::cuda::LaunchSmelu(x.ptr, a.ptr, n, beta,
                                                                    nullptr)));
  CHECK_CUDA(static_cast<cudaError_t>(
      steadyrank::cuda::LaunchGSmelu(x.ptr, b.ptr, n, 1, ptrs, ws.ptr, nullptr)));
  auto ha = a.Download(n), hb = b.Download(n);
  int64_t bad = std::memcmp(ha.data(), hb.data(), n * sizeof(T)) != 0;
  Report<T>("smelu-point forward bits", n, 0, bad, bad ? 0 : -1, 0, 0);
  CHECK_CUDA(static_cast<cudaError_t>(
      steadyrank::cuda::LaunchSmeluGrad(dy.ptr, x.ptr, a.ptr, n, beta, nullptr)));
  CHECK_CUDA(static_cast<cudaError_t>(steadyrank::cuda::LaunchGSmeluGrad(
      dy.ptr, x.ptr, b.ptr, grads, n, 1, ptrs, ws.ptr, nullptr)));
  ha = a.Download(n);
  hb = b.Download(n);
  bad = std::memcmp(ha.data(), hb.data(), n * sizeof(T)) != 0;
  Report<T>("smelu-point dx bits", n, 0, bad, bad ? 0 : -1, 0, 0);
  for (auto* p : bufs) delete p;
}

void CheckInvalidGivesNan() {
  const int64_t n = 1000;
  DeviceBuffer<float> x(n), y(n), p(5);
  FillUniform(x.ptr, n, -2, 2, 7);
  p.Upload({-1.0f, 0.5f, 0.0f, 1.0f, 0.0f});  // alpha + beta < 0
  GSmeluParamPtrs<float> ptrs;
  for (int k = 0; k < 5; ++k) ptrs.value[k] = p.ptr + k, ptrs.size[k] = 1;
  DeviceBuffer<char> ws(steadyrank::cuda::GSmeluWorkspaceBytes<float>(n, 1, false));
  CHECK_CUDA(static_cast<cudaError_t>(
      steadyrank::cuda::LaunchGSmelu(x.ptr, y.ptr, n, 1, ptrs, ws.ptr, nullptr)));
  const auto h = y.Download(n);
  int64_t bad = 0;
  for (float v : h) bad += !std::isnan(v);
  Report<float>("invalid params -> NaN", n, 0, bad, bad ? 0 : -1, 0, 0);
}

struct Row {
  int64_t n;
  double copy, fwd_shared, bwd_shared, fwd_unit, bwd_unit;
};

Row Bandwidth(int64_t n, int repeats) {
  const int64_t cols = 128;
  DeviceBuffer<float> x(n), dy(n), y(n), params(5 * cols), grads(5 * cols);
  FillUniform(x.ptr, n, -3, 3, 11);
  FillUniform(dy.ptr, n, -1, 1, 12);
  FillUniform(params.ptr, 5 * cols, 0.5f, 1.5f, 13);  // every value a valid parameter
  GSmeluParamPtrs<float> shared, unit;
  float* g_shared[5];
  float* g_unit[5];
  for (int k = 0; k < 5; ++k) {
    shared.value[k] = params.ptr + k * cols, shared.size[k] = 1;
    unit.value[k] = params.ptr + k * cols, unit.size[k] = k == 1 ? cols : 1;  // per-unit beta
    g_shared[k] = grads.ptr + k * cols;
    g_unit[k] = grads.ptr + k * cols;
  }
  DeviceBuffer<char> ws(std::max(steadyrank::cuda::GSmeluWorkspaceBytes<float>(n, 1, true),
                                 steadyrank::cuda::GSmeluWorkspaceBytes<float>(n, cols, true)));
  const double b = static_cast<double>(n) * sizeof(float);
  Row r{n};
  r.copy = 2 * b / TimeMs([&] {
    CHECK_CUDA(cudaMemcpyAsync(y.ptr, x.ptr, n * sizeof(float), cudaMemcpyDeviceToDevice));
  }, repeats) / 1e6;
  r.fwd_shared = 2 * b / TimeMs([&] {
    steadyrank::cuda::LaunchGSmelu(x.ptr, y.ptr, n, 1, shared, ws.ptr, nullptr);
  }, repeats) / 1e6;
  r.bwd_shared = 3 * b / TimeMs([&] {
    steadyrank::cuda::LaunchGSmeluGrad(dy.ptr, x.ptr, y.ptr, g_shared, n, 1, shared, ws.ptr,
                                       nullptr);
  }, repeats) / 1e6;
  r.fwd_unit = 2 * b / TimeMs([&] {
    steadyrank::cuda::LaunchGSmelu(x.ptr, y.ptr, n, cols, unit, ws.ptr, nullptr);
  }, repeats) / 1e6;
  r.bwd_unit = 3 * b / TimeMs([&] {
    steadyrank::cuda::LaunchGSmeluGrad(dy.ptr, x.ptr, y.ptr, g_unit, n, cols, unit, ws.ptr,
                                       nullptr);
  }, repeats) / 1e6;
  CHECK_CUDA(cudaGetLastError());
  return r;
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
  std::printf("GPU: %s (sm_%d%d, %d SMs)\n\ng-SmeLU correctness (poisoned outputs, float64 "
              "reference):\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  std::mt19937_64 rng(7);
  for (int offset : {0, 1}) {
    for (auto [rows, cols, per_unit] : {std::tuple<int64_t, int64_t, bool>{100003, 1, false},
                                        {2711, 37, true}, {1601, 128, true}}) {
      Check<Half>(rows, cols, per_unit, offset, rng);
      Check<BFloat16>(rows, cols, per_unit, offset, rng);
      Check<float>(rows, cols, per_unit, offset, rng);
      Check<double>(rows, cols, per_unit, offset, rng);
    }
  }
  for (float beta : {0.5f, 1.0f, 2.0f}) {
    CheckSmeluPoint<Half>(beta, 100003, rng);
    CheckSmeluPoint<BFloat16>(beta, 100003, rng);
    CheckSmeluPoint<float>(beta, 100003, rng);
    CheckSmeluPoint<double>(beta, 100003, rng);
  }
  CheckInvalidGivesNan();
  std::printf("\nBandwidth, float32 (GB/s; %% of device-to-device copy); backward includes "
              "the parameter gradients:\n");
  std::printf("%12s %9s %16s %16s %16s %16s\n", "n", "copy", "fwd shared", "bwd shared",
              "fwd per-unit", "bwd per-unit");
  std::vector<Row> rows;
  for (double n = 1e6; n <= max_n * 1.0001; n *= 10) {
    const Row r = Bandwidth(static_cast<int64_t>(n), repeats);
    rows.push_back(r);
    std::printf("%12lld %9.1f %9.1f (%3.0f%%) %9.1f (%3.0f%%) %9.1f (%3.0f%%) %9.1f (%3.0f%%)\n",
                static_cast<long long>(r.n), r.copy, r.fwd_shared, 100 * r.fwd_shared / r.copy,
                r.bwd_shared, 100 * r.bwd_shared / r.copy, r.fwd_unit,
                100 * r.fwd_unit / r.copy, r.bwd_unit, 100 * r.bwd_unit / r.copy);
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
      const Row& r = rows[i];
      std::fprintf(f, "%s{\"n\": %lld, \"copy_gbps\": %.2f, \"forward_shared_gbps\": %.2f, "
                   "\"backward_shared_gbps\": %.2f, \"forward_per_unit_gbps\": %.2f, "
                   "\"backward_per_unit_gbps\": %.2f}", i ? ", " : "",
                   static_cast<long long>(r.n), r.copy, r.fwd_shared, r.bwd_shared, r.fwd_unit,
                   r.bwd_unit);
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  std::printf("\n%s: %d failure(s)\n", g_failures ? "FAILED" : "PASSED", g_failures);
  return g_failures ? 1 : 0;
}
