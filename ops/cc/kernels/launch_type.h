/* The type a CUDA launcher takes for a TensorFlow element type: the same type,
 * except Eigen's half and bfloat16, which the kernels (compiled by nvcc without
 * Eigen) see as the bit-identical steadyrank::cuda::Half and BFloat16.
 *
 * Shared by the GPU functors of the SmeLU and g-SmeLU ops. */
#ifndef STEADYRANK_OPS_CC_KERNELS_LAUNCH_TYPE_H_
#define STEADYRANK_OPS_CC_KERNELS_LAUNCH_TYPE_H_

#include "smelu_launch.h"  // steadyrank::cuda::Half, BFloat16
#include "tensorflow/core/framework/numeric_types.h"

namespace tensorflow {
namespace functor {

template <typename T>
struct LaunchType {
  using type = T;
};
template <>
struct LaunchType<Eigen::half> {
  using type = steadyrank::cuda::Half;
};
template <>
struct LaunchType<Eigen::bfloat16> {
  using type = steadyrank::cuda::BFloat16;
};

// The launcher's element type of T.
template <typename T>
using L = typename LaunchType<T>::type;

}  // namespace functor
}  // namespace tensorflow

#endif  // STEADYRANK_OPS_CC_KERNELS_LAUNCH_TYPE_H_
