/* g-SmeLU CUDA kernels (no TensorFlow dependency).
 *
 * 1. A prepare kernel turns the raw parameters (1 or `cols` values each) into
 *    one GSmeluParams per column in the workspace, so the element kernels do no
 *    division. Invalid parameters become NaN there.
 * 2. The forward kernel is a grid-stride loop over 16-byte vectors when every
 *    pointer is aligned (scalar tail), else over scalars, like SmeLU's.
 * 3. The backward kernel writes dx and accumulates the five parameter sums in
 *    double: with shared parameters (cols == 1) each block reduces its own
 *    elements; per unit, a block owns 32 columns and strides over rows.
 *    Block partials go to the workspace, and a finalize kernel adds them in a
 *    fixed order, so the result does not depend on scheduling (no atomics).
 * The per-element math is gsmelu_math.h, the code the CPU kernels run.
 */
#ifndef STEADYRANK_OPS_CC_KERNELS_GSMELU_KERNELS_CU_H_
#define STEADYRANK_OPS_CC_KERNELS_GSMELU_KERNELS_CU_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "gsmelu_launch.h"
#include "gsmelu_math.h"
#include "smelu_kernels.cu.h"  // Traits, Vec16, SmCount, Aligned16, Dev

namespace steadyrank {
namespace cuda {
namespace gdetail {

using detail::Aligned16;
using detail::Traits;
using detail::Vec16;

constexpr int kThreads = 256;
constexpr int kTileCols = 32;                    // per-unit kernels: column groups per block
constexpr int kTileRows = kThreads / kTileCols;  // and rows per block step
constexpr int kMaxGroup = 4;                     // most columns one thread owns (backward)

template <typename T>
using Compute = typename Traits<T>::Compute;
template <typename T>
using Params = GSmeluParams<Compute<T>>;

inline int64_t AlignUp(int64_t v) { return (v + 255) / 256 * 256; }

// Workspace layout: [params: cols x Params<T>][partials: blocks x 5 x cols doubles]
// [column grads: 5 x cols doubles].
struct Layout {
  int64_t params_bytes, partial_blocks, partials_bytes, colgrad_bytes;
  int grid_x, grid_y;  // backward grid
};

template <typename T>
Layout MakeLayout(int64_t n, int64_t cols) {
  Layout l;
  l.params_bytes = AlignUp(cols * static_cast<int64_t>(sizeof(Params<T>)));
  const int64_t max_blocks = static_cast<int64_t>(detail::SmCount()) * 4;
  if (cols == 1) {
    using D = typename Traits<T>::Device;
    const int64_t work = (n + Vec16<D>::kSize - 1) / Vec16<D>::kSize;
    const int64_t want = (work + kThreads - 1) / kThreads;
    l.grid_x = static_cast<int>(want < max_blocks ? (want > 0 ? want : 1) : max_blocks);
    l.grid_y = 1;
    l.partial_blocks = l.grid_x;
  } else {
    const int64_t rows = (n + cols - 1) / cols;
    // The fewest tiles any column grouping gives, so the partials fit every grouping.
    const int64_t tiles = (cols + kTileCols * kMaxGroup - 1) / (kTileCols * kMaxGroup);
    int64_t gy = (max_blocks + tiles - 1) / tiles;
    const int64_t row_steps = (rows + kTileRows - 1) / kTileRows;
    if (gy > row_steps) gy = row_steps;
    if (gy < 1) gy = 1;
    l.grid_x = static_cast<int>(tiles);
    l.grid_y = static_cast<int>(gy);
    l.partial_blocks = gy;
  }
  l.partials_bytes = AlignUp(l.partial_blocks * kGSmeluSums * cols * 8);
  l.colgrad_bytes = AlignUp(5 * cols * 8);
  return l;
}

template <typename T>
__global__ void PrepareKernel(GSmeluParamPtrs<T> raw, int64_t cols, Params<T>* out) {
  using Tr = Traits<T>;
  using C = Compute<T>;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < cols;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    C v[5];
#pragma unroll
    for (int k = 0; k < 5; ++k) {
      const auto* ptr = reinterpret_cast<const typename Tr::Device*>(raw.value[k]);
      v[k] = Tr::Load(ptr[raw.size[k] == 1 ? 0 : j]);
    }
    Params<T> p = Params<T>::Make(v[0], v[1], v[2], v[3], v[4]);
    if (!p.valid) {  // poison every derived constant: all outputs become NaN
      const C nan = static_cast<C>(NAN);
      p = Params<T>::Make(nan, nan, nan, nan, nan);
      p.valid = false;
    }
    out[j] = p;
  }
}

// V consecutive elements, loaded and stored as one access.
template <typename D, int V>
struct alignas(sizeof(D) * V) VecN {
  D v[V];
};

// Shared parameters: flat grid-stride loop over 16-byte vectors (or scalars).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    ForwardSharedKernel(const typename Traits<T>::Device* __restrict__ x,
                        typename Traits<T>::Device* __restrict__ y, int64_t n,
                        const Params<T>* __restrict__ params, bool vectorized) {
  using Tr = Traits<T>;
  using D = typename Tr::Device;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const Params<T> p = params[0];
  int64_t done = 0;
  if (vectorized) {
    constexpr int V = Vec16<D>::kSize;
    const int64_t nvec = n / V;
    for (int64_t i = tid; i < nvec; i += stride) {
      const Vec16<D> in = reinterpret_cast<const Vec16<D>*>(x)[i];
      Vec16<D> out;
#pragma unroll
      for (int e = 0; e < V; ++e) out.v[e] = Tr::Store(GSmeluValue(Tr::Load(in.v[e]), p));
      reinterpret_cast<Vec16<D>*>(y)[i] = out;
    }
    done = nvec * V;
  }
  for (int64_t i = done + tid; i < n; i += stride) {
    y[i] = Tr::Store(GSmeluValue(Tr::Load(x[i]), p));
  }
}

// Per-unit parameters: block (32 column groups x 8 rows); a thread owns V consecutive
// columns, keeps their parameters in registers and strides over rows.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    ForwardPerUnitKernel(const typename Traits<T>::Device* __restrict__ x,
                         typename Traits<T>::Device* __restrict__ y, int64_t n, int64_t cols,
                         const Params<T>* __restrict__ params) {
  using Tr = Traits<T>;
  using D = typename Tr::Device;
  const int tx = threadIdx.x % kTileCols;
  const int ty = threadIdx.x / kTileCols;
  const int64_t c0 = (static_cast<int64_t>(blockIdx.x) * kTileCols + tx) * V;
  if (c0 >= cols) return;
  Params<T> p[V];
#pragma unroll
  for (int e = 0; e < V; ++e) p[e] = params[c0 + e];
  const int64_t rows = n / cols;
  for (int64_t r = static_cast<int64_t>(blockIdx.y) * kTileRows + ty; r < rows;
       r += static_cast<int64_t>(gridDim.y) * kTileRows) {
    const int64_t i = r * cols + c0;
    const VecN<D, V> in = *reinterpret_cast<const VecN<D, V>*>(x + i);
    VecN<D, V> out;
#pragma unroll
    for (int e = 0; e < V; ++e) out.v[e] = Tr::Store(GSmeluValue(Tr::Load(in.v[e]), p[e]));
    *reinterpret_cast<VecN<D, V>*>(y + i) = out;
  }
}

