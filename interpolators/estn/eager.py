"""ESTN in plain torch code: steps 1-6 of :func:`interpolators.estn.estn_sample`, with the spec's gradients.

The operator (:mod:`interpolators.estn.operator`, ``csrc/estn.cpp``, :mod:`interpolators.estn.triton`) computes the
same numbers fused in one pass for the shared spiral; this path also runs ``sampling="random"`` and wherever the
operator does not (half precision, no C++ compiler), and is what the tests hold the operator to.

Layout: the sample index ``k`` sits before ``(Ho, Wo)``: samples ``(B, C, K, Ho, Wo)``, weights and features
``(B, 1, K, Ho, Wo)`` per pixel or ``(K, 1, 1)`` shared by every pixel (the spiral); one code path serves both by
broadcasting.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from interpolators._linalg import apply_sym3, inverse_sym3
from interpolators.base import grid_sample_points, normalized_to_pixel_scale
from interpolators.estn.config import ESTNConfig, prior_weights, spiral_offsets


def _finite_difference(values: Tensor, dim: int) -> Tensor:
    """Central differences inside, one-sided at the edges, zero along an axis of length 1."""
    if values.shape[dim] < 2:
        return torch.zeros_like(values)
    return torch.gradient(values, dim=dim)[0]


def tangent_frame(
    gx: Tensor, gy: Tensor, scale_x: float, scale_y: float, min_radius: float, tangent_scale: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Step 1: the map from unit offsets to input pixels, ``A = t sqrt(J J^T + r^2 I)``, as ``(a00, a01, a10, a11)``.

    ``gx, gy (B, Ho, Wo)``: the grid's normalized coordinates (detached); each entry comes back
    as ``(B, Ho, Wo)``. ``J`` is the Jacobian of the sampling point (input pixels) w.r.t. the output
    pixel by finite differences. The square root of the SPD 2x2 ``S`` is closed-form:
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


def pinv2(a00: Tensor, a01: Tensor, a10: Tensor, a11: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
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


def weighted_fit(
    y: Tensor, weights: Tensor, zx: Tensor, zy: Tensor, ridge: float
) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
    """Step 5: weighted least squares of ``y (B, C, K, Ho, Wo)`` on ``[z_x, z_y, 1]`` with a ridge on the slopes.

    Minimizes ``sum_k pi_k |y_k - theta . [z_k, 1]|^2 + lambda |theta_xy|^2``, ``lambda = (ridge + eps) *
    trace`` of the 3x3 normal matrix ``M``, for all channels at once (``weights`` and ``zx``, ``zy``
    broadcast against ``(B, 1, K, Ho, Wo)``). Returns ``theta``: the footprint-frame slopes and the intercept, each
    ``(B, C, Ho, Wo)``, and ``M^-1 e_3`` (the row that turns ``sum_k pi_k [z_k, 1] y_k`` into the intercept).
    """
    wx, wy = weights * zx, weights * zy
    mxx, mxy, myy, mx, my, m1 = (t.sum(-3) for t in (wx * zx, wx * zy, wy * zy, wx, wy, weights))
    lam = (ridge + torch.finfo(y.dtype).eps) * (mxx + myy + m1)
    inverse = inverse_sym3(mxx + lam, mxy, mx, myy + lam, my, m1)
    theta = apply_sym3(inverse, (y * wx).sum(-3), (y * wy).sum(-3), (y * weights).sum(-3))
    return theta, (inverse[2], inverse[4], inverse[5])


def entropy_weights(
    y: Tensor, prior: Tensor, zx: Tensor, zy: Tensor, entropy: float, iterations: int, ridge: float
) -> Tensor:
    """Step 4: ``iterations`` rounds of fit and reweight, ``pi_k ∝ w_k exp(-r_k / gamma)``, up to a per-pixel factor.

    ``r_k`` is sample ``k``'s squared residual under the current fit, summed over channels; ``gamma`` is
    ``entropy`` times the prior-weighted variance of the samples, summed over channels (scale-free).
    """
    eps, tiny = torch.finfo(y.dtype).eps, torch.finfo(y.dtype).tiny
    normalized = prior / prior.sum(-3, keepdim=True)
    mean, second = (y * normalized).sum(-3), (y * y * normalized).sum(-3)  # (B, C, Ho, Wo)
    variance = (second - mean * mean).clamp_min(0.0).sum(1, keepdim=True)
    gamma = (entropy * variance + eps * second.sum(1, keepdim=True) + tiny).unsqueeze(-3)  # (B, 1, 1, Ho, Wo)
    log_prior, weights = prior.log(), prior
    for _ in range(iterations):
        (t0, t1, t2), _ = weighted_fit(y, weights, zx, zy, ridge)
        residual = y - (t0.unsqueeze(-3) * zx + t1.unsqueeze(-3) * zy + t2.unsqueeze(-3))
        logits = log_prior - residual.square().sum(1, keepdim=True) / gamma
        weights = (logits - logits.amax(-3, keepdim=True)).exp()  # the largest is w_k exp(0)
    return weights


@dataclasses.dataclass(frozen=True)
class ESTNParts:
    """Every intermediate of one evaluation of the eager path, for inspection and the tests; ``K`` samples.

    ``prior``, ``weights`` and ``beta`` broadcast against the samples: ``(K, 1, 1)`` when shared by every pixel
    (the spiral, and without reweighting), else ``(B, 1, K, Ho, Wo)``; ``weights`` are normalized to sum to 1.
    """

    unit_offsets: Tensor  #: z, ``(K, 1, 1, 2)`` (the spiral) or ``(B, K, Ho, Wo, 2)`` (random draws)
    frame: tuple[Tensor, Tensor, Tensor, Tensor]  #: ``A = t sqrt(S)`` as ``(a00, a01, a10, a11)``, each ``(B, Ho, Wo)``
    offsets: Tensor  #: ``A z_k`` in input pixels, ``(B, K, Ho, Wo, 2)``
    points: Tensor  #: the samples' points in normalized units, ``(B, K, Ho, Wo, 2)``
    samples: Tensor  #: ``(B, C, K, Ho, Wo)``, with their graph to the input
    prior: Tensor  #: Eq. 5's ``w``
    weights: Tensor  #: the final ``pi``
    beta: Tensor | None  #: the intercept weights (``None`` with ``value="center"``)
    value: Tensor  #: ``(B, C, Ho, Wo)``, detached
    slopes: Tensor  #: the fitted slopes per normalized unit, ``(2, B, C, Ho, Wo)``


def estn_parts(input: Tensor, grid: Tensor, config: ESTNConfig, generator: torch.Generator | None) -> ESTNParts:
    """Steps 1-6 of :func:`interpolators.estn.estn_sample` in plain torch code, every intermediate kept."""
    (b, _, h, w), (_, ho, wo, _) = input.shape, grid.shape
    k = config.num_samples
    work = torch.promote_types(input.dtype, torch.float32)
    scale_x = normalized_to_pixel_scale(w, config.align_corners)
    scale_y = normalized_to_pixel_scale(h, config.align_corners)
    with torch.no_grad():
        g = grid.detach().to(work)
        frame = tangent_frame(g[..., 0], g[..., 1], scale_x, scale_y, config.min_radius, config.tangent_scale)
        if config.sampling == "spiral":  # shared by every pixel: (K, 1, 1)
            z = spiral_offsets(k, dtype=work, device=input.device).view(k, 1, 1, 2)
        else:  # fresh N(0, I) per pixel after the centre: (B, K, Ho, Wo)
            draws = torch.randn(b, k - 1, ho, wo, 2, generator=generator, dtype=work, device=input.device)
            z = torch.cat([draws.new_zeros(b, 1, ho, wo, 2), draws], dim=1)
        zx, zy = z[..., 0], z[..., 1]
        a00, a01, a10, a11 = (a.unsqueeze(1) for a in frame)  # (B, 1, Ho, Wo)
        offsets = torch.stack([zx * a00 + zy * a01, zx * a10 + zy * a11], dim=-1)  # step 2, input pixels
        inv = torch.tensor([1.0 / scale_x if scale_x > 0 else 0.0, 1.0 / scale_y if scale_y > 0 else 0.0], dtype=work)
        points = g.unsqueeze(1) + offsets * inv.to(input.device)
        prior = prior_weights(z, config.tangent_scale, config.kernel_size)  # step 3
        if config.sampling != "spiral":  # features against the samples (B, C, K, Ho, Wo): (B, 1, K, Ho, Wo)
            zx, zy, prior = zx.unsqueeze(1), zy.unsqueeze(1), prior.unsqueeze(1)
    samples = grid_sample_points(input, points.to(input.dtype), config.padding_mode, config.align_corners)
    with torch.no_grad():
        y = samples.detach().to(work)
        weights = prior
        if config.entropy is not None and config.iterations > 0:  # step 4
            weights = entropy_weights(y, prior, zx, zy, config.entropy, config.iterations, config.ridge)
        (tx, ty, intercept), row = weighted_fit(y, weights, zx, zy, config.ridge)  # step 5
        p00, p01, p10, p11 = (p.unsqueeze(1) for p in pinv2(*frame))
        slopes = torch.stack([(p00 * tx + p10 * ty) * scale_x, (p01 * tx + p11 * ty) * scale_y])  # per normalized unit
        beta = None
        if config.value == "center":  # bilinear's value: all weight on the sampling point
            value = y[:, :, 0]
        else:  # step 6: the intercept, sum_k beta_k y_k with beta_k = pi_k [z_k, 1] . M^-1 e_3
            value = intercept
            beta = weights * (row[0].unsqueeze(-3) * zx + row[1].unsqueeze(-3) * zy + row[2].unsqueeze(-3))
    dtype = input.dtype
    return ESTNParts(
        unit_offsets=z, frame=frame, offsets=offsets, points=points, samples=samples, prior=prior,
        weights=weights / weights.sum(-3, keepdim=True), beta=None if beta is None else beta.to(dtype),
        value=value.to(dtype), slopes=slopes.to(dtype),
    )  # fmt: skip


def estn_eager(input: Tensor, grid: Tensor, config: ESTNConfig, generator: torch.Generator | None) -> Tensor:
    """ESTN's value ``(B, C, Ho, Wo)`` in plain torch code, with the spec's gradients (see :func:`estn_parts`)."""
    parts = estn_parts(input, grid, config, generator)
    return _Output.apply(parts.samples, grid, parts.value, parts.slopes, parts.beta)


class _Output(torch.autograd.Function):
    """ESTN's output with its two gradients: the value is precomputed, the backward is the spec's.

    ``forward(samples (B, C, K, Ho, Wo), grid, value (B, C, Ho, Wo), slopes (2, B, C, Ho, Wo), beta)``. Gradient to
    ``samples``: ``grad * beta_k`` (``beta`` detached, ``(B, 1, K, Ho, Wo)`` or ``(K, 1, 1)``), or ``grad`` at
    ``k = 0`` alone when ``beta`` is ``None`` (``value="center"``). Gradient to ``grid``: ``sum_c grad * slope``.
    """

    @staticmethod
    def forward(ctx, samples, grid, value, slopes, beta):
        ctx.samples_shape = samples.shape
        ctx.save_for_backward(slopes, beta)
        return value.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        slopes, beta = ctx.saved_tensors
        grad_samples = grad_grid = None
        if ctx.needs_input_grad[0] and beta is None:
            grad_samples = grad.new_zeros(ctx.samples_shape)
            grad_samples[:, :, 0] = grad
        elif ctx.needs_input_grad[0]:
            grad_samples = grad.unsqueeze(2) * beta.to(grad.dtype)
        if ctx.needs_input_grad[1]:
            grad_grid = torch.stack([(grad * slopes[0]).sum(1), (grad * slopes[1]).sum(1)], dim=-1)
        return grad_samples, grad_grid, None, None, None
