/* The element types every SmeLU and g-SmeLU kernel is registered and instantiated for:
 * the ops' "T" attribute (half, bfloat16, float, double). m is applied to each type in
 * turn, as TensorFlow's TF_CALL_* macros do. */
#ifndef STEADYRANK_OPS_CC_KERNELS_FLOAT_TYPES_H_
#define STEADYRANK_OPS_CC_KERNELS_FLOAT_TYPES_H_

#include "tensorflow/core/framework/numeric_types.h"

#define STEADYRANK_CALL_FLOAT_TYPES(m) \
  m(Eigen::half);                      \
  m(Eigen::bfloat16);                  \
  m(float);                            \
  m(double)

#endif  // STEADYRANK_OPS_CC_KERNELS_FLOAT_TYPES_H_