__device__ __forceinline__ double WarpSum(double v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

template <typename T>
__device__ __forceinline__ void AccumulateOne(typename Traits<T>::Compute dy,
                                              typename Traits<T>::Compute x,
                                              const Params<T>& p, double (&acc)[kGSmeluSums]) {
  const auto part = GSmeluParamPartials(x, p);
  const double w = static_cast<double>(dy);
  acc[kSumT] += w;
  acc[kSumGl] += w * static_cast<double>(part.gl);
  acc[kSumGr] += w * static_cast<double>(part.gr);
  acc[kSumRho] += w * static_cast<double>(part.rho);
  acc[kSumSigma] += w * static_cast<double>(part.sigma);
}

// Shared parameters: flat grid-stride loop; partials[block][k].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    BackwardSharedKernel(const typename Traits<T>::Device* __restrict__ dy,
                         const typename Traits<T>::Device* __restrict__ x,
                         typename Traits<T>::Device* __restrict__ dx, int64_t n,
                         const Params<T>* __restrict__ params, bool vectorized,
                         double* __restrict__ partials) {
  using Tr = Traits<T>;
  using D = typename Tr::Device;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const Params<T> p = params[0];
  double acc[kGSmeluSums] = {0, 0, 0, 0, 0};
  int64_t done = 0;
  if (vectorized) {
    constexpr int V = Vec16<D>::kSize;
    const int64_t nvec = n / V;
    for (int64_t i = tid; i < nvec; i += stride) {
      const Vec16<D> vdy = reinterpret_cast<const Vec16<D>*>(dy)[i];
      const Vec16<D> vx = reinterpret_cast<const Vec16<D>*>(x)[i];
      Vec16<D> out;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const auto g = Tr::Load(vdy.v[e]);
        const auto xv = Tr::Load(vx.v[e]);
        out.v[e] = Tr::Store(GSmeluBackprop(g, xv, p));
        AccumulateOne<T>(g, xv, p, acc);
      }
      reinterpret_cast<Vec16<D>*>(dx)[i] = out;
    }
    done = nvec * V;
  }
  for (int64_t i = done + tid; i < n; i += stride) {
    const auto g = Tr::Load(dy[i]);
    const auto xv = Tr::Load(x[i]);
    dx[i] = Tr::Store(GSmeluBackprop(g, xv, p));
    AccumulateOne<T>(g, xv, p, acc);
  }
  __shared__ double warp_sums[kThreads / 32][kGSmeluSums];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < kGSmeluSums; ++k) {
    const double v = WarpSum(acc[k]);
    if (lane == 0) warp_sums[warp][k] = v;
  }
  __syncthreads();
  if (threadIdx.x < kGSmeluSums) {
    double total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w][threadIdx.x];
    partials[static_cast<int64_t>(blockIdx.x) * kGSmeluSums + threadIdx.x] = total;
  }
}

