/* Generalized SmeLU (g-SmeLU) scalar math, shared by the CPU and CUDA kernels.
 *
 * Parameters: left slope gl (g-), right slope gr (g+), transition region
 * [-alpha, beta] with s = alpha + beta > 0, offset t. With u = x + alpha and
 * d = gr - gl:
 *
 *   y = gl x + t                        x <= -alpha
 *       gl x + t + d u^2 / (2 s)        -alpha < x < beta
 *       gr x + t + d (alpha - beta) / 2 x >= beta
 *
 * which is the REFERENCE.md form (a x^2 + b x + c in the middle) regrouped so
 * that value and slope are visibly continuous at both joins, and so that
 * gl = 0, gr = 1, alpha = beta, t = 0 evaluates the very same floating-point
 * operations as SmeLU (smelu_math.h): bit-for-bit equal results.
 *
 * Derivatives (L, M, R = left, middle, right piece; q = u^2 / (2 s)):
 *   dy/dx      = gl,          gl + d u / s,          gr
 *   d2y/dx2    = 0,           d / s,                 0
 *   dy/dgl     = x,           x - q,                 -(alpha - beta) / 2
 *   dy/dgr     = 0,           q,                     x + (alpha - beta) / 2
 *   dy/dt      = 1,           1,                     1
 *   dy/dalpha  = (d/s) rho,   rho = 0, u - q, s / 2
 *   dy/dbeta   = -(d/s) sigma, sigma = 0, q, s / 2
 * The factors d/s are per column, so the reductions over elements accumulate
 * rho and sigma and apply them once at the end.
 *
 * A slope of exactly 0 contributes exactly 0 (not 0 * inf = NaN), so SmeLU's
 * -inf -> 0 holds here too. NaN inputs give NaN.
 */
#ifndef STEADYRANK_OPS_CC_KERNELS_GSMELU_MATH_H_
#define STEADYRANK_OPS_CC_KERNELS_GSMELU_MATH_H_

#if defined(__CUDACC__)
#define SR_GS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SR_GS_HOST_DEVICE inline
#endif

namespace steadyrank {

// Number of per-element partial sums the parameter gradients are built from.
constexpr int kGSmeluSums = 5;
enum GSmeluSum { kSumT = 0, kSumGl = 1, kSumGr = 2, kSumRho = 3, kSumSigma = 4 };

// One column's parameters and the constants derived from them, in the compute
// type C (float for half/bfloat16/float, double for double).
template <typename C>
struct GSmeluParams {
  C alpha, beta, gl, gr, t;
  C neg_alpha;       // -alpha
  C q;               // d / (2 s): the quadratic coefficient
  C d_over_s;        // d / s: the middle piece's slope increment and d2y/dx2
  C inv_two_s;       // 1 / (2 s)
  C c_right;         // t + d (alpha - beta) / 2
  C half_amb;        // (alpha - beta) / 2
  C half_s;          // s / 2
  bool valid;        // finite parameters and s > 0

