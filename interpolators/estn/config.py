"""ESTN's hyperparameters (one frozen, validated config for the module, the functional and every backend), and the two
formulas that depend on them alone: the spiral of unit offsets and Eq. 5's prior weights."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, get_args

import torch
from torch import Tensor

from interpolators._extension import BACKENDS, Backend
from interpolators.base import PADDING_MODES, PaddingMode, check_choice, check_number

Sampling = Literal["spiral", "random"]
Value = Literal["fit", "center"]
SAMPLINGS: tuple[str, ...] = get_args(Sampling)
VALUES: tuple[str, ...] = get_args(Value)

#: the largest ``num_samples`` and ``iterations`` accepted: time and memory grow linearly with both, and the
#: paper's protocol uses 9 samples (an STN sampler with thousands of samples per pixel is a mistake, not a setting)
MAX_SAMPLES = 64
MAX_ITERATIONS = 20

#: the golden angle, ``pi (3 - sqrt 5)`` radians: consecutive spiral points never line up
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))

REFERENCE = (
    "Shamsolmoali, Zareapoor, Entropy Transformer Networks: A Learning Approach via Tangent Bundle "
    "Data Manifold, Sec. 3.1 (Eq. 2-10); this project's reading, docs/methods/estn.md"
)


@dataclasses.dataclass(frozen=True)
class ESTNConfig:
    """ESTN's hyperparameters (``docs/methods/estn.md``; the math is :func:`interpolators.estn.estn_sample`'s).

    Args:
        num_samples: ``4 <= K <= 64``, the centre included.
        tangent_scale: ``t > 0``, the samples' spread in units of the footprint.
        min_radius: ``r >= 0``, the footprint's floor in input pixels (keeps upsampling fits posed).
        kernel_size: ``N``, odd ``>= 3``: Eq. 5's neighbourhood size.
        entropy: the regularizer's strength relative to the samples' variance, or ``None`` for none.
        iterations: rounds of fit and reweight, at most 20 (ignored with ``entropy=None``).
        ridge: Tikhonov weight on the slopes, relative to the normal matrix's trace.
        sampling: ``"spiral"`` (deterministic) or ``"random"`` (fresh ``N(0, I)`` per pixel; eager only).
        value: ``"fit"`` (the intercept) or ``"center"`` (bilinear's value at ``p_i``).
        padding_mode, align_corners: as in ``grid_sample``, for every sample.
        backend: ``"auto"`` (the operator where it runs, else the eager path with a warning), ``"operator"`` or
            ``"eager"``.
    """

    num_samples: int = 9
    tangent_scale: float = 0.5
    min_radius: float = 0.5
    kernel_size: int = 3
    entropy: float | None = 1.0
    iterations: int = 2
    ridge: float = 1e-6
    sampling: Sampling = "spiral"
    value: Value = "fit"
    padding_mode: PaddingMode = "zeros"
    align_corners: bool = False
    backend: Backend = "auto"

    def __post_init__(self) -> None:
        check_number("num_samples", self.num_samples, integer=True, minimum=4, maximum=MAX_SAMPLES,
                     why="time and memory grow with it")  # fmt: skip
        check_number("tangent_scale", self.tangent_scale, minimum=0, strict=True)
        check_number("min_radius", self.min_radius, minimum=0)
        _check_kernel_size(self.kernel_size)
        if self.entropy is not None:
            check_number("entropy", self.entropy, minimum=0, strict=True)
        check_number("iterations", self.iterations, integer=True, minimum=0, maximum=MAX_ITERATIONS,
                     why="each round costs about one fit")  # fmt: skip
        check_number("ridge", self.ridge, minimum=0)
        check_choice("sampling", self.sampling, SAMPLINGS)
        check_choice("value", self.value, VALUES)
        check_choice("padding_mode", self.padding_mode, PADDING_MODES)
        if not isinstance(self.align_corners, bool):
            raise TypeError(f"align_corners: expected a bool, got {self.align_corners!r}")
        check_choice("backend", self.backend, BACKENDS)
        if self.backend == "operator" and self.sampling != "spiral":
            raise ValueError(f"backend: 'operator' runs the shared spiral only; expected 'auto' or 'eager' with sampling={self.sampling!r}")

        z = spiral_offsets(self.num_samples, dtype=torch.float64)
        prior = prior_weights(z, self.tangent_scale, self.kernel_size)
        object.__setattr__(self, "_spiral", (z[:, 0].tolist(), z[:, 1].tolist(), prior.tolist()))  # not a field

    @property
    def spiral(self) -> tuple[list[float], list[float], list[float]]:
        """The spiral's ``z_x``, ``z_y`` and prior weights, ``K`` floats each (the operator's constants)."""
        return self._spiral


def _check_kernel_size(kernel_size: int) -> None:
    check_number("kernel_size", kernel_size, integer=True, minimum=3)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: expected an odd integer >= 3, got {kernel_size!r}")


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
    _check_kernel_size(kernel_size)
    c = (kernel_size - 1) / 2
    c_root_c = c * math.sqrt(c)
    distance = tangent_scale * unit_offsets.norm(dim=-1)
    return ((1.0 + c_root_c - distance) / c_root_c).clamp_min(0.0)