// Per-unit parameters: block (32 column groups x 8 rows), a thread owning V consecutive
// columns; grid (column tiles, row groups); partials[row group][k][col].
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    BackwardPerUnitKernel(const typename Traits<T>::Device* __restrict__ dy,
                          const typename Traits<T>::Device* __restrict__ x,
                          typename Traits<T>::Device* __restrict__ dx, int64_t n, int64_t cols,
                          const Params<T>* __restrict__ params,
                          double* __restrict__ partials) {
  using Tr = Traits<T>;
  using D = typename Tr::Device;
  const int tx = threadIdx.x % kTileCols;
  const int ty = threadIdx.x / kTileCols;
  const int64_t c0 = (static_cast<int64_t>(blockIdx.x) * kTileCols + tx) * V;
  const int64_t rows = n / cols;
  double acc[kGSmeluSums][V];
#pragma unroll
  for (int k = 0; k < kGSmeluSums; ++k)
#pragma unroll
    for (int e = 0; e < V; ++e) acc[k][e] = 0;
  if (c0 < cols) {
    Params<T> p[V];
#pragma unroll
    for (int e = 0; e < V; ++e) p[e] = params[c0 + e];
    for (int64_t r = static_cast<int64_t>(blockIdx.y) * kTileRows + ty; r < rows;
         r += static_cast<int64_t>(gridDim.y) * kTileRows) {
      const int64_t i = r * cols + c0;
      const VecN<D, V> vdy = *reinterpret_cast<const VecN<D, V>*>(dy + i);
      const VecN<D, V> vx = *reinterpret_cast<const VecN<D, V>*>(x + i);
      VecN<D, V> out;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const auto g = Tr::Load(vdy.v[e]);
        const auto xv = Tr::Load(vx.v[e]);
        out.v[e] = Tr::Store(GSmeluBackprop(g, xv, p[e]));
        const auto part = GSmeluParamPartials(xv, p[e]);
        const double w = static_cast<double>(g);
        acc[kSumT][e] += w;
        acc[kSumGl][e] += w * static_cast<double>(part.gl);
        acc[kSumGr][e] += w * static_cast<double>(part.gr);
        acc[kSumRho][e] += w * static_cast<double>(part.rho);
        acc[kSumSigma][e] += w * static_cast<double>(part.sigma);
      }
      *reinterpret_cast<VecN<D, V>*>(dx + i) = out;
    }
  }
  // Sum over the 8 row threads of each column, one sum at a time (fixed order).
  __shared__ double sums[kTileRows][kTileCols * V];
