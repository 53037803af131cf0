// Kernels that both methods' native backends use: bilinear's input-gradient scatter at the grid points and the
// grid gradient of fitted slopes. Conventions in sampling.h.
#include "sampling.h"

// The grid gradient (B, Ho, Wo, 2) of a plane fit: the slopes (B, C, Ho, Wo) against grad_out, summed over channels.
template <typename T>
static void slope_grid_grad(const T* grad_out, const T* slope_x, const T* slope_y, int64_t B, int64_t C, int64_t P, T* out) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    T* o = out + b * P * 2;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t base = (b * C + c) * P;
      const T *g = grad_out + base, *sx = slope_x + base, *sy = slope_y + base;
      if (c == 0) {
#pragma omp simd
        for (int64_t i = 0; i < P; ++i) { o[2 * i] = g[i] * sx[i]; o[2 * i + 1] = g[i] * sy[i]; }
      } else {
#pragma omp simd
        for (int64_t i = 0; i < P; ++i) { o[2 * i] += g[i] * sx[i]; o[2 * i + 1] += g[i] * sy[i]; }
      }
    }
  }
}
extern "C" void slope_grid_grad_f32(const float* g, const float* sx, const float* sy, int64_t B, int64_t C, int64_t P, float* out) {
  slope_grid_grad<float>(g, sx, sy, B, C, P, out);
}
extern "C" void slope_grid_grad_f64(const double* g, const double* sx, const double* sy, int64_t B, int64_t C, int64_t P, double* out) {
  slope_grid_grad<double>(g, sx, sy, B, C, P, out);
}

// grid_sample's input gradient (bilinear): grad (B, C, Ho*Wo) scattered at the points of grid (B, Ho*Wo, 2) into the
// zeroed grad_input (B, C, H, W). Each (b, c) plane is owned by one thread.
template <int PAD, typename T>
static void bilinear_input_grad(const T* grad, const T* grid, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P,
                                bool align, T* grad_input) {
  const Axis<T> ax(W, align), ay(H, align);
#pragma omp parallel
  {
    int idx[4 * TILE];
    T wt[4 * TILE], scaled[4 * TILE], px[TILE], py[TILE];
#pragma omp for schedule(static)
    for (int64_t bc = 0; bc < B * C; ++bc) {
      for (int64_t i0 = 0; i0 < P; i0 += TILE) {
        const int n = (int)std::min<int64_t>(TILE, P - i0);
        const T* gxy = grid + 2 * ((bc / C) * P + i0);
#pragma omp simd
        for (int t = 0; t < n; ++t) {
          px[t] = ax.template source<PAD>(gxy[2 * t]);
          py[t] = ay.template source<PAD>(gxy[2 * t + 1]);
        }
        bilinear_corners(px, py, n, (int)H, (int)W, idx, wt);
        scatter_corners(grad_input + bc * H * W, idx, wt, grad + bc * P + i0, n, scaled);
      }
    }
  }
}

template <typename T>
static void bilinear_input_grad_dispatch(const T* grad, const T* grid, int64_t B, int64_t C, int64_t H, int64_t W,
                                         int64_t P, int padding, int align, T* grad_input) {
  BY_PADDING(padding, bilinear_input_grad, grad, grid, B, C, H, W, P, align != 0, grad_input);
}
extern "C" void bilinear_input_grad_f32(const float* grad, const float* grid, int64_t B, int64_t C, int64_t H, int64_t W,
                                        int64_t P, int padding, int align, float* grad_input) {
  bilinear_input_grad_dispatch<float>(grad, grid, B, C, H, W, P, padding, align, grad_input);
}
extern "C" void bilinear_input_grad_f64(const double* grad, const double* grid, int64_t B, int64_t C, int64_t H, int64_t W,
                                        int64_t P, int padding, int align, double* grad_input) {
  bilinear_input_grad_dispatch<double>(grad, grid, B, C, H, W, P, padding, align, grad_input);
}
