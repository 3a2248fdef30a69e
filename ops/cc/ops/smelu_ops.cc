/* Op registrations: SmeLU, SmeLUGrad and SmeLUGradGrad.
 *
 * beta is validated by the shape functions, so a bad beta is an
 * InvalidArgument when the op is added to a graph, not when it first runs;
 * the kernels check it again for eager execution.
 */
#include <cmath>

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {
namespace {

using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

absl::Status CheckBeta(InferenceContext* c) {
  float beta;
  TF_RETURN_IF_ERROR(c->GetAttr("beta", &beta));
  if (!std::isfinite(beta) || !(beta > 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SmeLU: beta must be a finite number > 0, got ", beta));
  }
  return absl::OkStatus();
}

// All inputs have one shape, and every output has it too.
absl::Status SameShapeAllInputs(InferenceContext* c) {
  TF_RETURN_IF_ERROR(CheckBeta(c));
  ShapeHandle shape = c->input(0);
  for (int i = 1; i < c->num_inputs(); ++i) {
    TF_RETURN_IF_ERROR(c->Merge(shape, c->input(i), &shape));
  }
  for (int i = 0; i < c->num_outputs(); ++i) c->set_output(i, shape);
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("SmeLU")
    .Input("features: T")
    .Output("activations: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("beta: float = 1.0")
    .SetShapeFn(SameShapeAllInputs)
    .Doc(R"doc(
Smooth ReLU (Shamir and Lin, 2022): 0 for x <= -beta, (x + beta)^2 / (4 beta)
for |x| < beta, x for x >= beta.
)doc");

REGISTER_OP("SmeLUGrad")
    .Input("gradients: T")
    .Input("features: T")
    .Output("backprops: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("beta: float = 1.0")
    .SetShapeFn(SameShapeAllInputs)
    .Doc(R"doc(
Backprop of SmeLU: gradients * smelu'(features), where smelu' is 0, (x + beta) /
(2 beta), 1 on the three pieces.
)doc");

REGISTER_OP("SmeLUGradGrad")
    .Input("grad_backprops: T")
    .Input("gradients: T")
    .Input("features: T")
    .Output("grad_gradients: T")
    .Output("grad_features: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("beta: float = 1.0")
    .SetShapeFn(SameShapeAllInputs)
    .Doc(R"doc(
Gradient of SmeLUGrad: grad_gradients = grad_backprops * smelu'(features) and
grad_features = grad_backprops * gradients * smelu''(features).
)doc");

}  // namespace tensorflow