#pragma unroll
  for (int k = 0; k < kGSmeluSums; ++k) {
#pragma unroll
    for (int e = 0; e < V; ++e) sums[ty][tx * V + e] = acc[k][e];
    __syncthreads();
    for (int c = threadIdx.x; c < kTileCols * V; c += kThreads) {
      const int64_t col = static_cast<int64_t>(blockIdx.x) * kTileCols * V + c;
      if (col < cols) {
        double total = 0;
        for (int r = 0; r < kTileRows; ++r) total += sums[r][c];
        partials[(static_cast<int64_t>(blockIdx.y) * kGSmeluSums + k) * cols + col] = total;
      }
    }
    __syncthreads();
  }
}

// Column gradients: colgrads[k][j] from the block partials. One block per column: thread t
// adds blocks t, t + 256, ...; then a shared-memory tree; the order is fixed, so the result
// is too. Per-unit parameters are written straight to their outputs.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    FinalizeColumnsKernel(const double* __restrict__ partials, int64_t blocks, int64_t cols,
                          const Params<T>* __restrict__ params, double* __restrict__ colgrads,
                          GSmeluParamPtrs<T> raw, typename Traits<T>::Device* g0,
                          typename Traits<T>::Device* g1, typename Traits<T>::Device* g2,
                          typename Traits<T>::Device* g3, typename Traits<T>::Device* g4) {
  using Tr = Traits<T>;
  typename Tr::Device* outs[5] = {g0, g1, g2, g3, g4};
  __shared__ double part[kGSmeluSums][kThreads];
  for (int64_t j = blockIdx.x; j < cols; j += gridDim.x) {
    double s[kGSmeluSums] = {0, 0, 0, 0, 0};
    for (int64_t b = threadIdx.x; b < blocks; b += kThreads) {
#pragma unroll
      for (int k = 0; k < kGSmeluSums; ++k) s[k] += partials[(b * kGSmeluSums + k) * cols + j];
    }
#pragma unroll
    for (int k = 0; k < kGSmeluSums; ++k) part[k][threadIdx.x] = s[k];
    __syncthreads();
    for (int step = kThreads / 2; step > 0; step >>= 1) {
      if (threadIdx.x < step) {
#pragma unroll
        for (int k = 0; k < kGSmeluSums; ++k) part[k][threadIdx.x] += part[k][threadIdx.x + step];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      double total[kGSmeluSums];
#pragma unroll
      for (int k = 0; k < kGSmeluSums; ++k) total[k] = part[k][0];
      const Params<T>& p = params[j];
      double g[5];
      GSmeluColumnGrads(total, static_cast<double>(p.alpha), static_cast<double>(p.beta),
                        static_cast<double>(p.gl), static_cast<double>(p.gr), g);
#pragma unroll
      for (int k = 0; k < 5; ++k) {
        colgrads[k * cols + j] = g[k];
        if (raw.size[k] != 1) outs[k][j] = Tr::Store(static_cast<Compute<T>>(g[k]));
      }
    }
    __syncthreads();
  }
}

// Shared parameters' gradients: the sum over columns, one block, fixed order.
template <typename T>
__global__ void FinalizeSharedKernel(const double* __restrict__ colgrads, int64_t cols,
                                     GSmeluParamPtrs<T> raw, typename Traits<T>::Device* g0,
                                     typename Traits<T>::Device* g1,
                                     typename Traits<T>::Device* g2,
                                     typename Traits<T>::Device* g3,
                                     typename Traits<T>::Device* g4) {
  using Tr = Traits<T>;
  typename Tr::Device* outs[5] = {g0, g1, g2, g3, g4};
  __shared__ double part[kThreads];
  for (int k = 0; k < 5; ++k) {
    if (raw.size[k] != 1) continue;  // uniform across the block
    double v = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) v += colgrads[k * cols + j];
    part[threadIdx.x] = v;
    __syncthreads();
    for (int step = kThreads / 2; step > 0; step >>= 1) {
      if (threadIdx.x < step) part[threadIdx.x] += part[threadIdx.x + step];
      __syncthreads();
    }
    if (threadIdx.x == 0) outs[k][0] = Tr::Store(static_cast<Compute<T>>(part[0]));
    __syncthreads();
  }
}

