"""The anti-aliasing baselines (pyramid, prefiltered) and the grid's local scale: known answers and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kornia.geometry.transform import build_pyramid
from torch.autograd import gradcheck

import interpolators
from interpolators.base import grid_jacobian, grid_local_scale
from interpolators.prefiltered import prefiltered_sample
from interpolators.pyramid import mip_level, pyramid_sample, top_level

ANTIALIAS = ["pyramid", "prefiltered"]


def similarity_grid(size_in: int, scale: float, angle_deg: float = 5.0, size_out: int | None = None,
                    shift: tuple[float, float] = (0.013, -0.021), align_corners: bool = False,
                    dtype=torch.float64) -> torch.Tensor:
    """The grid of a similarity about the centre of a square ``size_in`` input: output pixels of ``scale`` input
    pixels, rotated by ``angle_deg``; ``size_out`` defaults to covering the input."""
    size_out = size_out or max(1, round(size_in / scale))
    a = math.radians(angle_deg)
    k = scale * size_out / size_in  # normalized input units per normalized output unit
    theta = torch.tensor([[[k * math.cos(a), -k * math.sin(a), shift[0]], [k * math.sin(a), k * math.cos(a), shift[1]]]],
                         dtype=dtype)
    grid = F.affine_grid(theta, [1, 1, size_out, size_out], align_corners=False)
    if align_corners:  # the same input-pixel positions in align_corners=True coordinates
        grid = grid * size_in / (size_in - 1)
    return grid


def to_pixels(grid: torch.Tensor, h: int, w: int, align_corners: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if align_corners:
        return (grid[..., 0] + 1) * (w - 1) / 2, (grid[..., 1] + 1) * (h - 1) / 2
    return ((grid[..., 0] + 1) * w - 1) / 2, ((grid[..., 1] + 1) * h - 1) / 2


def linear_image(h: int, w: int, c: int = 2) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.stack([0.2 + 0.01 * xs - 0.004 * ys, 0.7 - 0.003 * xs + 0.008 * ys][:c])[None]


def checkerboard(n: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return ((xs + ys) % 2).to(torch.float64)[None, None]


class TestGridLocalScale:
    def test_matches_svdvals(self):
        grid = torch.randn(2, 5, 7, 2, dtype=torch.float64)
        for align_corners in (False, True):
            j = grid_jacobian(grid, 9, 11, align_corners)
            torch.testing.assert_close(grid_local_scale(grid, 9, 11, align_corners), torch.linalg.svdvals(j)[..., 0])

    def test_affine_jacobian_exact(self):
        # J = diag(W/2, H/2) A diag(2/Wo, 2/Ho) for affine_grid's A, at every pixel (edges included)
        a = torch.tensor([[0.9, -0.3], [0.2, 0.6]], dtype=torch.float64)
        theta = torch.cat([a, torch.tensor([[0.1], [-0.05]], dtype=torch.float64)], 1)[None]
        h, w, ho, wo = 40, 30, 7, 9
        grid = F.affine_grid(theta, [1, 1, ho, wo], align_corners=False)
        expected = torch.diag(torch.tensor([w / 2, h / 2], dtype=torch.float64)) @ a @ torch.diag(
            torch.tensor([2 / wo, 2 / ho], dtype=torch.float64))
        torch.testing.assert_close(grid_jacobian(grid, h, w, False), expected.expand(1, ho, wo, 2, 2))

    @pytest.mark.parametrize("angle", [0.0, 30.0, 90.0])
    def test_similarity_scale_whatever_the_rotation(self, angle):
        grid = similarity_grid(64, 4.0, angle)
        torch.testing.assert_close(grid_local_scale(grid, 64, 64, False), torch.full((1, 16, 16), 4.0, dtype=torch.float64))

    def test_axis_of_length_one(self):
        grid = similarity_grid(32, 2.0, 0.0, size_out=4)[:, :1]  # one output row: no y difference
        j = grid_jacobian(grid, 32, 32, False)
        assert torch.count_nonzero(j[..., 1]) == 0 and torch.allclose(j[..., 0, 0], torch.tensor(2.0, dtype=j.dtype))

    def test_detached(self):
        grid = torch.randn(1, 3, 3, 2, requires_grad=True)
        assert not grid_local_scale(grid, 8, 8, False).requires_grad


class TestMipLevel:
    def test_known_levels(self):
        rho = torch.tensor([0.25, 1.0, 1.0000001, 2.0, 2 * math.sqrt(2), 4.0, 1e6, float("nan")], dtype=torch.float64)
        level = mip_level(rho, max_level=5)
        assert level.tolist() == [0.0, 0.0, 0.0, 1.0, 1.5, 2.0, 5.0, 0.0]

    def test_top_level(self):
        assert [top_level(h, w) for h, w in ((1, 9), (2, 2), (3, 8), (64, 48), (128, 128))] == [0, 1, 1, 5, 7]


@pytest.mark.parametrize("name", ANTIALIAS)
class TestAntialiasKnownAnswers:
    @pytest.mark.parametrize("scale", [0.25, 0.5, 1.0])
    @pytest.mark.parametrize("padding_mode", interpolators.PADDING_MODES)
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_equals_bilinear_when_not_downsampling(self, name, scale, padding_mode, align_corners):
        # the prefiltered default is sigma="box"; "auto" takes the same path (both have sigma = 0 at rho <= 1)
        torch.manual_seed(0)
        image = torch.rand(2, 3, 16, 16, dtype=torch.float64, requires_grad=True)
        # an output 20 % wider than the input, to exercise the padding
        grid = similarity_grid(16, scale, 20.0, round(19 / scale), align_corners=align_corners).repeat(2, 1, 1, 1)
        grid.requires_grad_()
        hp = dict(padding_mode=padding_mode, align_corners=align_corners)
        out = interpolators.create(name, **hp)(image, grid)
        ref = interpolators.create("bilinear", **hp)(image, grid)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        weights = torch.rand_like(out)
        got = torch.autograd.grad((out * weights).sum(), (image, grid))
        expected = torch.autograd.grad((ref * weights).sum(), (image, grid))
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b)

    @pytest.mark.parametrize("scale", [2.0, 2.7, 4.0, 8.0])
    def test_constant_image(self, name, scale):
        image = torch.full((1, 2, 64, 64), 0.37, dtype=torch.float64)
        grid = similarity_grid(64, scale, 17.0)
        out = interpolators.create(name, padding_mode="border")(image, grid)
        torch.testing.assert_close(out, torch.full_like(out, 0.37))

    @pytest.mark.parametrize("scale", [2.0, 2.7, 4.0])
    @pytest.mark.parametrize("padding_mode", interpolators.PADDING_MODES)
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_linear_image_in_the_interior(self, name, scale, padding_mode, align_corners):
        # blurs and halvings keep a linear image linear away from the edges: the output is I(p) exactly
        image = linear_image(64, 64)
        grid = similarity_grid(64, scale, 11.0, size_out=6, align_corners=align_corners)  # the middle 6 s pixels
        out = interpolators.create(name, padding_mode=padding_mode, align_corners=align_corners)(image, grid)
        px, py = to_pixels(grid, 64, 64, align_corners)
        expected = torch.stack([0.2 + 0.01 * px - 0.004 * py, 0.7 - 0.003 * px + 0.008 * py], 1)
        torch.testing.assert_close(out, expected)

    def test_checkerboard_is_not_aliased(self, name):
        # a 1-pixel checkerboard has no content below Nyquist: at s = 4 the right answer is its mean, 0.5;
        # bilinear at off-lattice points aliases it into a pattern of large contrast
        image = checkerboard(64)
        grid = similarity_grid(64, 4.0, 7.0, size_out=8)
        out = interpolators.create(name, padding_mode="border")(image, grid)
        aliased = interpolators.create("bilinear", padding_mode="border")(image, grid)
        assert (out - 0.5).abs().max() < 0.02 and aliased.std() > 0.1

    def test_gradcheck_not_downsampling(self, name):
        image = torch.rand(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
        grid = similarity_grid(8, 0.7, 13.0).requires_grad_()
        assert gradcheck(interpolators.create(name, padding_mode="border"), (image, grid), eps=1e-6, atol=1e-5)

    def test_gradcheck_input_when_downsampling(self, name):
        # the level depends on the grid only, so the input gradient is exact at any scale
        image = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
        grid = similarity_grid(12, 2.6, 13.0, size_out=4)
        sampler = interpolators.create(name)
        assert gradcheck(lambda x: sampler(x, grid), (image,), eps=1e-6, atol=1e-5, fast_mode=True)

    def test_gradcheck_above_the_top_level(self, name):
        # a 4 x 4 input seen by 2 x 2 pixels of 8 input pixels: the level is clamped, so it is locally constant
        image = torch.rand(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
        grid = similarity_grid(4, 8.0, 13.0, size_out=2).requires_grad_()
        assert gradcheck(interpolators.create(name, padding_mode="border"), (image, grid), eps=1e-6, atol=1e-5)


def fixed_level_sampler(name: str):
    return {"pyramid": lambda x, g, level: pyramid_sample(x, g, "border", False, level=level),
            "prefiltered": lambda x, g, level: prefiltered_sample(x, g, "box", "border", False, level=level),
            "prefiltered_auto": lambda x, g, level: prefiltered_sample(x, g, "auto", "border", False, level=level)}[name]


@pytest.mark.parametrize("name", ANTIALIAS + ["prefiltered_auto"])
class TestFixedLevel:
    def test_gradcheck_with_the_level_held(self, name):
        # the level selection carries no gradient: with the level fixed both gradients are exact
        image = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
        grid = similarity_grid(12, 2.5, 13.0, size_out=4).requires_grad_()
        level = torch.tensor([0.3, 1.0, 1.6, 2.45], dtype=torch.float64).view(1, 1, 4).expand(1, 4, 4)
        fn = fixed_level_sampler(name)
        assert gradcheck(lambda x, g: fn(x, g, level), (image, grid), eps=1e-6, atol=1e-5, fast_mode=True)

    def test_module_gradient_is_the_fixed_level_gradient(self, name):
        image = torch.rand(1, 2, 32, 32, dtype=torch.float64)
        grid = similarity_grid(32, 3.0, 13.0).requires_grad_()
        hp = {"sigma": "auto"} if name == "prefiltered_auto" else {}
        out = interpolators.create(name.removesuffix("_auto"), padding_mode="border", **hp)(image, grid)
        (got,) = torch.autograd.grad(out.square().sum(), grid)
        level = mip_level(grid_local_scale(grid, 32, 32, False), 5)
        assert 1.5 < float(level.mean()) < 1.6  # log2 3 = 1.585: two levels are blended
        (expected,) = torch.autograd.grad(fixed_level_sampler(name)(image, grid, level).square().sum(), grid)
        torch.testing.assert_close(got, expected)


class TestPyramid:
    @pytest.mark.parametrize("level", [1, 2, 3])
    def test_integer_level_reads_one_pyramid_level(self, level):
        torch.manual_seed(0)
        image = torch.rand(1, 3, 64, 64, dtype=torch.float64)
        grid = similarity_grid(64, 2.0**level, 9.0)
        out = interpolators.create("pyramid", padding_mode="border")(image, grid)
        kornia_level = build_pyramid(image, level + 1, border_type="replicate")[level]
        torch.testing.assert_close(out, F.grid_sample(kornia_level, grid, padding_mode="border", align_corners=False))

    def test_half_level_blends_two(self):
        torch.manual_seed(0)
        image = torch.rand(1, 1, 64, 64, dtype=torch.float64)
        grid = similarity_grid(64, 2 * math.sqrt(2), 9.0)
        out = interpolators.create("pyramid")(image, grid)
        levels = build_pyramid(image, 3, border_type="constant")
        expected = sum(0.5 * F.grid_sample(levels[k], grid, align_corners=False) for k in (1, 2))
        torch.testing.assert_close(out, expected)

    def test_clamped_at_the_top_level(self):
        # 2 x 2 output pixels of 16 input pixels over an 8 x 8 input: level 4 is clamped to 3, the 1 x 1 top
        image = torch.rand(1, 1, 8, 8, dtype=torch.float64)
        grid = similarity_grid(8, 16.0, 9.0, size_out=2)
        out = interpolators.create("pyramid", padding_mode="border")(image, grid)
        top = build_pyramid(image, 4, border_type="replicate")[3]
        assert top.shape[-2:] == (1, 1)
        torch.testing.assert_close(out, top.expand_as(out))


class TestPrefiltered:
    def test_default_is_box_and_auto_is_bilinear_too_when_zooming_in(self):
        assert interpolators.create("prefiltered").sigma == "box"
        image = torch.rand(1, 2, 16, 16, dtype=torch.float64)
        grid = similarity_grid(16, 0.5, 9.0)
        out = interpolators.create("prefiltered", sigma="auto")(image, grid)
        torch.testing.assert_close(out, F.grid_sample(image, grid, align_corners=False), rtol=0, atol=0)

    def test_sigma_zero_is_bilinear(self):
        image = torch.rand(2, 3, 16, 16, dtype=torch.float64)
        grid = similarity_grid(16, 4.0, 9.0).repeat(2, 1, 1, 1)
        out = interpolators.create("prefiltered", sigma=0.0)(image, grid)
        torch.testing.assert_close(out, F.grid_sample(image, grid, align_corners=False), rtol=0, atol=0)

    @pytest.mark.parametrize("sigma", [0.6, 1.5])
    def test_fixed_sigma_gradcheck(self, sigma):
        image = torch.rand(1, 2, 10, 10, dtype=torch.float64, requires_grad=True)
        grid = similarity_grid(10, 1.7, 13.0).requires_grad_()
        sampler = interpolators.create("prefiltered", sigma=sigma, padding_mode="border")
        assert gradcheck(sampler, (image, grid), eps=1e-6, atol=1e-5, fast_mode=True)

    def test_fixed_sigma_blurs_at_every_scale(self):
        # unlike the adaptive default, a fixed sigma also blurs when zooming in: the checkerboard is flattened at s = 0.5
        image = checkerboard(16)
        grid = similarity_grid(16, 0.5, 7.0, size_out=12)
        out = interpolators.create("prefiltered", sigma=1.5, padding_mode="border")(image, grid)
        auto = interpolators.create("prefiltered", padding_mode="border")(image, grid)
        assert out.std() < 0.05 and auto.std() > 0.1

    @pytest.mark.parametrize("rule, c, level", [("auto", 1 / 4, 1.0), ("auto", 1 / 4, 1.5), ("auto", 1 / 4, 2.3),
                                                ("box", 1 / 12, 2.0), ("box", 1 / 12, 2.5), ("box", 1 / 12, 3.3)])
    def test_adaptive_blur_variance(self, rule, c, level):
        # the blur of an impulse, read back at the pixel centres, has variance c (4^l - 1) = c ((2^l)^2 - 1);
        # levels whose blurs have sigma >= 0.8 (below, kornia's kernel sampled at the integers has less variance)
        n = 65
        impulse = torch.zeros(1, 1, n, n, dtype=torch.float64)
        impulse[..., n // 2, n // 2] = 1.0
        grid = F.affine_grid(torch.eye(2, 3, dtype=torch.float64)[None], [1, 1, n, n], align_corners=False)
        out = prefiltered_sample(impulse, grid, rule, "zeros", False, level=torch.full((1, n, n), level))[0, 0]
        xs = torch.arange(n, dtype=torch.float64) - n // 2
        assert float(out.sum()) == pytest.approx(1.0)
        variance = float((out.sum(0) * xs.square()).sum())
        assert variance == pytest.approx(c * (4.0**level - 1), rel=0.03)

    @pytest.mark.parametrize("sigma, error, match", [
        (-1.0, ValueError, r"sigma: expected a value >= 0"),
        ("wide", ValueError, r"prefiltered.sigma: expected float or one of 'auto', 'box'"),
        (float("inf"), ValueError, r"sigma: expected a finite value"),
    ])
    def test_bad_sigma(self, sigma, error, match):
        with pytest.raises(error, match=match):
            interpolators.create("prefiltered", sigma=sigma)

    def test_sigma_from_the_command_line(self):
        spec = interpolators.hyperparameters(interpolators.get("prefiltered"))["sigma"]
        assert spec.parse("auto", "prefiltered") == "auto" and spec.parse("box", "prefiltered") == "box"
        assert spec.parse("1.5", "prefiltered") == 1.5
