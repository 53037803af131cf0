"""ESTN as ``torch.library`` operators: ``torch.ops.interpolators.estn_forward`` and its backward
``estn_input_grad`` (schemas in ``csrc/ops.cpp``, CPU kernels in ``csrc/estn.cpp``, CUDA kernels in
:mod:`interpolators.estn.triton`), with their fake kernels registered here and the forward's autograd, for both
devices, in ``csrc/autograd.cpp``.

The grid gradient is ``slope_grid_grad``, shared with L-STN (:mod:`interpolators._shared_ops`); with
``value="center"`` the input gradient is bilinear's (``bilinear_input_grad``). Saved for backward, each only when its
gradient is needed: the grid (the input gradient recomputes the sample points from it), the intercept weights of
samples ``1 .. K - 1`` (the centre's is one minus their sum) and the slopes ``(2, B, C, Ho, Wo)``; not the input.
"""

from __future__ import annotations

import torch
from torch import Tensor

from interpolators import _extension, _shared_ops  # noqa: F401  (_shared_ops registers the backward operators)
from interpolators.estn.config import ESTNConfig


def estn_operator(input: Tensor, grid: Tensor, config: ESTNConfig) -> Tensor:
    """ESTN's value ``(B, C, Ho, Wo)`` by the operator, for the shared spiral."""
    spiral_x, spiral_y, prior = config.spiral
    keep_beta = config.value == "fit" and input.requires_grad and torch.is_grad_enabled()
    value, _, _ = torch.ops.interpolators.estn_forward(
        input, grid, spiral_x, spiral_y, prior, config.tangent_scale, config.min_radius, config.entropy,
        config.iterations, config.ridge, config.padding_mode, config.align_corners, config.value == "center", keep_beta,
    )  # fmt: skip
    return value


def _fake_forward(input, grid, spiral_x, spiral_y, prior, tangent_scale, min_radius, entropy, iterations, ridge,
                  padding_mode, align_corners, center_value, keep_beta):  # fmt: skip
    (b, c), (ho, wo) = input.shape[:2], grid.shape[1:3]
    beta = input.new_empty((b, len(spiral_x) - 1, ho, wo) if keep_beta else (0,))
    return input.new_empty((b, c, ho, wo)), input.new_empty((2, b, c, ho, wo)), beta


def _fake_input_grad(grad, grid, spiral_x, spiral_y, beta, height, width, tangent_scale, min_radius, padding_mode,
                     align_corners):  # fmt: skip
    return grad.new_empty((grad.shape[0], grad.shape[1], height, width))


def _register() -> None:
    torch.library.register_fake("interpolators::estn_forward", _fake_forward)
    torch.library.register_fake("interpolators::estn_input_grad", _fake_input_grad)


_extension.on_load(_register)
