/* Kernel functors of the g-SmeLU ops, specialised per device.
 *
 * The CPU functors (gsmelu_op_cpu.cc) run loops over rows of `cols` units on
 * the op's intra-op thread pool; the GPU functors (gsmelu_op_gpu.cc) launch
 * the CUDA kernels of gsmelu_kernels.cu.h. Both evaluate gsmelu_math.h.
 */
#ifndef STEADYRANK_OPS_CC_KERNELS_GSMELU_OP_H_
#define STEADYRANK_OPS_CC_KERNELS_GSMELU_OP_H_

#include <cstdint>

#include "absl/status/status.h"
#include "smelu_op.h"  // ComputeType, GpuStream
#include "tensorflow/core/framework/op_kernel.h"

namespace tensorflow {
namespace functor {

constexpr int kGSmeluParams = 5;  // alpha, beta, slope_left, slope_right, offset

// One call's operands. Parameters live where the kernel runs (host memory for
// the CPU, device memory for the GPU); each has 1 value or `units` values.
template <typename T>
struct GSmeluCall {
  const T* param[kGSmeluParams];
  int64_t param_size[kGSmeluParams];
  int64_t n = 0;      // number of features
  int64_t units = 1;  // length of the last axis when a parameter is per unit, else 1
};

template <typename Device, typename T>
struct GSmeLU {
  absl::Status operator()(OpKernelContext* ctx, const Device& d, const GSmeluCall<T>& call,
                          const T* x, T* y);
};

// dx = dy * gsmelu'(x); grads[k] (param_size[k] values) = reduced parameter gradients.
template <typename Device, typename T>
struct GSmeLUGrad {
  absl::Status operator()(OpKernelContext* ctx, const Device& d, const GSmeluCall<T>& call,
                          const T* dy, const T* x, T* dx, T* const grads[kGSmeluParams]);
};

template <typename T>
struct GSmeLU<Eigen::ThreadPoolDevice, T> {
  absl::Status operator()(OpKernelContext* ctx, const Eigen::ThreadPoolDevice& d,
                          const GSmeluCall<T>& call, const T* x, T* y);
};

template <typename T>
struct GSmeLUGrad<Eigen::ThreadPoolDevice, T> {
  absl::Status operator()(OpKernelContext* ctx, const Eigen::ThreadPoolDevice& d,
                          const GSmeluCall<T>& call, const T* dy, const T* x, T* dx,
                          T* const grads[kGSmeluParams]);
};

template <typename T>
struct GSmeLU<GpuStream, T> {
  absl::Status operator()(OpKernelContext* ctx, const GpuStream& d, const GSmeluCall<T>& call,
                          const T* x, T* y);
};

template <typename T>
struct GSmeLUGrad<GpuStream, T> {
  absl::Status operator()(OpKernelContext* ctx, const GpuStream& d, const GSmeluCall<T>& call,
                          const T* dy, const T* x, T* dx, T* const grads[kGSmeluParams]);
};

}  // namespace functor
}  // namespace tensorflow

#endif  // STEADYRANK_OPS_CC_KERNELS_GSMELU_OP_H_
