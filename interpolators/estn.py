"""ESTN: tangent-space multi-sampling with an entropy-regularized weighted plane fit.

This is "ESTN as implemented here" (``docs/methods/estn.md``): the project's reading of
Shamsolmoali and Zareapoor, "Entropy Transformer Networks: A Learning Approach via Tangent
Bundle Data Manifold", Sec. 3.1 (Eq. 2-10). The paper publishes no code; every open choice is
a hyperparameter. Per output pixel ``i`` with sampling point ``p_i`` (input pixels):

1. Tangent frame: ``J_i`` (2x2, input pixels per output pixel) by finite differences of the
   grid, ``S_i = J_i J_i^T + r^2 I`` with ``r = min_radius``; no gradient flows through it.
2. Samples (Eq. 2-4): ``p_ik = p_i + t sqrt(S_i) z_k``, ``t = tangent_scale``, ``z_0 = 0`` and
   ``z_1..z_{K-1}`` a golden-angle spiral with Gaussian radial quantiles or ``N(0, I)`` draws.
3. Prior weights (Eq. 5): ``w_k = max(0, (1 + c sqrt(c) - d_k) / (c sqrt(c)))``,
   ``c = (N - 1) / 2``, ``d_k = t |z_k|``.
4. Entropy regularizer (Eq. 9-10): ``pi_k ∝ w_k exp(-r_k / gamma)``, alternated with the fit.
5. Fit (Eq. 9): weighted least squares of ``I(p_ik)`` on ``[du_k, dv_k, 1]``, one
   channel-shared 3x3 system per output pixel.
6. Output: the intercept, a fixed (detached) combination ``sum_k beta_k I(p_ik)`` with
   ``sum_k beta_k = 1``; the gradient w.r.t. the grid is the fitted slope.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from torch.autograd.function import once_differentiable

from interpolators import _native
from interpolators._compile import run_compiled, tracing
from interpolators._linalg import solve_sym3
from interpolators._registry import register
from interpolators.base import (
    PADDING_CODES,
    PADDING_MODES,
    Interpolator,
    PaddingMode,
    check_choice,
    check_number,
    check_sampling_inputs,
    grid_sample_points,
    normalized_to_pixel_scale,
)

Sampling = Literal["spiral", "random"]
Value = Literal["fit", "center"]
SAMPLINGS: tuple[str, ...] = get_args(Sampling)
VALUES: tuple[str, ...] = get_args(Value)
#: ``"compiled"`` fuses with ``torch.compile``; ``"native"`` runs C++ kernels (CPU; :mod:`interpolators._native`)
ESTNBackend = Literal["eager", "compiled", "native"]
ESTN_BACKENDS: tuple[str, ...] = get_args(ESTNBackend)

#: the golden angle, ``pi (3 - sqrt 5)`` radians: consecutive spiral points never line up
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def check_estn_hparams(
    *,
    num_samples: int,
    tangent_scale: float,
    min_radius: float,
    kernel_size: int,
    entropy: float | None,
    iterations: int,
    ridge: float,
    sampling: str,
    value: str,
    padding_mode: str,
    align_corners: bool,
    backend: str = "eager",
) -> None:
    """Raise ``TypeError``/``ValueError`` naming the first hyperparameter out of its range."""
    check_number("num_samples", num_samples, integer=True, minimum=4)
    check_number("tangent_scale", tangent_scale, minimum=0, strict=True)
    check_number("min_radius", min_radius, minimum=0)
    check_number("kernel_size", kernel_size, integer=True, minimum=3)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: expected an odd integer >= 3, got {kernel_size!r}")
    if entropy is not None:
        check_number("entropy", entropy, minimum=0, strict=True)
    check_number("iterations", iterations, integer=True, minimum=0)
    check_number("ridge", ridge, minimum=0)
    check_choice("sampling", sampling, SAMPLINGS)
    check_choice("value", value, VALUES)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    if not isinstance(align_corners, bool):
        raise TypeError(f"align_corners: expected a bool, got {align_corners!r}")
    check_choice("backend", backend, ESTN_BACKENDS)
    if backend != "eager" and sampling != "spiral":
        raise ValueError(f"backend: {backend!r} fuses the shared spiral only; expected 'eager' with sampling={sampling!r}")


def spiral_offsets(num_samples: int, *, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """The deterministic unit offsets ``z (K, 2)``: the centre, then a golden-angle spiral.

    ``z_0 = 0`` and, for ``k = 1..K-1``, ``z_k = rho_k (cos k phi, sin k phi)`` with ``phi`` the
    golden angle and ``rho_k = sqrt(-2 ln(1 - u_k))``, ``u_k = (k - 1/2) / (K - 1)``: the radii are
    the quantiles of the radius of a standard 2-D Gaussian, so the points stand in for ``N(0, I)``
    draws without their noise.

    Examples:
        >>> z = spiral_offsets(9)
        >>> z.shape, z[0].tolist()
        (torch.Size([9, 2]), [0.0, 0.0])
        >>> round(z[1].norm().item(), 4)  # sqrt(-2 ln(1 - 1/16))
        0.3593
    """
    check_number("num_samples", num_samples, integer=True, minimum=2)
    k = torch.arange(1, num_samples, dtype=torch.float64)
    u = (k - 0.5) / (num_samples - 1)
    radius = torch.sqrt(-2.0 * torch.log1p(-u))
    angle = k * GOLDEN_ANGLE
    ring = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)
    z = torch.cat([ring.new_zeros(1, 2), ring])
    return z.to(dtype=dtype or torch.get_default_dtype(), device=device)


def prior_weights(unit_offsets: Tensor, tangent_scale: float = 0.5, kernel_size: int = 3) -> Tensor:
    """Eq. 5's distance weights of the samples, ``(..., K, 2) -> (..., K)``.

    ``w_k = max(0, (1 + c sqrt(c) - d_k) / (c sqrt(c)))`` with ``c = (N - 1) / 2``,
    ``N = kernel_size`` and ``d_k = tangent_scale * |z_k|`` the sample's distance in the
    footprint's frame. The centre (``d = 0``) weighs ``1 + 1 / (c sqrt c)``.

    Examples:
        >>> prior_weights(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 6.0]]))  # c = 1: max(0, 2 - d)
        tensor([2., 1., 0.])
    """
    check_number("tangent_scale", tangent_scale, minimum=0, strict=True)
    check_number("kernel_size", kernel_size, integer=True, minimum=3)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: expected an odd integer >= 3, got {kernel_size!r}")
    c = (kernel_size - 1) / 2
    c_root_c = c * math.sqrt(c)
    distance = tangent_scale * unit_offsets.norm(dim=-1)
    return ((1.0 + c_root_c - distance) / c_root_c).clamp_min(0.0)


def _unit_offsets(
    num_samples: int,
    sampling: str,
    batch_shape: tuple[int, int, int],
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator | None,
) -> Tensor:
    """``z``: the spiral ``(K, 2)``, shared by every pixel, or fresh ``N(0, I)`` draws ``(B, K, Ho, Wo, 2)``."""
    if sampling == "spiral":
        return spiral_offsets(num_samples, dtype=dtype, device=device)
    b, ho, wo = batch_shape
    draws = torch.randn(b, num_samples - 1, ho, wo, 2, generator=generator, dtype=dtype, device=device)
    return torch.cat([draws.new_zeros(b, 1, ho, wo, 2), draws], dim=1)


def _finite_difference(values: Tensor, dim: int) -> Tensor:
    """Central differences inside, one-sided at the edges, zero along an axis of length 1."""
    if values.shape[dim] < 2:
        return torch.zeros_like(values)
    return torch.gradient(values, dim=dim)[0]


def _tangent_frame(
    gx: Tensor, gy: Tensor, scale_x: float, scale_y: float, min_radius: float, tangent_scale: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The map from unit offsets to input pixels, ``A = t sqrt(J J^T + r^2 I)``, as ``(a00, a01, a10, a11)``.

    ``gx, gy (B, Ho, Wo)``: the grid's normalized coordinates (detached); each entry comes back
    as ``(B, Ho, Wo)``. The square root of the SPD 2x2 ``S`` is closed-form:
    ``(S + sqrt(det S) I) / sqrt(tr S + 2 sqrt(det S))``. An axis along which normalized
    coordinates do not move the pixel (``align_corners=True`` on a size-1 input) gets a zero
    row: no offsets and no slope along it.
    """
    px, py = gx * scale_x, gy * scale_y
    # J = [[dpx/dox, dpx/doy], [dpy/dox, dpy/doy]]: columns along the output's x (dim 2) and y (dim 1)
    j00, j10 = _finite_difference(px, 2), _finite_difference(py, 2)
    j01, j11 = _finite_difference(px, 1), _finite_difference(py, 1)
    s00 = j00 * j00 + j01 * j01 + min_radius * min_radius
    s11 = j10 * j10 + j11 * j11 + min_radius * min_radius
    s01 = j00 * j10 + j01 * j11
    root_det = (s00 * s11 - s01 * s01).clamp_min(0.0).sqrt()
    norm = (s00 + s11 + 2.0 * root_det).sqrt().clamp_min(torch.finfo(gx.dtype).tiny)
    kx = tangent_scale if scale_x > 0 else 0.0
    ky = tangent_scale if scale_y > 0 else 0.0
    s01 = s01 / norm
    return kx * (s00 + root_det) / norm, kx * s01, ky * s01, ky * (s11 + root_det) / norm