  SR_GS_HOST_DEVICE static GSmeluParams Make(C alpha, C beta, C gl, C gr, C t) {
    GSmeluParams p;
    p.alpha = alpha;
    p.beta = beta;
    p.gl = gl;
    p.gr = gr;
    p.t = t;
    p.neg_alpha = -alpha;
    const C s = alpha + beta;
    const C d = gr - gl;
    // Written as SmeLU writes 1/(4 beta) and 1/(2 beta), so that the SmeLU
    // case rounds identically: q = 1 / (2 s) when d = 1.
    p.q = d / (static_cast<C>(2) * s);
    p.d_over_s = d / s;
    p.inv_two_s = static_cast<C>(1) / (static_cast<C>(2) * s);
    p.half_amb = (alpha - beta) / static_cast<C>(2);
    p.c_right = t + d * p.half_amb;
    p.half_s = s / static_cast<C>(2);
    const C sum = alpha + beta + gl + gr + t;
    p.valid = s > static_cast<C>(0) && (sum - sum) == static_cast<C>(0);  // all finite
    return p;
  }
};

// g * v, but exactly 0 when g == 0 (so 0 * inf is 0, as in SmeLU). The product is formed
// unconditionally and then selected, so loops calling this have no branch to vectorise.
template <typename C>
SR_GS_HOST_DEVICE C ScaleOrZero(C g, C v) {
  const C product = g * v;
  return g == static_cast<C>(0) ? static_cast<C>(0) : product;
}

// y = gsmelu(x). Every piece is computed and one is selected, so compilers
// vectorise the loops that call this (the selected piece rounds exactly as
// its own formula).
template <typename C>
SR_GS_HOST_DEVICE C GSmeluValue(C x, const GSmeluParams<C>& p) {
  const C u = x + p.alpha;
  const C left = ScaleOrZero(p.gl, x) + p.t;
  const C mid = ScaleOrZero(p.gl, x) + p.t + u * u * p.q;
  const C right = ScaleOrZero(p.gr, x) + p.c_right;
  return x >= p.beta ? right : (x <= p.neg_alpha ? left : mid);
}

// dx = dy * dy/dx; outside the middle a zero slope gives exactly 0.
template <typename C>
SR_GS_HOST_DEVICE C GSmeluBackprop(C dy, C x, const GSmeluParams<C>& p) {
  const C mid = dy * (p.gl + (x + p.alpha) * p.d_over_s);
  const C left = ScaleOrZero(p.gl, dy);
  const C right = ScaleOrZero(p.gr, dy);
  return x >= p.beta ? right : (x <= p.neg_alpha ? left : mid);
}

// d2y/dx2: d/s strictly inside (-alpha, beta), 0 outside, NaN for NaN.
template <typename C>
SR_GS_HOST_DEVICE C GSmeluCurvature(C x, const GSmeluParams<C>& p) {
  const bool outside = x >= p.beta || x <= p.neg_alpha;
  return outside ? static_cast<C>(0) : x * static_cast<C>(0) + p.d_over_s;
}

// One element's partial derivatives of y with respect to the parameters,
// without the per-column factors: dy/dgl, dy/dgr, rho and sigma (the header
// comment has the table); dy/dt is 1.
template <typename C>
struct GSmeluPartials {
  C gl, gr, rho, sigma;
};

template <typename C>
SR_GS_HOST_DEVICE GSmeluPartials<C> GSmeluParamPartials(C x, const GSmeluParams<C>& p) {
  const C zero = static_cast<C>(0);
  const C u = x + p.alpha;
  const C q = u * u * p.inv_two_s;
  const bool right = x >= p.beta;
  const bool left = x <= p.neg_alpha;
  GSmeluPartials<C> out;
  out.gl = right ? -p.half_amb : (left ? x : x - q);
  out.gr = right ? x + p.half_amb : (left ? zero : q);
  out.rho = right ? p.half_s : (left ? zero : u - q);
  out.sigma = right ? p.half_s : (left ? zero : q);
  return out;
}

// The gradients of one column's parameters from its five sums over elements
// of dy * partial (kSumT .. kSumSigma), in double: out = d alpha, d beta,
// d slope_left, d slope_right, d offset (the op's output order).
SR_GS_HOST_DEVICE void GSmeluColumnGrads(const double* sums, double alpha, double beta,
                                         double gl, double gr, double out[5]) {
  const double d_over_s = (gr - gl) / (alpha + beta);
  out[0] = d_over_s * sums[kSumRho];
  out[1] = -d_over_s * sums[kSumSigma];
  out[2] = sums[kSumGl];
  out[3] = sums[kSumGr];
  out[4] = sums[kSumT];
}

}  // namespace steadyrank

#endif  // STEADYRANK_OPS_CC_KERNELS_GSMELU_MATH_H_
