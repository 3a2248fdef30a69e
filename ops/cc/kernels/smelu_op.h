/* Kernel functors of the SmeLU ops, shared by the CPU and GPU kernels.
 *
 * Each functor is specialised per device: the CPU specialisation (below) is
 * an Eigen expression evaluated on the op's Eigen::ThreadPoolDevice, so it
 * is split over all intra-op threads and vectorised with Eigen packets; the
 * GPU specialisation (smelu_op_gpu.cc) launches the CUDA kernels of
 * smelu_kernels.cu.h. Both evaluate the scalar math of smelu_math.h.
 */
#ifndef STEADYRANK_OPS_CC_KERNELS_SMELU_OP_H_
#define STEADYRANK_OPS_CC_KERNELS_SMELU_OP_H_

#include <type_traits>

#include "absl/status/status.h"
#include "smelu_math.h"
#include "tensorflow/core/framework/tensor_types.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace steadyrank {

// half and bfloat16 are computed in float; float and double in themselves.
template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<Eigen::half> {
  using type = float;
};
template <>
struct ComputeType<Eigen::bfloat16> {
  using type = float;
};

// Eigen scalar functors with packet (SIMD) paths. The scalar path calls the
// shared math; the packet path is the same formula with lane masks.
template <typename C>
struct SmeluValueOp {
  SmeluParams<C> p;
  explicit SmeluValueOp(const SmeluParams<C>& params) : p(params) {}
  EIGEN_DEVICE_FUNC EIGEN_STRONG_INLINE C operator()(const C& x) const {
    return SmeluValue(x, p);
  }
  template <typename Packet>
  EIGEN_STRONG_INLINE Packet packetOp(const Packet& x) const {
    using namespace Eigen::internal;  // NOLINT
    const Packet beta = pset1<Packet>(p.beta);
    const Packet t = padd(x, beta);
    const Packet quad = pmul(pmul(t, t), pset1<Packet>(p.quarter_inv_beta));
    const Packet below = pcmp_le(x, pset1<Packet>(p.neg_beta));
    const Packet above = pcmp_le(beta, x);
    return pselect(above, x, pselect(below, pzero(x), quad));
  }
};

template <typename C>
struct SmeluBackpropOp {
  SmeluParams<C> p;
  explicit SmeluBackpropOp(const SmeluParams<C>& params) : p(params) {}
  EIGEN_DEVICE_FUNC EIGEN_STRONG_INLINE C operator()(const C& dy, const C& x) const {
    return SmeluBackprop(dy, x, p);
  }
  template <typename Packet>
  EIGEN_STRONG_INLINE Packet packetOp(const Packet& dy, const Packet& x) const {
    using namespace Eigen::internal;  // NOLINT
    const Packet beta = pset1<Packet>(p.beta);
    const Packet inner = pmul(dy, pmul(padd(x, beta), pset1<Packet>(p.half_inv_beta)));
    const Packet below = pcmp_le(x, pset1<Packet>(p.neg_beta));
    const Packet above = pcmp_le(beta, x);
    return pselect(above, dy, pselect(below, pzero(x), inner));
  }
};

// (a, x) -> a * smelu''(x)
template <typename C>
struct SmeluCurvatureOp {
  SmeluParams<C> p;
  explicit SmeluCurvatureOp(const SmeluParams<C>& params) : p(params) {}
  EIGEN_DEVICE_FUNC EIGEN_STRONG_INLINE C operator()(const C& a, const C& x) const {
    return a * SmeluCurvature(x, p);
  }
  template <typename Packet>
  EIGEN_STRONG_INLINE Packet packetOp(const Packet& a, const Packet& x) const {
    using namespace Eigen::internal;  // NOLINT
    const Packet inside = pmul(a, padd(pmul(x, pzero(x)), pset1<Packet>(p.half_inv_beta)));
    const Packet outside = por(pcmp_le(x, pset1<Packet>(p.neg_beta)),
                               pcmp_le(pset1<Packet>(p.beta), x));
    return pselect(outside, pzero(x), inside);
  }
};

}  // namespace steadyrank

namespace Eigen {
namespace internal {
template <typename C>
struct functor_traits<steadyrank::SmeluValueOp<C>> {
  enum { Cost = 4 * NumTraits<C>::MulCost + 4 * NumTraits<C>::AddCost,
         PacketAccess = packet_traits<C>::HasCmp };
};
template <typename C>
struct functor_traits<steadyrank::SmeluBackpropOp<C>> {
  enum { Cost = 4 * NumTraits<C>::MulCost + 4 * NumTraits<C>::AddCost,
         PacketAccess = packet_traits<C>::HasCmp };
};
template <typename C>
struct functor_traits<steadyrank::SmeluCurvatureOp<C>> {
  enum { Cost = 3 * NumTraits<C>::MulCost + 4 * NumTraits<C>::AddCost,
         PacketAccess = packet_traits<C>::HasCmp };
};
}  // namespace internal
}  // namespace Eigen

