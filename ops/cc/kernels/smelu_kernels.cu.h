/* SmeLU CUDA kernels (no TensorFlow dependency).
 *
 * One elementwise kernel template serves every op: grid-stride loops over
 * 16-byte vectors (float4-sized: 4 floats, 2 doubles, 8 halfs) when every
 * pointer is 16-byte aligned, then a scalar tail; otherwise a scalar loop.
 * half and bfloat16 are computed in float. The per-element math is
 * smelu_math.h, the same code the CPU kernels run.
 */
#ifndef STEADYRANK_OPS_CC_KERNELS_SMELU_KERNELS_CU_H_
#define STEADYRANK_OPS_CC_KERNELS_SMELU_KERNELS_CU_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "smelu_launch.h"
#include "smelu_math.h"

namespace steadyrank {
namespace cuda {
namespace detail {

// Storage type -> (device type, compute type, conversions).
template <typename T>
struct Traits {
  using Device = T;
  using Compute = T;
  static __device__ __forceinline__ Compute Load(Device v) { return v; }
  static __device__ __forceinline__ Device Store(Compute v) { return v; }
};
template <>
struct Traits<Half> {
  using Device = __half;
  using Compute = float;
  static __device__ __forceinline__ Compute Load(Device v) { return __half2float(v); }
  static __device__ __forceinline__ Device Store(Compute v) { return __float2half_rn(v); }
};
template <>
struct Traits<BFloat16> {
  using Device = __nv_bfloat16;
  using Compute = float;
  static __device__ __forceinline__ Compute Load(Device v) { return __bfloat162float(v); }
  static __device__ __forceinline__ Device Store(Compute v) { return __float2bfloat16_rn(v); }
};

template <typename D>
struct alignas(16) Vec16 {
  static constexpr int kSize = 16 / sizeof(D);
  D v[kSize];
};

template <typename T, int NIn, int NOut>
struct Args {
  const typename Traits<T>::Device* in[NIn];
  typename Traits<T>::Device* out[NOut];
  int64_t n;
};

// Applies op(in[0..NIn), out[0..NOut)) elementwise over the arrays.
template <typename T, int NIn, int NOut, typename Op>
__global__ void __launch_bounds__(256)
    ElementwiseKernel(Args<T, NIn, NOut> args, Op op, bool vectorized) {
  using Tr = Traits<T>;
  using D = typename Tr::Device;
  using C = typename Tr::Compute;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vectorized) {
    constexpr int V = Vec16<D>::kSize;
    const int64_t nvec = args.n / V;
    for (int64_t i = tid; i < nvec; i += stride) {
      Vec16<D> in[NIn];
#pragma unroll
      for (int k = 0; k < NIn; ++k) in[k] = reinterpret_cast<const Vec16<D>*>(args.in[k])[i];
      Vec16<D> out[NOut];
#pragma unroll
      for (int j = 0; j < V; ++j) {
        C a[NIn];
        C r[NOut];
#pragma unroll
        for (int k = 0; k < NIn; ++k) a[k] = Tr::Load(in[k].v[j]);
        op(a, r);
#pragma unroll
        for (int k = 0; k < NOut; ++k) out[k].v[j] = Tr::Store(r[k]);
      }
#pragma unroll
      for (int k = 0; k < NOut; ++k) reinterpret_cast<Vec16<D>*>(args.out[k])[i] = out[k];
    }
    done = nvec * V;
  }
  for (int64_t i = done + tid; i < args.n; i += stride) {
    C a[NIn];
    C r[NOut];
#pragma unroll
    for (int k = 0; k < NIn; ++k) a[k] = Tr::Load(args.in[k][i]);
    op(a, r);
#pragma unroll
    for (int k = 0; k < NOut; ++k) args.out[k][i] = Tr::Store(r[k]);
  }
}

template <typename C>
struct ForwardOp {
  SmeluParams<C> p;
  __device__ __forceinline__ void operator()(const C (&a)[1], C (&r)[1]) const {
    r[0] = SmeluValue(a[0], p);
  }
};

template <typename C>
struct BackpropOp {
  SmeluParams<C> p;
  __device__ __forceinline__ void operator()(const C (&a)[2], C (&r)[1]) const {
    r[0] = SmeluBackprop(a[0], a[1], p);
  }
};

template <typename C>
struct GradGradOp {
  SmeluParams<C> p;
  __device__ __forceinline__ void operator()(const C (&a)[3], C (&r)[2]) const {
    r[0] = SmeluBackprop(a[0], a[2], p);
    r[1] = a[0] * a[1] * SmeluCurvature(a[2], p);
  }
};

inline int SmCount() {
  int device = 0;
  int sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    return 80;
  }
  return sms > 0 ? sms : 80;
}

inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <typename T, int NIn, int NOut, typename Op>
int Launch(const Args<T, NIn, NOut>& args, const Op& op, void* stream) {
  if (args.n <= 0) return 0;
  using D = typename Traits<T>::Device;
  bool vectorized = true;
  for (int k = 0; k < NIn; ++k) vectorized = vectorized && Aligned16(args.in[k]);
  for (int k = 0; k < NOut; ++k) vectorized = vectorized && Aligned16(args.out[k]);
  const int64_t work = vectorized ? (args.n + Vec16<D>::kSize - 1) / Vec16<D>::kSize : args.n;
  constexpr int kThreads = 256;
  static const int max_blocks = SmCount() * 8;  // 2048 threads per SM, a full wave
  const int64_t want = (work + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(want < max_blocks ? want : max_blocks);
  ElementwiseKernel<T, NIn, NOut, Op><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      args, op, vectorized);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
using ComputeOf = typename Traits<T>::Compute;

template <typename T>
const typename Traits<T>::Device* Dev(const T* p) {
  return reinterpret_cast<const typename Traits<T>::Device*>(p);
}
template <typename T>
typename Traits<T>::Device* Dev(T* p) {
  return reinterpret_cast<typename Traits<T>::Device*>(p);
}

}  // namespace detail

template <typename T>
int LaunchSmelu(const T* x, T* y, int64_t n, float beta, void* stream) {
  using C = detail::ComputeOf<T>;
  detail::Args<T, 1, 1> args{{detail::Dev(x)}, {detail::Dev(y)}, n};
  return detail::Launch(args, detail::ForwardOp<C>{SmeluParams<C>::Make(beta)}, stream);
}

template <typename T>
int LaunchSmeluGrad(const T* dy, const T* x, T* dx, int64_t n, float beta, void* stream) {
  using C = detail::ComputeOf<T>;
  detail::Args<T, 2, 1> args{{detail::Dev(dy), detail::Dev(x)}, {detail::Dev(dx)}, n};
  return detail::Launch(args, detail::BackpropOp<C>{SmeluParams<C>::Make(beta)}, stream);
}

template <typename T>
int LaunchSmeluGradGrad(const T* ddx, const T* dy, const T* x, T* d_dy, T* d_x, int64_t n,
                        float beta, void* stream) {
  using C = detail::ComputeOf<T>;
  detail::Args<T, 3, 2> args{{detail::Dev(ddx), detail::Dev(dy), detail::Dev(x)},
                             {detail::Dev(d_dy), detail::Dev(d_x)}, n};
  return detail::Launch(args, detail::GradGradOp<C>{SmeluParams<C>::Make(beta)}, stream);
}

inline const char* ErrorStringImpl(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // namespace cuda
}  // namespace steadyrank

#endif  // STEADYRANK_OPS_CC_KERNELS_SMELU_KERNELS_CU_H_
