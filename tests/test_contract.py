"""grid_sample's contract, checked for every registered interpolator (plugins included).

A new method, built in or from a plugin, is tested here without writing a line:
shapes, dtypes, batch and channels, every padding mode and ``align_corners``,
CUDA when available, non-contiguous inputs, gradients, and each kind of bad input.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import interpolators

METHODS = interpolators.available()


def _inputs(b=2, c=3, h=9, w=11, ho=5, wo=7, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, c, h, w, generator=g, dtype=dtype).to(device)
    grid = (torch.rand(b, ho, wo, 2, generator=g, dtype=dtype) * 1.8 - 0.9).to(device)
    return image, grid


@pytest.mark.parametrize("name", METHODS)
class TestContract:
    def test_smoke_shapes(self, name, device, dtype):
        sampler = interpolators.create(name)
        image, grid = _inputs(dtype=dtype, device=device)
        out = sampler(image, grid)
        assert out.shape == (2, 3, 5, 7)
        assert out.dtype == dtype and out.device.type == device.type
        assert torch.isfinite(out).all()

    @pytest.mark.parametrize("b, c", [(1, 1), (4, 1), (3, 3)])
    def test_batch_and_channels(self, name, b, c):
        image, grid = _inputs(b=b, c=c)
        assert interpolators.create(name)(image, grid).shape == (b, c, 5, 7)

    @pytest.mark.parametrize("padding_mode", interpolators.PADDING_MODES)
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_padding_and_align_corners(self, name, padding_mode, align_corners):
        sampler = interpolators.create(name, padding_mode=padding_mode, align_corners=align_corners)
        image, grid = _inputs()
        grid = grid * 1.3  # some points outside, to exercise padding
        out = sampler(image, grid.requires_grad_())
        assert out.shape == (2, 3, 5, 7) and torch.isfinite(out).all()
        out.sum().backward()
        assert torch.isfinite(grid.grad).all()

    def test_constant_image_in_interior(self, name):
        # every method reproduces a constant image where all its samples fall inside
        image = torch.full((1, 2, 16, 16), 0.37, dtype=torch.float64)
        grid = torch.rand(1, 4, 4, 2, dtype=torch.float64) * 0.5 - 0.25
        out = interpolators.create(name, padding_mode="border")(image, grid)
        torch.testing.assert_close(out, torch.full_like(out, 0.37))

    def test_identity_grid_on_matching_size(self, name):
        # an identity grid at the input's own size samples pixel centres: the baselines return the
        # input exactly; multi-sampling methods may smooth, but stay close on a smooth image
        torch.manual_seed(0)
        ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
        image = (0.5 + 0.3 * torch.sin(xs / 3) * torch.cos(ys / 4)).to(torch.float64)[None, None]
        theta = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64)
        grid = F.affine_grid(theta, [1, 1, 12, 12], align_corners=False)
        out = interpolators.create(name, padding_mode="border")(image, grid)
        inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))
        if name in ("nearest", "bilinear", "bicubic"):
            torch.testing.assert_close(out, image)
        else:
            assert (out - image)[inner].abs().mean() < 0.05

    def test_non_contiguous(self, name):
        image, grid = _inputs(b=2, c=3, h=11, w=9)
        image_nc = image.transpose(2, 3)  # (2, 3, 9, 11), non-contiguous
        grid_nc = torch.rand(2, 7, 5, 2).transpose(1, 2) * 1.8 - 0.9
        assert not image_nc.is_contiguous() and not grid_nc.is_contiguous()
        torch.manual_seed(0)
        out = interpolators.create(name)(image_nc, grid_nc)
        torch.manual_seed(0)
        ref = interpolators.create(name)(image_nc.contiguous(), grid_nc.contiguous())
        torch.testing.assert_close(out, ref)

    def test_backward_reaches_input_and_grid(self, name):
        image, grid = _inputs(dtype=torch.float64)
        image.requires_grad_()
        grid.requires_grad_()
        interpolators.create(name)(image, grid).square().sum().backward()
        assert image.grad is not None and image.grad.abs().sum() > 0
        assert grid.grad is not None and torch.isfinite(grid.grad).all()
        if name != "nearest":  # nearest has a zero grid gradient everywhere, by construction
            assert grid.grad.abs().sum() > 0

    def test_reproducible_under_manual_seed(self, name):
        image, grid = _inputs()
        sampler = interpolators.create(name)
        torch.manual_seed(123)
        a = sampler(image, grid)
        torch.manual_seed(123)
        b = sampler(image, grid)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        gen_a = torch.Generator().manual_seed(7)
        gen_b = torch.Generator().manual_seed(7)
        torch.testing.assert_close(sampler(image, grid, generator=gen_a), sampler(image, grid, generator=gen_b))

    def test_module_hparams_roundtrip(self, name):
        sampler = interpolators.create(name, padding_mode="reflection")
        assert sampler.hparams()["padding_mode"] == "reflection"
        assert set(sampler.hparams()) == set(interpolators.describe(name)["hparams"])
        again = interpolators.create(name, **sampler.hparams())
        assert again.hparams() == sampler.hparams()


@pytest.mark.parametrize("name", METHODS)
class TestContractErrors:
    @pytest.mark.parametrize(
        "image_shape, grid_shape, match",
        [
            ((3, 9, 11), (2, 5, 7, 2), r"input: expected 4 dimensions \(B, C, H, W\)"),
            ((2, 3, 9, 11), (5, 7, 2), r"grid: expected 4 dimensions \(B, Ho, Wo, 2\)"),
            ((2, 3, 9, 11), (3, 5, 7, 2), r"grid: expected batch size 2 to match input, got 3"),
            ((2, 3, 9, 11), (2, 5, 7, 3), r"grid: expected the last dimension to be 2"),
            ((2, 0, 9, 11), (2, 5, 7, 2), r"input: expected non-empty"),
        ],
    )
    def test_bad_shapes(self, name, image_shape, grid_shape, match):
        sampler = interpolators.create(name)
        with pytest.raises(ValueError, match=match):
            sampler(torch.rand(image_shape), torch.rand(grid_shape))

    def test_integer_dtype(self, name):
        sampler = interpolators.create(name)
        with pytest.raises(TypeError, match=r"input: expected a floating dtype .* got torch.uint8"):
            sampler(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.zeros(1, 2, 2, 2))
        with pytest.raises(TypeError, match=r"grid: expected a floating dtype .* got torch.int64"):
            sampler(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 2, 2, dtype=torch.long))

    def test_dtype_mismatch(self, name):
        with pytest.raises(TypeError, match=r"grid: expected the same dtype as input \(torch.float32\)"):
            interpolators.create(name)(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 2, 2, dtype=torch.float64))

    def test_not_a_tensor(self, name):
        with pytest.raises(TypeError, match=r"input: expected a torch.Tensor, got ndarray"):
            interpolators.create(name)(torch.zeros(1, 1, 4, 4).numpy(), torch.zeros(1, 2, 2, 2))

    def test_bad_generator(self, name):
        with pytest.raises(TypeError, match=r"generator: expected a torch.Generator"):
            interpolators.create(name)(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 2, 2), generator=3)

    def test_device_mismatch(self, name):
        sampler = interpolators.create(name)
        image, grid = torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 2, 2)
        if torch.cuda.is_available():
            with pytest.raises(ValueError, match=r"grid: expected the same device as input"):
                sampler(image, grid.cuda())
        else:
            # the meta device stands in for a second device on a CPU-only machine
            with pytest.raises(ValueError, match=r"grid: expected the same device as input \(cpu\), got meta"):
                sampler(image, grid.to("meta"))

    def test_bad_padding_mode(self, name):
        with pytest.raises(ValueError, match=r"padding_mode: expected one of"):
            interpolators.create(name, padding_mode="circular")