namespace tensorflow {
namespace functor {

// y = smelu(x)
template <typename Device, typename T>
struct SmeLU {
  absl::Status operator()(const Device& d, typename TTypes<T>::ConstFlat x, float beta,
                  typename TTypes<T>::Flat y);
};

// dx = dy * smelu'(x)
template <typename Device, typename T>
struct SmeLUGrad {
  absl::Status operator()(const Device& d, typename TTypes<T>::ConstFlat dy,
                  typename TTypes<T>::ConstFlat x, float beta,
                  typename TTypes<T>::Flat dx);
};

// Gradient of SmeLUGrad for upstream ddx:
//   d_dy = ddx * smelu'(x),  d_x = ddx * dy * smelu''(x)
template <typename Device, typename T>
struct SmeLUGradGrad {
  absl::Status operator()(const Device& d, typename TTypes<T>::ConstFlat ddx,
                  typename TTypes<T>::ConstFlat dy, typename TTypes<T>::ConstFlat x,
                  float beta, typename TTypes<T>::Flat d_dy, typename TTypes<T>::Flat d_x);
};

// CPU: Eigen expressions on the thread pool device.
template <typename T>
struct SmeLU<Eigen::ThreadPoolDevice, T> {
  absl::Status operator()(const Eigen::ThreadPoolDevice& d, typename TTypes<T>::ConstFlat x,
                  float beta, typename TTypes<T>::Flat y) {
    using C = typename steadyrank::ComputeType<T>::type;
    const steadyrank::SmeluValueOp<C> op(steadyrank::SmeluParams<C>::Make(beta));
    if constexpr (std::is_same_v<C, T>) {
      y.device(d) = x.unaryExpr(op);
    } else {
      y.device(d) = x.template cast<C>().unaryExpr(op).template cast<T>();
    }
    return absl::OkStatus();
  }
};

template <typename T>
struct SmeLUGrad<Eigen::ThreadPoolDevice, T> {
  absl::Status operator()(const Eigen::ThreadPoolDevice& d, typename TTypes<T>::ConstFlat dy,
                  typename TTypes<T>::ConstFlat x, float beta, typename TTypes<T>::Flat dx) {
    using C = typename steadyrank::ComputeType<T>::type;
    const steadyrank::SmeluBackpropOp<C> op(steadyrank::SmeluParams<C>::Make(beta));
    if constexpr (std::is_same_v<C, T>) {
      dx.device(d) = dy.binaryExpr(x, op);
    } else {
      dx.device(d) =
          dy.template cast<C>().binaryExpr(x.template cast<C>(), op).template cast<T>();
    }
    return absl::OkStatus();
  }
};

template <typename T>
struct SmeLUGradGrad<Eigen::ThreadPoolDevice, T> {
  absl::Status operator()(const Eigen::ThreadPoolDevice& d, typename TTypes<T>::ConstFlat ddx,
                  typename TTypes<T>::ConstFlat dy, typename TTypes<T>::ConstFlat x,
                  float beta, typename TTypes<T>::Flat d_dy, typename TTypes<T>::Flat d_x) {
    using C = typename steadyrank::ComputeType<T>::type;
    const auto params = steadyrank::SmeluParams<C>::Make(beta);
    const auto xc = x.template cast<C>();
    d_dy.device(d) = ddx.template cast<C>()
                         .binaryExpr(xc, steadyrank::SmeluBackpropOp<C>(params))
                         .template cast<T>();
    d_x.device(d) = (ddx.template cast<C>() * dy.template cast<C>())
                        .binaryExpr(xc, steadyrank::SmeluCurvatureOp<C>(params))
                        .template cast<T>();
    return absl::OkStatus();
  }
};

// GPU: the CUDA kernels of smelu_kernels.cu.h on the op's stream. Defined in
// smelu_op_gpu.cc, which is compiled only when the library is built with CUDA.
struct GpuStream {
  void* stream;  // cudaStream_t
};

template <typename T>
struct SmeLU<GpuStream, T> {
  absl::Status operator()(const GpuStream& d, typename TTypes<T>::ConstFlat x, float beta,
                          typename TTypes<T>::Flat y);
};

template <typename T>
struct SmeLUGrad<GpuStream, T> {
  absl::Status operator()(const GpuStream& d, typename TTypes<T>::ConstFlat dy,
                          typename TTypes<T>::ConstFlat x, float beta,
                          typename TTypes<T>::Flat dx);
};

template <typename T>
struct SmeLUGradGrad<GpuStream, T> {
  absl::Status operator()(const GpuStream& d, typename TTypes<T>::ConstFlat ddx,
                          typename TTypes<T>::ConstFlat dy, typename TTypes<T>::ConstFlat x,
                          float beta, typename TTypes<T>::Flat d_dy,
                          typename TTypes<T>::Flat d_x);
};

}  // namespace functor
}  // namespace tensorflow

#endif  // STEADYRANK_OPS_CC_KERNELS_SMELU_OP_H_