inline int Blocks(int64_t items) {
  const int64_t b = (items + kThreads - 1) / kThreads;
  return static_cast<int>(b < 1024 ? (b > 0 ? b : 1) : 1024);
}

template <typename T>
int Prepare(const GSmeluParamPtrs<T>& params, int64_t cols, void* workspace,
            cudaStream_t stream) {
  PrepareKernel<T><<<Blocks(cols), kThreads, 0, stream>>>(
      params, cols, static_cast<Params<T>*>(workspace));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace gdetail

template <typename T>
int64_t GSmeluWorkspaceBytes(int64_t n, int64_t cols, bool grad) {
  const gdetail::Layout l = gdetail::MakeLayout<T>(n, cols);
  return l.params_bytes + (grad ? l.partials_bytes + l.colgrad_bytes : 0);
}

namespace gdetail {

// Columns per thread in the per-unit kernels: Want when the rows are whole vectors of that
// many elements and every pointer is aligned to them, else 1.
template <typename D>
int Group(int want, int64_t cols, std::initializer_list<const void*> ptrs) {
  if (cols % want != 0) return 1;
  for (const void* p : ptrs) {
    if (reinterpret_cast<uintptr_t>(p) % (want * sizeof(D)) != 0) return 1;
  }
  return want;
}

inline dim3 PerUnitGrid(int64_t n, int64_t cols, int group) {
  const int64_t tiles = (cols / group + kTileCols - 1) / kTileCols;
  const int64_t rows = n / cols;
  const int64_t max_blocks = static_cast<int64_t>(detail::SmCount()) * 8;
  int64_t gy = (max_blocks + tiles - 1) / tiles;
  const int64_t row_steps = (rows + kTileRows - 1) / kTileRows;
  gy = gy > row_steps ? row_steps : gy;
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(gy < 1 ? 1 : gy));
}

}  // namespace gdetail

