/* Host-side entry points of the g-SmeLU CUDA kernels.
 *
 * Plain C++ with no CUDA or TensorFlow types, like smelu_launch.h, so the
 * TensorFlow kernel and the standalone harness in bench/ call the same code.
 * Pointers are device pointers and `stream` a cudaStream_t. Each launcher
 * returns 0 or a cudaError_t code.
 *
 * Layout: the n features are rows of `cols` units (row-major). A parameter has
 * 1 value (shared by every element) or `cols` values (one per unit). When
 * every parameter is shared, pass cols = 1.
 *
 * Invalid parameters (non-finite, or alpha + beta <= 0) make the affected
 * outputs NaN: a GPU kernel cannot raise an error without a device-to-host
 * synchronisation, so the Python wrapper and the CPU kernels check values.
 */
#ifndef STEADYRANK_OPS_CC_KERNELS_GSMELU_LAUNCH_H_
#define STEADYRANK_OPS_CC_KERNELS_GSMELU_LAUNCH_H_

#include <cstdint>

#include "smelu_launch.h"  // Half, BFloat16, ErrorString

namespace steadyrank {
namespace cuda {

// The five parameters, in op order: alpha, beta, slope_left, slope_right, offset.
template <typename T>
struct GSmeluParamPtrs {
  const T* value[5];
  int64_t size[5];  // 1 or cols
};

// Bytes of device scratch memory a launch needs (the caller allocates it).
template <typename T>
int64_t GSmeluWorkspaceBytes(int64_t n, int64_t cols, bool grad);

// y = gsmelu(x)
template <typename T>
int LaunchGSmelu(const T* x, T* y, int64_t n, int64_t cols, const GSmeluParamPtrs<T>& params,
                 void* workspace, void* stream);

// dx = dy * gsmelu'(x), and grads[k] (with params.size[k] values) = the sum of
// dy * d gsmelu / d param_k over the elements that share each value.
// Deterministic: the reductions run in a fixed order.
template <typename T>
int LaunchGSmeluGrad(const T* dy, const T* x, T* dx, T* const grads[5], int64_t n,
                     int64_t cols, const GSmeluParamPtrs<T>& params, void* workspace,
                     void* stream);

}  // namespace cuda
}  // namespace steadyrank

#endif  // STEADYRANK_OPS_CC_KERNELS_GSMELU_LAUNCH_H_
