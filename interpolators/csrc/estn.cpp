// ESTN's fused CPU kernels for backend="native" (the shared spiral only); sampling code and conventions in sampling.h.
// The math is interpolators/estn.py's, step by step: tangent frame, spiral points, bilinear samples, entropy-
// reweighted plane fit, intercept weights; see that module's docstring for the formulas.
#include "sampling.h"

#include <omp.h>

// What steps 1-2 need besides the grid: grid_sample's axes, normalized-to-pixel scales and the frame's constants.
template <typename T> struct Geometry {
  Axis<T> ax, ay;
  T sx, sy, inv_x, inv_y, r2, kx, ky;
  Geometry(int64_t H, int64_t W, bool align, double scale_x, double scale_y, double min_radius, double tangent_scale)
      : ax(W, align), ay(H, align), sx(T(scale_x)), sy(T(scale_y)), inv_x(scale_x > 0 ? T(1.0 / scale_x) : T(0)),
        inv_y(scale_y > 0 ? T(1.0 / scale_y) : T(0)), r2(T(min_radius * min_radius)),
        kx(scale_x > 0 ? T(tangent_scale) : T(0)), ky(scale_y > 0 ? T(tangent_scale) : T(0)) {}
};

// Per-thread scratch for one tile: the grid row with a one-pixel halo, the rows above and below, the frame
// A = (a00, a01, a10, a11) and the K source pixels (PX, PY) of the samples.
template <typename T> struct TileFrame {
  std::vector<T> buf;
  T *hx, *hy, *ux, *uy, *dx, *dy, *a, *px, *py;
  explicit TileFrame(int64_t K) : buf(2 * (TILE + 2) + 8 * TILE + 2 * K * TILE) {
    hx = buf.data(); hy = hx + TILE + 2; ux = hy + TILE + 2; uy = ux + TILE; dx = uy + TILE; dy = dx + TILE;
    a = dy + TILE; px = a + 4 * TILE; py = px + K * TILE;
  }
};

