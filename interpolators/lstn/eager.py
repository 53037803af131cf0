"""L-STN in plain torch code: the offsets' counter-based draw and the plane fit, with the spec's gradients.

The operator (:mod:`interpolators.lstn.operator`, ``csrc/lstn.cpp``, :mod:`interpolators.lstn.triton`) computes the
same numbers fused in one pass; this path runs wherever it does not (half precision, no C++ compiler) and is what the
tests hold it to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from interpolators._linalg import apply_sym3, inverse_sym3
from interpolators.base import PADDING_CODES, grid_sample_points

_MASK32 = 0xFFFFFFFF


def _mul32(x: Tensor, constant: int) -> Tensor:
    """``x * constant mod 2^32`` for ``0 <= x < 2^32`` in int64, by 16-bit halves (no signed overflow)."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def mix32(x: Tensor) -> Tensor:
    """A bijective 32-bit integer hash (``lowbias32``, C. Wellons' hash-prospector) on int64 tensors."""
    x = _mul32(x ^ (x >> 16), 0x7FEB352D)
    x = _mul32(x ^ (x >> 15), 0x846CA68B)
    return x ^ (x >> 16)


def hash_normals(key: Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Standard normal pairs ``(du, dv)``, each of ``shape``, from a random 32-bit ``key`` (an int64 tensor).

    A counter-based generator: the point with flat index ``i`` gets the 32-bit hash
    ``h = mix32(mix32(i) ^ key)`` (the key enters after a round: XOR-ing it into the counter would only
    permute the counters), whose two 16-bit halves are the uniforms ``u = (j + 1/2) / 2^16`` of one
    Box-Muller transform: ``r = sqrt(-2 ln u_1)``, ``(du, dv) = r (cos 2 pi u_2, sin 2 pi u_2)``. The operator
    computes the same normals inside its kernel (no memory traffic, in parallel: torch's CPU generator is
    serial). A 32-bit key gives 2^32 streams: among ``n`` calls two share their offsets with probability
    about ``n^2 / 2^33``.

    Examples:
        >>> du, dv = hash_normals(torch.tensor(7), (2, 3), torch.float64)
        >>> du.shape, bool((du.abs() < 6).all())
        (torch.Size([2, 3]), True)
    """
    work = torch.promote_types(dtype, torch.float32)  # 16-bit uniforms need float32 (float16 rounds 65535.5 to inf)
    count = torch.arange(math.prod(shape), dtype=torch.int64, device=key.device).view(shape)
    h = mix32(mix32(count) ^ key)
    u1 = (h & 0xFFFF).to(work).add(0.5).mul(2.0**-16)
    u2 = (h >> 16).to(work).add(0.5).mul(2.0**-16)
    radius, angle = (-2.0 * u1.log()).sqrt(), (2.0 * math.pi) * u2
    return (radius * angle.cos()).to(dtype), (radius * angle.sin()).to(dtype)


def lstn_eager(
    input: Tensor,
    grid: Tensor,
    offsets: Tensor,
    scale_x: float,
    scale_y: float,
    padding_mode: str,
    align_corners: bool,
    fixed_bias: bool,
) -> Tensor:
    """L-STN's value ``(B, C, Ho, Wo)`` for offsets ``(2, B, M, Ho, Wo)`` in offset units (``scale_x``, ``scale_y``
    normalized units each); see :func:`interpolators.lstn.lstn_sample` for the math."""
    return _LinearizedSample.apply(input, grid, offsets, scale_x, scale_y, padding_mode, align_corners, fixed_bias)


class _LinearizedSample(torch.autograd.Function):
    """Forward: sample the auxiliary points in one pass and fit the planes. Backward: the spec's gradients.

    Saved for backward: ``input`` and ``grid`` (as bilinear saves them) and the two slopes
    ``(B, C, Ho, Wo)``; nothing that grows with ``K``.
    """

    @staticmethod
    def forward(ctx, input, grid, offsets, scale_x, scale_y, padding_mode, align_corners, fixed_bias):
        b, c, m, ho, wo = *input.shape[:2], *offsets.shape[2:]
        du, dv = offsets[0], offsets[1]  # (B, M, Ho, Wo) in offset units
        auxiliary = grid.new_empty((b, m, ho, wo, 2))
        torch.add(grid[..., 0].unsqueeze(1), du, alpha=scale_x, out=auxiliary[..., 0])
        torch.add(grid[..., 1].unsqueeze(1), dv, alpha=scale_y, out=auxiliary[..., 1])
        samples = grid_sample_points(input, auxiliary, padding_mode, align_corners)

        # Least squares over the auxiliary points of I(p_k) = a_u du_k + a_v dv_k + c': the slope is the same as for
        # I(p_k) - I(p), and the intercept c' is I(p) + c, so the centre need not be sampled.
        inverse = inverse_sym3(*(x.sum(1, keepdim=True) for x in (du * du, du * dv, du, dv * dv, dv)), float(m))
        rhs = samples.new_zeros((3, b, c, ho, wo))
        for k in range(m):  # accumulated point by point: no (K - 1) x (B, C, Ho, Wo) temporaries
            rhs[0].addcmul_(samples[:, :, k], du[:, k : k + 1])
            rhs[1].addcmul_(samples[:, :, k], dv[:, k : k + 1])
            rhs[2].add_(samples[:, :, k])
        del samples
        slope_x, slope_y, value = (x.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0) for x in apply_sym3(inverse, *rhs))
        slopes = (slope_x / scale_x, slope_y / scale_y) if ctx.needs_input_grad[1] else (None, None)
        ctx.save_for_backward(input, grid, *slopes)
        ctx.codes = (PADDING_CODES[padding_mode], align_corners)
        if fixed_bias:
            return F.grid_sample(input, grid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, grid, slope_x, slope_y = ctx.saved_tensors
        grad_input = grad_grid = None
        if ctx.needs_input_grad[0]:  # bilinear's, at the sampling point only
            padding, align_corners = ctx.codes
            grad_input = torch.ops.aten.grid_sampler_2d_backward(
                grad_out, input, grid, 0, padding, align_corners, (True, False)
            )[0]
        if ctx.needs_input_grad[1]:  # the fitted slope, summed over channels against the output gradient
            grad_grid = torch.stack([(grad_out * slope_x).sum(1), (grad_out * slope_y).sum(1)], dim=-1)
        return grad_input, grad_grid, None, None, None, None, None, None
