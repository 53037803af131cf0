// L-STN's forward operator, interpolators::lstn_forward (schema in ops.cpp; the math is interpolators/lstn/eager.py's).
// Per vector of output pixels: the M auxiliary offsets (given, or hashed from a key), their points and bilinear
// footprints, the channel-shared normal matrix of the plane fit; then per channel the samples, the right-hand side and
// the solve. Nothing of size M x anything leaves the registers and a few KB of per-thread scratch.
#include "sampling.h"

namespace interp {
namespace {

// ---- the counter-based normals (interpolators.lstn.eager.hash_normals) ----------------------------------------

// lowbias32 (C. Wellons' hash-prospector): a bijective 32-bit hash
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  return x ^ (x >> 16);
}

using FVec = Vec<float>;
using UVec = IVec<float>;  // 32-bit lanes, used as unsigned

inline UVec srl(const UVec& x, int s) { return (x >> UVec(s)) & UVec(int32_t((1u << (32 - s)) - 1u)); }
inline UVec mix32(UVec x) {
  x = x ^ srl(x, 16);
  x = x * UVec(int32_t(0x7FEB352Du));
  x = x ^ srl(x, 15);
  x = x * UVec(int32_t(0x846CA68Bu));
  return x ^ srl(x, 16);
}
inline UVec bits_of(const FVec& v) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_castps_si512(v);
#elif defined(CPU_CAPABILITY_AVX2)
  return _mm256_castps_si256(v);
#else
  return at::vec::cast<int32_t>(v);
#endif
}
inline FVec from_bits(const UVec& v) { return at::vec::cast<float>(v); }
inline FVec to_float(const UVec& v) { return at::vec::convert_to_fp_of_same_size<float>(v); }

// ln x for x in (0, 1]: Cephes' logf (exponent by bits, then its polynomial; about 1 ulp), branch-free
inline FVec log_unit(const FVec& x) {
  const UVec bits = bits_of(x);
  FVec e = to_float(srl(bits, 23) & UVec(0xFF)) - FVec(126.f);
  const FVec m = from_bits((bits & UVec(int32_t(0x807FFFFFu))) | UVec(0x3F000000));  // mantissa in [0.5, 1)
  const FVec small = m < FVec(0.70710678118654752f);
  e = select<float>(small, e - FVec(1.f), e);
  const FVec f = select<float>(small, m + m, m) - FVec(1.f), z = f * f, z2 = z * z;
  // the degree-8 polynomial by Estrin's scheme (a quarter of Horner's dependent steps)
  const auto pair = [&](float high, float low) { return at::vec::fmadd(FVec(high), f, FVec(low)); };
  const FVec low =
      at::vec::fmadd(pair(-1.6668057665e-1f, 2.0000714765e-1f), z, pair(-2.4999993993e-1f, 3.3333331174e-1f));
  const FVec high =
      at::vec::fmadd(pair(-1.1514610310e-1f, 1.1676998740e-1f), z, pair(-1.2420140846e-1f, 1.4249322787e-1f));
  const FVec p = at::vec::fmadd(FVec(7.0376836292e-2f), z2 * z2, at::vec::fmadd(high, z2, low));
  const FVec y = f * z * p - FVec(2.12194440e-4f) * e - FVec(0.5f) * z;
  return f + y + FVec(0.693359375f) * e;
}
// sin and cos of the angle 2 pi (j + 1/2) / 2^16 for 16-bit j: the octant exactly in integers, then Cephes'
// sinf/cosf polynomials on [0, pi/4] (about 1 ulp) and the octant's swap and signs
inline void sincos_turn(const UVec& j, FVec& s, FVec& c) {
  const UVec octant = srl(j, 13), one(1), two(2), four(4);
  const UVec odd = (octant & one) == one;
  const FVec y = (to_float((j & UVec(0x1FFF)) ^ (odd & UVec(0x1FFF))) + FVec(0.5f)) * FVec(9.587379924285257e-05f);
  const FVec z = y * y;
  const FVec sy = at::vec::fmadd(
      at::vec::fmadd(at::vec::fmadd(FVec(-1.9515295891e-4f), z, FVec(8.3321608736e-3f)), z, FVec(-1.6666654611e-1f)) * z,
      y, y);
  const FVec cy = at::vec::fmadd(
      at::vec::fmadd(at::vec::fmadd(FVec(2.443315711809948e-5f), z, FVec(-1.388731625493765e-3f)), z,
                     FVec(4.166664568298827e-2f)) * z, z, FVec(1.f) - FVec(0.5f) * z);
  const FVec swap = from_bits(((octant + one) & two) == two);
  const FVec sa = select<float>(swap, cy, sy), ca = select<float>(swap, sy, cy);
  const FVec sign = FVec(-0.f);
  s = sa ^ (from_bits((octant & four) == four) & sign);
  c = ca ^ (from_bits(((octant + two) & four) == four) & sign);
}

