// L-STN's fused CPU kernels for backend="native"; the shared sampling code and conventions are in sampling.h.
#include "sampling.h"

// lowbias32 (C. Wellons' hash-prospector), the same bijective hash as interpolators.lstn._mix32.
static inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  return x ^ (x >> 16);
}

// Natural log of a float in (0, inf) (Cephes' logf: frexp, then a degree-9 polynomial; about 1 ulp), written
// with bit operations so that loops calling it vectorize (libm's logf is a call).
static inline float log_float(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  float e = float(int((bits >> 23) & 0xFFu) - 126);
  bits = (bits & 0x807FFFFFu) | 0x3F000000u;  // mantissa in [0.5, 1)
  float m;
  std::memcpy(&m, &bits, 4);
  const bool small = m < 0.70710678118654752f;
  e = small ? e - 1 : e;
  const float f = (small ? m + m : m) - 1;
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float y = f * z * p - 2.12194440e-4f * e - 0.5f * z;
  return f + y + 0.693359375f * e;
}

// sin and cos of the angle 2 pi (j + 1/2) / 2^16 for a 16-bit j: reduced to [0, pi/4] by octant (exactly, in
// integers), then Cephes' sinf/cosf polynomials (about 1 ulp) and the octant's swap and signs.
static inline void sincos_turn(uint32_t j, float& s, float& c) {
  const uint32_t octant = j >> 13, r = j & 0x1FFFu;
  const bool odd = (octant & 1u) != 0;
  const float y = (float(odd ? 8191u - r : r) + 0.5f) * 9.587379924285257e-05f;  // pi / 4 / 8192
  const float z = y * y;
  const float sy = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * y + y;
  const float cy = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z - 0.5f * z + 1.0f;
  const bool swap = ((octant + 1u) & 2u) != 0;
  const float sa = swap ? cy : sy, ca = swap ? sy : cy;
  s = octant >= 4u ? -sa : sa;
  c = ((octant + 2u) & 4u) != 0 ? -ca : ca;
}

// The standard normal pair of a 32-bit hash: Box-Muller on its two 16-bit halves as uniforms (j + 1/2) / 2^16.
static inline void hash_normals(uint32_t h, float& du, float& dv) {
  const float u1 = (float(h & 0xFFFFu) + 0.5f) * (1.0f / 65536.0f);
  const float radius = std::sqrt(-2.0f * log_float(u1));
  float s, c;
  sincos_turn(h >> 16, s, c);
  du = radius * c;
  dv = radius * s;
}
static inline void hash_normals(uint32_t h, double& du, double& dv) {  // float64: libm, to match torch's float64 draws
  const double u1 = (double(h & 0xFFFFu) + 0.5) / 65536.0, u2 = (double(h >> 16) + 0.5) / 65536.0;
  const double radius = std::sqrt(-2.0 * std::log(u1)), angle = 6.283185307179586 * u2;
  du = radius * std::cos(angle);
  dv = radius * std::sin(angle);
}

template <typename T> static inline T finite_or_zero(T v) { return std::fabs(v) <= std::numeric_limits<T>::max() ? v : T(0); }

// L-STN's forward: per output pixel, M auxiliary points p + (du, dv) * (scale_x, scale_y) with (du, dv) from
// `offsets` (2, B, M, Ho, Wo) or, when it is null, hashed from `key` and the flat index of (b, k, oy, ox); their
// bilinear samples; the channel-shared least-squares plane I = a_u du + a_v dv + c. Writes value = c and the slopes
// per normalized unit, each (B, C, Ho, Wo); non-finite fits give 0 (as the eager path's nan_to_num). Per tile of
// output pixels: the points and the inverse normal matrices, then per channel the right-hand sides and the solve.