// Steps 1-2 for the tile of output pixels (b, oy, ox0 .. ox0 + nv): the frame A = t sqrt(J J^T + r^2 I), J by
// finite differences of the grid in input pixels (central inside, one-sided at the edges, zero along an axis of
// length 1, as torch.gradient), and the source pixels of p + A z_k. Lanes past the row's end repeat its last pixel.
template <int PAD, typename T>
static inline void tile_points(const T* grid, int64_t b, int64_t oy, int64_t ox0, int nv, int64_t Ho, int64_t Wo,
                               const Geometry<T>& g, const T* z, int64_t K, TileFrame<T>& f) {
  const T* row = grid + 2 * (b * Ho + oy) * Wo;
  const T* up = grid + 2 * (b * Ho + (oy > 0 ? oy - 1 : oy)) * Wo;
  const T* down = grid + 2 * (b * Ho + (oy < Ho - 1 ? oy + 1 : oy)) * Wo;
  const T div_y = T((oy > 0) + (oy < Ho - 1) > 0 ? (oy > 0) + (oy < Ho - 1) : 1);
  const int last = (int)Wo - 1;
  // De-interleave (x, y) so that the vector loops below load contiguously: the row with a halo, hx[t] at
  // ox0 - 1 + t, and the rows above and below, ux[t] at ox0 + t; positions past the row's ends repeat its ends.
  const int n = (int)std::min<int64_t>(nv, Wo - ox0), lo = ox0 == 0 ? 1 : 0, hi = n + 1 + (ox0 + n <= last);
  const T* from = row + 2 * ox0;
#pragma omp simd
  for (int t = lo; t < hi; ++t) { f.hx[t] = from[2 * t - 2]; f.hy[t] = from[2 * t - 1]; }
  for (int t = 0; t < lo; ++t) { f.hx[t] = row[0]; f.hy[t] = row[1]; }
  for (int t = hi; t < nv + 2; ++t) { f.hx[t] = row[2 * last]; f.hy[t] = row[2 * last + 1]; }
  up += 2 * ox0;
  down += 2 * ox0;
#pragma omp simd
  for (int t = 0; t < n; ++t) { f.ux[t] = up[2 * t]; f.uy[t] = up[2 * t + 1]; f.dx[t] = down[2 * t]; f.dy[t] = down[2 * t + 1]; }
  for (int t = n; t < nv; ++t) {
    f.ux[t] = up[2 * n - 2]; f.uy[t] = up[2 * n - 1]; f.dx[t] = down[2 * n - 2]; f.dy[t] = down[2 * n - 1];
  }
  T *a00 = f.a, *a01 = f.a + TILE, *a10 = f.a + 2 * TILE, *a11 = f.a + 3 * TILE;
  const T sx = g.sx, sy = g.sy, tiny = std::numeric_limits<T>::min();
#pragma omp simd
  for (int t = 0; t < nv; ++t) {
    const int ox = (int)ox0 + t;
    const bool left = ox > 0 && ox <= last, right = ox < last;
    const T div_x = T(int(left) + int(right) > 0 ? int(left) + int(right) : 1);
    const T xl = left ? f.hx[t] : f.hx[t + 1], xr = right ? f.hx[t + 2] : f.hx[t + 1];
    const T yl = left ? f.hy[t] : f.hy[t + 1], yr = right ? f.hy[t + 2] : f.hy[t + 1];
    const T j00 = (xr * sx - xl * sx) / div_x, j10 = (yr * sy - yl * sy) / div_x;
    const T j01 = (f.dx[t] * sx - f.ux[t] * sx) / div_y, j11 = (f.dy[t] * sy - f.uy[t] * sy) / div_y;
    const T s00 = j00 * j00 + j01 * j01 + g.r2, s11 = j10 * j10 + j11 * j11 + g.r2, s01 = j00 * j10 + j01 * j11;
    T det = s00 * s11 - s01 * s01;
    const T root_det = std::sqrt(det > 0 ? det : T(0));
    T norm = std::sqrt(s00 + s11 + 2 * root_det);
    norm = norm > tiny ? norm : tiny;
    const T s01n = s01 / norm;
    a00[t] = g.kx * (s00 + root_det) / norm;
    a01[t] = g.kx * s01n;
    a10[t] = g.ky * s01n;
    a11[t] = g.ky * (s11 + root_det) / norm;
  }
  for (int64_t k = 0; k < K; ++k) {
    const T zx = z[2 * k], zy = z[2 * k + 1];
    T *px = f.px + k * TILE, *py = f.py + k * TILE;
#pragma omp simd
    for (int t = 0; t < nv; ++t) {
      const T gx = f.hx[t + 1], gy = f.hy[t + 1];
      px[t] = g.ax.template source<PAD>(gx + zx * (a00[t] * g.inv_x) + zy * (a01[t] * g.inv_x));
      py[t] = g.ay.template source<PAD>(gy + zx * (a10[t] * g.inv_y) + zy * (a11[t] * g.inv_y));
    }
  }
}

// M^-1 of the ridged normal matrix [[mxx + l, mxy, mx], [mxy, myy + l, my], [mx, my, m1]], l = ridge_eps * trace,
// by the adjugate, as its six entries (interpolators.estn._inverse_sym3). T: a scalar or a vector of S.
template <typename T, typename S = T>
static inline void inverse_normal(T mxx, T mxy, T myy, T mx, T my, T m1, S ridge_eps,
                                  T& i00, T& i01, T& i02, T& i11, T& i12, T& i22) {
  const T lam = (mxx + myy + m1) * ridge_eps, a00 = mxx + lam, a11 = myy + lam;
  const T c00 = a11 * m1 - my * my, c01 = mx * my - mxy * m1, c02 = mxy * my - mx * a11;
  const T c11 = a00 * m1 - mx * mx, c12 = mxy * mx - a00 * my, c22 = a00 * a11 - mxy * mxy;
  const T inv_det = S(1) / (a00 * c00 + mxy * c01 + mx * c02);
  i00 = c00 * inv_det; i01 = c01 * inv_det; i02 = c02 * inv_det;
  i11 = c11 * inv_det; i12 = c12 * inv_det; i22 = c22 * inv_det;
}

