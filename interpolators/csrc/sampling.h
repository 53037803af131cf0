// What the operators' CPU kernels share: ATen's vector types at this build's instruction set, grid_sample's map from
// normalized coordinates to source pixels, bilinear footprints (samples gathered from zero-bordered planes, gradients
// scattered), and the threading. Conventions are grid_sample's: input (B, C, H, W), grid (B, Ho, Wo, 2) holding
// normalized (x, y), padding "zeros" / "border" / "reflection", align_corners as in torch.
//
// One source for every x86 CPU: the vector width is the widest the compiler targets (-march=native, or the forced
// target of STN_BENCH_MARCH; interpolators/_extension.py), picked below for ATen's at::vec::Vectorized the way
// torch's own CPU kernels pick it per CPU capability: 16 floats with AVX-512, 8 with AVX2, a portable fallback else.
#pragma once

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#else
#define CPU_CAPABILITY DEFAULT
#endif

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace interp {

template <typename T> using Vec = at::vec::Vectorized<T>;
template <typename T> using Int = at::vec::int_same_size_t<T>;  // int32_t for float, int64_t for double
template <typename T> using IVec = at::vec::Vectorized<Int<T>>;

enum Padding { ZEROS = 0, BORDER = 1, REFLECTION = 2 };

inline int padding_code(c10::string_view mode) {
  if (mode == "zeros") return ZEROS;
  if (mode == "border") return BORDER;
  TORCH_CHECK(mode == "reflection", "padding_mode: expected 'zeros', 'border' or 'reflection', got '", mode, "'");
  return REFLECTION;
}

// Calls fn.template operator()<PAD>() for a padding code, so kernels are compiled once per padding mode.
template <typename F> inline void by_padding(int padding, F&& fn) {
  if (padding == ZEROS) fn.template operator()<ZEROS>();
  else if (padding == BORDER) fn.template operator()<BORDER>();
  else fn.template operator()<REFLECTION>();
}

// ---- vector helpers -------------------------------------------------------------------------------------------

// a where mask is set, else b (mask lanes are all ones or all zeros, as comparisons return them)
template <typename T> inline Vec<T> select(const Vec<T>& mask, const Vec<T>& a, const Vec<T>& b) {
  return Vec<T>::blendv(b, a, mask);
}
// x > lo ? x : lo, lanes of NaN included (they become lo), then the same against hi
template <typename T> inline Vec<T> clamp_nan_low(const Vec<T>& x, T lo, T hi) {
  const Vec<T> low(lo), high(hi);
  const Vec<T> y = select<T>(x > low, x, low);
  return select<T>(y < high, y, high);
}
// the lanes [0, n) of the interleaved pairs at xy (2n values) as two vectors (x, y); lanes past n are 0
template <typename T> inline void load_pairs(const T* xy, int64_t n, Vec<T>& x, Vec<T>& y) {
  constexpr int64_t L = Vec<T>::size();
  const Vec<T> a = Vec<T>::loadu(xy, std::min<int64_t>(2 * n, L));
  const Vec<T> b = 2 * n > L ? Vec<T>::loadu(xy + L, 2 * n - L) : Vec<T>(T(0));
  std::tie(x, y) = at::vec::deinterleave2(a, b);
}
template <typename T> inline void store_pairs(T* xy, int64_t n, const Vec<T>& x, const Vec<T>& y) {
  constexpr int64_t L = Vec<T>::size();
  Vec<T> a, b;
  std::tie(a, b) = at::vec::interleave2(x, y);
  a.store(xy, std::min<int64_t>(2 * n, L));
  if (2 * n > L) b.store(xy + L, 2 * n - L);
}

// ---- grid_sample's coordinates --------------------------------------------------------------------------------

// The map from a normalized coordinate to a source pixel along one axis of `size` pixels, with padding PAD applied
// (reflection folds into range, border and reflection clip to [0, size - 1]; zeros leaves it).
template <typename T> struct Axis {
  T mul, add, lo, period, last;
  Axis(int64_t size, bool align)
      : mul(align ? T(size - 1) / 2 : T(size) / 2), add(align ? T(0) : T(-0.5)), lo(align ? T(0) : T(-0.5)),
        period(align ? T(2 * (size - 1)) : T(2 * size)), last(T(size - 1)) {
    if (period == 0) period = 1;  // align_corners on one pixel: any reflection, then clipped to 0
  }
  template <int PAD> inline Vec<T> source(const Vec<T>& g) const {
    Vec<T> x = at::vec::fmadd(g + Vec<T>(T(1)), Vec<T>(mul), Vec<T>(add));
    if constexpr (PAD == REFLECTION) {  // fold by the period, then mirror
      const Vec<T> d = (x - Vec<T>(lo)).abs();
      const Vec<T> extra = d - (d / Vec<T>(period)).floor() * Vec<T>(period);
      const Vec<T> mirrored = Vec<T>(period) - extra;
      x = Vec<T>(lo) + select<T>(extra < mirrored, extra, mirrored);
    }
    if constexpr (PAD != ZEROS) {
      x = select<T>(x > Vec<T>(T(0)), x, Vec<T>(T(0)));
      x = select<T>(x < Vec<T>(last), x, Vec<T>(last));
    }
    return x;
  }
};

// ---- bilinear footprints --------------------------------------------------------------------------------------

// The bilinear footprint of a vector of source pixels (x, y) in an (H, W) plane, for scattering gradients: the flat
// index of the top-left corner, the weights of the right and lower corners and, per corner, which lanes lie inside (grid_sample's zeros;
// the other paddings have moved the points inside). Coordinates are first clamped to [-2, W + 1] (NaN to -2), which
// keeps the integer conversion defined without changing any sample.
template <typename T> struct Footprint {
  IVec<T> corner;
  Vec<T> wx, wy, in00, in01, in10, in11;
  int64_t width;

  Footprint() = default;
  Footprint(const Vec<T>& x_, const Vec<T>& y_, int64_t H, int64_t W) : width(W) {
    const Vec<T> x = clamp_nan_low<T>(x_, T(-2), T(W + 1)), y = clamp_nan_low<T>(y_, T(-2), T(H + 1));
    const Vec<T> fx = x.floor(), fy = y.floor(), zero(T(0)), minus_one(T(-1));
    wx = x - fx;
    wy = y - fy;
    const Vec<T> x0 = (fx >= zero) & (fx <= Vec<T>(T(W - 1))), x1 = (fx >= minus_one) & (fx <= Vec<T>(T(W - 2)));
    const Vec<T> y0 = (fy >= zero) & (fy <= Vec<T>(T(H - 1))), y1 = (fy >= minus_one) & (fy <= Vec<T>(T(H - 2)));
    in00 = x0 & y0;
    in01 = x1 & y0;
    in10 = x0 & y1;
    in11 = x1 & y1;
    corner = at::vec::convert_to_int_of_same_size<T>(fy) * IVec<T>(Int<T>(W)) +
             at::vec::convert_to_int_of_same_size<T>(fx);
  }
  // out[corner] += g * weight for the four corners of lanes [0, n), as grid_sample's backward does: the products in
  // vectors, the adds one by one, one corner of every lane at a time. Neighbouring lanes often add to the same pixel
  // (one lane's right corner is the next one's left); a lane's four adds in a row would put those two adds back to
  // back, each waiting on the other's store (and the compiler's paired 8-byte add of a lane's two upper corners,
  // overlapping the next lane's pair, defeats store forwarding altogether). When every lane of the vector has all
  // four corners inside, the adds take no branches.
  inline void scatter(T* out, const Vec<T>& g, int64_t n) const {
    constexpr int64_t L = Vec<T>::size();
    const Vec<T> one(T(1)), gx1 = g * wx, gx0 = g - gx1;
    T v[4][L];
    Int<T> at[L];
    (gx0 * (one - wy)).store(v[0]);
    (gx1 * (one - wy)).store(v[1]);
    (gx0 * wy).store(v[2]);
    (gx1 * wy).store(v[3]);
    corner.store(at);
    const int64_t offset[4] = {0, 1, width, width + 1};
    const Vec<T> inside = in00 & in01 & in10 & in11;
    if (n == L && is_full(inside)) {
      for (int q = 0; q < 4; ++q) {
        T* o = out + offset[q];
        for (int64_t l = 0; l < L; ++l) o[at[l]] += v[q][l];
      }
      return;
    }
    T in[4][L];
    in00.store(in[0]);
    in01.store(in[1]);
    in10.store(in[2]);
    in11.store(in[3]);
    for (int q = 0; q < 4; ++q) {
      T* o = out + offset[q];
      for (int64_t l = 0; l < n; ++l)
        if (is_set(in[q][l])) o[at[l]] += v[q][l];
    }
  }

 private:
  static inline bool is_set(T mask_lane) {
    Int<T> bits;
    std::memcpy(&bits, &mask_lane, sizeof(T));
    return bits != 0;
  }
  static inline bool is_full(const Vec<T>& mask) {  // every lane set
    return Vec<T>::blendv(Vec<T>(T(0)), Vec<T>(T(1)), mask).zero_mask() == 0;
  }
};

// ---- padded planes and their footprints, for the forward samples -----------------------------------------------

// The C planes of one batch element inside a zero border of 2 pixels before and 3 after each axis, so that the bilinear
// footprint of any point clamped to [-2, size + 1] lies inside: samples need no masks, and grid_sample's zeros come
// from the border (the other paddings keep the points inside the image, and the border then only meets weight 0).
// Per thread; loading the batch element it already holds is free.
template <typename T> class PaddedPlanes {
 public:
  static constexpr int64_t before = 2, after = 3;
  PaddedPlanes(int64_t C, int64_t H, int64_t W)
      : C_(C), H_(H), W_(W), stride_(stride_for(W)), size_((H + before + after) * stride_),
        data_(C * size_, T(0)) {}
  static int64_t stride_for(int64_t W) { return W + before + after; }
  // channel c's plane of batch element b of input (B, C, H, W), as a pointer to pixel (0, 0)
  const T* plane(const T* input, int64_t b, int64_t c) {
    if (b != loaded_) {
      for (int64_t k = 0; k < C_; ++k)
        for (int64_t y = 0; y < H_; ++y)
          std::memcpy(data_.data() + k * size_ + (y + before) * stride_ + before, input + ((b * C_ + k) * H_ + y) * W_,
                      W_ * sizeof(T));
      loaded_ = b;
    }
    return data_.data() + c * size_ + before * stride_ + before;
  }

 private:
  int64_t C_, H_, W_, stride_, size_, loaded_ = -1;
  std::vector<T> data_;
};

// The four samples at left + (0, 1, stride, stride + 1) of base: two 8-byte gathers per row for float on AVX2, whose
// gathers cost per element, else one gather per corner.
template <typename T>
inline void gather_corners(const T* base, const IVec<T>& left, int64_t stride, Vec<T>& a, Vec<T>& b, Vec<T>& c,
                           Vec<T>& d) {
  a = at::vec::gather<sizeof(T)>(base, left);
  b = at::vec::gather<sizeof(T)>(base + 1, left);
  c = at::vec::gather<sizeof(T)>(base + stride, left);
  d = at::vec::gather<sizeof(T)>(base + stride + 1, left);
}
#if defined(CPU_CAPABILITY_AVX2)
template <>
inline void gather_corners<float>(const float* base, const IVec<float>& left, int64_t stride, Vec<float>& a,
                                  Vec<float>& b, Vec<float>& c, Vec<float>& d) {
  const __m256i index = left;
  const __m128i low = _mm256_castsi256_si128(index), high = _mm256_extracti128_si256(index, 1);
  const double *top = reinterpret_cast<const double*>(base), *bottom = reinterpret_cast<const double*>(base + stride);
  std::tie(a, b) = at::vec::deinterleave2(Vec<float>(_mm256_castpd_ps(_mm256_i32gather_pd(top, low, 4))),
                                          Vec<float>(_mm256_castpd_ps(_mm256_i32gather_pd(top, high, 4))));
  std::tie(c, d) = at::vec::deinterleave2(Vec<float>(_mm256_castpd_ps(_mm256_i32gather_pd(bottom, low, 4))),
                                          Vec<float>(_mm256_castpd_ps(_mm256_i32gather_pd(bottom, high, 4))));
}
#endif

// A bilinear footprint in a padded plane of PaddedPlanes (a (H, W) image): the top-left corner's index from pixel
// (0, 0) and the weights of the right and lower corners; coordinates clamped to [-2, size + 1] (NaN to -2) first, which
// changes no sample. Gives exactly grid_sample's samples.
template <typename T> struct PaddedFootprint {
  IVec<T> corner;
  Vec<T> wx, wy;
  int64_t stride;

  PaddedFootprint() = default;
  PaddedFootprint(const Vec<T>& x_, const Vec<T>& y_, int64_t H, int64_t W) : stride(PaddedPlanes<T>::stride_for(W)) {
    const Vec<T> x = clamp_nan_low<T>(x_, T(-2), T(W + 1)), y = clamp_nan_low<T>(y_, T(-2), T(H + 1));
    const Vec<T> fx = x.floor(), fy = y.floor();
    wx = x - fx;
    wy = y - fy;
    corner = at::vec::convert_to_int_of_same_size<T>(fy) * IVec<T>(Int<T>(stride)) +
             at::vec::convert_to_int_of_same_size<T>(fx);
  }
  // the bilinear sample of a padded plane (a pointer to its pixel (0, 0))
  inline Vec<T> sample(const T* plane) const {
    Vec<T> a, b, c, d;
    gather_corners<T>(plane, corner, stride, a, b, c, d);
    const Vec<T> one(T(1)), ux = one - wx;
    return (a * ux + b * wx) * (one - wy) + (c * ux + d * wx) * wy;
  }
};

// ---- threading ------------------------------------------------------------------------------------------------

// Work items of roughly `grain` output pixels for at::parallel_for (torch's intra-op threads, so
// torch.set_num_threads applies).
inline int64_t grain_for(int64_t pixels_per_item) { return std::max<int64_t>(1, 2048 / std::max<int64_t>(1, pixels_per_item)); }

// ---- argument checks shared by the operators ------------------------------------------------------------------

inline void check_input_and_grid(const at::Tensor& input, const at::Tensor& grid, const char* op) {
  TORCH_CHECK(input.dim() == 4, op, ": input: expected (B, C, H, W), got ", input.sizes());
  TORCH_CHECK(grid.dim() == 4 && grid.size(3) == 2 && grid.size(0) == input.size(0), op,
              ": grid: expected (B, Ho, Wo, 2) with B = ", input.size(0), ", got ", grid.sizes());
  TORCH_CHECK(input.scalar_type() == grid.scalar_type(), op, ": grid: expected dtype ", input.scalar_type(), ", got ",
              grid.scalar_type());
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble, op,
              ": input: expected float32 or float64, got ", input.scalar_type());
  TORCH_CHECK(input.device().is_cpu() && grid.device().is_cpu(), op, ": expected CPU tensors");
  TORCH_CHECK(input.size(2) * input.size(3) < (int64_t(1) << 31), op,
              ": input: planes are indexed with 32 bits, got H * W = ", input.size(2) * input.size(3));
}

}  // namespace interp
