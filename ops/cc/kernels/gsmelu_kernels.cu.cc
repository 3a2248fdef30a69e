/* Explicit instantiations of the g-SmeLU CUDA launchers for the op library. */
#include "gsmelu_kernels.cu.h"

namespace steadyrank {
namespace cuda {

#define STEADYRANK_INSTANTIATE(T)                                                           \
  template int64_t GSmeluWorkspaceBytes<T>(int64_t, int64_t, bool);                         \
  template int LaunchGSmelu<T>(const T*, T*, int64_t, int64_t, const GSmeluParamPtrs<T>&,   \
                               void*, void*);                                               \
  template int LaunchGSmeluGrad<T>(const T*, const T*, T*, T* const[5], int64_t, int64_t,  \
                                   const GSmeluParamPtrs<T>&, void*, void*);

STEADYRANK_INSTANTIATE(Half)
STEADYRANK_INSTANTIATE(BFloat16)
STEADYRANK_INSTANTIATE(float)
STEADYRANK_INSTANTIATE(double)
#undef STEADYRANK_INSTANTIATE

}  // namespace cuda
}  // namespace steadyrank
