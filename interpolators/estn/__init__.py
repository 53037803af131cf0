"""ESTN: tangent-space multi-sampling with an entropy-regularized weighted plane fit.

This is "ESTN as implemented here" (``docs/methods/estn.md``): the project's reading of Shamsolmoali and
Zareapoor, "Entropy Transformer Networks: A Learning Approach via Tangent Bundle Data Manifold", Sec. 3.1
(Eq. 2-10). The paper publishes no code; every open choice is a hyperparameter.

- :class:`ESTNConfig` (``config.py``): the hyperparameters, validated once; the spiral and Eq. 5's prior.
- :func:`estn_sample` and :class:`ESTN`: the functional and the module, which pick the backend.
- ``operator.py``: the ``torch.library`` operators (C++ on CPU, Triton on CUDA: ``triton.py``); ``eager.py``: plain
  torch code.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from interpolators._extension import choose_backend
from interpolators._registry import register
from interpolators.base import ConfiguredInterpolator, check_sampling_inputs, sample_safely
from interpolators.estn.config import GOLDEN_ANGLE, REFERENCE, ESTNConfig, prior_weights, spiral_offsets
from interpolators.estn.eager import estn_eager
from interpolators.estn.operator import estn_operator

__all__ = ["ESTN", "ESTNConfig", "GOLDEN_ANGLE", "estn_sample", "prior_weights", "spiral_offsets"]

_DEFAULT = ESTNConfig()


def estn_sample(
    input: Tensor, grid: Tensor, config: ESTNConfig = _DEFAULT, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""ESTN as implemented here: tangent-frame samples and an entropy-regularized weighted plane fit.

    Per output pixel ``i`` with sampling point ``p_i`` (input pixels):

    1. Tangent frame: ``J_i`` (2x2, input pixels per output pixel) by finite differences of the
       grid, ``S_i = J_i J_i^T + r^2 I`` with ``r = min_radius``; no gradient flows through it.
    2. Samples (Eq. 2-4): ``p_ik = p_i + t sqrt(S_i) z_k``, ``t = tangent_scale``, ``z_0 = 0`` and
       ``z_1..z_{K-1}`` a golden-angle spiral with Gaussian radial quantiles (:func:`spiral_offsets`)
       or ``N(0, I)`` draws.
    3. Prior weights (Eq. 5, :func:`prior_weights`): ``w_k = max(0, (1 + c sqrt(c) - d_k) / (c sqrt(c)))``,
       ``c = (N - 1) / 2``, ``d_k = t |z_k|``.
    4. Entropy regularizer (Eq. 9-10): ``pi_k ∝ w_k exp(-r_k / gamma)``, ``r_k`` the squared residual of
       sample ``k`` under the current fit, ``gamma`` = ``entropy`` x the prior-weighted variance of the
       samples; alternated with the fit ``iterations`` times, starting from ``pi = w``.
       ``entropy=None``: ``pi = w`` (the "w/o ER" ablation).
    5. Fit (Eq. 9): ``min sum_k pi_k |I(p_ik) - (a . d_k + c)|^2 + lambda |a|^2`` per channel, one
       channel-shared 3x3 system per output pixel, ``lambda = ridge * trace`` of the normal matrix.
    6. Output ``c = sum_k beta_k I(p_ik)`` (``value="fit"``; ``beta`` detached, ``sum beta = 1``) or
       bilinear's ``I(p_i)`` (``value="center"``). Gradient to ``input``: through the samples with
       ``beta`` fixed (bilinear's at ``p_i`` for ``"center"``). Gradient to ``grid``: the fitted slope
       ``a``, in normalized units, summed over channels by the chain rule.

    A grid point that is not finite gives NaN at its pixel and at the four neighbours whose frame differences
    it, and no gradient (:func:`interpolators.base.sample_safely`).

    Args:
        input: ``(B, C, H, W)`` floating tensor.
        grid: ``(B, Ho, Wo, 2)`` normalized ``(x, y)``, same dtype and device (``grid_sample``'s convention).
        config: the hyperparameters (:class:`ESTNConfig`), including the backend.
        generator: seeds ``sampling="random"`` (else torch's global generator).

    Returns:
        ``(B, C, Ho, Wo)``.

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
    if not isinstance(config, ESTNConfig):
        raise TypeError(f"config: expected an ESTNConfig, got {type(config).__name__}")
    return sample_safely(lambda i, g: _estn(i, g, config, generator), input, grid, neighbours=True)


def _estn(input: Tensor, grid: Tensor, config: ESTNConfig, generator: torch.Generator | None) -> Tensor:
    """:func:`estn_sample` on a finite grid: the backend's choice and the call."""
    random = "sampling='random'" if config.sampling == "random" else None
    if choose_backend(config.backend, input, "estn", eager_only=random) == "operator":
        return estn_operator(input, grid, config)
    return estn_eager(input, grid, config, generator)


@register("estn", tags=("multisample",))
class ESTN(ConfiguredInterpolator):
    """ESTN as implemented here: tangent-space samples, entropy-regularized plane fit (see :func:`estn_sample`).

    A thin module around :func:`estn_sample`; the keyword arguments are :class:`ESTNConfig`'s. ``stochastic``
    is ``False`` on the class because the default ``sampling="spiral"`` is deterministic; an instance built
    with ``sampling="random"`` reports ``stochastic = True``.

    Shape:
        input ``(B, C, H, W)``, grid ``(B, Ho, Wo, 2)`` -> ``(B, C, Ho, Wo)``.

    Examples:
        >>> sampler = ESTN(num_samples=12)
        >>> sampler(torch.rand(2, 3, 32, 32), torch.rand(2, 8, 8, 2) * 2 - 1).shape
        torch.Size([2, 3, 8, 8])
    """

    Config = ESTNConfig
    stochastic: ClassVar[bool] = False
    reads_grid_neighbours = True  # the tangent frame differences the grid
    reference = REFERENCE
    summary = "ESTN: tangent-frame multi-sampling, entropy-regularized weighted plane fit (9 samples)"

    def __init__(self, **hparams) -> None:
        super().__init__(**hparams)
        self.stochastic = self.config.sampling == "random"

    def sample(self, input: Tensor, grid: Tensor, generator: torch.Generator | None) -> Tensor:
        return _estn(input, grid, self.config, generator)
