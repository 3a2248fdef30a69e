/* Op registrations: GSmeLU and GSmeLUGrad (generalized SmeLU, learnable).
 *
 * The parameters are tensor inputs of the features' dtype, so they can be
 * trained and are exact in every dtype. Each is a scalar (shape [] or [1]) or
 * one value per unit along the features' last axis (shape [units]). Shapes are
 * checked when the op is added to a graph; constant parameter values are
 * checked there too, and every value is checked again by the CPU kernels.
 */
#include <algorithm>
#include <cmath>

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"

namespace tensorflow {
namespace {

using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

constexpr const char* kParamNames[] = {"alpha", "beta", "slope_left", "slope_right", "offset"};
constexpr int kNumParams = 5;

// Checks that `param` is a scalar, or a vector of 1 or `units` values.
absl::Status CheckParamShape(InferenceContext* c, ShapeHandle features, int input,
                             const char* name) {
  ShapeHandle param = c->input(input);
  if (!c->RankKnown(param)) return absl::OkStatus();
  const int rank = c->Rank(param);
  if (rank == 0) return absl::OkStatus();
  if (rank != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GSmeLU: ", name, " must be a scalar or a vector of one value per unit (the last "
        "axis of features), got shape ", c->DebugString(param)));
  }
  DimensionHandle size = c->Dim(param, 0);
  if (!c->ValueKnown(size) || c->Value(size) == 1 || !c->RankKnown(features)) {
    return absl::OkStatus();
  }
  if (c->Rank(features) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GSmeLU: ", name, " has ", c->Value(size), " values per unit but features is a "
        "scalar"));
  }
  DimensionHandle units = c->Dim(features, -1);
  if (c->ValueKnown(units) && c->Value(units) != c->Value(size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GSmeLU: ", name, " has ", c->Value(size), " values but features has ",
        c->Value(units), " units (last axis ", c->DebugString(features), ")"));
  }
  return absl::OkStatus();
}

// Checks the values of constant parameters (known at graph construction).
template <typename T>
absl::Status CheckConstantValues(const Tensor* params[kNumParams]) {
  for (int k = 0; k < kNumParams; ++k) {
    if (params[k] == nullptr) continue;
    auto flat = params[k]->flat<T>();
    for (int64_t i = 0; i < flat.size(); ++i) {
      if (!std::isfinite(static_cast<double>(flat(i)))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "GSmeLU: ", kParamNames[k], " must be finite, got ",
            static_cast<double>(flat(i))));
      }
    }
  }
  if (params[0] != nullptr && params[1] != nullptr) {
    auto alpha = params[0]->flat<T>();
    auto beta = params[1]->flat<T>();
    const int64_t n = std::max(alpha.size(), beta.size());
    for (int64_t i = 0; i < n; ++i) {
      const double a = static_cast<double>(alpha(alpha.size() == 1 ? 0 : i));
      const double b = static_cast<double>(beta(beta.size() == 1 ? 0 : i));
      if (!(a + b > 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "GSmeLU: alpha + beta must be > 0 (the transition region [-alpha, beta] must not "
            "be empty), got alpha=", a, ", beta=", b));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckParams(InferenceContext* c, ShapeHandle features, int first_param) {
  for (int k = 0; k < kNumParams; ++k) {
    TF_RETURN_IF_ERROR(CheckParamShape(c, features, first_param + k, kParamNames[k]));
  }
  const Tensor* values[kNumParams];
  for (int k = 0; k < kNumParams; ++k) values[k] = c->input_tensor(first_param + k);
  DataType dtype;
  TF_RETURN_IF_ERROR(c->GetAttr("T", &dtype));
  switch (dtype) {
    case DT_HALF: return CheckConstantValues<Eigen::half>(values);
    case DT_BFLOAT16: return CheckConstantValues<Eigen::bfloat16>(values);
    case DT_FLOAT: return CheckConstantValues<float>(values);
    case DT_DOUBLE: return CheckConstantValues<double>(values);
    default: return absl::OkStatus();
  }
}

absl::Status GSmeluShape(InferenceContext* c) {
  ShapeHandle features = c->input(0);
  TF_RETURN_IF_ERROR(CheckParams(c, features, 1));
  c->set_output(0, features);
  return absl::OkStatus();
}

absl::Status GSmeluGradShape(InferenceContext* c) {
  ShapeHandle features;
  TF_RETURN_IF_ERROR(c->Merge(c->input(0), c->input(1), &features));
  TF_RETURN_IF_ERROR(CheckParams(c, features, 2));
  c->set_output(0, features);
  for (int k = 0; k < kNumParams; ++k) c->set_output(1 + k, c->input(2 + k));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("GSmeLU")
    .Input("features: T")
    .Input("alpha: T")
    .Input("beta: T")
    .Input("slope_left: T")
    .Input("slope_right: T")
    .Input("offset: T")
    .Output("activations: T")
    .Attr("T: {half, bfloat16, float, double}")
    .SetShapeFn(GSmeluShape)
    .Doc(R"doc(
Generalized SmeLU: slope_left * x + offset for x <= -alpha, a quadratic on
(-alpha, beta) continuous in value and slope at both joins, and slope_right
slope for x >= beta. Every parameter is a scalar or one value per unit of the
last axis. slope_left = 0, slope_right = 1, alpha = beta, offset = 0 is SmeLU.
)doc");

REGISTER_OP("GSmeLUGrad")
    .Input("gradients: T")
    .Input("features: T")
    .Input("alpha: T")
    .Input("beta: T")
    .Input("slope_left: T")
    .Input("slope_right: T")
    .Input("offset: T")
    .Output("backprops: T")
    .Output("grad_alpha: T")
    .Output("grad_beta: T")
    .Output("grad_slope_left: T")
    .Output("grad_slope_right: T")
    .Output("grad_offset: T")
    .Attr("T: {half, bfloat16, float, double}")
    .SetShapeFn(GSmeluGradShape)
    .Doc(R"doc(
Backprop of GSmeLU: gradients * gsmelu'(features), and the gradient of every
parameter, summed over the axes it is broadcast along (its output has the
parameter's shape).
)doc");

}  // namespace tensorflow
