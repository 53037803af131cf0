// Autograd of the forward operators, registered for every device (torchvision's style: csrc/ops/autograd). The
// backward is itself made of operators (bilinear_input_grad, slope_grid_grad), so torch.compile traces it and the
// device kernels (C++ on CPU, Triton on CUDA) serve both passes. In C++ rather than torch.library.register_autograd:
// the Python wrapper costs ~0.1 ms a call (docs/operators.md, "Autograd"), a fifth of bilinear's whole
// forward+backward at the classify suite's shape.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace interp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor bilinear_input_grad(const at::Tensor& grad, const at::Tensor& grid, int64_t height, int64_t width,
                               c10::string_view padding_mode, bool align_corners) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("interpolators::bilinear_input_grad", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymInt, c10::SymInt,
                                         c10::string_view, bool)>();
  return op.call(grad, grid, height, width, padding_mode, align_corners);
}

at::Tensor slope_grid_grad(const at::Tensor& grad, const at::Tensor& slopes) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("interpolators::slope_grid_grad", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return op.call(grad, slopes);
}

// L-STN: the input gradient is bilinear's at the grid point, the grid's the slopes against the output gradient.
// Saved: the grid and the slopes, each only when its gradient is needed.
class LstnFunction : public torch::autograd::Function<LstnFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& grid,
                               const std::optional<at::Tensor>& offsets, const std::optional<at::Tensor>& key,
                               int64_t num_auxiliary, double scale_x, double scale_y, c10::string_view padding_mode,
                               bool align_corners, bool fixed_bias) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("interpolators::lstn_forward", "")
                         .typed<std::tuple<at::Tensor, at::Tensor>(
                             const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                             const std::optional<at::Tensor>&, int64_t, double, double, c10::string_view, bool,
                             bool)>();
    const bool input_grad = input.requires_grad(), grid_grad = grid.requires_grad();
    at::AutoDispatchBelowADInplaceOrView below;
    auto [value, slopes] =
        op.call(input, grid, offsets, key, num_auxiliary, scale_x, scale_y, padding_mode, align_corners, fixed_bias);
    ctx->save_for_backward({input_grad ? grid : at::Tensor(), grid_grad ? slopes : at::Tensor()});
    ctx->saved_data["height"] = input.size(2);
    ctx->saved_data["width"] = input.size(3);
    ctx->saved_data["padding_mode"] = std::string(padding_mode);
    ctx->saved_data["align_corners"] = align_corners;
    ctx->mark_non_differentiable({slopes});
    ctx->set_materialize_grads(false);  // the slopes' gradient is never used: no zeros for it
    return {value, slopes};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad = grads[0];
    at::Tensor grad_input, grad_grid;
    if (grad.defined() && ctx->needs_input_grad(0))
      grad_input = bilinear_input_grad(grad, saved[0], ctx->saved_data["height"].toInt(),
                                       ctx->saved_data["width"].toInt(),
                                       ctx->saved_data["padding_mode"].toStringRef(),
                                       ctx->saved_data["align_corners"].toBool());
    if (grad.defined() && ctx->needs_input_grad(1)) grad_grid = slope_grid_grad(grad, saved[1]);
    variable_list out(10);
    out[0] = grad_input;
    out[1] = grad_grid;
    return out;
  }
};

std::tuple<at::Tensor, at::Tensor> lstn_forward_autograd(const at::Tensor& input, const at::Tensor& grid,
                                                         const std::optional<at::Tensor>& offsets,
                                                         const std::optional<at::Tensor>& key, int64_t num_auxiliary,
                                                         double scale_x, double scale_y,
                                                         c10::string_view padding_mode, bool align_corners,
                                                         bool fixed_bias) {
  auto out = LstnFunction::apply(input, grid, offsets, key, num_auxiliary, scale_x, scale_y, padding_mode,
                                 align_corners, fixed_bias);
  return {out[0], out[1]};
}

at::Tensor estn_input_grad(const at::Tensor& grad, const at::Tensor& grid, c10::ArrayRef<double> spiral_x,
                           c10::ArrayRef<double> spiral_y, const at::Tensor& beta, int64_t height, int64_t width,
                           double tangent_scale, double min_radius, c10::string_view padding_mode, bool align_corners) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("interpolators::estn_input_grad", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::ArrayRef<double>,
                                         c10::ArrayRef<double>, const at::Tensor&, c10::SymInt, c10::SymInt, double,
                                         double, c10::string_view, bool)>();
  return op.call(grad, grid, spiral_x, spiral_y, beta, height, width, tangent_scale, min_radius, padding_mode,
                 align_corners);
}