// One 64-byte vector of T (GCC/Clang vector extensions: AVX-512 registers where there are any, split into halves or
// quarters elsewhere), its lane mask type and lane count; loads and stores through memcpy (any alignment).
template <typename T> struct Simd;
template <> struct Simd<float> {
  typedef float V __attribute__((vector_size(64)));
  typedef int32_t M __attribute__((vector_size(64)));
  static constexpr int L = 16;
};
template <> struct Simd<double> {
  typedef double V __attribute__((vector_size(64)));
  typedef int64_t M __attribute__((vector_size(64)));
  static constexpr int L = 8;
};
template <typename V> static inline V load(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V> static inline void store(void* p, V v) { std::memcpy(p, &v, sizeof(V)); }

// exp of a vector of floats (Cephes' expf: a degree-5 polynomial on x - n ln 2, then 2^n in the exponent bits;
// about 1 ulp). Below -87 it returns 0: the weights it makes are relative to the largest (exp(0)), so a sample that
// far down has no weight either way, and log(0) = -inf (a zero prior weight) gives exactly 0. NaN stays NaN.
// Doubles: libm's exp per lane.
static inline Simd<float>::V exp_(Simd<float>::V x) {
  using V = Simd<float>::V;
  using M = Simd<float>::M;
  const M under = x < -87.0f, nan = x != x;
  x = (under | nan) ? V{} - 87.0f : x;
  x = x > 88.0f ? V{} + 88.0f : x;
  const V fx = x * 1.44269504088896341f + 0.5f;
  V n = __builtin_convertvector(__builtin_convertvector(fx, M), V);  // truncated, then floored
  n = n > fx ? n - 1.0f : n;
  const V r = x - n * 0.693359375f + n * 2.12194440e-4f;
  V p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const M bits = (__builtin_convertvector(n, M) + 127) << 23;
  const V y = (p * r * r + r + 1.0f) * (V)bits;
  return nan ? V{} + std::numeric_limits<float>::quiet_NaN() : (under ? V{} : y);
}
static inline Simd<double>::V exp_(Simd<double>::V x) {
  for (int l = 0; l < Simd<double>::L; ++l) x[l] = std::exp(x[l]);
  return x;
}

// Steps 4-5 for one vector of pixels (the pointers are offset to it; arrays have stride TILE): the first fit with
// the prior's constant coefficients coef (3, K), then, with `reweight`, gamma and `iterations` rounds of
// pi_k = w_k exp(-r_k / gamma) (up to a per-pixel factor) and the weighted least squares of the samples Y (C, K) on
// [z_x, z_y, 1], ridge ridge_eps * trace on the slopes. Writes theta (C, 3) into TH and, with `reweight`, the final
// weights into W and (M^-1)_{02, 12, 22} into MI rows 2, 4, 5. Every sum stays in registers.
template <typename T>
static inline void fit_block(const T* Y, const T* z, const T* coef, const T* prior_n, const T* log_prior, int64_t K,
                             int64_t C, bool reweight, T entropy, int64_t iterations, T ridge_eps, T* W, T* MI, T* TH) {
  using V = typename Simd<T>::V;
  const T eps = std::numeric_limits<T>::epsilon(), tiny = std::numeric_limits<T>::min();
  for (int64_t c = 0; c < C; ++c) {
    V t0{}, t1{}, t2{};
    for (int64_t k = 0; k < K; ++k) {
      const V y = load<V>(Y + (c * K + k) * TILE);
      t0 += coef[k] * y; t1 += coef[K + k] * y; t2 += coef[2 * K + k] * y;
    }
    store(TH + 3 * c * TILE, t0); store(TH + (3 * c + 1) * TILE, t1); store(TH + (3 * c + 2) * TILE, t2);
  }
  if (!reweight) return;
  V gamma = V{} + tiny;
  for (int64_t c = 0; c < C; ++c) {  // gamma: entropy x the prior-weighted variance, summed over channels
    V mean{}, second{};
    for (int64_t k = 0; k < K; ++k) {
      const V y = load<V>(Y + (c * K + k) * TILE);
      mean += prior_n[k] * y;
      second += prior_n[k] * y * y;
    }
    const V variance = second - mean * mean;
    gamma += entropy * (variance > T(0) ? variance : V{}) + eps * second;
  }
  const V neg_inv_gamma = (V{} - T(1)) / gamma;
  V i00{}, i01{}, i02{}, i11{}, i12{}, i22{};  // set by the first round (reweight implies iterations > 0)
  for (int64_t it = 0; it < iterations; ++it) {
    V largest = V{} - std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < K; ++k) {  // logits log w_k - r_k / gamma, r_k the squared residual summed over channels
      const T zx = z[2 * k], zy = z[2 * k + 1];
      V r{};
      for (int64_t c = 0; c < C; ++c) {
        const T* th = TH + 3 * c * TILE;
        const V d = load<V>(Y + (c * K + k) * TILE) - (load<V>(th) * zx + load<V>(th + TILE) * zy + load<V>(th + 2 * TILE));
        r += d * d;
      }
      const V logit = log_prior[k] + r * neg_inv_gamma;
      store(W + k * TILE, logit);
      largest = logit > largest ? logit : largest;
    }
    V m0{}, m1{}, m2{}, m3{}, m4{}, m5{};
    for (int64_t k = 0; k < K; ++k) {  // the weights (the largest is w_k exp(0)) and their moments
      const T zx = z[2 * k], zy = z[2 * k + 1];
      const V w = exp_(load<V>(W + k * TILE) - largest), wx = w * zx, wy = w * zy;
      store(W + k * TILE, w);
      m0 += wx * zx; m1 += wx * zy; m2 += wy * zy; m3 += wx; m4 += wy; m5 += w;
    }
    inverse_normal<V, T>(m0, m1, m2, m3, m4, m5, ridge_eps, i00, i01, i02, i11, i12, i22);
    for (int64_t c = 0; c < C; ++c) {
      V b0{}, b1{}, b2{};
      for (int64_t k = 0; k < K; ++k) {
        const V wy = load<V>(W + k * TILE) * load<V>(Y + (c * K + k) * TILE);
        b0 += wy * z[2 * k]; b1 += wy * z[2 * k + 1]; b2 += wy;
      }
      T* th = TH + 3 * c * TILE;
      store(th, i00 * b0 + i01 * b1 + i02 * b2);
      store(th + TILE, i01 * b0 + i11 * b1 + i12 * b2);
      store(th + 2 * TILE, i02 * b0 + i12 * b1 + i22 * b2);
    }
  }
  store(MI + 2 * TILE, i02); store(MI + 4 * TILE, i12); store(MI + 5 * TILE, i22);
}

