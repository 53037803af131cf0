// ESTN's operators, interpolators::estn_forward and interpolators::estn_input_grad (schemas in ops.cpp). The math is
// interpolators/estn/eager.py's, step by step: tangent frame, spiral points, bilinear samples, entropy-reweighted plane
// fit, intercept weights; see that module for the formulas. Per vector of output pixels every step runs in registers
// and a few KB of per-thread scratch; the input gradient recomputes the points instead of keeping them.
#include "sampling.h"

namespace interp {
namespace {

// What steps 1-2 need besides the grid: grid_sample's axes, the normalized-to-pixel scales and the frame's constants.
template <typename T> struct Geometry {
  Axis<T> ax, ay;
  T sx, sy, inv_x, inv_y, r2, kx, ky;
  Geometry(int64_t H, int64_t W, bool align, double min_radius, double tangent_scale)
      : ax(W, align), ay(H, align), sx(align ? T(W - 1) / 2 : T(W) / 2), sy(align ? T(H - 1) / 2 : T(H) / 2),
        inv_x(sx > 0 ? T(1) / sx : T(0)), inv_y(sy > 0 ? T(1) / sy : T(0)), r2(T(min_radius * min_radius)),
        kx(sx > 0 ? T(tangent_scale) : T(0)), ky(sy > 0 ? T(tangent_scale) : T(0)) {}
};

struct EstnShape {
  int64_t B, C, H, W, Ho, Wo, K;
};

// The frame A = t sqrt(J J^T + r^2 I) of lanes [0, n) from ox0 of output row (b, oy), J by finite differences of the
// grid in input pixels (central inside, one-sided at the edges, zero along an axis of length 1, as torch.gradient),
// the sampling points (gx, gy), and the footprints FP (Footprint, or PaddedFootprint for samples) of the K samples
// p + A z_k. Writes a (4) and fp (K).
template <typename T, int PAD, typename FP>
inline void frame_and_footprints(const T* grid, int64_t b, int64_t oy, int64_t ox0, int64_t n, const EstnShape& s,
                                 const Geometry<T>& g, const T* zx, const T* zy, Vec<T>* a, Vec<T>& gx, Vec<T>& gy,
                                 FP* fp) {
  constexpr int64_t L = Vec<T>::size();
  const int64_t Wo = s.Wo, Ho = s.Ho;
  const T* row = grid + 2 * (b * Ho + oy) * Wo;
  const T* up = grid + 2 * (b * Ho + (oy > 0 ? oy - 1 : oy)) * Wo;
  const T* down = grid + 2 * (b * Ho + (oy < Ho - 1 ? oy + 1 : oy)) * Wo;
  const T div_y = T(std::max(1, int(oy > 0) + int(oy < Ho - 1)));
  load_pairs(row + 2 * ox0, n, gx, gy);
  Vec<T> lx, ly, rx, ry, div_x;
  if (ox0 >= 1 && ox0 + L + 1 <= Wo) {  // every lane has both neighbours
    load_pairs(row + 2 * (ox0 - 1), L, lx, ly);
    load_pairs(row + 2 * (ox0 + 1), L, rx, ry);
    div_x = Vec<T>(T(2));
  } else {
    T l[2 * L], r[2 * L], d[L];
    for (int64_t t = 0; t < L; ++t) {
      const int64_t ox = std::min(ox0 + t, Wo - 1), left = ox > 0 ? ox - 1 : ox, right = ox < Wo - 1 ? ox + 1 : ox;
      l[2 * t] = row[2 * left], l[2 * t + 1] = row[2 * left + 1];
      r[2 * t] = row[2 * right], r[2 * t + 1] = row[2 * right + 1];
      d[t] = T(std::max(1, int(ox > 0) + int(ox < Wo - 1)));
    }
    load_pairs(l, L, lx, ly);
    load_pairs(r, L, rx, ry);
    div_x = Vec<T>::loadu(d);
  }
  Vec<T> ux, uy, dx, dy;
  load_pairs(up + 2 * ox0, n, ux, uy);
  load_pairs(down + 2 * ox0, n, dx, dy);
  const Vec<T> sx(g.sx), sy(g.sy), r2(g.r2), dvy(div_y);
  const Vec<T> j00 = (rx * sx - lx * sx) / div_x, j10 = (ry * sy - ly * sy) / div_x;
  const Vec<T> j01 = (dx * sx - ux * sx) / dvy, j11 = (dy * sy - uy * sy) / dvy;
  const Vec<T> s00 = j00 * j00 + j01 * j01 + r2, s11 = j10 * j10 + j11 * j11 + r2, s01 = j00 * j10 + j01 * j11;
  const Vec<T> det = s00 * s11 - s01 * s01, zero(T(0)), tiny(std::numeric_limits<T>::min());
  const Vec<T> root_det = select<T>(det > zero, det, zero).sqrt();
  Vec<T> norm = (s00 + s11 + Vec<T>(T(2)) * root_det).sqrt();
  norm = select<T>(norm > tiny, norm, tiny);
  const Vec<T> s01n = s01 / norm;
  a[0] = Vec<T>(g.kx) * (s00 + root_det) / norm;
  a[1] = Vec<T>(g.kx) * s01n;
  a[2] = Vec<T>(g.ky) * s01n;
  a[3] = Vec<T>(g.ky) * (s11 + root_det) / norm;
  // along z_x and z_y in normalized units
  const Vec<T> ax_ = a[0] * Vec<T>(g.inv_x), bx_ = a[1] * Vec<T>(g.inv_x);
  const Vec<T> ay_ = a[2] * Vec<T>(g.inv_y), by_ = a[3] * Vec<T>(g.inv_y);
  for (int64_t k = 0; k < s.K; ++k) {
    const Vec<T> zxk(zx[k]), zyk(zy[k]);
    const Vec<T> px = g.ax.template source<PAD>(zxk * ax_ + zyk * bx_ + gx);
    const Vec<T> py = g.ay.template source<PAD>(zxk * ay_ + zyk * by_ + gy);
    fp[k] = FP(px, py, s.H, s.W);
  }
}

// M^-1 of the ridged normal matrix [[mxx + l, mxy, mx], [mxy, myy + l, my], [mx, my, m1]], l = ridge_eps * trace, by
// the adjugate, as its six entries (i00, i01, i02, i11, i12, i22). V: a scalar or a vector.
template <typename V, typename S>
inline void inverse_normal(const V& mxx, const V& mxy, const V& myy, const V& mx, const V& my, const V& m1, S ridge_eps,
                           V* inv) {
  const V lam = (mxx + myy + m1) * V(ridge_eps), a00 = mxx + lam, a11 = myy + lam;
  const V c00 = a11 * m1 - my * my, c01 = mx * my - mxy * m1, c02 = mxy * my - mx * a11;
  const V c11 = a00 * m1 - mx * mx, c12 = mxy * mx - a00 * my, c22 = a00 * a11 - mxy * mxy;
  const V inv_det = V(S(1)) / (a00 * c00 + mxy * c01 + mx * c02);
  inv[0] = c00 * inv_det, inv[1] = c01 * inv_det, inv[2] = c02 * inv_det;
  inv[3] = c11 * inv_det, inv[4] = c12 * inv_det, inv[5] = c22 * inv_det;
}

// What every pixel shares for the spiral z (K, 2) with prior weights w (K,): the first fit's weights are the prior, one
// constant system whose solution maps the samples to theta (coef, 3 x K: theta_f = sum_k coef[f][k] y_k; coef[2] are
// the intercept's weights), the normalized prior (for gamma) and log w.
template <typename T> struct SpiralFit {
  std::vector<T> zx, zy, coef, prior_n, log_prior;
  T ridge_eps, entropy;
  int64_t iterations;
  bool reweight;
  SpiralFit(c10::ArrayRef<double> zx_, c10::ArrayRef<double> zy_, c10::ArrayRef<double> prior,
            std::optional<double> entropy_, int64_t iterations_, double ridge)
      : zx(zx_.begin(), zx_.end()), zy(zy_.begin(), zy_.end()), coef(3 * zx_.size()), prior_n(zx_.size()),
        log_prior(zx_.size()), ridge_eps(T(ridge) + std::numeric_limits<T>::epsilon()),
        entropy(T(entropy_.value_or(0))), iterations(iterations_), reweight(entropy_.has_value() && iterations_ > 0) {
    const int64_t K = int64_t(zx.size());
    T m[6] = {0, 0, 0, 0, 0, 0}, inv[6], total = 0;
    for (int64_t k = 0; k < K; ++k) {
      const T w = T(prior[k]), wx = w * zx[k], wy = w * zy[k];
      m[0] += wx * zx[k], m[1] += wx * zy[k], m[2] += wy * zy[k], m[3] += wx, m[4] += wy, m[5] += w;
      total += w;
    }
    inverse_normal<T, T>(m[0], m[1], m[2], m[3], m[4], m[5], ridge_eps, inv);
    for (int64_t k = 0; k < K; ++k) {
      const T w = T(prior[k]), wx = w * zx[k], wy = w * zy[k];
      coef[k] = inv[0] * wx + inv[1] * wy + inv[2] * w;
      coef[K + k] = inv[1] * wx + inv[3] * wy + inv[4] * w;
      coef[2 * K + k] = inv[2] * wx + inv[4] * wy + inv[5] * w;
      prior_n[k] = w / total;
      log_prior[k] = std::log(w);
    }
  }
};

// Steps 4-5 for one vector of pixels: the first fit with the prior's constant coefficients, then, when reweighting,
// gamma and `iterations` rounds of pi_k = w_k exp(-r_k / gamma) (up to a per-pixel factor) and the weighted least
// squares of the samples Y (C x K) on [z_x, z_y, 1]. Writes theta (C x 3) into th and, when reweighting, the final
// weights into w (K) and (M^-1)_{02, 12, 22} into row.
template <typename T>
inline void fit(const Vec<T>* Y, const SpiralFit<T>& f, int64_t K, int64_t C, Vec<T>* th, Vec<T>* w, Vec<T>* row) {
  const T eps = std::numeric_limits<T>::epsilon(), tiny = std::numeric_limits<T>::min();
  for (int64_t c = 0; c < C; ++c) {
    Vec<T> t0(T(0)), t1(T(0)), t2(T(0));
    for (int64_t k = 0; k < K; ++k) {
      const Vec<T> y = Y[c * K + k];
      t0 = at::vec::fmadd(Vec<T>(f.coef[k]), y, t0);
      t1 = at::vec::fmadd(Vec<T>(f.coef[K + k]), y, t1);
      t2 = at::vec::fmadd(Vec<T>(f.coef[2 * K + k]), y, t2);
    }
    th[3 * c] = t0, th[3 * c + 1] = t1, th[3 * c + 2] = t2;
  }
  if (!f.reweight) return;
  Vec<T> gamma(tiny);
  for (int64_t c = 0; c < C; ++c) {  // gamma: entropy x the prior-weighted variance, summed over channels
    Vec<T> mean(T(0)), second(T(0));
    for (int64_t k = 0; k < K; ++k) {
      const Vec<T> y = Y[c * K + k], p(f.prior_n[k]);
      mean = at::vec::fmadd(p, y, mean);
      second = at::vec::fmadd(p * y, y, second);
    }
    const Vec<T> variance = second - mean * mean, zero(T(0));
    gamma = gamma + Vec<T>(f.entropy) * select<T>(variance > zero, variance, zero) + Vec<T>(eps) * second;
  }
  const Vec<T> neg_inv_gamma = Vec<T>(T(-1)) / gamma;
  Vec<T> inv[6];
  for (int64_t it = 0; it < f.iterations; ++it) {
    Vec<T> largest(-std::numeric_limits<T>::infinity());
    for (int64_t k = 0; k < K; ++k) {  // logits log w_k - r_k / gamma, r_k the squared residual summed over channels
      const Vec<T> zxk(f.zx[k]), zyk(f.zy[k]);
      Vec<T> r(T(0));
      for (int64_t c = 0; c < C; ++c) {
        const Vec<T> d = Y[c * K + k] - (th[3 * c] * zxk + th[3 * c + 1] * zyk + th[3 * c + 2]);
        r = at::vec::fmadd(d, d, r);
      }
      w[k] = at::vec::fmadd(r, neg_inv_gamma, Vec<T>(f.log_prior[k]));
      largest = select<T>(w[k] > largest, w[k], largest);
    }
    Vec<T> m0(T(0)), m1(T(0)), m2(T(0)), m3(T(0)), m4(T(0)), m5(T(0));
    for (int64_t k = 0; k < K; ++k) {  // the weights (the largest is w_k exp(0)) and their moments
      const Vec<T> zxk(f.zx[k]), zyk(f.zy[k]);
      const Vec<T> wk = (w[k] - largest).exp_u20(), wx = wk * zxk, wy = wk * zyk;
      w[k] = wk;
      m0 = at::vec::fmadd(wx, zxk, m0), m1 = at::vec::fmadd(wx, zyk, m1), m2 = at::vec::fmadd(wy, zyk, m2);
      m3 = m3 + wx, m4 = m4 + wy, m5 = m5 + wk;
    }
    inverse_normal<Vec<T>, T>(m0, m1, m2, m3, m4, m5, f.ridge_eps, inv);
    for (int64_t c = 0; c < C; ++c) {
      Vec<T> b0(T(0)), b1(T(0)), b2(T(0));
      for (int64_t k = 0; k < K; ++k) {
        const Vec<T> wy = w[k] * Y[c * K + k];
        b0 = at::vec::fmadd(wy, Vec<T>(f.zx[k]), b0), b1 = at::vec::fmadd(wy, Vec<T>(f.zy[k]), b1), b2 = b2 + wy;
      }
      th[3 * c] = inv[0] * b0 + inv[1] * b1 + inv[2] * b2;
      th[3 * c + 1] = inv[1] * b0 + inv[3] * b1 + inv[4] * b2;
      th[3 * c + 2] = inv[2] * b0 + inv[4] * b1 + inv[5] * b2;
    }
  }
  row[0] = inv[2], row[1] = inv[4], row[2] = inv[5];
}

// Rows [row_begin, row_end) of (B * Ho): steps 1-6. Writes value (B, C, Ho, Wo) (the intercept, or the centre sample
// with `center`), the slopes per normalized unit (2, B, C, Ho, Wo) and, unless null, the intercept weights of the
// samples 1 .. K - 1, beta (B, K - 1, Ho, Wo) (the centre's is 1 minus their sum: the weights sum to 1).
template <typename T, int PAD>
void estn_rows(const T* input, const T* grid, const EstnShape& s, const Geometry<T>& g, const SpiralFit<T>& f,
               bool center, T* value, T* slope_x, T* slope_y, T* beta, int64_t row_begin, int64_t row_end) {
  constexpr int64_t L = Vec<T>::size();
  const int64_t K = s.K, C = s.C, P = s.Ho * s.Wo;
  const T eps = std::numeric_limits<T>::epsilon(), tiny = std::numeric_limits<T>::min();
  PaddedPlanes<T> planes(C, s.H, s.W);
  std::vector<PaddedFootprint<T>> fp(K);
  std::vector<Vec<T>> Y(C * K), th(3 * C), w(K);
  Vec<T> a[4], row[3], gx, gy;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t b = r / s.Ho, oy = r % s.Ho;
    for (int64_t ox0 = 0; ox0 < s.Wo; ox0 += L) {
      const int64_t n = std::min(L, s.Wo - ox0), at = oy * s.Wo + ox0;
      frame_and_footprints<T, PAD>(grid, b, oy, ox0, n, s, g, f.zx.data(), f.zy.data(), a, gx, gy, fp.data());
      for (int64_t c = 0; c < C; ++c) {
        const T* img = planes.plane(input, b, c);
        for (int64_t k = 0; k < K; ++k) Y[c * K + k] = fp[k].sample(img);
      }
      fit<T>(Y.data(), f, K, C, th.data(), w.data(), row);
      // 0 where the grid point and its frame are finite, else NaN: added to every output, it makes a non-finite grid
      // give NaN as the eager path does (the clamped footprints would have read it as outside)
      const Vec<T> probe = (a[0] + a[1] + a[2] + a[3] + gx + gy) * Vec<T>(T(0));
      for (int64_t k = 1; beta && k < K; ++k) {  // step 6: beta_k = pi_k [z_k, 1] . M^-1 e_3
        const Vec<T> bk = f.reweight ? w[k] * (row[0] * Vec<T>(f.zx[k]) + row[1] * Vec<T>(f.zy[k]) + row[2])
                                     : Vec<T>(f.coef[2 * K + k]);
        (bk + probe).store(beta + (b * (K - 1) + k - 1) * P + at, n);
      }
      // the frame's pseudo-inverse, which maps footprint slopes to pixel slopes: adj / det, or A^T / |A|_F^2 at rank 1
      const Vec<T> det = a[0] * a[3] - a[1] * a[2];
      const Vec<T> fro2 = a[0] * a[0] + a[1] * a[1] + a[2] * a[2] + a[3] * a[3];
      const Vec<T> full = det.abs() > Vec<T>(64 * eps) * fro2, one(T(1));
      const Vec<T> inv_det = one / select<T>(full, det, one), inv_fro2 = one / select<T>(fro2 > Vec<T>(tiny), fro2, Vec<T>(tiny));
      const Vec<T> p00 = select<T>(full, a[3] * inv_det, a[0] * inv_fro2);
      const Vec<T> p01 = select<T>(full, Vec<T>(T(0)) - a[1] * inv_det, a[2] * inv_fro2);
      const Vec<T> p10 = select<T>(full, Vec<T>(T(0)) - a[2] * inv_det, a[1] * inv_fro2);
      const Vec<T> p11 = select<T>(full, a[0] * inv_det, a[3] * inv_fro2);
      for (int64_t c = 0; c < C; ++c) {
        const int64_t out = (b * C + c) * P + at;
        const Vec<T> tx = th[3 * c], ty = th[3 * c + 1];
        ((p00 * tx + p10 * ty) * Vec<T>(g.sx) + probe).store(slope_x + out, n);
        ((p01 * tx + p11 * ty) * Vec<T>(g.sy) + probe).store(slope_y + out, n);
        ((center ? Y[c * K] : th[3 * c + 2]) + probe).store(value + out, n);
      }
    }
  }
}

// The input gradient of work items [item_begin, item_end): an item is a batch element with all its channels (which
// share the points and footprints) or, when per_item is 1, one (b, c) plane. Each plane has one owner thread, which
// zeroes it and makes the same adds in the same order, so results do not depend on the thread count.
template <typename T, int PAD>
void estn_input_grad_items(const T* grad, const T* grid, const T* beta, const EstnShape& s, const Geometry<T>& g,
                           const T* zx, const T* zy, int64_t per_item, T* grad_input, int64_t item_begin,
                           int64_t item_end) {
  constexpr int64_t L = Vec<T>::size();
  const int64_t K = s.K, P = s.Ho * s.Wo;
  std::vector<Footprint<T>> fp(K);
  Vec<T> a[4], gx, gy;
  for (int64_t item = item_begin; item < item_end; ++item) {
    const int64_t b = item * per_item / s.C, c0 = item * per_item % s.C;
    std::fill_n(grad_input + (b * s.C + c0) * s.H * s.W, per_item * s.H * s.W, T(0));  // first touch by the owner
    for (int64_t oy = 0; oy < s.Ho; ++oy)
      for (int64_t ox0 = 0; ox0 < s.Wo; ox0 += L) {
        const int64_t n = std::min(L, s.Wo - ox0), at = oy * s.Wo + ox0;
        frame_and_footprints<T, PAD>(grid, b, oy, ox0, n, s, g, zx, zy, a, gx, gy, fp.data());
        Vec<T> rest(T(0));  // the centre's weight is 1 minus the others'
        for (int64_t k = 1; k < K; ++k) rest = rest + Vec<T>::loadu(beta + (b * (K - 1) + k - 1) * P + at, n);
        for (int64_t c = c0; c < c0 + per_item; ++c) {
          const Vec<T> gv = Vec<T>::loadu(grad + (b * s.C + c) * P + at, n);
          T* plane = grad_input + (b * s.C + c) * s.H * s.W;
          fp[0].scatter(plane, gv * (Vec<T>(T(1)) - rest), n);
          for (int64_t k = 1; k < K; ++k)
            fp[k].scatter(plane, gv * Vec<T>::loadu(beta + (b * (K - 1) + k - 1) * P + at, n), n);
        }
      }
  }
}

void check_spiral(c10::ArrayRef<double> zx, c10::ArrayRef<double> zy, const char* op) {
  TORCH_CHECK(zx.size() >= 2 && zx.size() == zy.size(), op, ": spiral_x, spiral_y: expected K >= 2 values each, got ",
              zx.size(), " and ", zy.size());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> estn_forward(
    const at::Tensor& input_, const at::Tensor& grid_, c10::ArrayRef<double> spiral_x, c10::ArrayRef<double> spiral_y,
    c10::ArrayRef<double> prior, double tangent_scale, double min_radius, std::optional<double> entropy,
    int64_t iterations, double ridge, c10::string_view padding_mode, bool align_corners, bool center_value,
    bool keep_beta) {
  check_input_and_grid(input_, grid_, "estn_forward");
  check_spiral(spiral_x, spiral_y, "estn_forward");
  TORCH_CHECK(prior.size() == spiral_x.size(), "estn_forward: prior: expected ", spiral_x.size(), " weights, got ",
              prior.size());
  const at::Tensor input = input_.contiguous(), grid = grid_.contiguous();
  const EstnShape s{input.size(0), input.size(1), input.size(2), input.size(3), grid.size(1), grid.size(2),
                    int64_t(spiral_x.size())};
  at::Tensor value = at::empty({s.B, s.C, s.Ho, s.Wo}, input.options());
  at::Tensor slopes = at::empty({2, s.B, s.C, s.Ho, s.Wo}, input.options());
  at::Tensor beta = keep_beta ? at::empty({s.B, s.K - 1, s.Ho, s.Wo}, input.options()) : at::empty({0}, input.options());
  const int padding = padding_code(padding_mode);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "estn_forward", [&] {
    using T = scalar_t;
    const Geometry<T> g(s.H, s.W, align_corners, min_radius, tangent_scale);
    const SpiralFit<T> f(spiral_x, spiral_y, prior, entropy, iterations, ridge);
    T *v = value.mutable_data_ptr<T>(), *sx = slopes.mutable_data_ptr<T>(), *sy = sx + value.numel();
    T* bt = keep_beta ? beta.mutable_data_ptr<T>() : nullptr;
    by_padding(padding, [&]<int PAD>() {
      at::parallel_for(0, s.B * s.Ho, grain_for(s.Wo * s.K), [&](int64_t begin, int64_t end) {
        estn_rows<T, PAD>(input.const_data_ptr<T>(), grid.const_data_ptr<T>(), s, g, f, center_value, v, sx, sy, bt,
                          begin, end);
      });
    });
  });
  return {value, slopes, beta};
}

at::Tensor estn_input_grad(const at::Tensor& grad_value, const at::Tensor& grid_, c10::ArrayRef<double> spiral_x,
                           c10::ArrayRef<double> spiral_y, const at::Tensor& beta_, int64_t height, int64_t width,
                           double tangent_scale, double min_radius, c10::string_view padding_mode,
                           bool align_corners) {
  check_spiral(spiral_x, spiral_y, "estn_input_grad");
  const at::Tensor grad = grad_value.contiguous(), grid = grid_.contiguous(), beta = beta_.contiguous();
  const EstnShape s{grad.size(0), grad.size(1), height, width, grad.size(2), grad.size(3), int64_t(spiral_x.size())};
  TORCH_CHECK(grid.sizes().equals({s.B, s.Ho, s.Wo, 2}) && beta.sizes().equals({s.B, s.K - 1, s.Ho, s.Wo}),
              "estn_input_grad: expected grid (B, Ho, Wo, 2) and beta (B, K - 1, Ho, Wo) for grad ", grad.sizes(),
              ", got ", grid.sizes(), " and ", beta.sizes());
  at::Tensor grad_input = at::empty({s.B, s.C, s.H, s.W}, grad.options());  // zeroed plane by plane by the items
  const int padding = padding_code(padding_mode);
  const int64_t per_item = s.B >= at::get_num_threads() ? s.C : 1;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "estn_input_grad", [&] {
    using T = scalar_t;
    const Geometry<T> g(s.H, s.W, align_corners, min_radius, tangent_scale);
    const std::vector<T> zx(spiral_x.begin(), spiral_x.end()), zy(spiral_y.begin(), spiral_y.end());
    by_padding(padding, [&]<int PAD>() {
      at::parallel_for(0, s.B * s.C / per_item, 1, [&](int64_t begin, int64_t end) {
        estn_input_grad_items<T, PAD>(grad.const_data_ptr<T>(), grid.const_data_ptr<T>(), beta.const_data_ptr<T>(), s,
                                      g, zx.data(), zy.data(), per_item, grad_input.mutable_data_ptr<T>(), begin, end);
      });
    });
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(interpolators, CPU, m) {
  m.impl("estn_forward", &estn_forward);
  m.impl("estn_input_grad", &estn_input_grad);
}

}  // namespace interp
