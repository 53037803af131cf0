// The backward operators both methods share (schemas in ops.cpp): bilinear's input gradient at the grid points
// (L-STN's, and ESTN's with value="center") and the grid gradient of fitted slopes.
#include "sampling.h"

namespace interp {
namespace {

// Items [item_begin, item_end) of grad_input (B, C, H, W), zeroed: grad (B, C, Ho * Wo) scattered at the bilinear
// footprints of grid (B, Ho * Wo, 2). An item is a batch element with all its channels or, when per_item is 1, one
// (b, c) plane: each plane has one owner thread, so the sums do not depend on the thread count.
template <typename T, int PAD>
void bilinear_input_grad_items(const T* grad, const T* grid, int64_t C, int64_t H, int64_t W, int64_t P, bool align,
                               int64_t per_item, T* grad_input, int64_t item_begin, int64_t item_end) {
  constexpr int64_t L = Vec<T>::size();
  const Axis<T> ax(W, align), ay(H, align);
  for (int64_t item = item_begin; item < item_end; ++item) {
    const int64_t b = item * per_item / C, c0 = item * per_item % C;
    for (int64_t i = 0; i < P; i += L) {
      const int64_t n = std::min(L, P - i);
      Vec<T> gx, gy;
      load_pairs(grid + 2 * (b * P + i), n, gx, gy);
      const Footprint<T> fp(ax.template source<PAD>(gx), ay.template source<PAD>(gy), H, W);
      for (int64_t c = c0; c < c0 + per_item; ++c)
        fp.scatter(grad_input + (b * C + c) * H * W, Vec<T>::loadu(grad + (b * C + c) * P + i, n), n);
    }
  }
}

at::Tensor bilinear_input_grad(const at::Tensor& grad_value, const at::Tensor& grid_, int64_t height, int64_t width,
                               c10::string_view padding_mode, bool align_corners) {
  const at::Tensor grad = grad_value.contiguous(), grid = grid_.contiguous();
  const int64_t B = grad.size(0), C = grad.size(1), P = grad.size(2) * grad.size(3);
  TORCH_CHECK(grid.sizes().equals({B, grad.size(2), grad.size(3), 2}), "bilinear_input_grad: grid: expected (B, Ho, Wo, 2) for grad ",
              grad.sizes(), ", got ", grid.sizes());
  at::Tensor grad_input = at::zeros({B, C, height, width}, grad.options());
  const int padding = padding_code(padding_mode);
  const int64_t per_item = B >= at::get_num_threads() ? C : 1;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "bilinear_input_grad", [&] {
    using T = scalar_t;
    by_padding(padding, [&]<int PAD>() {
      at::parallel_for(0, B * C / per_item, 1, [&](int64_t begin, int64_t end) {
        bilinear_input_grad_items<T, PAD>(grad.const_data_ptr<T>(), grid.const_data_ptr<T>(), C, height, width, P,
                                          align_corners, per_item, grad_input.mutable_data_ptr<T>(), begin, end);
      });
    });
  });
  return grad_input;
}

// (B, Ho, Wo, 2): the slopes (2, B, C, Ho, Wo) against grad (B, C, Ho, Wo), summed over channels
at::Tensor slope_grid_grad(const at::Tensor& grad_value, const at::Tensor& slopes_) {
  const at::Tensor grad = grad_value.contiguous(), slopes = slopes_.contiguous();
  const int64_t B = grad.size(0), C = grad.size(1), P = grad.size(2) * grad.size(3);
  TORCH_CHECK(slopes.dim() == 5 && slopes.size(0) == 2 && slopes.sizes().slice(1).equals(grad.sizes()),
              "slope_grid_grad: slopes: expected (2, B, C, Ho, Wo) for grad ", grad.sizes(), ", got ", slopes.sizes());
  at::Tensor grad_grid = at::empty({B, grad.size(2), grad.size(3), 2}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "slope_grid_grad", [&] {
    using T = scalar_t;
    constexpr int64_t L = Vec<T>::size();
    const T *g = grad.const_data_ptr<T>(), *sx = slopes.const_data_ptr<T>(), *sy = sx + grad.numel();
    T* out = grad_grid.mutable_data_ptr<T>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        for (int64_t i = 0; i < P; i += L) {
          const int64_t n = std::min(L, P - i);
          Vec<T> x(T(0)), y(T(0));
          for (int64_t c = 0; c < C; ++c) {
            const int64_t at = (b * C + c) * P + i;
            const Vec<T> gv = Vec<T>::loadu(g + at, n);
            x = at::vec::fmadd(gv, Vec<T>::loadu(sx + at, n), x);
            y = at::vec::fmadd(gv, Vec<T>::loadu(sy + at, n), y);
          }
          store_pairs(out + 2 * (b * P + i), n, x, y);
        }
    });
  });
  return grad_grid;
}

}  // namespace

TORCH_LIBRARY_IMPL(interpolators, CPU, m) {
  m.impl("bilinear_input_grad", &bilinear_input_grad);
  m.impl("slope_grid_grad", &slope_grid_grad);
}

}  // namespace interp
