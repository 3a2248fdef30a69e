/* GPU functors of the SmeLU ops: launch the CUDA kernels on the op's stream.
 *
 * Compiled by the host compiler (not nvcc) into the library only when it is
 * built with CUDA; the kernels themselves are in smelu_kernels.cu.cc. */
#include "float_types.h"
#include "launch_type.h"
#include "smelu_launch.h"
#include "smelu_op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "xla/stream_executor/stream.h"

namespace tensorflow {

functor::GpuStream GetDevice(OpKernelContext* ctx, const functor::GpuStream*) {
  auto* stream = ctx->op_device_context() ? ctx->op_device_context()->stream() : nullptr;
  return functor::GpuStream{stream ? stream->platform_specific_handle().stream : nullptr};
}

namespace functor {
namespace {

template <typename T>
const L<T>* In(const T* p) {
  return reinterpret_cast<const L<T>*>(p);
}
template <typename T>
L<T>* Out(T* p) {
  return reinterpret_cast<L<T>*>(p);
}

absl::Status ToStatus(int code, const char* what) {
  if (code == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": CUDA error ", code, " (",
                                          steadyrank::cuda::ErrorString(code), ")"));
}

}  // namespace

template <typename T>
absl::Status SmeLU<GpuStream, T>::operator()(const GpuStream& d,
                                             typename TTypes<T>::ConstFlat x, float beta,
                                             typename TTypes<T>::Flat y) {
  return ToStatus(steadyrank::cuda::LaunchSmelu(In(x.data()), Out(y.data()), x.size(), beta,
                                                d.stream),
                  "SmeLU kernel launch");
}

template <typename T>
absl::Status SmeLUGrad<GpuStream, T>::operator()(const GpuStream& d,
                                                 typename TTypes<T>::ConstFlat dy,
                                                 typename TTypes<T>::ConstFlat x, float beta,
                                                 typename TTypes<T>::Flat dx) {
  return ToStatus(steadyrank::cuda::LaunchSmeluGrad(In(dy.data()), In(x.data()),
                                                    Out(dx.data()), x.size(), beta, d.stream),
                  "SmeLUGrad kernel launch");
}

template <typename T>
absl::Status SmeLUGradGrad<GpuStream, T>::operator()(
    const GpuStream& d, typename TTypes<T>::ConstFlat ddx, typename TTypes<T>::ConstFlat dy,
    typename TTypes<T>::ConstFlat x, float beta, typename TTypes<T>::Flat d_dy,
    typename TTypes<T>::Flat d_x) {
  return ToStatus(steadyrank::cuda::LaunchSmeluGradGrad(In(ddx.data()), In(dy.data()),
                                                        In(x.data()), Out(d_dy.data()),
                                                        Out(d_x.data()), x.size(), beta,
                                                        d.stream),
                  "SmeLUGradGrad kernel launch");
}

#define STEADYRANK_INSTANTIATE(T)          \
  template struct SmeLU<GpuStream, T>;     \
  template struct SmeLUGrad<GpuStream, T>; \
  template struct SmeLUGradGrad<GpuStream, T>;
STEADYRANK_CALL_FLOAT_TYPES(STEADYRANK_INSTANTIATE);
#undef STEADYRANK_INSTANTIATE

}  // namespace functor
}  // namespace tensorflow
