// The schemas of the project's operators, one per operator (torchvision's style). CPU kernels: lstn.cpp, estn.cpp,
// sampling.cpp; autograd: autograd.cpp; fake kernels: interpolators/lstn/operator.py, interpolators/estn/operator.py,
// interpolators/_shared_ops.py. Arguments are grid_sample's where they share a name; slopes are per normalized unit.
#include <torch/library.h>

TORCH_LIBRARY(interpolators, m) {
  // L-STN: value (B, C, Ho, Wo) and slopes (2, B, C, Ho, Wo) of the plane fit over num_auxiliary points around each
  // grid point, at offsets (2, B, M, Ho, Wo) in offset units or hashed from key (one int64); scale_x/y: normalized
  // units per offset unit
  m.def(
      "lstn_forward(Tensor input, Tensor grid, Tensor? offsets, Tensor? key, int num_auxiliary, float scale_x, "
      "float scale_y, str padding_mode, bool align_corners, bool fixed_bias) -> (Tensor, Tensor)");
  // the normals (2, n) lstn_forward hashes for flat point indices 0 .. n - 1 (for the tests)
  m.def("lstn_hash_normals(Tensor key, int n, ScalarType dtype) -> Tensor");
  // ESTN for the shared spiral z = (spiral_x, spiral_y) with prior weights: value (B, C, Ho, Wo), slopes
  // (2, B, C, Ho, Wo) and, with keep_beta, the intercept weights of samples 1 .. K - 1, (B, K - 1, Ho, Wo), else (0,)
  m.def(
      "estn_forward(Tensor input, Tensor grid, float[] spiral_x, float[] spiral_y, float[] prior, "
      "float tangent_scale, float min_radius, float? entropy, int iterations, float ridge, str padding_mode, "
      "bool align_corners, bool center_value, bool keep_beta) -> (Tensor, Tensor, Tensor)");
  // ESTN's input gradient (B, C, height, width): grad (B, C, Ho, Wo) times beta at the samples' footprints
  m.def(
      "estn_input_grad(Tensor grad, Tensor grid, float[] spiral_x, float[] spiral_y, Tensor beta, SymInt height, "
      "SymInt width, float tangent_scale, float min_radius, str padding_mode, bool align_corners) -> Tensor");
  // bilinear's input gradient (B, C, height, width) of grad (B, C, Ho, Wo) at grid (B, Ho, Wo, 2)
  m.def(
      "bilinear_input_grad(Tensor grad, Tensor grid, SymInt height, SymInt width, str padding_mode, "
      "bool align_corners) -> Tensor");
  // the grid gradient (B, Ho, Wo, 2) of slopes (2, B, C, Ho, Wo) against grad (B, C, Ho, Wo), summed over channels
  m.def("slope_grid_grad(Tensor grad, Tensor slopes) -> Tensor");
}
