"""The grid_sample baselines: known answers and gradcheck in float64 at off-lattice points."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import interpolators


def _off_lattice_grid(b=2, ho=3, wo=4, seed=0) -> torch.Tensor:
    # points in the interior, away from pixel centres and edges, where the samplers are differentiable
    g = torch.Generator().manual_seed(seed)
    grid = torch.rand(b, ho, wo, 2, generator=g, dtype=torch.float64) * 1.2 - 0.6
    return grid + 0.013


class TestBilinear:
    def test_linear_image_exact_with_exact_slope(self):
        # I = 0.2 + 0.05 px - 0.03 py is reproduced exactly, and dI/dgx = 0.05 * W / 2 (align_corners=False)
        h, w = 10, 12
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
        image = (0.2 + 0.05 * xs - 0.03 * ys)[None, None]
        grid = _off_lattice_grid(b=1).requires_grad_()
        out = interpolators.create("bilinear")(image, grid)
        px = ((grid[..., 0] + 1) * w - 1) / 2
        py = ((grid[..., 1] + 1) * h - 1) / 2
        torch.testing.assert_close(out[:, 0], (0.2 + 0.05 * px - 0.03 * py).detach())
        out.sum().backward()
        expected = torch.tensor([0.05 * w / 2, -0.03 * h / 2], dtype=torch.float64).expand_as(grid)
        torch.testing.assert_close(grid.grad, expected)

    @pytest.mark.parametrize("align_corners", [False, True])
    def test_gradcheck(self, align_corners):
        image = torch.rand(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
        grid = _off_lattice_grid().requires_grad_()
        sampler = interpolators.create("bilinear", align_corners=align_corners)
        assert gradcheck(sampler, (image, grid), eps=1e-6, atol=1e-5)


class TestBicubic:
    def test_matches_grid_sample(self):
        image = torch.rand(1, 3, 8, 8, dtype=torch.float64)
        grid = _off_lattice_grid(b=1)
        expected = F.grid_sample(image, grid, mode="bicubic", align_corners=False)
        torch.testing.assert_close(interpolators.create("bicubic")(image, grid), expected)

    def test_gradcheck(self):
        image = torch.rand(2, 1, 7, 6, dtype=torch.float64, requires_grad=True)
        grid = _off_lattice_grid().requires_grad_()
        assert gradcheck(interpolators.create("bicubic", padding_mode="border"), (image, grid), eps=1e-6, atol=1e-5)


class TestNearest:
    def test_zero_grid_gradient_everywhere(self):
        image = torch.rand(1, 1, 8, 8, dtype=torch.float64)
        grid = _off_lattice_grid(b=1).requires_grad_()
        interpolators.create("nearest")(image, grid).sum().backward()
        assert torch.count_nonzero(grid.grad) == 0

    def test_gradcheck_input(self):
        image = torch.rand(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
        grid = _off_lattice_grid()
        assert gradcheck(lambda x: interpolators.create("nearest")(x, grid), (image,), eps=1e-6, atol=1e-5)