// The standard normal pairs (du, dv) of the points with flat indices first .. first + L - 1: Box-Muller on the two
// 16-bit halves of h = mix32(mix32(i) ^ key) as uniforms (j + 1/2) / 2^16.
inline void hash_normals(uint32_t first, uint32_t key, FVec& du, FVec& dv) {
  const UVec h = mix32(mix32(UVec(int32_t(first)) + UVec::arange(0, 1)) ^ UVec(int32_t(key)));
  const FVec u1 = (to_float(h & UVec(0xFFFF)) + FVec(0.5f)) * FVec(1.f / 65536.f);
  const FVec radius = (FVec(-2.f) * log_unit(u1)).sqrt();
  FVec s, c;
  sincos_turn(srl(h, 16), s, c);
  du = radius * c;
  dv = radius * s;
}
// float64: libm, to match torch's float64 draws of the eager path
inline void hash_normals(uint32_t first, uint32_t key, Vec<double>& du, Vec<double>& dv) {
  constexpr int64_t L = Vec<double>::size();
  double u[L], v[L];
  for (int64_t l = 0; l < L; ++l) {
    const uint32_t h = mix32(mix32(first + uint32_t(l)) ^ key);
    const double u1 = (double(h & 0xFFFFu) + 0.5) / 65536.0, u2 = (double(h >> 16) + 0.5) / 65536.0;
    const double radius = std::sqrt(-2.0 * std::log(u1)), angle = 6.283185307179586 * u2;
    u[l] = radius * std::cos(angle);
    v[l] = radius * std::sin(angle);
  }
  du = Vec<double>::loadu(u);
  dv = Vec<double>::loadu(v);
}

template <typename T> inline Vec<T> finite_or_zero(const Vec<T>& v) {
  return select<T>(v.abs() <= Vec<T>(std::numeric_limits<T>::max()), v, Vec<T>(T(0)));
}

struct LstnShape {
  int64_t B, C, H, W, Ho, Wo, M;
};

