"""L-STN as a ``torch.library`` operator: ``torch.ops.interpolators.lstn_forward`` (schema in ``csrc/ops.cpp``, CPU
kernel in ``csrc/lstn.cpp``, CUDA kernel in :mod:`interpolators.lstn.triton`), with its fake kernel registered here and
its autograd, for both devices, in ``csrc/autograd.cpp``.

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


def _fake_hash_normals(key, n, dtype):
    return torch.empty((2, n), dtype=dtype, device=key.device)


def _register() -> None:
    torch.library.register_fake("interpolators::lstn_forward", _fake_forward)
    torch.library.register_fake("interpolators::lstn_hash_normals", _fake_hash_normals)


_extension.on_load(_register)
