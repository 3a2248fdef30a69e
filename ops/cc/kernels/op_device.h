/* The device object an op kernel's functor runs on, for CPU and GPU kernels.
 *
 * CPU: the op's Eigen::ThreadPoolDevice. GPU: the op's CUDA stream, defined in
 * smelu_op_gpu.cc, which is compiled only when the library is built with CUDA. */
#ifndef STEADYRANK_OPS_CC_KERNELS_OP_DEVICE_H_
#define STEADYRANK_OPS_CC_KERNELS_OP_DEVICE_H_

#ifndef EIGEN_USE_THREADS
#define EIGEN_USE_THREADS
#endif

#include "smelu_op.h"  // functor::GpuStream
#include "tensorflow/core/framework/op_kernel.h"

namespace tensorflow {

inline const Eigen::ThreadPoolDevice& GetDevice(OpKernelContext* ctx,
                                                const Eigen::ThreadPoolDevice*) {
  return ctx->eigen_device<Eigen::ThreadPoolDevice>();
}

#ifdef STEADYRANK_WITH_CUDA
functor::GpuStream GetDevice(OpKernelContext* ctx, const functor::GpuStream*);
#endif

// GetDevice(ctx, Device) for a Device type.
template <typename Device>
decltype(auto) DeviceOf(OpKernelContext* ctx) {
  return GetDevice(ctx, static_cast<const Device*>(nullptr));
}

}  // namespace tensorflow

#endif  // STEADYRANK_OPS_CC_KERNELS_OP_DEVICE_H_