// Rows [row_begin, row_end) of (B * Ho): value (the intercept, or bilinear's value with fixed_bias) and the slopes per
// normalized unit, each (B, C, Ho, Wo). offsets (2, B, M, Ho, Wo) in offset units, or null to hash them from key.
template <typename T, int PAD>
void lstn_rows(const T* input, const T* grid, const T* offsets, uint32_t key, const LstnShape& s, T scale_x,
               T scale_y, bool align, bool fixed_bias, T* value, T* slope_x, T* slope_y, int64_t row_begin,
               int64_t row_end) {
  constexpr int64_t L = Vec<T>::size();
  const Axis<T> ax(s.W, align), ay(s.H, align);
  const int64_t plane = s.B * s.M * s.Ho * s.Wo;
  PaddedPlanes<T> planes(s.C, s.H, s.W);
  std::vector<PaddedFootprint<T>> fp(s.M);
  std::vector<Vec<T>> du(s.M), dv(s.M);
  // one output row's draws (M x Wo each, rows padded to whole vectors), hashed in a loop of their own: the draws are
  // independent, and a long branch-free loop lets out-of-order execution overlap their latency chains
  const int64_t stride = (s.Wo + L - 1) / L * L;
  std::vector<T> row_u(offsets ? 0 : s.M * stride), row_v(offsets ? 0 : s.M * stride);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t b = row / s.Ho, oy = row % s.Ho;
    const int64_t first = (b * s.M * s.Ho + oy) * s.Wo;  // the flat index of draw (b, 0, oy, 0)
    for (int64_t k = 0; !offsets && k < s.M; ++k)
      for (int64_t ox0 = 0; ox0 < s.Wo; ox0 += L) {
        Vec<T> u, v;
        hash_normals(uint32_t(first + k * s.Ho * s.Wo + ox0), key, u, v);
        u.store(row_u.data() + k * stride + ox0);
        v.store(row_v.data() + k * stride + ox0);
      }
    for (int64_t ox0 = 0; ox0 < s.Wo; ox0 += L) {
      const int64_t n = std::min(L, s.Wo - ox0);
      Vec<T> gx, gy;
      load_pairs(grid + 2 * (row * s.Wo + ox0), n, gx, gy);
      Vec<T> a00(T(0)), a01(T(0)), a02(T(0)), a11(T(0)), a12(T(0));
      for (int64_t k = 0; k < s.M; ++k) {
        if (offsets) {
          const int64_t at = first + k * s.Ho * s.Wo + ox0;
          du[k] = Vec<T>::loadu(offsets + at, n);
          dv[k] = Vec<T>::loadu(offsets + plane + at, n);
        } else {
          du[k] = Vec<T>::loadu(row_u.data() + k * stride + ox0);
          dv[k] = Vec<T>::loadu(row_v.data() + k * stride + ox0);
        }
        const Vec<T> u = du[k], v = dv[k];
        fp[k] = PaddedFootprint<T>(ax.template source<PAD>(at::vec::fmadd(u, Vec<T>(scale_x), gx)),
                                   ay.template source<PAD>(at::vec::fmadd(v, Vec<T>(scale_y), gy)), s.H, s.W);
        a00 = at::vec::fmadd(u, u, a00);
        a01 = at::vec::fmadd(u, v, a01);
        a02 = a02 + u;
        a11 = at::vec::fmadd(v, v, a11);
        a12 = a12 + v;
      }
      // the inverse of the symmetric normal matrix [[a00, a01, a02], [a01, a11, a12], [a02, a12, M]], by the adjugate
      const Vec<T> a22(T(s.M));
      const Vec<T> c00 = a11 * a22 - a12 * a12, c01 = a02 * a12 - a01 * a22, c02 = a01 * a12 - a02 * a11;
      const Vec<T> c11 = a00 * a22 - a02 * a02, c12 = a01 * a02 - a00 * a12, c22 = a00 * a11 - a01 * a01;
      const Vec<T> inv_det = Vec<T>(T(1)) / (a00 * c00 + a01 * c01 + a02 * c02);
      const Vec<T> n00 = c00 * inv_det, n01 = c01 * inv_det, n02 = c02 * inv_det;
      const Vec<T> n11 = c11 * inv_det, n12 = c12 * inv_det, n22 = c22 * inv_det;
      PaddedFootprint<T> centre;
      if (fixed_bias) centre = PaddedFootprint<T>(ax.template source<PAD>(gx), ay.template source<PAD>(gy), s.H, s.W);
      for (int64_t c = 0; c < s.C; ++c) {
        const T* img = planes.plane(input, b, c);
        Vec<T> r0(T(0)), r1(T(0)), r2(T(0));
        for (int64_t k = 0; k < s.M; ++k) {
          const Vec<T> sample = fp[k].sample(img);
          r0 = at::vec::fmadd(sample, du[k], r0);
          r1 = at::vec::fmadd(sample, dv[k], r1);
          r2 = r2 + sample;
        }
        const int64_t out = ((b * s.C + c) * s.Ho + oy) * s.Wo + ox0;
        (finite_or_zero<T>(n00 * r0 + n01 * r1 + n02 * r2) / Vec<T>(scale_x)).store(slope_x + out, n);
        (finite_or_zero<T>(n01 * r0 + n11 * r1 + n12 * r2) / Vec<T>(scale_y)).store(slope_y + out, n);
        (fixed_bias ? centre.sample(img) : finite_or_zero<T>(n02 * r0 + n12 * r1 + n22 * r2)).store(value + out, n);
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor> lstn_forward(const at::Tensor& input_, const at::Tensor& grid_,
                                                const std::optional<at::Tensor>& offsets_,
                                                const std::optional<at::Tensor>& key_, int64_t num_auxiliary,
                                                double scale_x, double scale_y, c10::string_view padding_mode,
                                                bool align_corners, bool fixed_bias) {
  check_input_and_grid(input_, grid_, "lstn_forward");
  TORCH_CHECK(num_auxiliary >= 1, "lstn_forward: num_auxiliary: expected >= 1, got ", num_auxiliary);
  TORCH_CHECK(offsets_.has_value() != key_.has_value(), "lstn_forward: expected exactly one of offsets and key");
  const at::Tensor input = input_.contiguous(), grid = grid_.contiguous();
  const LstnShape s{input.size(0), input.size(1), input.size(2), input.size(3), grid.size(1), grid.size(2),
                    num_auxiliary};
  at::Tensor offsets;
  uint32_t key = 0;
  if (offsets_) {
    offsets = offsets_->contiguous();
    TORCH_CHECK(offsets.sizes().equals({2, s.B, s.M, s.Ho, s.Wo}) &&
                    offsets.scalar_type() == input.scalar_type(),
                "lstn_forward: offsets: expected (2, B, M, Ho, Wo) = (2, ", s.B, ", ", s.M, ", ", s.Ho, ", ", s.Wo,
                ") of ", input.scalar_type(), ", got ", offsets.sizes(), " of ", offsets.scalar_type());
  } else {
    TORCH_CHECK(key_->numel() == 1 && key_->scalar_type() == at::kLong, "lstn_forward: key: expected one int64");
    key = uint32_t(*key_->const_data_ptr<int64_t>());
    TORCH_CHECK(s.B * s.M * s.Ho * s.Wo <= (int64_t(1) << 32),
                "lstn_forward: at most 2^32 auxiliary points per call (a 32-bit counter), got ", s.B * s.M * s.Ho * s.Wo);
  }
  at::Tensor value = at::empty({s.B, s.C, s.Ho, s.Wo}, input.options());
  at::Tensor slopes = at::empty({2, s.B, s.C, s.Ho, s.Wo}, input.options());
  const int padding = padding_code(padding_mode);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "lstn_forward", [&] {
    using T = scalar_t;
    const T* off = offsets.defined() ? offsets.const_data_ptr<T>() : nullptr;
    T *v = value.mutable_data_ptr<T>(), *sx = slopes.mutable_data_ptr<T>(), *sy = sx + value.numel();
    by_padding(padding, [&]<int PAD>() {
      at::parallel_for(0, s.B * s.Ho, grain_for(s.Wo * s.M), [&](int64_t begin, int64_t end) {
        lstn_rows<T, PAD>(input.const_data_ptr<T>(), grid.const_data_ptr<T>(), off, key, s, T(scale_x), T(scale_y),
                          align_corners, fixed_bias, v, sx, sy, begin, end);
      });
    });
  });
  return {value, slopes};
}

// the normals the forward draws for flat point indices 0 .. n - 1 under key, (2, n), for the tests
at::Tensor lstn_hash_normals(const at::Tensor& key, int64_t n, at::ScalarType dtype) {
  at::Tensor out = at::empty({2, n}, at::TensorOptions().dtype(dtype));
  const uint32_t k = uint32_t(*key.const_data_ptr<int64_t>());
  AT_DISPATCH_FLOATING_TYPES(dtype, "lstn_hash_normals", [&] {
    using T = scalar_t;
    constexpr int64_t L = Vec<T>::size();
    T *du = out.mutable_data_ptr<T>(), *dv = du + n;
    for (int64_t i = 0; i < n; i += L) {
      Vec<T> u, v;
      hash_normals(uint32_t(i), k, u, v);
      u.store(du + i, std::min(L, n - i));
      v.store(dv + i, std::min(L, n - i));
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(interpolators, CPU, m) {
  m.impl("lstn_forward", &lstn_forward);
  m.impl("lstn_hash_normals", &lstn_hash_normals);
}

}  // namespace interp
