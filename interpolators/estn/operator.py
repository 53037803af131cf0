"""ESTN as ``torch.library`` operators: ``torch.ops.interpolators.estn_forward`` and its backward
``estn_input_grad`` (schemas in ``csrc/ops.cpp``, CPU kernels in ``csrc/estn.cpp``, CUDA kernels in
:mod:`interpolators.estn.triton`), with their fake kernels and the forward's autograd formula (for both devices)
registered here.

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


def _setup_context(ctx, inputs, output) -> None:
    input, grid, spiral_x, spiral_y, _, tangent_scale, min_radius, *_, padding_mode, align_corners, center, _ = inputs
    _, slopes, beta = output
    ctx.mark_non_differentiable(slopes, beta)
    need_input, need_grid = ctx.needs_input_grad[:2]
    ctx.save_for_backward(
        grid if need_input else None, beta if need_input and not center else None, slopes if need_grid else None
    )
    ctx.sampling = (input.shape[2], input.shape[3], padding_mode, align_corners)
    ctx.spiral = (spiral_x, spiral_y, tangent_scale, min_radius)


def _backward(ctx, grad_value: Tensor, _grad_slopes, _grad_beta):
    grid, beta, slopes = ctx.saved_tensors
    height, width, padding_mode, align_corners = ctx.sampling
    grad_input = grad_grid = None
    if ctx.needs_input_grad[0] and beta is None:  # value="center": bilinear's at the grid
        grad_input = torch.ops.interpolators.bilinear_input_grad(grad_value, grid, height, width, padding_mode, align_corners)
    elif ctx.needs_input_grad[0]:
        spiral_x, spiral_y, tangent_scale, min_radius = ctx.spiral
        grad_input = torch.ops.interpolators.estn_input_grad(
            grad_value, grid, spiral_x, spiral_y, beta, height, width, tangent_scale, min_radius, padding_mode,
            align_corners,
        )  # fmt: skip
    if ctx.needs_input_grad[1]:
        grad_grid = torch.ops.interpolators.slope_grid_grad(grad_value, slopes)
    return grad_input, grad_grid, *([None] * 12)


def _register() -> None:
    torch.library.register_fake("interpolators::estn_forward", _fake_forward)
    torch.library.register_fake("interpolators::estn_input_grad", _fake_input_grad)
    torch.library.register_autograd("interpolators::estn_forward", _backward, setup_context=_setup_context)


_extension.on_load(_register)
