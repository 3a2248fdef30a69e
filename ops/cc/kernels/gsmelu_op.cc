/* The g-SmeLU op kernels: CPU always, GPU when built with STEADYRANK_WITH_CUDA.
 *
 * One OpKernel class per op serves both devices; the device-specific work is
 * the functor of gsmelu_op.h. */
#define EIGEN_USE_THREADS

#include "gsmelu_op.h"

#include "float_types.h"
#include "op_device.h"

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"

namespace tensorflow {

using CPUDevice = Eigen::ThreadPoolDevice;
using GPUDevice = functor::GpuStream;

namespace {

const char* const kParamNames[functor::kGSmeluParams] = {"alpha", "beta", "slope_left",
                                                         "slope_right", "offset"};

// Checks the parameter shapes against the features and describes the call.
template <typename T>
absl::Status MakeCall(OpKernelContext* ctx, const Tensor& x, int first_param,
                      functor::GSmeluCall<T>* call) {
  call->n = x.NumElements();
  int64_t units = 1;
  for (int k = 0; k < functor::kGSmeluParams; ++k) {
    const Tensor& p = ctx->input(first_param + k);
    if (p.dims() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GSmeLU: ", kParamNames[k], " must be a scalar or a vector of one value per unit, "
          "got shape ", p.shape().DebugString()));
    }
    if (p.NumElements() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("GSmeLU: ", kParamNames[k], " is empty (shape ",
                       p.shape().DebugString(), ")"));
    }
    if (p.NumElements() > 1) {
      if (x.dims() == 0 || x.dim_size(x.dims() - 1) != p.NumElements()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "GSmeLU: ", kParamNames[k], " has ", p.NumElements(),
            " values but features has shape ", x.shape().DebugString(),
            " (a per-unit parameter needs one value per entry of the last axis)"));
      }
      units = p.NumElements();
    }
    call->param[k] = p.flat<T>().data();
    call->param_size[k] = p.NumElements();
  }
  call->units = units;
  return absl::OkStatus();
}

}  // namespace

template <typename Device, typename T>
class GSmeLUOp : public OpKernel {
 public:
  explicit GSmeLUOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    functor::GSmeluCall<T> call;
    OP_REQUIRES_OK(ctx, MakeCall(ctx, x, 1, &call));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    OP_REQUIRES_OK(ctx, functor::GSmeLU<Device, T>()(
                            ctx, DeviceOf<Device>(ctx), call,
                            x.flat<T>().data(), y->flat<T>().data()));
  }
};

template <typename Device, typename T>
class GSmeLUGradOp : public OpKernel {
 public:
  explicit GSmeLUGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    OP_REQUIRES(ctx, dy.shape() == x.shape(),
                absl::InvalidArgumentError(absl::StrCat(
                    "GSmeLUGrad: gradients has shape ", dy.shape().DebugString(),
                    " but features has shape ", x.shape().DebugString())));
    functor::GSmeluCall<T> call;
    OP_REQUIRES_OK(ctx, MakeCall(ctx, x, 2, &call));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &dx));
    T* grads[functor::kGSmeluParams];
    for (int k = 0; k < functor::kGSmeluParams; ++k) {
      Tensor* g = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(1 + k, ctx->input(2 + k).shape(), &g));
      grads[k] = g->flat<T>().data();
    }
    OP_REQUIRES_OK(ctx, functor::GSmeLUGrad<Device, T>()(
                            ctx, DeviceOf<Device>(ctx), call,
                            dy.flat<T>().data(), x.flat<T>().data(), dx->flat<T>().data(),
                            grads));
  }
};

#define REGISTER_GSMELU_KERNELS(DEV_NAME, DEV, T)                                       \
  REGISTER_KERNEL_BUILDER(Name("GSmeLU").Device(DEV_NAME).TypeConstraint<T>("T"),       \
                          GSmeLUOp<DEV, T>);                                            \
  REGISTER_KERNEL_BUILDER(Name("GSmeLUGrad").Device(DEV_NAME).TypeConstraint<T>("T"),   \
                          GSmeLUGradOp<DEV, T>);

#define REGISTER_CPU(T) REGISTER_GSMELU_KERNELS(DEVICE_CPU, CPUDevice, T)
STEADYRANK_CALL_FLOAT_TYPES(REGISTER_CPU);
#undef REGISTER_CPU

#ifdef STEADYRANK_WITH_CUDA
#define REGISTER_GPU(T) REGISTER_GSMELU_KERNELS(DEVICE_GPU, GPUDevice, T)
STEADYRANK_CALL_FLOAT_TYPES(REGISTER_GPU);
#undef REGISTER_GPU
#endif  // STEADYRANK_WITH_CUDA

}  // namespace tensorflow
