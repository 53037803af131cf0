"""Baselines: ``grid_sample`` with ``mode`` nearest, bilinear (the reference STN sampler) or bicubic."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from interpolators._registry import register
from interpolators.base import Interpolator, PaddingMode


class GridSample(Interpolator):
    """``torch.nn.functional.grid_sample`` with a fixed ``mode``.

    Bilinear's value and gradients involve only the four neighbours of each
    sampling point; nearest sends no gradient to the grid at all.

    Args:
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: ``grid_sample``'s coordinate convention.

    Shape:
        input ``(B, C, H, W)``, grid ``(B, Ho, Wo, 2)`` -> ``(B, C, Ho, Wo)``.
    """

    mode: ClassVar[str]
    reference = "torch.nn.functional.grid_sample"

    def __init__(self, padding_mode: PaddingMode = "zeros", align_corners: bool = False) -> None:
        super().__init__(padding_mode=padding_mode, align_corners=align_corners)

    def sample(self, input: Tensor, grid: Tensor, generator: torch.Generator | None) -> Tensor:
        return F.grid_sample(
            input, grid, mode=self.mode, padding_mode=self.padding_mode, align_corners=self.align_corners
        )


@register(tags=("baseline",))
class Nearest(GridSample):
    """Nearest neighbour: piecewise constant, zero gradient w.r.t. the grid everywhere."""

    mode = "nearest"
    summary = "nearest neighbour (grid_sample mode='nearest'); no gradient to the grid"


@register(tags=("baseline",))
class Bilinear(GridSample):
    """Bilinear: the sampler of the original STN (Jaderberg et al., NeurIPS 2015)."""

    mode = "bilinear"
    summary = "bilinear (grid_sample mode='bilinear'), the reference STN sampler"
    reference = "Jaderberg, Simonyan, Zisserman, Kavukcuoglu, Spatial Transformer Networks, NeurIPS 2015"


@register(tags=("baseline",))
class Bicubic(GridSample):
    """Bicubic convolution (Keys, a = -0.75), as ``grid_sample`` implements it."""

    mode = "bicubic"
    summary = "bicubic convolution (grid_sample mode='bicubic'), 4x4 neighbourhood"