// ESTN's forward for the shared spiral z (K, 2) with prior weights w (K,) and their logs: per output pixel steps
// 1-6. Writes value (B, C, Ho, Wo) (the intercept, or the centre sample with `center`), the slopes per normalized
// unit slope_x, slope_y (B, C, Ho, Wo) and, unless null, the intercept weights beta (B, K, Ho, Wo). entropy < 0
// means none (pi = w).
template <int PAD, typename T>
static void estn_fit(const T* input, const T* grid, const T* z, const T* prior, const T* log_prior,
                     int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t K,
                     const Geometry<T>& g, double entropy, int64_t iterations, double ridge, bool center,
                     T* value, T* slope_x, T* slope_y, T* beta) {
  const T eps = std::numeric_limits<T>::epsilon(), tiny = std::numeric_limits<T>::min(), ridge_eps = T(ridge) + eps;
  const bool reweight = entropy >= 0 && iterations > 0;
  // The first fit's weights are the shared prior: one constant system, solved once into the coefficients that
  // map the samples to theta, coef (3, K): theta_f = sum_k coef[f][k] y_k; coef[2] are the intercept's weights.
  T total = 0, m[6] = {0, 0, 0, 0, 0, 0}, inv[6];
  for (int64_t k = 0; k < K; ++k) {
    const T w = prior[k], wx = w * z[2 * k], wy = w * z[2 * k + 1];
    m[0] += wx * z[2 * k]; m[1] += wx * z[2 * k + 1]; m[2] += wy * z[2 * k + 1]; m[3] += wx; m[4] += wy; m[5] += w;
    total += w;
  }
  inverse_normal(m[0], m[1], m[2], m[3], m[4], m[5], ridge_eps, inv[0], inv[1], inv[2], inv[3], inv[4], inv[5]);
  std::vector<T> coef(3 * K), prior_n(K);
  for (int64_t k = 0; k < K; ++k) {
    prior_n[k] = prior[k] / total;
    const T wx = prior[k] * z[2 * k], wy = prior[k] * z[2 * k + 1], w = prior[k];
    coef[k] = inv[0] * wx + inv[1] * wy + inv[2] * w;
    coef[K + k] = inv[1] * wx + inv[3] * wy + inv[4] * w;
    coef[2 * K + k] = inv[2] * wx + inv[4] * wy + inv[5] * w;
  }
  const int64_t tiles = (Wo + TILE - 1) / TILE;
#pragma omp parallel
  {
    TileFrame<T> f(K);
    std::vector<T> buf((C * K + K + 6 + 3 * C + 1) * TILE);
    T *Y = buf.data(), *Wt = Y + C * K * TILE, *MI = Wt + K * TILE, *TH = MI + 6 * TILE, *R = TH + 3 * C * TILE;
#pragma omp for collapse(2) schedule(static)
    for (int64_t row = 0; row < B * Ho; ++row)
      for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t b = row / Ho, oy = row % Ho, ox0 = tile * TILE;
        const int n = (int)std::min<int64_t>(TILE, Wo - ox0);
        const int nv = (n + 15) & ~15;  // whole vectors: the lanes past n compute harmless numbers never stored
        tile_points<PAD>(grid, b, oy, ox0, nv, Ho, Wo, g, z, K, f);
        for (int64_t c = 0; c < C; ++c) {  // step 2: the samples
          const T* img = input + (b * C + c) * H * W;
          for (int64_t k = 0; k < K; ++k) {
            const T *px = f.px + k * TILE, *py = f.py + k * TILE;
            T* y = Y + (c * K + k) * TILE;
#pragma omp simd
            for (int t = 0; t < nv; ++t) y[t] = bilinear(img, (int)H, (int)W, px[t], py[t]);
          }
        }
        for (int t0 = 0; t0 < nv; t0 += Simd<T>::L)  // steps 4-5
          fit_block(Y + t0, z, coef.data(), prior_n.data(), log_prior, K, C, reweight, T(entropy), iterations, ridge_eps,
                    Wt + t0, MI + t0, TH + t0);
        // 0 where the grid point and its frame are finite, else NaN: added to every output, it makes a non-finite
        // grid give NaN as the eager path does (the branch-free sampling would have read it as outside)
        const T *a00 = f.a, *a01 = f.a + TILE, *a10 = f.a + 2 * TILE, *a11 = f.a + 3 * TILE;
        T* probe = R;
#pragma omp simd
        for (int t = 0; t < nv; ++t) probe[t] = (a00[t] + a01[t] + a10[t] + a11[t] + f.hx[t + 1] + f.hy[t + 1]) * T(0);
        for (int64_t k = 0; beta && k < K; ++k) {  // step 6: beta_k = pi_k [z_k, 1] . M^-1 e_3, the intercept's weights
          const T zx = z[2 * k], zy = z[2 * k + 1];
          const T* w = Wt + k * TILE;
          T* out = beta + ((b * K + k) * Ho + oy) * Wo + ox0;
          if (reweight) {
#pragma omp simd
            for (int t = 0; t < n; ++t)
              out[t] = w[t] * (MI[2 * TILE + t] * zx + MI[4 * TILE + t] * zy + MI[5 * TILE + t]) + probe[t];
          } else {
            for (int t = 0; t < n; ++t) out[t] = coef[2 * K + k] + probe[t];
          }
        }
#pragma omp simd
        for (int t = 0; t < nv; ++t) {  // the frame's pseudo-inverse, which maps footprint slopes to pixel slopes
          const T d = a00[t] * a11[t] - a01[t] * a10[t];
          const T fro2 = a00[t] * a00[t] + a01[t] * a01[t] + a10[t] * a10[t] + a11[t] * a11[t];
          const bool full = std::fabs(d) > 64 * eps * fro2;
          const T inv_det = T(1) / (full ? d : T(1)), inv_fro2 = T(1) / (fro2 > tiny ? fro2 : tiny);
          const T p00 = full ? a11[t] * inv_det : a00[t] * inv_fro2, p01 = full ? -a01[t] * inv_det : a10[t] * inv_fro2;
          const T p10 = full ? -a10[t] * inv_det : a01[t] * inv_fro2, p11 = full ? a00[t] * inv_det : a11[t] * inv_fro2;
          MI[t] = p00; MI[TILE + t] = p01; MI[3 * TILE + t] = p10; MI[5 * TILE + t] = p11;  // M^-1 is spent
        }
        for (int64_t c = 0; c < C; ++c) {
          const int64_t out = ((b * C + c) * Ho + oy) * Wo + ox0;
          const T *th = TH + 3 * c * TILE, *y0 = Y + c * K * TILE;
#pragma omp simd
          for (int t = 0; t < n; ++t) {
            const T tx = th[t], ty = th[TILE + t];
            slope_x[out + t] = (MI[t] * tx + MI[3 * TILE + t] * ty) * g.sx + probe[t];
            slope_y[out + t] = (MI[TILE + t] * tx + MI[5 * TILE + t] * ty) * g.sy + probe[t];
            value[out + t] = (center ? y0[t] : th[2 * TILE + t]) + probe[t];
          }
        }
      }
  }
}

