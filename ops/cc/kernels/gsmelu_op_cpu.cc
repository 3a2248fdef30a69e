/* CPU functors of the g-SmeLU ops.
 *
 * The features are walked as rows of `cols` columns: the units when a
 * parameter is per unit, else kLanes lanes that share one parameter set.
 * Parameters and their derived constants are held per column in
 * structure-of-arrays form, so the inner loop over columns is contiguous and
 * vectorised by the compiler (gsmelu_math.h is written with selects).
 *
 * Rows are cut into blocks that depend only on the shape; each block's
 * parameter sums land in their own slot and the slots are added in block
 * order, so gradients are the same whatever the thread count or scheduling.
 * Within a block, runs of kRunRows rows are summed in the compute type (float
 * for half, bfloat16 and float; double for double) so the loop stays
 * vector-wide, and each run's sums are added in double.
 */
#define EIGEN_USE_THREADS

#include <algorithm>
#include <vector>

#include "float_types.h"
#include "gsmelu_math.h"
#include "gsmelu_op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/lib/core/threadpool.h"

namespace tensorflow {
namespace functor {
namespace {

using steadyrank::GSmeluParams;
using steadyrank::kGSmeluSums;

constexpr int64_t kLanes = 16;             // columns when every parameter is shared
constexpr int64_t kBlockElements = 32768;  // target elements per row block
constexpr int64_t kMaxPartialBytes = 64 << 20;
constexpr int64_t kRunRows = 64;           // rows summed in the compute type before double

// Per-column parameters, structure of arrays.
template <typename C>
struct Columns {
  std::vector<C> alpha, beta, gl, gr, t, neg_alpha, q, d_over_s, inv_two_s, c_right, half_amb,
      half_s;

  explicit Columns(int64_t cols)
      : alpha(cols), beta(cols), gl(cols), gr(cols), t(cols), neg_alpha(cols), q(cols),
        d_over_s(cols), inv_two_s(cols), c_right(cols), half_amb(cols), half_s(cols) {}

  void Set(int64_t j, const GSmeluParams<C>& p) {
    alpha[j] = p.alpha, beta[j] = p.beta, gl[j] = p.gl, gr[j] = p.gr, t[j] = p.t;
    neg_alpha[j] = p.neg_alpha, q[j] = p.q, d_over_s[j] = p.d_over_s;
    inv_two_s[j] = p.inv_two_s, c_right[j] = p.c_right, half_amb[j] = p.half_amb;
    half_s[j] = p.half_s;
  }

  GSmeluParams<C> At(int64_t j) const {
    GSmeluParams<C> p;
    p.alpha = alpha[j], p.beta = beta[j], p.gl = gl[j], p.gr = gr[j], p.t = t[j];
    p.neg_alpha = neg_alpha[j], p.q = q[j], p.d_over_s = d_over_s[j];
    p.inv_two_s = inv_two_s[j], p.c_right = c_right[j], p.half_amb = half_amb[j];
    p.half_s = half_s[j];
    p.valid = true;
    return p;
  }
};

const char* const kNames[kGSmeluParams] = {"alpha", "beta", "slope_left", "slope_right",
                                           "offset"};

// Reads the parameters into columns, checking every value.
template <typename T, typename C>
absl::Status MakeColumns(const GSmeluCall<T>& call, int64_t cols, Columns<C>* out) {
  for (int64_t j = 0; j < cols; ++j) {
    C v[kGSmeluParams];
    for (int k = 0; k < kGSmeluParams; ++k) {
      v[k] = static_cast<C>(call.param[k][call.param_size[k] == 1 ? 0 : j]);
    }
    const auto p = GSmeluParams<C>::Make(v[0], v[1], v[2], v[3], v[4]);
    if (!p.valid) {
      for (int k = 0; k < kGSmeluParams; ++k) {
        if (!Eigen::numext::isfinite(v[k])) {
          return absl::InvalidArgumentError(absl::StrCat(
              "GSmeLU: ", kNames[k], " must be finite, got ", static_cast<double>(v[k]),
              call.units > 1 ? absl::StrCat(" (unit ", j, ")") : ""));
        }
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "GSmeLU: alpha + beta must be > 0 (the transition region [-alpha, beta] must not be "
          "empty), got alpha=", static_cast<double>(v[0]), ", beta=",
          static_cast<double>(v[1]), call.units > 1 ? absl::StrCat(" (unit ", j, ")") : ""));
    }
    out->Set(j, p);
  }
  return absl::OkStatus();
}

// Fixed row blocks of a call: [block * rows_per_block, ...).
struct Blocks {
  int64_t cols, rows, rows_per_block, count;

  Blocks(int64_t n, int64_t c) : cols(c), rows((n + c - 1) / c) {
    rows_per_block = std::max<int64_t>(1, kBlockElements / cols);
    const int64_t max_blocks =
        std::max<int64_t>(1, kMaxPartialBytes / (kGSmeluSums * 8 * cols));
    rows_per_block = std::max(rows_per_block, (rows + max_blocks - 1) / max_blocks);
    count = std::max<int64_t>(1, (rows + rows_per_block - 1) / rows_per_block);
  }
};

void ParallelForBlocks(OpKernelContext* ctx, const Blocks& blocks,
                       const std::function<void(int64_t)>& body) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  const int64_t cost = blocks.rows_per_block * blocks.cols * 40;  // ~cycles per block
  pool->ParallelFor(blocks.count, cost, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) body(b);
  });
}

int64_t ColumnsOf(int64_t units) { return units > 1 ? units : kLanes; }

}  // namespace

