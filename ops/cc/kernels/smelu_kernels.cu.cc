/* Explicit instantiations of the SmeLU CUDA launchers for the op library. */
#include "smelu_kernels.cu.h"

namespace steadyrank {
namespace cuda {

#define STEADYRANK_INSTANTIATE(T)                                                         \
  template int LaunchSmelu<T>(const T*, T*, int64_t, float, void*);                       \
  template int LaunchSmeluGrad<T>(const T*, const T*, T*, int64_t, float, void*);         \
  template int LaunchSmeluGradGrad<T>(const T*, const T*, const T*, T*, T*, int64_t, float, \
                                      void*);

STEADYRANK_INSTANTIATE(Half)
STEADYRANK_INSTANTIATE(BFloat16)
STEADYRANK_INSTANTIATE(float)
STEADYRANK_INSTANTIATE(double)
#undef STEADYRANK_INSTANTIATE

const char* ErrorString(int code) { return ErrorStringImpl(code); }

}  // namespace cuda
}  // namespace steadyrank