template <int PAD, typename T>
static void lstn_fit(const T* input, const T* grid, const T* offsets, uint32_t key,
                     int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t M,
                     double scale_x, double scale_y, bool align, T* value, T* slope_x, T* slope_y) {
  const T sx = T(scale_x), sy = T(scale_y);
  const Axis<T> ax(W, align), ay(H, align);
  const int64_t tiles = (Wo + TILE - 1) / TILE, plane = B * M * Ho * Wo;
#pragma omp parallel
  {
    std::vector<T> buf((4 * M + 9) * TILE);
    T *DU = buf.data(), *DV = DU + M * TILE, *PX = DV + M * TILE, *PY = PX + M * TILE, *A = PY + M * TILE;
    T *R0 = A + 6 * TILE, *R1 = R0 + TILE, *R2 = R1 + TILE;
#pragma omp for collapse(2) schedule(static)
    for (int64_t row = 0; row < B * Ho; ++row)
      for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t b = row / Ho, oy = row % Ho, ox0 = tile * TILE;
        const int n = (int)std::min<int64_t>(TILE, Wo - ox0);
        const int nv = (n + 15) & ~15;  // whole vectors: the lanes past n compute harmless numbers that are never stored
        const T* gxy = grid + 2 * (row * Wo + ox0);  // (B, Ho, Wo, 2) interleaved
        T *a00 = A, *a01 = A + TILE, *a02 = A + 2 * TILE, *a11 = A + 3 * TILE, *a12 = A + 4 * TILE;
        for (int t = 0; t < TILE; ++t) a00[t] = a01[t] = a02[t] = a11[t] = a12[t] = 0;
        for (int64_t k = 0; k < M; ++k) {
          const int64_t base = ((b * M + k) * Ho + oy) * Wo + ox0;
          T *du = DU + k * TILE, *dv = DV + k * TILE, *px = PX + k * TILE, *py = PY + k * TILE;
          if (offsets) {
            std::memcpy(du, offsets + base, n * sizeof(T));
            std::memcpy(dv, offsets + plane + base, n * sizeof(T));
          } else {
#pragma omp simd
            for (int t = 0; t < nv; ++t) hash_normals(mix32(mix32(uint32_t(base + t)) ^ key), du[t], dv[t]);
          }
#pragma omp simd
          for (int t = 0; t < nv; ++t) {
            const T u = du[t], v = dv[t];
            px[t] = ax.template source<PAD>((t < n ? gxy[2 * t] : T(0)) + u * sx);
            py[t] = ay.template source<PAD>((t < n ? gxy[2 * t + 1] : T(0)) + v * sy);
            a00[t] += u * u; a01[t] += u * v; a02[t] += u; a11[t] += v * v; a12[t] += v;
          }
        }
        T *n00 = A, *n01 = A + TILE, *n02 = A + 2 * TILE, *n11 = A + 3 * TILE, *n12 = A + 4 * TILE, *n22 = A + 5 * TILE;
#pragma omp simd
        for (int t = 0; t < nv; ++t) {  // the inverse of the symmetric normal matrix, by the adjugate, in place
          T b00 = a00[t], b01 = a01[t], b02 = a02[t], b11 = a11[t], b12 = a12[t], b22 = T(M);
          T c00 = b11 * b22 - b12 * b12, c01 = b02 * b12 - b01 * b22, c02 = b01 * b12 - b02 * b11;
          T c11 = b00 * b22 - b02 * b02, c12 = b01 * b02 - b00 * b12, c22 = b00 * b11 - b01 * b01;
          T inv_det = T(1) / (b00 * c00 + b01 * c01 + b02 * c02);
          n00[t] = c00 * inv_det; n01[t] = c01 * inv_det; n02[t] = c02 * inv_det;
          n11[t] = c11 * inv_det; n12[t] = c12 * inv_det; n22[t] = c22 * inv_det;
        }
        for (int64_t c = 0; c < C; ++c) {
          const T* img = input + (b * C + c) * H * W;
          const int64_t out = ((b * C + c) * Ho + oy) * Wo + ox0;
          for (int t = 0; t < TILE; ++t) R0[t] = R1[t] = R2[t] = 0;
          for (int64_t k = 0; k < M; ++k) {
            const T *du = DU + k * TILE, *dv = DV + k * TILE, *px = PX + k * TILE, *py = PY + k * TILE;
#pragma omp simd
            for (int t = 0; t < nv; ++t) {
              T s = bilinear(img, (int)H, (int)W, px[t], py[t]);
              R0[t] += s * du[t]; R1[t] += s * dv[t]; R2[t] += s;
            }
          }
#pragma omp simd
          for (int t = 0; t < n; ++t) {
            T r0 = R0[t], r1 = R1[t], r2 = R2[t];
            T f0 = n00[t] * r0 + n01[t] * r1 + n02[t] * r2;
            T f1 = n01[t] * r0 + n11[t] * r1 + n12[t] * r2;
            T f2 = n02[t] * r0 + n12[t] * r1 + n22[t] * r2;
            slope_x[out + t] = finite_or_zero(f0) / sx;
            slope_y[out + t] = finite_or_zero(f1) / sy;
            value[out + t] = finite_or_zero(f2);
          }
        }
      }
  }
}

template <typename T>
static void lstn_fit_dispatch(const T* input, const T* grid, const T* offsets, uint32_t key,
                     int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t M,
                     double scale_x, double scale_y, int padding, int align, T* value, T* slope_x, T* slope_y) {
  BY_PADDING(padding, lstn_fit, input, grid, offsets, key, B, C, H, W, Ho, Wo, M, scale_x, scale_y, align != 0, value,
             slope_x, slope_y);
}

extern "C" void lstn_fit_f32(const float* input, const float* grid, const float* offsets, uint32_t key,
                             int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t M,
                             double scale_x, double scale_y, int padding, int align, float* value, float* slope_x, float* slope_y) {
  lstn_fit_dispatch<float>(input, grid, offsets, key, B, C, H, W, Ho, Wo, M, scale_x, scale_y, padding, align, value, slope_x, slope_y);
}
extern "C" void lstn_fit_f64(const double* input, const double* grid, const double* offsets, uint32_t key,
                             int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t M,
                             double scale_x, double scale_y, int padding, int align, double* value, double* slope_x, double* slope_y) {
  lstn_fit_dispatch<double>(input, grid, offsets, key, B, C, H, W, Ho, Wo, M, scale_x, scale_y, padding, align, value, slope_x, slope_y);
}

// The normal pairs of counters 0 .. n-1 under key (what lstn_fit draws for its flat point index), for the tests.
extern "C" void lstn_hash_normals_f32(uint32_t key, int64_t n, float* du, float* dv) {
  for (int64_t i = 0; i < n; ++i) hash_normals(mix32(mix32(uint32_t(i)) ^ key), du[i], dv[i]);
}
extern "C" void lstn_hash_normals_f64(uint32_t key, int64_t n, double* du, double* dv) {
  for (int64_t i = 0; i < n; ++i) hash_normals(mix32(mix32(uint32_t(i)) ^ key), du[i], dv[i]);
}
