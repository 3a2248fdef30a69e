/* The SmeLU op kernels: CPU always, GPU when built with STEADYRANK_WITH_CUDA.
 *
 * One OpKernel class per op serves both devices; the device-specific work is
 * the functor of smelu_op.h. */
#define EIGEN_USE_THREADS

#include "smelu_op.h"

#include <cmath>

#include "float_types.h"
#include "op_device.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"

namespace tensorflow {

using CPUDevice = Eigen::ThreadPoolDevice;
using GPUDevice = functor::GpuStream;

namespace {

// Reads and checks the beta attr, at kernel construction.
absl::Status ReadBeta(OpKernelConstruction* ctx, float* beta) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("beta", beta));
  if (!std::isfinite(*beta) || !(*beta > 0.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SmeLU: beta must be a finite number > 0, got ", *beta));
  }
  return absl::OkStatus();
}

// Checks that every input has the shape of input 0.
absl::Status SameShapes(OpKernelContext* ctx) {
  const TensorShape& shape = ctx->input(0).shape();
  for (int i = 1; i < ctx->num_inputs(); ++i) {
    if (ctx->input(i).shape() != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SmeLU: input ", i, " has shape ", ctx->input(i).shape().DebugString(),
          " but input 0 has shape ", shape.DebugString()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

template <typename Device, typename T>
class SmeLUOp : public OpKernel {
 public:
  explicit SmeLUOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadBeta(ctx, &beta_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    if (x.NumElements() == 0) return;
    OP_REQUIRES_OK(ctx, functor::SmeLU<Device, T>()(DeviceOf<Device>(ctx), x.flat<T>(), beta_,
                                                    y->flat<T>()));
  }

 private:
  float beta_ = 1.0f;
};

template <typename Device, typename T>
class SmeLUGradOp : public OpKernel {
 public:
  explicit SmeLUGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadBeta(ctx, &beta_));
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, SameShapes(ctx));
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, dy.shape(), &dx));
    if (x.NumElements() == 0) return;
    OP_REQUIRES_OK(ctx, functor::SmeLUGrad<Device, T>()(DeviceOf<Device>(ctx), dy.flat<T>(),
                                                        x.flat<T>(), beta_, dx->flat<T>()));
  }

 private:
  float beta_ = 1.0f;
};

template <typename Device, typename T>
class SmeLUGradGradOp : public OpKernel {
 public:
  explicit SmeLUGradGradOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadBeta(ctx, &beta_));
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, SameShapes(ctx));
    const Tensor& ddx = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    const Tensor& x = ctx->input(2);
    Tensor* d_dy = nullptr;
    Tensor* d_x = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &d_dy));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, x.shape(), &d_x));
    if (x.NumElements() == 0) return;
    OP_REQUIRES_OK(ctx, functor::SmeLUGradGrad<Device, T>()(
                            DeviceOf<Device>(ctx), ddx.flat<T>(), dy.flat<T>(), x.flat<T>(),
                            beta_, d_dy->flat<T>(), d_x->flat<T>()));
  }

 private:
  float beta_ = 1.0f;
};

#define REGISTER_SMELU_KERNELS(DEV_NAME, DEV, T)                                       \
  REGISTER_KERNEL_BUILDER(Name("SmeLU").Device(DEV_NAME).TypeConstraint<T>("T"),       \
                          SmeLUOp<DEV, T>);                                            \
  REGISTER_KERNEL_BUILDER(Name("SmeLUGrad").Device(DEV_NAME).TypeConstraint<T>("T"),   \
                          SmeLUGradOp<DEV, T>);                                        \
  REGISTER_KERNEL_BUILDER(Name("SmeLUGradGrad").Device(DEV_NAME).TypeConstraint<T>("T"), \
                          SmeLUGradGradOp<DEV, T>);

#define REGISTER_CPU(T) REGISTER_SMELU_KERNELS(DEVICE_CPU, CPUDevice, T)
STEADYRANK_CALL_FLOAT_TYPES(REGISTER_CPU);
#undef REGISTER_CPU

#ifdef STEADYRANK_WITH_CUDA
#define REGISTER_GPU(T) REGISTER_SMELU_KERNELS(DEVICE_GPU, GPUDevice, T)
STEADYRANK_CALL_FLOAT_TYPES(REGISTER_GPU);
#undef REGISTER_GPU
#endif  // STEADYRANK_WITH_CUDA

}  // namespace tensorflow
