"""Prefiltered: bilinear sampling of the input blurred by a Gaussian, the other anti-aliasing baseline.

With a fixed ``sigma`` (input pixels) the input is blurred once
(:func:`kornia.filters.gaussian_blur2d`, kernel ``2 ceil(3 sigma) + 1``) and sampled bilinearly;
``sigma=0`` is bilinear. With an adaptive ``sigma`` each output pixel gets

.. math::
    \\sigma_i^2 = c \\, \\max(0, \\rho_i^2 - 1),

``rho_i`` the larger singular value of the grid's finite-difference Jacobian in input pixels
(:func:`interpolators.base.grid_local_scale`): the blur that widens an input pixel to the output
pixel's footprint, with widths measured as ``sqrt(c)`` times the side. ``sigma="box"`` (the
default) takes ``c = 1/12``, the variance of a box of unit side, so that the blur's variance is
the footprint box's minus the input pixel's own (a pixel is the mean of the image over its
square: the model of the scale suite's ground truth and of its area-downsampled input);
``sigma="auto"`` (``methods.md``'s rule) takes ``c = 1/4`` (a pixel's "std" is half its side:
``sigma = sqrt(rho^2 - 1) / 2``), which blurs sqrt(3) times wider. Either is approximated by blur levels at
``rho = 2^k``, ``sigma_k^2 = c (4^k - 1)``, and per pixel a mixture of the two levels around
``rho`` whose variance is ``sigma_i^2``: with ``l = log2 rho`` (the pyramid's level,
:func:`interpolators.pyramid.mip_level`) and ``k = floor(l)``, weight ``t = (4^(l - k) - 1) / 3``
on level ``k + 1`` and ``1 - t`` on level ``k`` (whatever ``c``). Levels stop at
``rho = max(H, W)`` (a footprint as wide as the image). At ``rho <= 1`` it is bilinear exactly.
The blur level selection carries no gradient.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from interpolators._registry import register
from interpolators.base import Interpolator, PaddingMode, check_number, check_sampling_inputs
from interpolators.pyramid import BLUR_BORDER, blend_levels, sampling_levels


def gaussian_blur(input: Tensor, sigma: float, padding_mode: str = "zeros") -> Tensor:
    """``input (B, C, H, W)`` blurred by a Gaussian of std ``sigma`` pixels (kernel ``2 ceil(3 sigma) + 1``).

    The image is extended past its edge as :data:`interpolators.pyramid.BLUR_BORDER` says for
    ``padding_mode``. ``sigma=0`` returns ``input`` itself.
    """
    if sigma == 0:
        return input
    from kornia.filters import gaussian_blur2d

    size = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur2d(input, (size, size), (float(sigma), float(sigma)), border_type=BLUR_BORDER[padding_mode])


#: the adaptive widths: ``sigma^2 = c (rho^2 - 1)`` with ``c`` the variance of a pixel of unit side
ADAPTIVE_VARIANCE = {"auto": 1.0 / 4.0, "box": 1.0 / 12.0}


def level_sigma(k: int, rule: str = "auto") -> float:
    """The blur ``sqrt(c (4^k - 1))`` of level ``k``: the adaptive sigma of ``rule`` at ``rho = 2^k``."""
    return math.sqrt(ADAPTIVE_VARIANCE[rule] * (4.0**k - 1.0))


def variance_weights(level: Tensor, num_levels: int) -> Tensor:
    """``(B, num_levels, Ho, Wo)``: per pixel, the mixture of blur levels ``floor(l)`` and ``floor(l) + 1``
    whose variance is ``(4^l - 1) / 4``, for ``level`` ``l`` in ``[0, num_levels - 1]``."""
    low = level.floor().clamp_max(max(0, num_levels - 2))
    t = (torch.pow(4.0, level - low) - 1.0) / 3.0
    ks = torch.arange(num_levels, dtype=level.dtype, device=level.device).view(1, -1, 1, 1)
    low, t = low.unsqueeze(1), t.unsqueeze(1)
    return torch.where(ks == low, 1.0 - t, torch.zeros_like(t)) + torch.where(ks == low + 1, t, torch.zeros_like(t))


def prefiltered_sample(
    input: Tensor,
    grid: Tensor,
    sigma: float | str = "box",
    padding_mode: str = "zeros",
    align_corners: bool = False,
    level: Tensor | None = None,
) -> Tensor:
    """Bilinear sampling of ``input (B, C, H, W)`` blurred by ``sigma`` (pixels, ``"auto"`` or ``"box"``) at ``grid``.

    ``level (B, Ho, Wo)``, for an adaptive ``sigma`` only: ``log2 rho`` per pixel to use instead
    of the grid's (held fixed, e.g. for ``gradcheck``). Returns ``(B, C, Ho, Wo)``.
    """
    check_sampling_inputs(input, grid)
    bilinear = dict(mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
    if sigma not in ADAPTIVE_VARIANCE:
        return F.grid_sample(gaussian_blur(input, sigma, padding_mode), grid, **bilinear)
    h, w = input.shape[-2:]
    level, num_levels = sampling_levels(grid, h, w, align_corners, level, math.log2(max(h, w)))
    if num_levels == 1:  # no downsampling anywhere: bilinear
        return F.grid_sample(input, grid, **bilinear)
    images = [gaussian_blur(input, level_sigma(k, sigma), padding_mode) for k in range(num_levels)]
    weights = variance_weights(level, num_levels)
    return blend_levels(images, weights, [grid] * num_levels, padding_mode, [align_corners] * num_levels)


@register(tags=("antialias",))
class Prefiltered(Interpolator):
    """Bilinear on the input blurred by a Gaussian: a fixed ``sigma`` or one that follows the grid's scale.

    Args:
        sigma: the blur's standard deviation in input pixels (``>= 0``; 0 is bilinear), or
            adaptive per output pixel from the grid's local scale ``rho``, by a few blur levels:
            ``"box"``, ``sqrt(max(0, rho^2 - 1) / 12)``, or ``"auto"``, ``sqrt(max(0, rho^2 - 1)) / 2``
            (see the module docstring and ``docs/methods/prefiltered.md``).
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``; the blur extends the image
            with zeros for ``"zeros"`` and with its edge otherwise.
        align_corners: ``grid_sample``'s coordinate convention.

    Shape:
        input ``(B, C, H, W)``, grid ``(B, Ho, Wo, 2)`` -> ``(B, C, Ho, Wo)``.

    >>> import torch
    >>> image, grid = torch.rand(1, 3, 32, 32), torch.rand(1, 8, 8, 2) * 2 - 1
    >>> Prefiltered(sigma=1.0)(image, grid).shape
    torch.Size([1, 3, 8, 8])
    """

    summary = "bilinear on the input blurred by a Gaussian (fixed sigma, or 'box'/'auto' from the grid's local scale)"
    reference = "Gaussian prefiltering before resampling (kornia.filters.gaussian_blur2d)"

    def __init__(
        self,
        sigma: float | Literal["auto", "box"] = "box",
        padding_mode: PaddingMode = "zeros",
        align_corners: bool = False,
    ) -> None:
        super().__init__(padding_mode=padding_mode, align_corners=align_corners)
        if sigma not in ADAPTIVE_VARIANCE:
            if isinstance(sigma, str):
                raise ValueError(f"sigma: expected a number >= 0, 'auto' or 'box', got {sigma!r}")
            check_number("sigma", sigma, minimum=0.0)
        self.sigma = sigma
        self.reads_grid_neighbours = sigma in ADAPTIVE_VARIANCE  # the adaptive blur differences the grid

    def sample(self, input: Tensor, grid: Tensor, generator: torch.Generator | None) -> Tensor:
        return prefiltered_sample(input, grid, self.sigma, self.padding_mode, self.align_corners)
