"""Fake kernels of the backward operators both methods use (schemas in ``csrc/ops.cpp``, CPU kernels in
``csrc/sampling.cpp``, CUDA kernels in :mod:`interpolators._triton_sampling`): ``bilinear_input_grad`` (bilinear's
input gradient at the grid points) and ``slope_grid_grad`` (the grid gradient of fitted slopes). They are backward
formulas themselves and have no autograd."""

from __future__ import annotations

import torch

from interpolators import _extension


def _fake_bilinear_input_grad(grad, grid, height, width, padding_mode, align_corners):
    return grad.new_empty((grad.shape[0], grad.shape[1], height, width))


def _fake_slope_grid_grad(grad, slopes):
    return grad.new_empty((grad.shape[0], grad.shape[2], grad.shape[3], 2))


def _register() -> None:
    torch.library.register_fake("interpolators::bilinear_input_grad", _fake_bilinear_input_grad)
    torch.library.register_fake("interpolators::slope_grid_grad", _fake_slope_grid_grad)


_extension.on_load(_register)
