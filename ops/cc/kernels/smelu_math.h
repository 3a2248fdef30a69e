/* SmeLU scalar math, shared by the CPU (Eigen) and CUDA kernels.
 *
 * This header depends on nothing but the compiler, so the standalone CUDA
 * check in bench/ can include it without TensorFlow. The value of every
 * kernel, CPU or GPU, is defined here once.
 *
 *   y      = 0                         x <= -beta
 *            (x + beta)^2 / (4 beta)   -beta < x < beta
 *            x                         x >= beta
 *   dy/dx  = 0, (x + beta) / (2 beta), 1
 *   d2y/dx2= 0, 1 / (2 beta), 0
 *
 * NaN inputs give NaN (every comparison with NaN is false, so NaN reaches the
 * quadratic branch); +inf gives +inf and -inf gives 0.
 */
#ifndef STEADYRANK_OPS_CC_KERNELS_SMELU_MATH_H_
#define STEADYRANK_OPS_CC_KERNELS_SMELU_MATH_H_

#if defined(__CUDACC__)
#define SR_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SR_HOST_DEVICE inline
#endif

namespace steadyrank {

// Constants derived from beta once per kernel launch, in the compute type C
// (float for half/bfloat16/float, double for double).
template <typename C>
struct SmeluParams {
  C beta;
  C neg_beta;
  C quarter_inv_beta;  // 1 / (4 beta)
  C half_inv_beta;     // 1 / (2 beta)

  SR_HOST_DEVICE static SmeluParams Make(float b) {
    SmeluParams p;
    p.beta = static_cast<C>(b);
    p.neg_beta = -p.beta;
    p.quarter_inv_beta = static_cast<C>(1) / (static_cast<C>(4) * p.beta);
    p.half_inv_beta = static_cast<C>(1) / (static_cast<C>(2) * p.beta);
    return p;
  }
};

// y = smelu(x)
template <typename C>
SR_HOST_DEVICE C SmeluValue(C x, const SmeluParams<C>& p) {
  if (x >= p.beta) return x;
  if (x <= p.neg_beta) return static_cast<C>(0);
  const C t = x + p.beta;
  return t * t * p.quarter_inv_beta;
}

// dx = dy * smelu'(x)
template <typename C>
SR_HOST_DEVICE C SmeluBackprop(C dy, C x, const SmeluParams<C>& p) {
  if (x >= p.beta) return dy;
  if (x <= p.neg_beta) return static_cast<C>(0);
  return dy * ((x + p.beta) * p.half_inv_beta);
}

// smelu''(x): 1/(2 beta) strictly inside (-beta, beta), 0 outside, NaN for NaN.
template <typename C>
SR_HOST_DEVICE C SmeluCurvature(C x, const SmeluParams<C>& p) {
  if (x >= p.beta || x <= p.neg_beta) return static_cast<C>(0);
  return x * static_cast<C>(0) + p.half_inv_beta;
}

}  // namespace steadyrank

#endif  // STEADYRANK_OPS_CC_KERNELS_SMELU_MATH_H_
