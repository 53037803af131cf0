"""L-STN as a ``torch.library`` operator: ``torch.ops.interpolators.lstn_forward`` (schema in ``csrc/ops.cpp``, CPU
kernel in ``csrc/lstn.cpp``, CUDA kernel in :mod:`interpolators.lstn.triton`), with its fake kernel and its autograd
formula (for both devices) registered here.

The backward is two operators shared with ESTN (registered in :mod:`interpolators._shared_ops`):
``bilinear_input_grad`` (bilinear's input gradient at the sampling point) and ``slope_grid_grad`` (the fitted slopes
against the output gradient). Saved for backward: the grid and the slopes ``(2, B, C, Ho, Wo)``, each only when its
gradient is needed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from interpolators import _extension, _shared_ops  # noqa: F401  (_shared_ops registers the backward operators)


def lstn_operator(
    input: Tensor,
    grid: Tensor,
    offsets: Tensor | None,
    key: Tensor | None,
    num_auxiliary: int,
    scale_x: float,
    scale_y: float,
    padding_mode: str,
    align_corners: bool,
    fixed_bias: bool,
) -> Tensor:
    """L-STN's value ``(B, C, Ho, Wo)`` by the operator: offsets ``(2, B, M, Ho, Wo)`` in offset units, or hashed
    from ``key`` (an int64 tensor) as :func:`interpolators.lstn.eager.hash_normals` does."""
    value, _ = torch.ops.interpolators.lstn_forward(
        input, grid, offsets, key, num_auxiliary, scale_x, scale_y, padding_mode, align_corners, fixed_bias
    )
    return value


def _fake_forward(input, grid, offsets, key, num_auxiliary, scale_x, scale_y, padding_mode, align_corners, fixed_bias):
    (b, c), (ho, wo) = input.shape[:2], grid.shape[1:3]
    return input.new_empty((b, c, ho, wo)), input.new_empty((2, b, c, ho, wo))


def _setup_context(ctx, inputs, output) -> None:
    input, grid, *_, padding_mode, align_corners, _fixed_bias = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(
        grid if ctx.needs_input_grad[0] else None, output[1] if ctx.needs_input_grad[1] else None
    )
    ctx.sampling = (input.shape[2], input.shape[3], padding_mode, align_corners)


def _backward(ctx, grad_value: Tensor, _grad_slopes: Tensor | None):
    grid, slopes = ctx.saved_tensors
    height, width, padding_mode, align_corners = ctx.sampling
    grad_input = grad_grid = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.interpolators.bilinear_input_grad(grad_value, grid, height, width, padding_mode, align_corners)
    if ctx.needs_input_grad[1]:
        grad_grid = torch.ops.interpolators.slope_grid_grad(grad_value, slopes)
    return grad_input, grad_grid, None, None, None, None, None, None, None, None


def _fake_hash_normals(key, n, dtype):
    return torch.empty((2, n), dtype=dtype, device=key.device)


def _register() -> None:
    torch.library.register_fake("interpolators::lstn_forward", _fake_forward)
    torch.library.register_fake("interpolators::lstn_hash_normals", _fake_hash_normals)
    torch.library.register_autograd("interpolators::lstn_forward", _backward, setup_context=_setup_context)


_extension.on_load(_register)