// The input gradient (B, C, H, W) (zeroed by the caller) of the intercept: grad (B, C, Ho*Wo) times beta (B, K, Ho*Wo)
// scattered at each sample's bilinear footprint. The sample points are recomputed from the grid (cheaper than
// keeping K x 2 coordinates per pixel for backward). A work item is one batch element with all its channels, which
// share the points and corners, or, when the batch is smaller than the thread count, one (b, c) plane; either way
// each plane has one owner thread and sees the same adds in the same order (results do not depend on the threads).
template <int PAD, typename T>
static void estn_input_grad(const T* grad, const T* grid, const T* z, const T* beta, int64_t B, int64_t C, int64_t H,
                            int64_t W, int64_t Ho, int64_t Wo, int64_t K, const Geometry<T>& g, T* grad_input) {
  const int64_t tiles = (Wo + TILE - 1) / TILE, P = Ho * Wo;
  const int64_t per_item = B >= omp_get_max_threads() ? C : 1;
#pragma omp parallel
  {
    TileFrame<T> f(K);
    int idx[4 * TILE];
    T wt[4 * TILE], scaled[4 * TILE], gw[TILE];
#pragma omp for schedule(static)
    for (int64_t item = 0; item < B * C / per_item; ++item) {
      const int64_t b = item * per_item / C, c0 = item * per_item % C;
      for (int64_t oy = 0; oy < Ho; ++oy)
        for (int64_t tile = 0; tile < tiles; ++tile) {
          const int64_t ox0 = tile * TILE;
          const int n = (int)std::min<int64_t>(TILE, Wo - ox0);
          tile_points<PAD>(grid, b, oy, ox0, (n + 15) & ~15, Ho, Wo, g, z, K, f);
          for (int64_t k = 0; k < K; ++k) {
            bilinear_corners(f.px + k * TILE, f.py + k * TILE, n, (int)H, (int)W, idx, wt);
            const T* bk = beta + (b * K + k) * P + oy * Wo + ox0;
            for (int64_t c = c0; c < c0 + per_item; ++c) {
              const T* go = grad + (b * C + c) * P + oy * Wo + ox0;
#pragma omp simd
              for (int t = 0; t < n; ++t) gw[t] = go[t] * bk[t];
              scatter_corners(grad_input + (b * C + c) * H * W, idx, wt, gw, n, scaled);
            }
          }
        }
    }
  }
}