def _pinv2(a00: Tensor, a01: Tensor, a10: Tensor, a11: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The Moore-Penrose inverse of 2x2 matrices, elementwise: ``adj / det``, or ``A^T / |A|_F^2`` at rank <= 1."""
    det = a00 * a11 - a01 * a10
    fro2 = a00 * a00 + a01 * a01 + a10 * a10 + a11 * a11
    full = det.abs() > 64 * torch.finfo(det.dtype).eps * fro2
    inv_det = 1.0 / torch.where(full, det, torch.ones_like(det))
    inv_fro2 = 1.0 / fro2.clamp_min(torch.finfo(det.dtype).tiny)
    return (
        torch.where(full, a11 * inv_det, a00 * inv_fro2),
        torch.where(full, -a01 * inv_det, a10 * inv_fro2),
        torch.where(full, -a10 * inv_det, a01 * inv_fro2),
        torch.where(full, a00 * inv_det, a11 * inv_fro2),
    )


def _per_sample(values: Tensor) -> Tensor:
    """A shared per-sample vector ``(K,)`` viewed as ``(K, 1, 1)`` to broadcast against ``(..., K, Ho, Wo)``."""
    return values.view(-1, 1, 1) if values.ndim == 1 else values


def _contract(values: Tensor, features: Tensor) -> Tensor:
    """``sum_k features[f, k] values[k]``: ``(..., K, Ho, Wo) -> (..., F, Ho, Wo)``, ``(K,) -> (F,)``.

    ``features`` is shared ``(F, K)`` (one matmul) or per pixel ``(B, 1, F, K, Ho, Wo)``.
    """
    if features.ndim == 2:
        if values.ndim == 1:
            return features @ values
        return (features @ values.flatten(-2)).unflatten(-1, values.shape[-2:])
    return (values.unsqueeze(-4) * features).sum(-3)


def _expand(coefficients: Tensor, features: Tensor) -> Tensor:
    """``sum_f coefficients[f] features[f, k]`` for every ``k``: ``(..., F, Ho, Wo) -> (..., K, Ho, Wo)``."""
    if features.ndim == 2:
        if coefficients.ndim == 1:
            return coefficients @ features
        return (features.T @ coefficients.flatten(-2)).unflatten(-1, coefficients.shape[-2:])
    return (coefficients.unsqueeze(-3) * features).sum(-4)


def _residual(samples: Tensor, theta: Tensor, features: Tensor) -> Tensor:
    """``samples - _expand(theta, features)``, fused into one ``baddbmm`` for shared features."""
    if features.ndim == 2:
        b, c, k, ho, wo = samples.shape
        flat = torch.baddbmm(
            samples.reshape(b * c, k, ho * wo),
            features.T.expand(b * c, k, 3),
            theta.reshape(b * c, 3, ho * wo),
            alpha=-1.0,
        )
        return flat.view(b, c, k, ho, wo)
    return samples - _expand(theta, features)


def _plane_fit(
    samples: Tensor, weights: Tensor, f3: Tensor, f6: Tensor, ridge: float, intercept_row: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Weighted least squares of ``samples (B, C, K, Ho, Wo)`` on ``[z_x, z_y, 1]``, all channels at once.

    Minimizes ``sum_k pi_k |y_k - theta . [z_k, 1]|^2 + lambda |theta_xy|^2`` with ``lambda =
    (ridge + eps) * trace`` of the 3x3 normal matrix ``M``. Returns ``theta (B, C, 3, Ho, Wo)``
    (footprint-frame slopes, then the intercept) and, if asked, ``M^-1 e_3``, the row that turns
    ``sum_k pi_k [z_k, 1] y_k`` into the intercept (``(3,)`` or ``(B, 1, 3, Ho, Wo)``). Shared
    weights ``(K,)`` give one constant system, solved once for a ``(3, K)`` coefficient matrix.
    """
    moments = _contract(weights, f6)
    mxx, mxy, myy, mx, my, m1 = moments.unbind(-3) if moments.ndim > 1 else moments.unbind(0)
    lam = (ridge + torch.finfo(samples.dtype).eps) * (mxx + myy + m1)
    normal = (mxx + lam, mxy, mx, myy + lam, my, m1)
    e3 = samples.new_tensor([0.0, 0.0, 1.0])
    if weights.ndim == 1:
        theta = _contract(samples, solve_sym3(normal, f3 * weights))
        return theta, solve_sym3(normal, e3) if intercept_row else None
    rhs = _contract(samples * weights, f3)  # (B, C, 3, Ho, Wo)
    if intercept_row:  # one more right-hand side, e_3, solved with the channels
        rhs = torch.cat([rhs, e3.view(3, 1, 1).expand(rhs.shape[0], 1, *rhs.shape[2:])], dim=1)
    solution = solve_sym3(normal, rhs.movedim(-3, 0)).movedim(0, -3)
    c = samples.shape[1]
    return solution[:, :c], solution[:, c:] if intercept_row else None


def _entropy_weights(
    y: Tensor, prior: Tensor, f3: Tensor, f6: Tensor, entropy: float, iterations: int, ridge: float
) -> Tensor:
    """Step 4 for per-pixel features (random draws): ``iterations`` rounds of fit and reweight, ``pi`` up to a factor.

    ``y (B, C, K, Ho, Wo)``, ``prior (B, 1, K, Ho, Wo)``, features ``(B, 1, F, K, Ho, Wo)``.
    """
    c = y.shape[1]
    eps, tiny = torch.finfo(y.dtype).eps, torch.finfo(y.dtype).tiny
    # gamma: entropy x the prior-weighted variance of the samples, summed over channels
    normalized = (prior / prior.sum(-3, keepdim=True)).unsqueeze(-4)  # (B, 1, 1, K, Ho, Wo)
    mean, second = _contract(y, normalized), _contract(y * y, normalized)  # (B, C, 1, Ho, Wo)
    variance = (second - mean * mean).clamp_min(0.0).sum(1, keepdim=True)
    gamma = entropy * variance + eps * second.sum(1, keepdim=True) + tiny
    inv_root_gamma = gamma.rsqrt()
    log_prior = prior.log()
    weights = prior
    for _ in range(iterations):
        theta, _ = _plane_fit(y, weights, f3, f6, ridge)
        scaled = _residual(y, theta, f3).mul_(inv_root_gamma)  # (y_k - fit) / sqrt(gamma)
        if c == 1:
            logits = torch.addcmul(log_prior, scaled, scaled, value=-1.0)
        else:
            logits = log_prior - scaled.square_().sum(1, keepdim=True)
        # pi up to a per-pixel factor, which the fit ignores; the largest is w_k exp(0)
        weights = logits.sub_(logits.amax(-3, keepdim=True)).exp_()
    return weights


def _sum_channels_of_squares(values: Tensor) -> Tensor:
    """``sum_c values[:, c]^2`` for ``(B, C, K, P)`` as ``(B, 1, K, P)``, in place when ``C = 1``."""
    if values.shape[1] == 1:
        return values.square_()
    total = values[:, :1].square()
    for channel in range(1, values.shape[1]):
        total.addcmul_(values[:, channel : channel + 1], values[:, channel : channel + 1])
    return total


def _max_over_samples(values: Tensor) -> Tensor:
    """``max_k values[:, :, k]`` for ``(B, 1, K, P)`` as ``(B, 1, 1, P)``: pairwise maxima of slices beat a reduction."""
    out = torch.maximum(values[:, :, 0:1], values[:, :, 1:2])
    for k in range(2, values.shape[2]):
        torch.maximum(out, values[:, :, k : k + 1], out=out)
    return out


def _solve_normal(moments: Tensor, rhs: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    """The weighted fit's 3x3 solve, per pixel: ``moments (B, 6, P)``, ``rhs (B, C, 3, P)``.

    ``moments`` are ``sum_k pi_k (z_x^2, z_x z_y, z_y^2, z_x, z_y, 1)``; the ridge adds
    ``(ridge + eps) * trace`` to the two slope entries of the diagonal. Returns ``theta (B, C, 3, P)``
    and ``M^-1 e_3 (B, 3, P)``, both by the adjugate (the inverse's last column is free).
    """
    mxx, mxy, myy, mx, my, m1 = moments.unbind(1)
    lam = (mxx + myy + m1).mul_(ridge + torch.finfo(moments.dtype).eps)
    a00, a11 = mxx + lam, myy + lam
    c00 = torch.addcmul(a11 * m1, my, my, value=-1.0)
    c01 = torch.addcmul(mx * my, mxy, m1, value=-1.0)
    c02 = torch.addcmul(mxy * my, mx, a11, value=-1.0)
    c11 = torch.addcmul(a00 * m1, mx, mx, value=-1.0)
    c12 = torch.addcmul(mxy * mx, a00, my, value=-1.0)
    c22 = torch.addcmul(a00 * a11, mxy, mxy, value=-1.0)
    inv_det = torch.addcmul(torch.addcmul(a00 * c00, mxy, c01), mx, c02).reciprocal_()
    i00, i01, i02, i11, i12, i22 = (entry.mul_(inv_det).unsqueeze(1) for entry in (c00, c01, c02, c11, c12, c22))
    b0, b1, b2 = rhs.unbind(2)  # (B, C, P)
    theta = torch.empty_like(rhs)
    for row, (first, second, third) in enumerate(((i00, i01, i02), (i01, i11, i12), (i02, i12, i22))):
        torch.mul(first, b0, out=theta[:, :, row]).addcmul_(second, b1).addcmul_(third, b2)
    return theta, torch.cat([i02, i12, i22], dim=1)


def _entropy_fit_shared(
    y: Tensor, prior: Tensor, f3: Tensor, f6: Tensor, entropy: float, iterations: int, ridge: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Steps 4-5 for the shared spiral: ``iterations`` rounds of fit and reweight, then the final fit.

    ``y (B, C, K, Ho, Wo)``, ``prior (K,)``, features ``f3 (3, K)``, ``f6 (6, K)``. Every sum over
    samples is a matmul with the shared features on the ``(K, Ho*Wo)`` planes; the first fit,
    whose weights are the shared prior, is a constant ``K x K`` residual map. Returns ``theta
    (B, C, 3, Ho, Wo)``, the final weights ``pi (B, 1, K, Ho, Wo)`` (up to a per-pixel factor) and
    ``M^-1 e_3 (B, 1, 3, Ho, Wo)``.
    """
    b, c, k, ho, wo = y.shape
    p = ho * wo
    planes = y.view(b * c, k, p)
    eps, tiny = torch.finfo(y.dtype).eps, torch.finfo(y.dtype).tiny
    normalized = (prior / prior.sum()).unsqueeze(0)  # (1, K)
    # gamma: entropy x the prior-weighted variance of the samples, summed over channels
    mean = torch.matmul(normalized, planes).view(b, c, p)
    second = torch.matmul(normalized, planes * planes).view(b, c, p)
    variance = torch.addcmul(second, mean, mean, value=-1.0).clamp_min_(0.0).sum(1)
    gamma = (variance * entropy).add_(second.sum(1), alpha=eps).add_(tiny)
    neg_inv_gamma = gamma.reciprocal_().neg_().view(b, 1, 1, p)
    log_prior = prior.log().view(k, 1)
    # the first fit has the shared prior weights: residuals = (I - F^T M^-1 F W) y, one K x K map
    moments = f6 @ prior
    mxx, mxy, myy, mx, my, m1 = moments.unbind(0)
    lam = (ridge + eps) * (mxx + myy + m1)
    coefficients = solve_sym3((mxx + lam, mxy, mx, myy + lam, my, m1), f3 * prior)  # (3, K)
    residual_map = torch.eye(k, dtype=y.dtype, device=y.device) - f3.T @ coefficients
    residual = torch.matmul(residual_map, planes).view(b, c, k, p)
    f3t = f3.T.contiguous()
    weights = None
    for step in range(iterations + 1):
        if step > 0:
            logits = _sum_channels_of_squares(residual)  # (B, 1, K, P)
            torch.addcmul(log_prior, logits, neg_inv_gamma, out=logits)  # log w_k - r_k / gamma
            # pi up to a per-pixel factor, which the fit ignores; the largest is w_k exp(0)
            weights = logits.sub_(_max_over_samples(logits)).exp_()
            moments = torch.matmul(f6, weights.view(b, k, p))  # (B, 6, P)
            weighted = y.view(b, c, k, p) * weights
            rhs = torch.matmul(f3, weighted.view(b * c, k, p)).view(b, c, 3, p)
            theta, intercept_row = _solve_normal(moments, rhs, ridge)
            if step < iterations:
                residual = torch.baddbmm(planes, f3t.expand(b * c, k, 3), theta.view(b * c, 3, p), alpha=-1.0)
                residual = residual.view(b, c, k, p)
    return (
        theta.view(b, c, 3, ho, wo),
        weights.view(b, 1, k, ho, wo),
        intercept_row.view(b, 1, 3, ho, wo),
    )


def _estn(
    input: Tensor,
    grid: Tensor,
    *,
    num_samples: int,
    tangent_scale: float,
    min_radius: float,
    kernel_size: int,
    entropy: float | None,
    iterations: int,
    ridge: float,
    sampling: str,
    padding_mode: str,
    align_corners: bool,
    generator: torch.Generator | None,
) -> dict[str, Tensor]:
    """Steps 1-5 and the intercept weights. ``samples`` keeps its graph to ``input``; the rest is detached.

    Layout: the sample index ``k`` sits before ``(Ho, Wo)``, so that sums over samples and the
    contractions with the shared spiral are fast: samples ``(B, C, K, Ho, Wo)``, per-pixel weights
    ``(B, 1, K, Ho, Wo)``, shared ones ``(K,)``.
    """
    b, c, h, w = input.shape
    _, ho, wo, _ = grid.shape
    k = num_samples
    work = torch.promote_types(input.dtype, torch.float32)
    scale_x = normalized_to_pixel_scale(w, align_corners)
    scale_y = normalized_to_pixel_scale(h, align_corners)
    with torch.no_grad():
        g = grid.detach().to(work)
        a00, a01, a10, a11 = _tangent_frame(g[..., 0], g[..., 1], scale_x, scale_y, min_radius, tangent_scale)
        z = _unit_offsets(k, sampling, (b, ho, wo), work, input.device, generator)
        inv_x = 1.0 / scale_x if scale_x > 0 else 0.0
        inv_y = 1.0 / scale_y if scale_y > 0 else 0.0
        along_zx = torch.stack([a00 * inv_x, a10 * inv_y], dim=-1)  # (B, Ho, Wo, 2), normalized units
        along_zy = torch.stack([a01 * inv_x, a11 * inv_y], dim=-1)
        zx, zy = z[..., 0], z[..., 1]
        ones = torch.ones_like(zx)
        if z.ndim == 2:  # the shared spiral: features (F, K), points by one matmul
            f3 = torch.stack([zx, zy, ones])
            f6 = torch.stack([zx * zx, zx * zy, zy * zy, zx, zy, ones])
            basis = torch.stack([along_zx, along_zy, g], dim=1).flatten(2)  # (B, 3, Ho*Wo*2)
            points = (f3.T @ basis).view(b, k, ho, wo, 2)
            prior = prior_weights(z, tangent_scale, kernel_size)  # (K,)
        else:  # per-pixel draws: features (B, 1, F, K, Ho, Wo)
            f3 = torch.stack([zx, zy, ones], dim=1).unsqueeze(1)
            f6 = torch.stack([zx * zx, zx * zy, zy * zy, zx, zy, ones], dim=1).unsqueeze(1)
            points = g.unsqueeze(1) + zx.unsqueeze(-1) * along_zx.unsqueeze(1) + zy.unsqueeze(-1) * along_zy.unsqueeze(1)
            prior = prior_weights(z, tangent_scale, kernel_size).unsqueeze(1)  # (B, 1, K, Ho, Wo)
    samples = grid_sample_points(input, points.to(input.dtype), padding_mode, align_corners)
    with torch.no_grad():
        y = samples.detach().to(work)
        weights = prior
        if entropy is not None and iterations > 0 and z.ndim == 2:
            theta, weights, intercept_row = _entropy_fit_shared(y, prior, f3, f6, entropy, iterations, ridge)
        else:
            if entropy is not None and iterations > 0:
                weights = _entropy_weights(y, prior, f3, f6, entropy, iterations, ridge)
            theta, intercept_row = _plane_fit(y, weights, f3, f6, ridge, intercept_row=True)
        p00, p01, p10, p11 = (p.unsqueeze(1) for p in _pinv2(a00, a01, a10, a11))
        tx, ty = theta[:, :, 0], theta[:, :, 1]
        slope = torch.stack([(p00 * tx + p10 * ty) * scale_x, (p01 * tx + p11 * ty) * scale_y], dim=-1)
    return {
        "unit_offsets": z,
        "frame": (a00, a01, a10, a11),
        "points": points,
        "samples": samples,
        "prior": prior,
        "weights": weights,
        "intercept_row": intercept_row,
        "features": f3,
        "intercept": theta[:, :, 2],
        "slope": slope,
    }


# --- backend="compiled": steps 1-6 per sample, for torch.compile to fuse (interpolators/_compile.py) ---


def _fused_points(
    g: Tensor, scale_x: float, scale_y: float, min_radius: float, tangent_scale: float, z: tuple[tuple[float, float], ...]
) -> tuple[Tensor, ...]:
    """Steps 1-2 for the shared spiral ``z`` (``K`` pairs of floats) around the planar grid ``g (2, B, Ho, Wo)``: the
    planar points ``(2, B, K, Ho, Wo)`` (Inductor vectorizes planar stores, not ``(x, y)`` pairs) and the frame."""
    gx, gy = g[0], g[1]
    a00, a01, a10, a11 = _tangent_frame(gx, gy, scale_x, scale_y, min_radius, tangent_scale)
    inv_x = 1.0 / scale_x if scale_x > 0 else 0.0
    inv_y = 1.0 / scale_y if scale_y > 0 else 0.0
    ux, uy, vx, vy = a00 * inv_x, a10 * inv_y, a01 * inv_x, a11 * inv_y  # along z_x and z_y, normalized units
    x = torch.stack([gx + zx * ux + zy * vx for zx, zy in z], dim=1)
    y = torch.stack([gy + zx * uy + zy * vy for zx, zy in z], dim=1)
    return torch.stack([x, y]), a00, a01, a10, a11


def _inverse_sym3(mxx, mxy, myy, mx, my, m1, ridge: float, eps: float) -> tuple:
    """``M^-1`` of the ridged normal matrix ``[[mxx + l, mxy, mx], [mxy, myy + l, my], [mx, my, m1]]``,
    ``l = (ridge + eps) * trace``, as its six entries; floats or tensors (the algebra of :func:`_solve_normal`)."""
    lam = (mxx + myy + m1) * (ridge + eps)
    a00, a11 = mxx + lam, myy + lam
    c00, c01, c02 = a11 * m1 - my * my, mx * my - mxy * m1, mxy * my - mx * a11
    c11, c12, c22 = a00 * m1 - mx * mx, mxy * mx - a00 * my, a00 * a11 - mxy * mxy
    inv_det = 1.0 / (a00 * c00 + mxy * c01 + mx * c02)
    return tuple(c * inv_det for c in (c00, c01, c02, c11, c12, c22))


def _fused_fit(
    y: Tensor,
    a00: Tensor,
    a01: Tensor,
    a10: Tensor,
    a11: Tensor,
    z: tuple[tuple[float, float], ...],
    prior: tuple[float, ...],
    entropy: float | None,
    iterations: int,
    ridge: float,
    scale_x: float,
    scale_y: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Steps 4-6 for the shared spiral, one loop per pixel: ``(intercept (B, C, Ho, Wo), slope (2, B, C, Ho, Wo),
    beta)``, the slope planar, ``beta`` the intercept weights ``(B, 1, K, Ho, Wo)`` (``(K,)`` when the weights
    are the prior).

    ``y (B, C, K, Ho, Wo)``; the same fit and reweighting as :func:`_entropy_fit_shared` and
    :func:`_plane_fit`, written with one ``(B, Ho, Wo)`` slice per sample and channel.
    """
    eps, tiny = torch.finfo(y.dtype).eps, torch.finfo(y.dtype).tiny
    c, k = y.shape[1], y.shape[2]
    ys = [[y[:, ch, s] for s in range(k)] for ch in range(c)]
    zx, zy = [p[0] for p in z], [p[1] for p in z]

    def fit(weights) -> tuple[list, tuple]:
        """Per channel ``(theta_x, theta_y, theta_1)`` and ``M^-1 e_3``, for float or per-pixel weights."""
        wx = [w * x for w, x in zip(weights, zx)]
        wy = [w * v for w, v in zip(weights, zy)]
        moments = (
            sum(a * x for a, x in zip(wx, zx)), sum(a * v for a, v in zip(wx, zy)), sum(a * v for a, v in zip(wy, zy)),
            sum(wx), sum(wy), sum(weights),
        )  # fmt: skip
        i00, i01, i02, i11, i12, i22 = _inverse_sym3(*moments, ridge, eps)
        thetas = []
        for samples in ys:
            b0 = sum(a * s for a, s in zip(wx, samples))
            b1 = sum(a * s for a, s in zip(wy, samples))
            b2 = sum(w * s for w, s in zip(weights, samples))
            thetas.append((i00 * b0 + i01 * b1 + i02 * b2, i01 * b0 + i11 * b1 + i12 * b2, i02 * b0 + i12 * b1 + i22 * b2))
        return thetas, (i02, i12, i22)

    weights = list(prior)
    thetas, row = fit(weights)
    if entropy is not None and iterations > 0:
        total = sum(prior)
        gamma = tiny
        for samples in ys:  # entropy x the prior-weighted variance, summed over channels
            mean = sum((w / total) * s for w, s in zip(prior, samples))
            second = sum((w / total) * s * s for w, s in zip(prior, samples))
            gamma = gamma + entropy * (second - mean * mean).clamp_min(0.0) + eps * second
        neg_inv_gamma = -1.0 / gamma
        for _ in range(iterations):
            logits = []
            for s in range(k):
                squared = sum((ys[ch][s] - (t[0] * zx[s] + t[1] * zy[s] + t[2])) ** 2 for ch, t in enumerate(thetas))
                logits.append(math.log(prior[s]) + squared * neg_inv_gamma)
            largest = functools.reduce(torch.maximum, logits)
            weights = [torch.exp(logit - largest) for logit in logits]
            thetas, row = fit(weights)
    beta = [w * (row[0] * x + row[1] * v + row[2]) for w, x, v in zip(weights, zx, zy)]
    beta = torch.stack(beta, dim=1).unsqueeze(1) if isinstance(beta[0], Tensor) else y.new_tensor(beta)
    p00, p01, p10, p11 = _pinv2(a00, a01, a10, a11)
    intercept = torch.stack([t[2] for t in thetas], dim=1)
    slope_x = torch.stack([(p00 * tx + p10 * ty) * scale_x for tx, ty, _ in thetas], dim=1)
    slope_y = torch.stack([(p01 * tx + p11 * ty) * scale_y for tx, ty, _ in thetas], dim=1)
    return intercept, torch.stack([slope_x, slope_y]), beta


def _fused_output_grads(
    grad: Tensor, slope: Tensor, beta: Tensor, need_samples: bool, need_grid: bool
) -> tuple[Tensor | None, Tensor | None]:
    """:class:`_Output`'s backward for ``backend="compiled"``: ``grad (B, C, Ho, Wo)`` to the samples
    ``(B, C, K, Ho, Wo)`` through ``beta`` and to the planar grid ``(2, B, Ho, Wo)`` through the planar ``slope``,
    each only where needed (``None`` otherwise)."""
    grad_samples = grad.unsqueeze(-3) * _per_sample(beta).to(grad.dtype) if need_samples else None
    grad_grid = (grad * slope.to(grad.dtype)).sum(2) if need_grid else None
    return grad_samples, grad_grid


@functools.cache
def _spiral_constants(
    num_samples: int, tangent_scale: float, kernel_size: int
) -> tuple[tuple[tuple[float, float], ...], tuple[float, ...]]:
    """The spiral ``z`` and its prior weights as Python floats: constants the compiled functions are built for."""
    unit = spiral_offsets(num_samples, dtype=torch.float64)
    return tuple((x, v) for x, v in unit.tolist()), tuple(prior_weights(unit, tangent_scale, kernel_size).tolist())


def _estn_compiled(
    input: Tensor,
    grid: Tensor,
    *,
    num_samples: int,
    tangent_scale: float,
    min_radius: float,
    kernel_size: int,
    entropy: float | None,
    iterations: int,
    ridge: float,
    padding_mode: str,
    align_corners: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`_estn` for the shared spiral with the math around ``grid_sample`` fused: ``(samples, intercept, slope,
    beta)``, the slope planar ``(2, B, C, Ho, Wo)``."""
    _, _, h, w = input.shape
    work = torch.promote_types(input.dtype, torch.float32)
    scale_x = normalized_to_pixel_scale(w, align_corners)
    scale_y = normalized_to_pixel_scale(h, align_corners)
    z, prior = _spiral_constants(num_samples, tangent_scale, kernel_size)
    with torch.no_grad():
        planar = grid.detach().to(work).permute(3, 0, 1, 2).contiguous()
        points, *frame = run_compiled(_fused_points, planar, scale_x, scale_y, min_radius, tangent_scale, z)
    samples = grid_sample_points(input, points.to(input.dtype).permute(1, 2, 3, 4, 0), padding_mode, align_corners)
    with torch.no_grad():
        intercept, slope, beta = run_compiled(
            _fused_fit, samples.detach().to(work), *frame, z, prior, entropy, iterations, ridge, scale_x, scale_y
        )
    return samples, intercept, slope, beta


# --- backend="native": steps 1-6 and the input gradient in C++ (interpolators/csrc/estn.cpp) ---------------


@functools.cache
def _spiral_tensors(num_samples: int, tangent_scale: float, kernel_size: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """The spiral ``z (K, 2)``, its prior weights ``(K,)`` and their logs, contiguous CPU tensors for the kernels."""
    z, prior = _spiral_constants(num_samples, tangent_scale, kernel_size)
    prior64 = torch.tensor(prior, dtype=torch.float64, device="cpu")
    return torch.tensor(z, dtype=dtype, device="cpu"), prior64.to(dtype), prior64.log().to(dtype)


def _native_estn(
    input: Tensor,
    grid: Tensor,
    *,
    num_samples: int,
    tangent_scale: float,
    min_radius: float,
    kernel_size: int,
    entropy: float | None,
    iterations: int,
    ridge: float,
    value: str,
    padding_mode: str,
    align_corners: bool,
) -> Tensor:
    """:func:`estn_sample` with ``backend="native"`` (spiral sampling): ``(B, C, Ho, Wo)``."""
    _, _, h, w = input.shape
    geometry = (
        normalized_to_pixel_scale(w, align_corners), normalized_to_pixel_scale(h, align_corners), min_radius,
        tangent_scale,
    )  # fmt: skip
    spiral = _spiral_tensors(num_samples, tangent_scale, kernel_size, input.dtype)
    fit = (entropy, iterations, ridge, value == "center")
    recording = torch.is_grad_enabled()  # forward runs with grad mode off: under no_grad, no beta is made
    padding = PADDING_CODES[padding_mode]
    return _NativeOutput.apply(input, grid, spiral, geometry, fit, padding, align_corners, recording)


class _NativeOutput(torch.autograd.Function):
    """ESTN's output and both gradients from the native kernels.

    Saved for backward: the grid (the kernel recomputes the sample points from it), ``beta (B, K, Ho, Wo)``
    and the slopes ``(2, B, C, Ho, Wo)``, each only if its gradient is needed and autograd is recording; not the input (the
    scatter needs its shape only), nothing ``K x 2`` per pixel. With ``value="center"`` the input
    gradient is bilinear's at the grid, and ``beta`` is not kept.
    """

    @staticmethod
    def forward(ctx, input, grid, spiral, geometry, fit, padding, align_corners, recording):
        entropy, iterations, ridge, center = fit
        need_input, need_grid = (need and recording for need in ctx.needs_input_grad[:2])
        input, grid = input.contiguous(), grid.detach().contiguous()
        value, slopes, beta = _native.estn_fit(
            input, grid, spiral, geometry, entropy, iterations, ridge, padding, align_corners, center,
            need_beta=need_input and not center,
        )  # fmt: skip
        ctx.save_for_backward(grid if need_input else None, beta, slopes if need_grid else None)
        ctx.input_shape, ctx.spiral, ctx.geometry, ctx.codes = input.shape, spiral, geometry, (padding, align_corners)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        grid, beta, slopes = ctx.saved_tensors
        grad_input = grad_grid = None
        if ctx.needs_input_grad[0] and beta is None:  # value="center": bilinear's at the grid
            grad_input = _native.bilinear_input_grad(grad, ctx.input_shape, grid, *ctx.codes)
        elif ctx.needs_input_grad[0]:
            grad_input = _native.estn_input_grad(
                grad, ctx.input_shape, grid, ctx.spiral[0], beta, ctx.geometry, *ctx.codes
            )
        if ctx.needs_input_grad[1]:
            grad_grid = _native.slope_grid_grad(grad, slopes[0], slopes[1])
        return grad_input, grad_grid, None, None, None, None, None, None


@dataclasses.dataclass(frozen=True)
class ESTNFit:
    """What ESTN computed for one call, detached. ``K = num_samples``; the sample index precedes ``(Ho, Wo)``.

    Attributes:
        unit_offsets: ``z``: ``(K, 2)`` (spiral, shared) or ``(B, K, Ho, Wo, 2)`` (random).
        offsets: ``p_ik - p_i`` in input pixels, ``(B, K, Ho, Wo, 2)``.
        points: the sample points in normalized coordinates, ``(B, K, Ho, Wo, 2)``.
        samples: ``I(p_ik)`` (bilinear), ``(B, C, K, Ho, Wo)``.
        prior: Eq. 5's weights ``w``, ``(B, 1, K, Ho, Wo)``.
        weights: the final sample weights ``pi``, normalized to sum 1 over ``K``, ``(B, 1, K, Ho, Wo)``.
        intercept_weights: ``beta (B, 1, K, Ho, Wo)``: the intercept is ``sum_k beta_k I(p_ik)``.
        intercept: the fitted value at ``p_i``, ``(B, C, Ho, Wo)``.
        slope: ``(dI/dgx, dI/dgy)`` in normalized units, ``(B, C, Ho, Wo, 2)``.
    """

    unit_offsets: Tensor
    offsets: Tensor
    points: Tensor
    samples: Tensor
    prior: Tensor
    weights: Tensor
    intercept_weights: Tensor
    intercept: Tensor
    slope: Tensor


def estn_fit(
    input: Tensor,
    grid: Tensor,
    *,
    num_samples: int = 9,
    tangent_scale: float = 0.5,
    min_radius: float = 0.5,
    kernel_size: int = 3,
    entropy: float | None = 1.0,
    iterations: int = 2,
    ridge: float = 1e-6,
    sampling: Sampling = "spiral",
    padding_mode: PaddingMode = "zeros",
    align_corners: bool = False,
    generator: torch.Generator | None = None,
) -> ESTNFit:
    """Everything ESTN computes for ``input (B, C, H, W)`` at ``grid (B, Ho, Wo, 2)``, detached.

    Same arguments as :func:`estn_sample` (less ``value``). For inspection and tests: the
    sample points and values, the prior, entropy and intercept weights, the fitted intercept
    and slopes.

    Examples:
        >>> fit = estn_fit(torch.rand(1, 3, 16, 16), torch.rand(1, 4, 4, 2) - 0.5)
        >>> fit.samples.shape, fit.intercept_weights.sum(2).allclose(torch.ones(1, 1, 4, 4))
        (torch.Size([1, 3, 9, 4, 4]), True)
    """
    check_sampling_inputs(input, grid)
    check_estn_hparams(
        num_samples=num_samples, tangent_scale=tangent_scale, min_radius=min_radius, kernel_size=kernel_size,
        entropy=entropy, iterations=iterations, ridge=ridge, sampling=sampling, value="fit",
        padding_mode=padding_mode, align_corners=align_corners,
    )  # fmt: skip
    with torch.no_grad():
        parts = _estn(
            input, grid, num_samples=num_samples, tangent_scale=tangent_scale, min_radius=min_radius,
            kernel_size=kernel_size, entropy=entropy, iterations=iterations, ridge=ridge, sampling=sampling,
            padding_mode=padding_mode, align_corners=align_corners, generator=generator,
        )  # fmt: skip
        a00, a01, a10, a11 = (a.unsqueeze(1) for a in parts.pop("frame"))
        zx, zy = _per_sample(parts["unit_offsets"][..., 0]), _per_sample(parts["unit_offsets"][..., 1])
        offsets = torch.stack([a00 * zx + a01 * zy, a10 * zx + a11 * zy], dim=-1)
        b, c, k, ho, wo = parts["samples"].shape
        parts["intercept_weights"] = parts["weights"] * _expand(parts.pop("intercept_row"), parts.pop("features"))
        for key in ("prior", "weights", "intercept_weights"):
            parts[key] = _per_sample(parts[key]).expand(b, 1, k, ho, wo)
        parts["weights"] = parts["weights"] / parts["weights"].sum(2, keepdim=True)
    return ESTNFit(offsets=offsets, **{key: value.detach() for key, value in parts.items()})


def estn_sample(
    input: Tensor,
    grid: Tensor,
    *,
    num_samples: int = 9,
    tangent_scale: float = 0.5,
    min_radius: float = 0.5,
    kernel_size: int = 3,
    entropy: float | None = 1.0,
    iterations: int = 2,
    ridge: float = 1e-6,
    sampling: Sampling = "spiral",
    value: Value = "fit",
    padding_mode: PaddingMode = "zeros",
    align_corners: bool = False,
    backend: ESTNBackend = "eager",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample ``input (B, C, H, W)`` at ``grid (B, Ho, Wo, 2)`` the ESTN way; returns ``(B, C, Ho, Wo)``.

    Per output pixel ``i``, with ``p_i`` the grid point in input pixels (``grid_sample``'s
    convention for ``align_corners``):

    - ``S_i = J_i J_i^T + r^2 I`` from finite differences ``J_i`` of the grid (input pixels
      per output pixel), ``r = min_radius``; samples ``p_ik = p_i + t sqrt(S_i) z_k``,
      ``t = tangent_scale``, ``k = 0..K-1``, ``z_0 = 0`` (Eq. 2-4).
    - sample weights ``pi_k ∝ w_k exp(-r_k / gamma)`` (Eq. 5, 9-10), ``w`` from :func:`prior_weights`,
      ``r_k`` the squared residual of sample ``k`` under the current fit (summed over channels),
      ``gamma = entropy * Var_w[I(p_ik)] + eps``; ``iterations`` rounds of fit and reweight
      starting from ``pi = w``. ``entropy=None``: ``pi = w`` (the "w/o ER" ablation).
    - the fit (Eq. 9): ``min sum_k pi_k |I(p_ik) - (a . d_k + c)|^2 + lambda |a|^2`` per channel,
      ``d_k = p_ik - p_i``, ``lambda = ridge * trace`` of the 3x3 normal matrix; the ridge
      applies with and without the entropy regularizer.
    - output ``c = sum_k beta_k I(p_ik)`` (``value="fit"``; ``beta`` detached, ``sum beta = 1``)
      or bilinear's ``I(p_i)`` (``value="center"``). Gradient to ``input``: through the samples
      with ``beta`` fixed (bilinear's at ``p_i`` for ``"center"``). Gradient to ``grid``: the
      fitted slope ``a``, in normalized units, summed over channels by the chain rule.

    All ``K`` samples come from one ``grid_sample`` call on a ``(B, Ho, Wo*K, 2)`` grid; only
    ``K x output``-sized tensors are kept for backward.

    Args:
        input: ``(B, C, H, W)`` floating tensor.
        grid: ``(B, Ho, Wo, 2)`` normalized ``(x, y)``, same dtype and device.
        num_samples: ``K >= 4``, the centre included.
        tangent_scale: ``t > 0``, the samples' spread in units of the footprint.
        min_radius: ``r >= 0``, the footprint's floor in input pixels (keeps upsampling fits posed).
        kernel_size: ``N``, odd ``>= 3``: Eq. 5's neighbourhood size.
        entropy: the regularizer's strength relative to the samples' variance, or ``None`` for none.
        iterations: rounds of fit and reweight (ignored with ``entropy=None``).
        ridge: Tikhonov weight on the slopes, relative to the normal matrix's trace.
        sampling: ``"spiral"`` (deterministic) or ``"random"`` (fresh ``N(0, I)`` per pixel).
        value: ``"fit"`` (the intercept) or ``"center"`` (bilinear's value at ``p_i``).
        padding_mode, align_corners: as in ``grid_sample``, for every sample.
        backend: ``"eager"``, or ``"compiled"`` to fuse the math around ``grid_sample`` with
            ``torch.compile`` (spiral sampling only; same numbers up to rounding, see
            ``interpolators/_compile.py``), or ``"native"``: hand-written C++ kernels (CPU, float32 and
            float64, spiral sampling; built with the system's C++ compiler on first use) that run steps
            1-6 in one pass and the input gradient as one scatter, keeping only the grid, ``beta`` and
            the slopes for backward; the same numbers to rounding, fastest on CPU. Under a caller's
            ``torch.compile`` or a dispatch mode (the cost suite's FLOP counter) it runs the compiled
            backend's plain torch code.
        generator: seeds ``sampling="random"`` (else torch's global generator).

    Examples:
        >>> image = torch.arange(64.0).view(1, 1, 8, 8)  # I = 8 py + px: linear
        >>> grid = torch.tensor([[[[0.0, 0.0]]]], requires_grad=True)  # pixel (3.5, 3.5)
        >>> out = estn_sample(image, grid)
        >>> round(out.item(), 4)
        31.5
        >>> out.backward(); [round(v, 3) for v in grid.grad.flatten().tolist()]  # (1 * 8/2, 8 * 8/2)
        [4.0, 32.0]
    """
    check_sampling_inputs(input, grid)
    check_estn_hparams(
        num_samples=num_samples, tangent_scale=tangent_scale, min_radius=min_radius, kernel_size=kernel_size,
        entropy=entropy, iterations=iterations, ridge=ridge, sampling=sampling, value=value,
        padding_mode=padding_mode, align_corners=align_corners, backend=backend,
    )  # fmt: skip
    if backend == "native":
        _native.check_inputs(input)
        if not tracing():
            return _native_estn(
                input, grid, num_samples=num_samples, tangent_scale=tangent_scale, min_radius=min_radius,
                kernel_size=kernel_size, entropy=entropy, iterations=iterations, ridge=ridge, value=value,
                padding_mode=padding_mode, align_corners=align_corners,
            )  # fmt: skip
        backend = "compiled"  # traced: the same math as plain torch code
    if backend == "compiled":
        samples, intercept, slope, beta = _estn_compiled(
            input, grid, num_samples=num_samples, tangent_scale=tangent_scale, min_radius=min_radius,
            kernel_size=kernel_size, entropy=entropy, iterations=iterations, ridge=ridge,
            padding_mode=padding_mode, align_corners=align_corners,
        )  # fmt: skip
        value_weights = (beta,)
    else:
        parts = _estn(
            input, grid, num_samples=num_samples, tangent_scale=tangent_scale, min_radius=min_radius,
            kernel_size=kernel_size, entropy=entropy, iterations=iterations, ridge=ridge, sampling=sampling,
            padding_mode=padding_mode, align_corners=align_corners, generator=generator,
        )  # fmt: skip
        samples, intercept, slope = parts["samples"], parts["intercept"], parts["slope"]
        value_weights = (parts["weights"], parts["intercept_row"], parts["features"])
    if value == "center":  # bilinear's value: all weight on the sampling point (compiled: a one-hot beta)
        intercept = samples.detach()[:, :, 0]
        value_weights = ()
        if backend == "compiled":
            value_weights = (F.one_hot(torch.tensor(0, device=input.device), num_samples).to(slope.dtype),)
    return _Output.apply(samples, grid, intercept.to(input.dtype), slope, *value_weights)


class _Output(torch.autograd.Function):
    """ESTN's output with its two gradients: the value is precomputed, the backward is explicit.

    ``forward(samples (B, C, K, Ho, Wo), grid, value (B, C, Ho, Wo), slope (B, C, Ho, Wo, 2),
    [weights, intercept_row, features])``, or ``slope (2, B, C, Ho, Wo)`` (planar) and ``[beta]`` from
    ``backend="compiled"``, whose backward is fused too. Gradient to ``samples``: ``grad * beta_k`` with
    ``beta = weights * (features^T intercept_row)`` (formed only here, in backward), or ``grad`` at
    ``k = 0`` alone without the three (``value="center"``). Gradient to ``grid``:
    ``sum_c grad * slope``. Only ``K x output``-sized tensors are saved.
    """

    @staticmethod
    def forward(ctx, samples: Tensor, grid: Tensor, value: Tensor, slope: Tensor, *intercept: Tensor) -> Tensor:
        ctx.samples_shape = samples.shape
        ctx.save_for_backward(slope, *intercept)
        return value.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        slope, *intercept = ctx.saved_tensors
        if len(intercept) == 1:  # backend="compiled": beta itself and the planar slope
            need_samples, need_grid = ctx.needs_input_grad[:2]
            grad_samples, grad_grid = run_compiled(_fused_output_grads, grad, slope, intercept[0], need_samples, need_grid)
            return grad_samples, None if grad_grid is None else grad_grid.permute(1, 2, 3, 0), None, None, None
        grad_samples = grad_grid = None
        if ctx.needs_input_grad[0]:
            if intercept:
                weights, row, features = intercept
                beta = _expand(row, features).mul_(_per_sample(weights)) if row.ndim > 1 else _per_sample(weights * (row @ features))
                grad_samples = (grad.unsqueeze(-3) * beta.to(grad.dtype))
            else:
                grad_samples = grad.new_zeros(ctx.samples_shape)
                grad_samples[:, :, 0] = grad
        if ctx.needs_input_grad[1]:
            grad_grid = (grad.unsqueeze(-1) * slope.to(grad.dtype)).sum(1)
        return grad_samples, grad_grid, None, None, *(None for _ in intercept)


@register("estn", tags=("multisample",))
class ESTN(Interpolator):
    """ESTN as implemented here: tangent-space samples, entropy-regularized plane fit (see :func:`estn_sample`).

    ``stochastic`` is ``False`` on the class because the default ``sampling="spiral"`` is
    deterministic; an instance built with ``sampling="random"`` reports ``stochastic = True``.

    Args:
        num_samples, tangent_scale, min_radius, kernel_size, entropy, iterations, ridge,
        sampling, value, backend: see :func:`estn_sample`.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: ``grid_sample``'s coordinate convention.

    Shape:
        input ``(B, C, H, W)``, grid ``(B, Ho, Wo, 2)`` -> ``(B, C, Ho, Wo)``.

    Examples:
        >>> sampler = ESTN(num_samples=12)
        >>> sampler(torch.rand(2, 3, 32, 32), torch.rand(2, 8, 8, 2) * 2 - 1).shape
        torch.Size([2, 3, 8, 8])
    """

    stochastic: ClassVar[bool] = False
    reference = (
        "Shamsolmoali, Zareapoor, Entropy Transformer Networks: A Learning Approach via Tangent Bundle "
        "Data Manifold, Sec. 3.1 (Eq. 2-10); this project's reading, docs/methods/estn.md"
    )
    summary = "ESTN: tangent-frame multi-sampling, entropy-regularized weighted plane fit (9 samples)"

    def __init__(
        self,
        num_samples: int = 9,
        tangent_scale: float = 0.5,
        min_radius: float = 0.5,
        kernel_size: int = 3,
        entropy: float | None = 1.0,
        iterations: int = 2,
        ridge: float = 1e-6,
        sampling: Sampling = "spiral",
        value: Value = "fit",
        padding_mode: PaddingMode = "zeros",
        align_corners: bool = False,
        backend: ESTNBackend = "eager",
    ) -> None:
        super().__init__(padding_mode=padding_mode, align_corners=align_corners)
        check_estn_hparams(
            num_samples=num_samples, tangent_scale=tangent_scale, min_radius=min_radius, kernel_size=kernel_size,
            entropy=entropy, iterations=iterations, ridge=ridge, sampling=sampling, value=value,
            padding_mode=padding_mode, align_corners=align_corners, backend=backend,
        )  # fmt: skip
        self.num_samples = num_samples
        self.tangent_scale = tangent_scale
        self.min_radius = min_radius
        self.kernel_size = kernel_size
        self.entropy = entropy
        self.iterations = iterations
        self.ridge = ridge
        self.sampling = sampling
        self.value = value
        self.backend = backend
        self.stochastic = sampling == "random"

    def sample(self, input: Tensor, grid: Tensor, generator: torch.Generator | None) -> Tensor:
        return estn_sample(input, grid, generator=generator, **self.hparams())


# --- reference implementation (tests only) ------------------------------------------------


def _estn_reference(
    input: Tensor,
    grid: Tensor,
    *,
    num_samples: int = 9,
    tangent_scale: float = 0.5,
    min_radius: float = 0.5,
    kernel_size: int = 3,
    entropy: float | None = 1.0,
    iterations: int = 2,
    ridge: float = 1e-6,
    sampling: str = "spiral",
    value: str = "fit",
    padding_mode: str = "zeros",
    align_corners: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A slow, literal transcription of :func:`estn_sample` that the tests hold the fast path to.

    Takes ``sqrt(S)`` by an eigendecomposition, samples with one ``grid_sample`` call per ``k``,
    materializes the design matrices ``X = [z_x, z_y, 1] (B, Ho, Wo, K, 3)``, solves every system
    with :func:`torch.linalg.solve` and maps the slopes to pixels with :func:`torch.linalg.pinv`.
    """
    b, c, h, w = input.shape
    _, ho, wo, _ = grid.shape
    k = num_samples
    scale = torch.tensor(
        [normalized_to_pixel_scale(w, align_corners), normalized_to_pixel_scale(h, align_corners)],
        dtype=input.dtype,
    )
    g = grid.detach()
    p = g * scale  # pixel coordinates up to a constant shift

    def diff(t: Tensor, dim: int) -> Tensor:
        n = t.shape[dim]
        if n < 2:
            return torch.zeros_like(t)
        out = torch.empty_like(t)
        out.narrow(dim, 1, n - 2).copy_((t.narrow(dim, 2, n - 2) - t.narrow(dim, 0, n - 2)) / 2)
        out.narrow(dim, 0, 1).copy_(t.narrow(dim, 1, 1) - t.narrow(dim, 0, 1))
        out.narrow(dim, n - 1, 1).copy_(t.narrow(dim, n - 1, 1) - t.narrow(dim, n - 2, 1))
        return out

    jac = torch.stack([diff(p, 2), diff(p, 1)], dim=-1)  # (B, Ho, Wo, 2 [px, py], 2 [d/dox, d/doy])
    cov = jac @ jac.transpose(-1, -2) + min_radius**2 * torch.eye(2, dtype=input.dtype)
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs @ torch.diag_embed(evals.clamp_min(0).sqrt()) @ evecs.transpose(-1, -2)
    frame = tangent_scale * (scale > 0).to(input.dtype).unsqueeze(-1) * root  # A, (B, Ho, Wo, 2, 2)
    z = _unit_offsets(k, sampling, (b, ho, wo), input.dtype, input.device, generator)
    z = z.view(k, 1, 1, 2) if z.ndim == 2 else z
    z = z.expand(b, k, ho, wo, 2).permute(0, 2, 3, 1, 4)  # (B, Ho, Wo, K, 2)
    offsets = (frame.unsqueeze(-3) @ z.unsqueeze(-1)).squeeze(-1)  # input pixels
    inv_scale = torch.where(scale > 0, 1.0 / scale.clamp_min(1e-300), torch.zeros_like(scale))
    points = g.unsqueeze(-2) + offsets * inv_scale
    samples = torch.stack(
        [
            F.grid_sample(input, points[..., j, :], padding_mode=padding_mode, align_corners=align_corners)
            for j in range(k)
        ],
        dim=-1,
    )  # (B, C, Ho, Wo, K)
    y = samples.detach().permute(0, 2, 3, 4, 1)  # (B, Ho, Wo, K, C)
    design = torch.cat([z, torch.ones_like(z[..., :1])], dim=-1)  # (B, Ho, Wo, K, 3)
    prior = prior_weights(z, tangent_scale, kernel_size)  # (B, Ho, Wo, K)
    slope_mask = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=input.dtype))
    eps = torch.finfo(input.dtype).eps

    def normal_matrix(weights: Tensor) -> Tensor:
        m = design.transpose(-1, -2) @ (weights.unsqueeze(-1) * design)
        trace = m.diagonal(dim1=-2, dim2=-1).sum(-1)
        return m + (ridge + eps) * trace[..., None, None] * slope_mask

    def fit(weights: Tensor) -> Tensor:  # (B, Ho, Wo, 3, C)
        return torch.linalg.solve(normal_matrix(weights), design.transpose(-1, -2) @ (weights.unsqueeze(-1) * y))

    weights = prior / prior.sum(-1, keepdim=True)
    if entropy is not None:
        mean = (weights.unsqueeze(-1) * y).sum(-2)
        second = (weights.unsqueeze(-1) * y * y).sum(-2)
        gamma = entropy * (second - mean**2).clamp_min(0).sum(-1) + eps * second.sum(-1) + torch.finfo(y.dtype).tiny
        for _ in range(iterations):
            residual = (y - design @ fit(weights)).square().sum(-1)  # (B, Ho, Wo, K)
            logits = prior.log() - residual / gamma[..., None]
            unnormalized = torch.exp(logits - logits.max(-1, keepdim=True).values)
            weights = unnormalized / unnormalized.sum(-1, keepdim=True)
    coefficients = torch.linalg.solve(normal_matrix(weights), design.transpose(-1, -2) * weights.unsqueeze(-2))
    theta = coefficients @ y  # (B, Ho, Wo, 3, C): footprint-frame slopes, intercept
    if value == "fit":
        out = (samples * coefficients[..., 2, :].unsqueeze(1)).sum(-1)
    else:
        out = samples[..., 0]
    slope = torch.linalg.pinv(frame).transpose(-1, -2) @ theta[..., :2, :] * scale.view(2, 1)  # normalized units
    shift = grid - grid.detach()
    return out + (slope * shift.unsqueeze(-1)).sum(-2).permute(0, 3, 1, 2)
