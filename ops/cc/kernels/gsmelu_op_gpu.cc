/* GPU functors of the g-SmeLU ops: launch the CUDA kernels on the op's stream
 * with a scratch buffer from TensorFlow's allocator.
 *
 * Compiled by the host compiler into the library only when it is built with
 * CUDA; the kernels themselves are in gsmelu_kernels.cu.cc. */
#include "float_types.h"
#include "gsmelu_launch.h"
#include "gsmelu_op.h"
#include "launch_type.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tensorflow {
namespace functor {
namespace {

template <typename T>
steadyrank::cuda::GSmeluParamPtrs<L<T>> Params(const GSmeluCall<T>& call) {
  steadyrank::cuda::GSmeluParamPtrs<L<T>> p;
  for (int k = 0; k < kGSmeluParams; ++k) {
    p.value[k] = reinterpret_cast<const L<T>*>(call.param[k]);
    p.size[k] = call.param_size[k];
  }
  return p;
}

absl::Status Workspace(OpKernelContext* ctx, int64_t bytes, Tensor* scratch) {
  return ctx->allocate_temp(DT_INT8, TensorShape({bytes > 0 ? bytes : 1}), scratch);
}

absl::Status ToStatus(int code, const char* what) {
  if (code == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": CUDA error ", code, " (",
                                          steadyrank::cuda::ErrorString(code), ")"));
}

}  // namespace

template <typename T>
absl::Status GSmeLU<GpuStream, T>::operator()(OpKernelContext* ctx, const GpuStream& d,
                                              const GSmeluCall<T>& call, const T* x, T* y) {
  if (call.n == 0) return absl::OkStatus();
  Tensor scratch;
  TF_RETURN_IF_ERROR(Workspace(
      ctx, steadyrank::cuda::GSmeluWorkspaceBytes<L<T>>(call.n, call.units, false), &scratch));
  return ToStatus(steadyrank::cuda::LaunchGSmelu(
                      reinterpret_cast<const L<T>*>(x), reinterpret_cast<L<T>*>(y), call.n,
                      call.units, Params(call), scratch.flat<int8>().data(), d.stream),
                  "GSmeLU kernel launch");
}

template <typename T>
absl::Status GSmeLUGrad<GpuStream, T>::operator()(OpKernelContext* ctx, const GpuStream& d,
                                                  const GSmeluCall<T>& call, const T* dy,
                                                  const T* x, T* dx,
                                                  T* const grads[kGSmeluParams]) {
  Tensor scratch;
  TF_RETURN_IF_ERROR(Workspace(
      ctx, steadyrank::cuda::GSmeluWorkspaceBytes<L<T>>(call.n, call.units, true), &scratch));
  L<T>* g[kGSmeluParams];
  for (int k = 0; k < kGSmeluParams; ++k) g[k] = reinterpret_cast<L<T>*>(grads[k]);
  return ToStatus(steadyrank::cuda::LaunchGSmeluGrad(
                      reinterpret_cast<const L<T>*>(dy), reinterpret_cast<const L<T>*>(x),
                      reinterpret_cast<L<T>*>(dx), g, call.n, call.units, Params(call),
                      scratch.flat<int8>().data(), d.stream),
                  "GSmeLUGrad kernel launch");
}

#define STEADYRANK_INSTANTIATE(T)        \
  template struct GSmeLU<GpuStream, T>;  \
  template struct GSmeLUGrad<GpuStream, T>;
STEADYRANK_CALL_FLOAT_TYPES(STEADYRANK_INSTANTIATE);
#undef STEADYRANK_INSTANTIATE

}  // namespace functor
}  // namespace tensorflow
