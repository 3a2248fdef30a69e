/* Host-side entry points of the SmeLU CUDA kernels.
 *
 * Plain C++ with no CUDA or TensorFlow types, so the TensorFlow kernel
 * (compiled by g++) and the standalone harness in bench/ both call the same
 * code. Pointers are device pointers; `stream` is a cudaStream_t (nullptr for
 * the default stream). Each returns 0 on success or a cudaError_t code.
 */
#ifndef STEADYRANK_OPS_CC_KERNELS_SMELU_LAUNCH_H_
#define STEADYRANK_OPS_CC_KERNELS_SMELU_LAUNCH_H_

#include <cstdint>

namespace steadyrank {
namespace cuda {

// 16-bit storage types, bit-compatible with __half / Eigen::half and
// __nv_bfloat16 / Eigen::bfloat16.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

// y = smelu(x)
template <typename T>
int LaunchSmelu(const T* x, T* y, int64_t n, float beta, void* stream);

// dx = dy * smelu'(x)
template <typename T>
int LaunchSmeluGrad(const T* dy, const T* x, T* dx, int64_t n, float beta, void* stream);

// d_dy = ddx * smelu'(x), d_x = ddx * dy * smelu''(x)
template <typename T>
int LaunchSmeluGradGrad(const T* ddx, const T* dy, const T* x, T* d_dy, T* d_x, int64_t n,
                        float beta, void* stream);

// Human-readable text of an error code returned above.
const char* ErrorString(int code);

}  // namespace cuda
}  // namespace steadyrank

#endif  // STEADYRANK_OPS_CC_KERNELS_SMELU_LAUNCH_H_
