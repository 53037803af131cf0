// Shared by the native kernels (interpolators/_native.py builds and loads them): grid_sample's bilinear sampling
// and its input-gradient scatter, written branch-free so that loops over points vectorize.
//
// Conventions are grid_sample's: input (B, C, H, W) contiguous, grid (B, Ho, Wo, 2) contiguous normalized (x, y),
// padding 0 zeros / 1 border / 2 reflection, align_corners as in torch. OpenMP splits the outer loops over the
// threads of torch's own OpenMP runtime (torch.set_num_threads applies).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

// Reflect x about [lo, lo + period / 2], branch-free: fold by the period, then mirror.
template <typename T> static inline T reflect(T x, T lo, T period) {
  T d = std::fabs(x - lo);
  T extra = d - std::floor(d / period) * period;
  const T mirrored = period - extra;
  return lo + (extra < mirrored ? extra : mirrored);
}
// grid_sample's map from a normalized coordinate to a source pixel along one axis (PAD: 0 zeros, 1 border,
// 2 reflection), with everything that depends on the size and align_corners computed once.
template <typename T> struct Axis {
  T mul, add, lo, period, last;
  Axis(int64_t size, bool align)
      : mul(align ? T(size - 1) / 2 : T(size) / 2), add(align ? T(0) : T(-0.5)), lo(align ? T(0) : T(-0.5)),
        period(align ? T(2 * (size - 1)) : T(2 * size)), last(T(size - 1)) {
    if (period == 0) period = 1;  // align_corners on one pixel: any reflection, then clipped to 0
  }
  template <int PAD> inline T source(T g) const {
    T x = (g + 1) * mul + add;
    if (PAD == 2) x = reflect(x, lo, period);
    if (PAD != 0) {
      x = x > 0 ? x : T(0);
      x = x < last ? x : last;
    }
    return x;
  }
};
// The bilinear footprint of source pixel (x, y) in an (H, W) plane: the top-left corner (x0, y0), the weights of
// the right and lower corners, and which corners lie inside (grid_sample's "zeros"; the other paddings have moved
// (x, y) inside already). Flags are computed in floating point, which keeps the loops that use them vectorizable.
template <typename T> struct Footprint {
  T wx, wy;
  bool vx0, vx1, vy0, vy1;
  int x0, y0;
  Footprint(T x, T y, int H, int W) {
    x = x > T(-2) ? x : T(-2);  // keeps the int conversion defined (NaN too); anything past -1 or W samples zeros
    x = x < T(W + 1) ? x : T(W + 1);
    y = y > T(-2) ? y : T(-2);
    y = y < T(H + 1) ? y : T(H + 1);
    const T fx = std::floor(x), fy = std::floor(y), lx = T(W - 1), ly = T(H - 1);
    wx = x - fx;
    wy = y - fy;
    vx0 = (fx >= 0) & (fx <= lx);
    vx1 = (fx >= -1) & (fx <= lx - 1);
    vy0 = (fy >= 0) & (fy <= ly);
    vy1 = (fy >= -1) & (fy <= ly - 1);
    x0 = (int)fx;
    y0 = (int)fy;
  }
};

// Bilinear sample of one (H, W) plane at source pixel (x, y), zero outside. Branch-free with in-range loads, so that
// loops over points vectorize.
template <typename T> static inline T bilinear(const T* img, int H, int W, T x, T y) {
  const Footprint<T> f(x, y, H, W);
  const T wx = f.wx, wy = f.wy;
  const bool vx0 = f.vx0, vx1 = f.vx1, vy0 = f.vy0, vy1 = f.vy1;
  const int x0 = f.x0, y0 = f.y0, x1 = x0 + 1, y1 = y0 + 1;
  const int cx0 = x0 < 0 ? 0 : (x0 > W - 1 ? W - 1 : x0), cx1 = x1 < 0 ? 0 : (x1 > W - 1 ? W - 1 : x1);
  const int cy0 = y0 < 0 ? 0 : (y0 > H - 1 ? H - 1 : y0), cy1 = y1 < 0 ? 0 : (y1 > H - 1 ? H - 1 : y1);
  T a = img[cy0 * W + cx0], b = img[cy0 * W + cx1], c = img[cy1 * W + cx0], d = img[cy1 * W + cx1];
  a = (vx0 & vy0) ? a : T(0);
  b = (vx1 & vy0) ? b : T(0);
  c = (vx0 & vy1) ? c : T(0);
  d = (vx1 & vy1) ? d : T(0);
  return (a * (1 - wx) + b * wx) * (1 - wy) + (c * (1 - wx) + d * wx) * wy;
}
// Call the kernel template fn<PAD, T> for grid_sample's padding code (0 zeros, 1 border, 2 reflection).
#define BY_PADDING(padding, fn, ...) \
  ((padding) == 0 ? fn<0, T>(__VA_ARGS__) : (padding) == 1 ? fn<1, T>(__VA_ARGS__) : fn<2, T>(__VA_ARGS__))

constexpr int TILE = 64;  // output pixels per tile: the unit of work whose per-point buffers stay in L1

// The bilinear corners of n points at source pixels (px, py) in an (H, W) plane, corner by corner: flat indices
// idx (4, TILE), -1 where the corner is outside (nothing to add), and weights wt (4, TILE). One vectorized pass.
template <typename T>
static inline void bilinear_corners(const T* px, const T* py, int n, int H, int W, int* idx, T* wt) {
#pragma omp simd
  for (int t = 0; t < n; ++t) {
    const Footprint<T> f(px[t], py[t], H, W);
    const T wx = f.wx, wy = f.wy;
    const bool vx0 = f.vx0, vx1 = f.vx1, vy0 = f.vy0, vy1 = f.vy1;
    const int i00 = f.y0 * W + f.x0;
    idx[t] = (vx0 & vy0) ? i00 : -1;
    idx[TILE + t] = (vx1 & vy0) ? i00 + 1 : -1;
    idx[2 * TILE + t] = (vx0 & vy1) ? i00 + W : -1;
    idx[3 * TILE + t] = (vx1 & vy1) ? i00 + W + 1 : -1;
    wt[t] = (1 - wx) * (1 - wy);
    wt[TILE + t] = wx * (1 - wy);
    wt[2 * TILE + t] = (1 - wx) * wy;
    wt[3 * TILE + t] = wx * wy;
  }
}

// Scatter-add the values gw (n,) of points with corners (idx, wt) into the plane out, as grid_sample's backward does:
// gw times each corner's weight in a vectorized pass (into scaled, 4 * TILE), then the adds in a scalar one.
template <typename T>
static inline void scatter_corners(T* out, const int* idx, const T* wt, const T* gw, int n, T* scaled) {
  for (int j = 0; j < 4; ++j) {
#pragma omp simd
    for (int t = 0; t < n; ++t) scaled[j * TILE + t] = gw[t] * wt[j * TILE + t];
  }
  for (int t = 0; t < n; ++t)
    for (int j = 0; j < 4; ++j)
        if (idx[j * TILE + t] >= 0) out[idx[j * TILE + t]] += scaled[j * TILE + t];
}