template <typename T>
int LaunchGSmelu(const T* x, T* y, int64_t n, int64_t cols, const GSmeluParamPtrs<T>& params,
                 void* workspace, void* stream) {
  if (n <= 0) return 0;
  using D = typename detail::Traits<T>::Device;
  using gdetail::kThreads;
  auto s = static_cast<cudaStream_t>(stream);
  if (int err = gdetail::Prepare(params, cols, workspace, s)) return err;
  const auto* prepared = static_cast<const gdetail::Params<T>*>(workspace);
  if (cols == 1) {
    const bool vectorized = gdetail::Aligned16(x) && gdetail::Aligned16(y);
    const int64_t work =
        vectorized ? (n + detail::Vec16<D>::kSize - 1) / detail::Vec16<D>::kSize : n;
    static const int max_blocks = detail::SmCount() * 8;
    const int64_t want = (work + kThreads - 1) / kThreads;
    const int blocks = static_cast<int>(want < max_blocks ? want : max_blocks);
    gdetail::ForwardSharedKernel<T><<<blocks, kThreads, 0, s>>>(
        detail::Dev(x), detail::Dev(y), n, prepared, vectorized);
    return static_cast<int>(cudaGetLastError());
  }
  constexpr int kV = detail::Vec16<D>::kSize;
  const int group = gdetail::Group<D>(kV, cols, {x, y});
  const dim3 grid = gdetail::PerUnitGrid(n, cols, group);
  if (group == kV) {
    gdetail::ForwardPerUnitKernel<T, kV><<<grid, kThreads, 0, s>>>(
        detail::Dev(x), detail::Dev(y), n, cols, prepared);
  } else {
    gdetail::ForwardPerUnitKernel<T, 1><<<grid, kThreads, 0, s>>>(
        detail::Dev(x), detail::Dev(y), n, cols, prepared);
  }
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int LaunchGSmeluGrad(const T* dy, const T* x, T* dx, T* const grads[5], int64_t n,
                     int64_t cols, const GSmeluParamPtrs<T>& params, void* workspace,
                     void* stream) {
  using D = typename detail::Traits<T>::Device;
  auto s = static_cast<cudaStream_t>(stream);
  const gdetail::Layout l = gdetail::MakeLayout<T>(n, cols);
  char* base = static_cast<char*>(workspace);
  auto* prepared = reinterpret_cast<gdetail::Params<T>*>(base);
  auto* partials = reinterpret_cast<double*>(base + l.params_bytes);
  auto* colgrads = reinterpret_cast<double*>(base + l.params_bytes + l.partials_bytes);
  if (int err = gdetail::Prepare(params, cols, workspace, s)) return err;
  if (n <= 0) {  // every gradient is an empty sum
    if (cudaMemsetAsync(partials, 0, l.partials_bytes, s) != cudaSuccess) {
      return static_cast<int>(cudaGetLastError());
    }
  } else if (cols == 1) {
    const bool vectorized =
        gdetail::Aligned16(dy) && gdetail::Aligned16(x) && gdetail::Aligned16(dx);
    gdetail::BackwardSharedKernel<T><<<l.grid_x, gdetail::kThreads, 0, s>>>(
        detail::Dev(dy), detail::Dev(x), detail::Dev(dx), n, prepared, vectorized, partials);
  } else {
    // Columns per thread: 4 (2 for double), so 8 doubles of sums per column stay in registers.
    constexpr int kV = detail::Vec16<D>::kSize < gdetail::kMaxGroup ? detail::Vec16<D>::kSize
                                                                     : gdetail::kMaxGroup;
    const int group = gdetail::Group<D>(kV, cols, {dy, x, dx});
    dim3 grid = gdetail::PerUnitGrid(n, cols, group);
    grid.y = static_cast<unsigned>(l.partial_blocks);  // the rows the partials were sized for
    if (group == kV) {
      gdetail::BackwardPerUnitKernel<T, kV><<<grid, gdetail::kThreads, 0, s>>>(
          detail::Dev(dy), detail::Dev(x), detail::Dev(dx), n, cols, prepared, partials);
    } else {
      gdetail::BackwardPerUnitKernel<T, 1><<<grid, gdetail::kThreads, 0, s>>>(
          detail::Dev(dy), detail::Dev(x), detail::Dev(dx), n, cols, prepared, partials);
    }
  }
  if (int err = static_cast<int>(cudaGetLastError())) return err;
  D* g[5];
  for (int k = 0; k < 5; ++k) g[k] = reinterpret_cast<D*>(grads[k]);
  const int fin_blocks = static_cast<int>(cols < 4096 ? cols : 4096);
  gdetail::FinalizeColumnsKernel<T><<<fin_blocks, gdetail::kThreads, 0, s>>>(
      partials, l.partial_blocks, cols, prepared, colgrads, params, g[0], g[1], g[2], g[3],
      g[4]);
  bool any_shared = false;
  for (int k = 0; k < 5; ++k) any_shared = any_shared || params.size[k] == 1;
  if (any_shared) {
    gdetail::FinalizeSharedKernel<T><<<1, gdetail::kThreads, 0, s>>>(
        colgrads, cols, params, g[0], g[1], g[2], g[3], g[4]);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace cuda
}  // namespace steadyrank

#endif  // STEADYRANK_OPS_CC_KERNELS_GSMELU_KERNELS_CU_H_
