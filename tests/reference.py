"""Slow, literal implementations of L-STN and ESTN that the tests hold both backends to.

They share no code with ``interpolators/lstn`` and ``interpolators/estn`` beyond the spiral and Eq. 5's prior
weights: K separate ``grid_sample`` calls, ``torch.linalg.lstsq`` / ``torch.linalg.solve`` for the fits, an
eigendecomposition for ESTN's frame and ``torch.linalg.pinv`` for its slopes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from interpolators.base import normalized_to_pixel_scale
from interpolators.estn import prior_weights, spiral_offsets


def lstn_reference(
    input: Tensor,
    grid: Tensor,
    offsets: Tensor,
    *,
    fixed_bias: bool = False,
    padding_mode: str = "zeros",
    align_corners: bool = False,
) -> Tensor:
    """Straightforward L-STN for testing :func:`interpolators.lstn.lstn_sample`: K separate samplings and ``torch.linalg.lstsq``.

    Same arguments as :func:`interpolators.lstn.lstn_sample` with fixed ``offsets (K - 1, B, Ho, Wo, 2)``; the
    gradients are written out in an ``autograd.Function`` (grid: the slope contracted with
    the output gradient; input: ``grid_sample``'s vector-Jacobian product at ``p``).
    """
    return _ReferenceLSTN.apply(input, grid, offsets.detach(), fixed_bias, padding_mode, align_corners)


class _ReferenceLSTN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, grid, offsets, fixed_bias, padding_mode, align_corners):
        sample = dict(mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
        center = F.grid_sample(input, grid, **sample)  # (B, C, Ho, Wo)
        values = torch.stack([F.grid_sample(input, grid + d, **sample) for d in offsets])  # (M, B, C, Ho, Wo)
        design = torch.cat([offsets, torch.ones_like(offsets[..., :1])], dim=-1)  # (M, B, Ho, Wo, 3)
        design = design.permute(1, 2, 3, 0, 4)  # (B, Ho, Wo, M, 3)
        target = (values - center).permute(1, 3, 4, 0, 2)  # (B, Ho, Wo, M, C)
        solution = torch.linalg.lstsq(design, target).solution  # (B, Ho, Wo, 3, C)
        slope = solution[..., :2, :].permute(0, 4, 1, 2, 3)  # (B, C, Ho, Wo, 2)
        bias = solution[..., 2, :].permute(0, 3, 1, 2)  # (B, C, Ho, Wo)
        ctx.save_for_backward(input, grid, slope)
        ctx.sample = sample
        return center if fixed_bias else center + bias

    @staticmethod
    def backward(ctx, grad_out):
        input, grid, slope = ctx.saved_tensors
        grad_grid = (grad_out.unsqueeze(-1) * slope).sum(1)
        with torch.enable_grad():
            leaf = input.detach().requires_grad_()
            (grad_input,) = torch.autograd.grad(F.grid_sample(leaf, grid, **ctx.sample), leaf, grad_out)
        return grad_input, grad_grid, None, None, None, None


def estn_reference(
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
    """A slow, literal transcription of :func:`interpolators.estn.estn_sample` that the tests hold the fast path to.

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
    if sampling == "spiral":
        z = spiral_offsets(k, dtype=input.dtype, device=input.device).view(k, 1, 1, 2)
    else:  # the eager path's draws: N(0, I) after the centre, (B, K, Ho, Wo, 2)
        draws = torch.randn(b, k - 1, ho, wo, 2, generator=generator, dtype=input.dtype, device=input.device)
        z = torch.cat([draws.new_zeros(b, 1, ho, wo, 2), draws], dim=1)
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