// ESTN: the input gradient is the intercept weights beta at the samples' footprints (estn_input_grad; bilinear's
// with center_value), the grid's the slopes against the output gradient. Saved, each only when its gradient is needed:
// the grid (the input gradient recomputes the points from it), beta and the slopes; not the input.
class EstnFunction : public torch::autograd::Function<EstnFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& grid,
                               c10::ArrayRef<double> spiral_x, c10::ArrayRef<double> spiral_y,
                               c10::ArrayRef<double> prior, double tangent_scale, double min_radius,
                               std::optional<double> entropy, int64_t iterations, double ridge,
                               c10::string_view padding_mode, bool align_corners, bool center_value, bool keep_beta) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("interpolators::estn_forward", "")
                         .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                             const at::Tensor&, const at::Tensor&, c10::ArrayRef<double>, c10::ArrayRef<double>,
                             c10::ArrayRef<double>, double, double, std::optional<double>, int64_t, double,
                             c10::string_view, bool, bool, bool)>();
    const bool input_grad = input.requires_grad(), grid_grad = grid.requires_grad();
    at::AutoDispatchBelowADInplaceOrView below;
    auto [value, slopes, beta] = op.call(input, grid, spiral_x, spiral_y, prior, tangent_scale, min_radius, entropy,
                                         iterations, ridge, padding_mode, align_corners, center_value, keep_beta);
    ctx->save_for_backward({input_grad ? grid : at::Tensor(), input_grad && !center_value ? beta : at::Tensor(),
                            grid_grad ? slopes : at::Tensor()});
    ctx->saved_data["height"] = input.size(2);
    ctx->saved_data["width"] = input.size(3);
    ctx->saved_data["padding_mode"] = std::string(padding_mode);
    ctx->saved_data["align_corners"] = align_corners;
    ctx->saved_data["center_value"] = center_value;
    ctx->saved_data["spiral_x"] = spiral_x.vec();
    ctx->saved_data["spiral_y"] = spiral_y.vec();
    ctx->saved_data["tangent_scale"] = tangent_scale;
    ctx->saved_data["min_radius"] = min_radius;
    ctx->mark_non_differentiable({slopes, beta});
    ctx->set_materialize_grads(false);
    return {value, slopes, beta};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad = grads[0];
    auto& data = ctx->saved_data;
    at::Tensor grad_input, grad_grid;
    if (grad.defined() && ctx->needs_input_grad(0)) {
      const int64_t height = data["height"].toInt(), width = data["width"].toInt();
      const std::string& padding = data["padding_mode"].toStringRef();
      const bool align = data["align_corners"].toBool();
      if (data["center_value"].toBool())
        grad_input = bilinear_input_grad(grad, saved[0], height, width, padding, align);
      else
        grad_input = estn_input_grad(grad, saved[0], data["spiral_x"].toDoubleVector(),
                                     data["spiral_y"].toDoubleVector(), saved[1], height, width,
                                     data["tangent_scale"].toDouble(), data["min_radius"].toDouble(), padding, align);
    }
    if (grad.defined() && ctx->needs_input_grad(1)) grad_grid = slope_grid_grad(grad, saved[2]);
    variable_list out(14);
    out[0] = grad_input;
    out[1] = grad_grid;
    return out;
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> estn_forward_autograd(
    const at::Tensor& input, const at::Tensor& grid, c10::ArrayRef<double> spiral_x, c10::ArrayRef<double> spiral_y,
    c10::ArrayRef<double> prior, double tangent_scale, double min_radius, std::optional<double> entropy,
    int64_t iterations, double ridge, c10::string_view padding_mode, bool align_corners, bool center_value,
    bool keep_beta) {
  auto out = EstnFunction::apply(input, grid, spiral_x, spiral_y, prior, tangent_scale, min_radius, entropy,
                                 iterations, ridge, padding_mode, align_corners, center_value, keep_beta);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(interpolators, Autograd, m) {
  m.impl("lstn_forward", &lstn_forward_autograd);
  m.impl("estn_forward", &estn_forward_autograd);
}

}  // namespace interp
