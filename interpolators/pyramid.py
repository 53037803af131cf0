"""Pyramid: trilinear sampling of a Gaussian pyramid (mip-mapping), the anti-aliasing baseline.

Per output pixel ``i``, ``rho_i`` is the larger singular value of the grid's finite-difference
Jacobian in input pixels (:func:`interpolators.base.grid_local_scale`, the differences of
ESTN's tangent frame) and its level is

.. math::
    l_i = \\min(L, \\log_2 \\max(1, \\rho_i)),

rounded to 1/256 of an octave (texture units keep 8 fractional bits of their level of detail;
here it keeps float noise in the differences from blending in a level at a weight of 1e-7).
Level ``k`` of the pyramid is the input blurred and halved ``k`` times
(:func:`kornia.geometry.transform.build_pyramid`: a 5 x 5 binomial blur, then a bilinear
resize to ``floor(side / 2)``; every level spans the input's extent) and ``L`` the top level
(``floor(log2(min(H, W)))``). The output is bilinear in the two levels nearest to ``l_i``,
linear between them (hat weights ``max(0, 1 - |l_i - k|)``): "trilinear" sampling.

At ``rho <= 1`` (no downsampling) only level 0 is read: the output and both gradients are
``grid_sample`` bilinear's. The level selection carries no gradient; the gradients w.r.t. the
input (through the blur and resize) and the grid (each level's bilinear slope, weighted) are
exact for the level held fixed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from interpolators._registry import register
from interpolators.base import Interpolator, PaddingMode, check_sampling_inputs, grid_local_scale

#: levels are rounded to this fraction of an octave (a texture unit's 8 fractional bits of level of detail)
LEVEL_STEPS = 256
#: how the blurs extend the image past its edge, per ``padding_mode`` (kornia's ``border_type``)
BLUR_BORDER = {"zeros": "constant", "border": "replicate", "reflection": "replicate"}


def mip_level(rho: Tensor, max_level: float) -> Tensor:
    """``l = min(max_level, log2(max(1, rho)))`` rounded to ``1 / LEVEL_STEPS``; NaN (a non-finite grid) gives 0."""
    level = torch.log2(rho.clamp_min(1.0)).nan_to_num(nan=0.0).clamp_max(max_level)
    return torch.round(level * LEVEL_STEPS) / LEVEL_STEPS


def sampling_levels(
    grid: Tensor, height: int, width: int, align_corners: bool, level: Tensor | None, max_level: float
) -> tuple[Tensor, int]:
    """Each output pixel's level ``(B, Ho, Wo)`` (from the grid's local scale, or ``level`` detached and clamped
    to ``[0, max_level]``) and how many levels ``0 .. n - 1`` they read (1: no pixel downsamples)."""
    if level is None:
        level = mip_level(grid_local_scale(grid, height, width, align_corners), max_level)
    else:
        level = level.detach().to(grid.dtype).clamp(0, max_level)
    return level, int(math.ceil(float(level.max()))) + 1 if level.numel() else 1


def top_level(height: int, width: int) -> int:
    """The number of halvings ``floor(log2(min(H, W)))`` a ``(H, W)`` image allows (each level at least 1 pixel)."""
    return int(math.floor(math.log2(min(height, width))))


def blend_levels(
    images: Sequence[Tensor],
    weights: Tensor,
    grids: Sequence[Tensor],
    padding_mode: str,
    align_corners: Sequence[bool],
) -> Tensor:
    """``sum_k weights[:, k] * grid_sample(images[k], grids[k])``: ``(B, C, Ho, Wo)``.

    ``weights (B, K, Ho, Wo)`` (detached, each pixel's summing to 1) select the levels; a level
    whose weight is zero everywhere is not sampled.
    """
    out = None
    for k, (image, grid, corners) in enumerate(zip(images, grids, align_corners)):
        weight = weights[:, k]
        if not bool((weight != 0).any()):
            continue
        sample = F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=corners)
        term = sample * weight.unsqueeze(1).to(sample.dtype)
        out = term if out is None else out + term
    if out is None:
        raise ValueError("weights: expected every output pixel's level weights to sum to 1, got all zeros")
    return out


def hat_weights(level: Tensor, num_levels: int) -> Tensor:
    """Linear interpolation weights ``max(0, 1 - |level - k|)`` for ``k < num_levels``: ``(B, num_levels, Ho, Wo)``."""
    ks = torch.arange(num_levels, dtype=level.dtype, device=level.device).view(1, -1, 1, 1)
    return (1.0 - (level.unsqueeze(1) - ks).abs()).clamp_min(0.0)


def pyramid_sample(
    input: Tensor,
    grid: Tensor,
    padding_mode: str = "zeros",
    align_corners: bool = False,
    level: Tensor | None = None,
) -> Tensor:
    """Trilinear sampling of ``input (B, C, H, W)``'s Gaussian pyramid at ``grid (B, Ho, Wo, 2)``.

    Args:
        input: the image batch.
        grid: normalized ``(x, y)`` as in ``grid_sample`` (``align_corners`` its convention).
        padding_mode: ``grid_sample``'s; the pyramid's blurs extend the image with zeros for
            ``"zeros"`` and with its edge otherwise (:data:`BLUR_BORDER`).
        align_corners: level 0 is sampled with it; the halved levels, which span the input's
            extent, are sampled at the same input-pixel positions with ``align_corners=False``.
        level: per-pixel levels ``(B, Ho, Wo)`` to use instead of the grid's (held fixed, e.g.
            for ``gradcheck``); clamped to ``[0, L]``.

    Returns:
        ``(B, C, Ho, Wo)``.
    """
    check_sampling_inputs(input, grid)
    h, w = input.shape[-2:]
    top = top_level(h, w)
    level, num_levels = sampling_levels(grid, h, w, align_corners, level, top)
    if num_levels == 1:  # no downsampling anywhere: bilinear
        return F.grid_sample(input, grid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
    from kornia.geometry.transform import build_pyramid

    images = build_pyramid(input, num_levels, border_type=BLUR_BORDER[padding_mode])
    # the halved levels span the input's extent: align_corners=False coordinates of the same pixel positions
    extent_grid = grid
    if align_corners:
        extent_grid = grid * grid.new_tensor([(w - 1) / w, (h - 1) / h])
    grids = [grid] + [extent_grid] * (num_levels - 1)
    corners = [align_corners] + [False] * (num_levels - 1)
    return blend_levels(images, hat_weights(level, num_levels), grids, padding_mode, corners)


@register(tags=("antialias",))
class Pyramid(Interpolator):
    """Trilinear sampling of a Gaussian pyramid at the level of each output pixel's footprint (mip-mapping).

    ``l = log2(max(1, rho))``, ``rho`` the larger singular value of the grid's local Jacobian in
    input pixels; bilinear in the two nearest levels, linear between them. At ``rho <= 1`` it is
    bilinear exactly. See :func:`pyramid_sample` and ``docs/methods/pyramid.md``.

    Args:
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: ``grid_sample``'s coordinate convention.

    Shape:
        input ``(B, C, H, W)``, grid ``(B, Ho, Wo, 2)`` -> ``(B, C, Ho, Wo)``.

    >>> import torch, torch.nn.functional as F
    >>> image = torch.rand(1, 1, 32, 32)
    >>> grid = F.affine_grid(torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]), [1, 1, 8, 8], align_corners=False)
    >>> Pyramid()(image, grid).shape  # 4x downsampling: level 2 of the pyramid
    torch.Size([1, 1, 8, 8])
    """

    summary = "trilinear sampling of a Gaussian pyramid at the grid's local scale (mip-mapping)"
    reference = "Williams, Pyramidal Parametrics, SIGGRAPH 1983; kornia.geometry.transform.build_pyramid"
    reads_grid_neighbours = True  # the level comes from the grid's finite differences

    def __init__(self, padding_mode: PaddingMode = "zeros", align_corners: bool = False) -> None:
        super().__init__(padding_mode=padding_mode, align_corners=align_corners)

    def sample(self, input: Tensor, grid: Tensor, generator: torch.Generator | None) -> Tensor:
        return pyramid_sample(input, grid, self.padding_mode, self.align_corners)