template <typename T>
absl::Status GSmeLU<Eigen::ThreadPoolDevice, T>::operator()(
    OpKernelContext* ctx, const Eigen::ThreadPoolDevice&, const GSmeluCall<T>& call, const T* x,
    T* y) {
  using C = typename steadyrank::ComputeType<T>::type;
  const int64_t cols = ColumnsOf(call.units);
  Columns<C> columns(cols);
  TF_RETURN_IF_ERROR(MakeColumns(call, cols, &columns));
  if (call.n == 0) return absl::OkStatus();
  const Blocks blocks(call.n, cols);
  ParallelForBlocks(ctx, blocks, [&](int64_t b) {
    const int64_t r_end = std::min(blocks.rows, (b + 1) * blocks.rows_per_block);
    for (int64_t r = b * blocks.rows_per_block; r < r_end; ++r) {
      const int64_t base = r * cols;
      const int64_t m = std::min(cols, call.n - base);
      const T* xr = x + base;
      T* yr = y + base;
      // Outputs and inputs share no elements except the same index (y may be x's buffer).
#pragma GCC ivdep
      for (int64_t j = 0; j < m; ++j) {
        yr[j] = static_cast<T>(
            steadyrank::GSmeluValue(static_cast<C>(xr[j]), columns.At(j)));
      }
    }
  });
  return absl::OkStatus();
}

template <typename T>
absl::Status GSmeLUGrad<Eigen::ThreadPoolDevice, T>::operator()(
    OpKernelContext* ctx, const Eigen::ThreadPoolDevice&, const GSmeluCall<T>& call,
    const T* dy, const T* x, T* dx, T* const grads[kGSmeluParams]) {
  using C = typename steadyrank::ComputeType<T>::type;
  const int64_t cols = ColumnsOf(call.units);
  Columns<C> columns(cols);
  TF_RETURN_IF_ERROR(MakeColumns(call, cols, &columns));
  const Blocks blocks(call.n, cols);
  // partials[block][sum][col]
  std::vector<double> partials(blocks.count * kGSmeluSums * cols, 0.0);
  if (call.n > 0) {
    ParallelForBlocks(ctx, blocks, [&](int64_t b) {
      // Runs of up to kRunRows rows are summed in the compute type (vector-wide), then added
      // into this block's double sums: float error stays at ~kRunRows ulps of a run.
      double* acc = partials.data() + b * kGSmeluSums * cols;
      std::vector<C> run(kGSmeluSums * cols);
      C* run_t = run.data() + steadyrank::kSumT * cols;
      C* run_gl = run.data() + steadyrank::kSumGl * cols;
      C* run_gr = run.data() + steadyrank::kSumGr * cols;
      C* run_rho = run.data() + steadyrank::kSumRho * cols;
      C* run_sigma = run.data() + steadyrank::kSumSigma * cols;
      const int64_t r_end = std::min(blocks.rows, (b + 1) * blocks.rows_per_block);
      for (int64_t r0 = b * blocks.rows_per_block; r0 < r_end; r0 += kRunRows) {
        const int64_t r1 = std::min(r_end, r0 + kRunRows);
        std::fill(run.begin(), run.end(), C(0));
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t base = r * cols;
          const int64_t m = std::min(cols, call.n - base);
          const T* dyr = dy + base;
          const T* xr = x + base;
          T* dxr = dx + base;
#pragma GCC ivdep
          for (int64_t j = 0; j < m; ++j) {
            const auto p = columns.At(j);
            const C g = static_cast<C>(dyr[j]);
            const C xv = static_cast<C>(xr[j]);
            dxr[j] = static_cast<T>(steadyrank::GSmeluBackprop(g, xv, p));
            const auto part = steadyrank::GSmeluParamPartials(xv, p);
            run_t[j] += g;
            run_gl[j] += g * part.gl;
            run_gr[j] += g * part.gr;
            run_rho[j] += g * part.rho;
            run_sigma[j] += g * part.sigma;
          }
        }
        for (int64_t i = 0; i < kGSmeluSums * cols; ++i) acc[i] += static_cast<double>(run[i]);
      }
    });
  }
  // Block order, then column order: deterministic.
  std::vector<double> totals(kGSmeluSums * cols, 0.0);
  for (int64_t b = 0; b < blocks.count; ++b) {
    const double* acc = partials.data() + b * kGSmeluSums * cols;
    for (int64_t i = 0; i < kGSmeluSums * cols; ++i) totals[i] += acc[i];
  }
  double shared[kGSmeluParams] = {0, 0, 0, 0, 0};
  for (int64_t j = 0; j < cols; ++j) {
    double sums[kGSmeluSums];
    for (int s = 0; s < kGSmeluSums; ++s) sums[s] = totals[s * cols + j];
    double g[kGSmeluParams];
    steadyrank::GSmeluColumnGrads(sums, static_cast<double>(columns.alpha[j]),
                                  static_cast<double>(columns.beta[j]),
                                  static_cast<double>(columns.gl[j]),
                                  static_cast<double>(columns.gr[j]), g);
    for (int k = 0; k < kGSmeluParams; ++k) {
      if (call.param_size[k] == 1) {
        shared[k] += g[k];
      } else {
        grads[k][j] = static_cast<T>(g[k]);
      }
    }
  }
  for (int k = 0; k < kGSmeluParams; ++k) {
    if (call.param_size[k] == 1) grads[k][0] = static_cast<T>(shared[k]);
  }
  return absl::OkStatus();
}

#define STEADYRANK_INSTANTIATE(T)                              \
  template struct GSmeLU<Eigen::ThreadPoolDevice, T>;          \
  template struct GSmeLUGrad<Eigen::ThreadPoolDevice, T>;
STEADYRANK_CALL_FLOAT_TYPES(STEADYRANK_INSTANTIATE);
#undef STEADYRANK_INSTANTIATE

}  // namespace functor
}  // namespace tensorflow
