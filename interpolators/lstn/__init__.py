"""L-STN: linearized multi-sampling (Jiang, Sun, Tagliasacchi, Trulls, Yi, ICCV 2019).

Around every sampling point the image is sampled bilinearly at ``K - 1`` random auxiliary points, a plane is
fitted to those samples by least squares, and the plane's slope is what the grid receives as its gradient. The
value is bilinear's plus the plane's intercept (bilinear's alone with ``fixed_bias``) and the input gradient is
bilinear's at the sampling point only.

- :class:`LSTNConfig` (``config.py``): the hyperparameters, validated once.
- :func:`lstn_sample` and :class:`LSTN`: the functional and the module, which pick the backend.
- ``operator.py``: the ``torch.library`` operator (C++ on CPU, Triton on CUDA: ``triton.py``); ``eager.py``: plain
  torch code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from interpolators._extension import choose_backend
from interpolators._registry import register
from interpolators.base import ConfiguredInterpolator, check_sampling_inputs, sample_safely
from interpolators.lstn.config import MIN_SAMPLES, REFERENCE, LSTNConfig
from interpolators.lstn.eager import hash_normals, lstn_eager
from interpolators.lstn.operator import lstn_operator

__all__ = ["LSTN", "LSTNConfig", "MIN_SAMPLES", "lstn_sample"]

_DEFAULT = LSTNConfig()


def lstn_sample(
    input: Tensor,
    grid: Tensor,
    config: LSTNConfig = _DEFAULT,
    *,
    generator: torch.Generator | None = None,
    offsets: Tensor | None = None,
) -> Tensor:
    r"""Linearized multi-sampling: bilinear value, least-squares plane slope as the grid gradient.

    For every output pixel with sampling point ``p`` (normalized ``(x, y)``), ``K - 1``
    auxiliary points ``p + d_k`` (``K = num_samples``) are sampled bilinearly and the plane

    .. math::
        I(p + d_k) - I(p) \approx a_u\, du_k + a_v\, dv_k + c

    is fitted by least squares (one channel-shared 3x3 normal-equation system per output
    pixel, solved in closed form). The offsets are ``d = N(0, 1) * noise_strength / (Wo, Ho)``
    (half an output pixel) plus, with ``push_away``, ``N(0, 1) * 2 / (W, H)`` (one input pixel),
    in normalized units, drawn as one normal per axis with the summed variance; they carry no
    gradient. The normals come from a counter-based hash of one 32-bit key drawn from
    ``generator`` (:func:`interpolators.lstn.eager.hash_normals`), so every backend draws the same
    offsets from the same generator state.

    - Value: ``I(p) + c``, or ``I(p)`` with ``fixed_bias``.
    - Gradient to ``grid``: the slope ``(a_u, a_v)`` per channel (per normalized unit),
      contracted with the output gradient over channels; the fit is a constant.
    - Gradient to ``input``: bilinear's at ``p`` only (``c`` is a constant).

    A grid point that is not finite gives NaN and no gradient (:func:`interpolators.base.sample_safely`).

    Args:
        input: ``(B, C, H, W)`` image batch.
        grid: ``(B, Ho, Wo, 2)`` sampling points, normalized ``(x, y)`` in ``[-1, 1]``
            (``grid_sample``'s convention for ``align_corners``).
        config: the hyperparameters (:class:`LSTNConfig`), including the backend.
        generator: draws the offsets' key; torch's global generator when ``None``.
        offsets: fixed offsets ``(K - 1, B, Ho, Wo, 2)`` in normalized units instead of
            random ones (for tests); same dtype and device as ``grid``.

    Returns:
        ``(B, C, Ho, Wo)``.

    Examples:
        >>> import torch
        >>> px = torch.arange(32.0)
        >>> ramp = (px / 8 + px[:, None] / 4).expand(1, 1, 32, 32)  # I = px / 8 + py / 4, W = H = 32
        >>> grid = torch.zeros(1, 8, 8, 2, requires_grad=True)
        >>> out = lstn_sample(ramp, grid, generator=torch.Generator().manual_seed(0))
        >>> out.sum().backward()
        >>> round(out[0, 0, 0, 0].item(), 4)  # I at the image centre (15.5, 15.5)
        5.8125
        >>> [round(v, 4) for v in grid.grad[0, 0, 0].tolist()]  # (1 / 8, 1 / 4) per pixel times W / 2 = 16
        [2.0, 4.0]
    """
    check_sampling_inputs(input, grid)
    if not isinstance(config, LSTNConfig):
        raise TypeError(f"config: expected an LSTNConfig, got {type(config).__name__}")
    return sample_safely(lambda i, g: _lstn(i, g, config, generator, offsets), input, grid)


def _lstn(
    input: Tensor, grid: Tensor, config: LSTNConfig, generator: torch.Generator | None, offsets: Tensor | None
) -> Tensor:
    """:func:`lstn_sample` on a finite grid: the backend's choice, the draw and the call."""
    backend = choose_backend(config.backend, input, "lstn")
    (b, _, h, w), (_, ho, wo, _) = input.shape, grid.shape
    m = config.num_samples - 1
    key = None
    if offsets is None:
        if b * m * ho * wo > 2**32:
            raise ValueError(
                f"input: at most 2^32 auxiliary points per call (a 32-bit counter), got B * (num_samples - 1) * Ho * Wo "
                f"= {b * m * ho * wo}; split the batch"
            )
        key = torch.randint(0, 2**32, (), dtype=torch.int64, generator=generator, device=grid.device)
        scale_x, scale_y = config.offset_std((h, w), (ho, wo))
        if backend == "eager":
            offsets = torch.stack(hash_normals(key, (b, m, ho, wo), grid.dtype))
    else:
        offsets, scale_x, scale_y = _fixed_offsets(offsets, grid, m, (h, w))
    sampling = (config.padding_mode, config.align_corners, config.fixed_bias)
    if backend == "eager":
        return lstn_eager(input, grid, offsets, scale_x, scale_y, *sampling)
    return lstn_operator(input, grid, None if key is not None else offsets, key, m, scale_x, scale_y, *sampling)


def _fixed_offsets(offsets: Tensor, grid: Tensor, m: int, size: tuple[int, int]) -> tuple[Tensor, float, float]:
    """Given offsets ``(M, B, Ho, Wo, 2)`` in normalized units as ``(2, B, M, Ho, Wo)`` in input pixels (up to
    ``align_corners``), the fit's units, with the normalized units per pixel along x and y."""
    if not isinstance(offsets, Tensor):
        raise TypeError(f"offsets: expected a torch.Tensor or None, got {type(offsets).__name__}")
    expected = (m, grid.shape[0], grid.shape[1], grid.shape[2], 2)
    if tuple(offsets.shape) != expected:
        raise ValueError(
            f"offsets: expected shape (num_samples - 1, B, Ho, Wo, 2) = {expected}, got {tuple(offsets.shape)}"
        )
    if offsets.dtype != grid.dtype or offsets.device != grid.device:
        raise TypeError(
            f"offsets: expected dtype {grid.dtype} on {grid.device} like grid, got {offsets.dtype} on {offsets.device}"
        )
    pixel_x, pixel_y = 2.0 / size[1], 2.0 / size[0]
    offsets = offsets.detach().permute(4, 1, 0, 2, 3)  # (2, B, M, Ho, Wo)
    return torch.stack((offsets[0] / pixel_x, offsets[1] / pixel_y)), pixel_x, pixel_y


@register("lstn", tags=("multisample",))
class LSTN(ConfiguredInterpolator):
    """Linearized multi-sampling (L-STN): the grid gradient is a least-squares plane slope around each point.

    A thin module around :func:`lstn_sample`; the keyword arguments are :class:`LSTNConfig`'s.

    Shape:
        input ``(B, C, H, W)``, grid ``(B, Ho, Wo, 2)`` -> ``(B, C, Ho, Wo)``.

    Examples:
        >>> sampler = LSTN(num_samples=12)
        >>> sampler(torch.rand(2, 3, 32, 32), torch.rand(2, 8, 8, 2) * 2 - 1).shape
        torch.Size([2, 3, 8, 8])
    """

    Config = LSTNConfig
    stochastic = True
    reference = REFERENCE
    summary = "linearized multi-sampling: least-squares plane over K random samples; its value (bilinear with fixed_bias) and slope as grid gradient"

    def sample(self, input: Tensor, grid: Tensor, generator: torch.Generator | None) -> Tensor:
        return _lstn(input, grid, self.config, generator, None)