template <typename T>
static void estn_fit_dispatch(const T* input, const T* grid, const T* z, const T* prior, const T* log_prior,
                              int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t K,
                              double scale_x, double scale_y, double min_radius, double tangent_scale, double entropy,
                              int64_t iterations, double ridge, int padding, int align, int center,
                              T* value, T* slope_x, T* slope_y, T* beta) {
  const Geometry<T> g(H, W, align != 0, scale_x, scale_y, min_radius, tangent_scale);
  BY_PADDING(padding, estn_fit, input, grid, z, prior, log_prior, B, C, H, W, Ho, Wo, K, g, entropy, iterations, ridge,
           center != 0, value, slope_x, slope_y, beta);
}
template <typename T>
static void estn_input_grad_dispatch(const T* grad, const T* grid, const T* z, const T* beta, int64_t B, int64_t C,
                                     int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t K, double scale_x,
                                     double scale_y, double min_radius, double tangent_scale, int padding, int align,
                                     T* grad_input) {
  const Geometry<T> g(H, W, align != 0, scale_x, scale_y, min_radius, tangent_scale);
  BY_PADDING(padding, estn_input_grad, grad, grid, z, beta, B, C, H, W, Ho, Wo, K, g, grad_input);
}
#define ESTN_EXPORTS(T, SUFFIX)                                                                                        \
  extern "C" void estn_fit_##SUFFIX(const T* input, const T* grid, const T* z, const T* prior, const T* log_prior,     \
                                    int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t K,     \
                                    double scale_x, double scale_y, double min_radius, double tangent_scale,           \
                                    double entropy, int64_t iterations, double ridge, int padding, int align,          \
                                    int center, T* value, T* slope_x, T* slope_y, T* beta) {                           \
    estn_fit_dispatch<T>(input, grid, z, prior, log_prior, B, C, H, W, Ho, Wo, K, scale_x, scale_y, min_radius,       \
                         tangent_scale, entropy, iterations, ridge, padding, align, center, value, slope_x, slope_y,   \
                         beta);                                                                                        \
  }                                                                                                                    \
  extern "C" void estn_input_grad_##SUFFIX(const T* grad, const T* grid, const T* z, const T* beta, int64_t B,         \
                                           int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int64_t K,         \
                                           double scale_x, double scale_y, double min_radius, double tangent_scale,    \
                                           int padding, int align, T* grad_input) {                                    \
    estn_input_grad_dispatch<T>(grad, grid, z, beta, B, C, H, W, Ho, Wo, K, scale_x, scale_y, min_radius,             \
                                tangent_scale, padding, align, grad_input);                                            \
  }
ESTN_EXPORTS(float, f32)
ESTN_EXPORTS(double, f64)
