"""Ground-truth renderer: a warp of the high-resolution source, box-averaged over each output pixel.

The benchmark input is the source area-downsampled by ``D``. A warp is an
affine ``theta (B, 2, 3)`` in ``affine_grid``'s convention (output normalized
coordinates -> input normalized coordinates, ``align_corners=False``), and
normalized coordinates do not depend on resolution, so the same ``theta``
applies to the source. The true value of an output pixel is the mean of the
continuous image over its footprint, estimated by ``s x s`` bilinear samples of
the source per output pixel and a box average: the same box model that made
the input. No method under test is involved.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def area_downsample(image: Tensor, factor: int) -> Tensor:
    """Box-average ``image (B, C, H, W)`` over ``factor x factor`` blocks -> ``(B, C, H/factor, W/factor)``."""
    if factor == 1:
        return image
    return F.avg_pool2d(image, factor)


def render_affine(source: Tensor, theta: Tensor, out_size: tuple[int, int], supersample: int) -> Tensor:
    """Render ``source (B, C, Hs, Ws)`` warped by ``theta (B, 2, 3)`` into ``(B, C, Ho, Wo)``.

    Each output pixel is the mean of ``supersample x supersample`` bilinear samples of
    the source at the centres of its sub-pixels; points outside the image read 0.
    """
    b, c = source.shape[:2]
    ho, wo = out_size
    grid = F.affine_grid(theta.to(source.dtype), [b, c, ho * supersample, wo * supersample], align_corners=False)
    fine = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(fine, supersample) if supersample > 1 else fine


def supersample_for(theta: Tensor, source_size: tuple[int, int], out_size: tuple[int, int], minimum: int = 2) -> int:
    """Sub-samples per output pixel so that their spacing is at most one source pixel."""
    hs, ws = source_size
    ho, wo = out_size
    # source pixels spanned by one output pixel along each output axis
    span_x = theta[..., :, 0].norm(dim=-1).max().item() * ws / wo
    span_y = theta[..., :, 1].norm(dim=-1).max().item() * hs / ho
    return max(minimum, math.ceil(max(span_x, span_y)))


def interior_mask(theta: Tensor, in_size: tuple[int, int], out_size: tuple[int, int], margin: float = 1.0) -> Tensor:
    """``(B, 1, Ho, Wo)`` bool: output pixels whose whole footprint lies inside the input, ``margin`` input px in."""
    b = theta.shape[0]
    h, w = in_size
    ho, wo = out_size
    corners = []
    for dy in (-1.0, 1.0):
        for dx in (-1.0, 1.0):
            # shift the output grid by half an output pixel to reach the footprint's corners
            shift = torch.tensor([dx / wo, dy / ho], dtype=theta.dtype, device=theta.device)
            grid = F.affine_grid(theta, [b, 1, ho, wo], align_corners=False)
            corners.append(grid + (shift @ theta[:, :, :2].transpose(1, 2)).reshape(b, 1, 1, 2))
    pts = torch.stack(corners)  # (4, B, Ho, Wo, 2) normalized
    px = ((pts[..., 0] + 1) * w - 1) / 2
    py = ((pts[..., 1] + 1) * h - 1) / 2
    inside = (px >= margin - 0.5) & (px <= w - 0.5 - margin) & (py >= margin - 0.5) & (py <= h - 0.5 - margin)
    return inside.all(dim=0).unsqueeze(1)
