"""L-STN (linearized multi-sampling): the config, the counter-based draw, the functional on both backends, the module.

Known answers: on an image linear in x and y the fitted plane is exact whatever the offsets, so the value is
bilinear's and the grid gradient is the image's slope; the input gradient is bilinear's at the sampling point;
both backends equal a plain ``torch.linalg.lstsq`` implementation (tests/reference.py) in float64.
"""

from __future__ import annotations

import math
import warnings

import pytest
import skimage.data
import torch
import torch.nn.functional as F
from scipy import stats
from torch.autograd import gradcheck

import interpolators
from interpolators.base import normalized_to_pixel_scale
from interpolators.lstn import LSTN, LSTNConfig, lstn_sample
from interpolators.lstn.config import MIN_SAMPLES, STABLE_SAMPLES
from interpolators.lstn.eager import _mul32, hash_normals, lstn_eager, mix32
from reference import lstn_reference
from suites.cost import saved_tensor_bytes

F64 = torch.float64
SLOPES = [(0.02, -0.01), (-0.05, 0.03)]  # (dI/dpx, dI/dpy) of each channel of the linear image


def linear_image(h: int, w: int, b: int = 1) -> torch.Tensor:
    """``I_c = 0.3 + a_c px - b_c py`` in input pixel coordinates, ``(b, 2, h, w)`` float64."""
    py, px = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    return torch.stack([0.3 + ax * px + ay * py for ax, ay in SLOPES]).expand(b, -1, -1, -1).clone()


def to_normalized(px: torch.Tensor, size: int, align_corners: bool) -> torch.Tensor:
    return 2 * px / (size - 1) - 1 if align_corners else (2 * px + 1) / size - 1


def interior_grid(h, w, ho, wo, margin, align_corners, generator, b=1):
    """Off-lattice points at least ``margin`` input pixels inside the image; returns (grid, px, py)."""
    px = margin + torch.rand(b, ho, wo, generator=generator, dtype=F64) * (w - 1 - 2 * margin)
    py = margin + torch.rand(b, ho, wo, generator=generator, dtype=F64) * (h - 1 - 2 * margin)
    grid = torch.stack([to_normalized(px, w, align_corners), to_normalized(py, h, align_corners)], dim=-1)
    return grid, px, py


def pixel_offsets(m, b, ho, wo, h, w, max_px, align_corners, generator):
    """Fixed offsets ``(m, b, ho, wo, 2)`` uniform in +-``max_px`` input pixels, in normalized units."""
    px = (torch.rand(m, b, ho, wo, 2, generator=generator, dtype=F64) * 2 - 1) * max_px
    scale = torch.tensor([normalized_to_pixel_scale(w, align_corners), normalized_to_pixel_scale(h, align_corners)])
    return px / scale.to(F64)


def random_case(b=2, c=3, h=9, w=11, ho=5, wo=7, k=8, spread=1.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, c, h, w, generator=g, dtype=F64)
    grid = (torch.rand(b, ho, wo, 2, generator=g, dtype=F64) * 2 - 1) * spread
    offsets = torch.randn(k - 1, b, ho, wo, 2, generator=g, dtype=F64) * 0.15
    return image, grid, offsets


class TestLSTNConfig:
    def test_defaults_are_the_reference_implementations(self):
        config = LSTNConfig()
        assert (config.num_samples, config.noise_strength, config.push_away, config.fixed_bias) == (8, 0.5, True, False)
        assert config.backend == "auto"

    def test_frozen(self):
        with pytest.raises(AttributeError):
            LSTNConfig().num_samples = 9

    @pytest.mark.parametrize(
        "kwargs, error, match",
        [
            ({"num_samples": 5}, ValueError, r"num_samples: expected at least 6 .*got 5"),
            ({"num_samples": 1}, ValueError, r"num_samples: expected at least 6 .*got 1"),
            ({"num_samples": 8.0}, TypeError, r"num_samples: expected an integer, got 8.0"),
            ({"num_samples": 65}, ValueError, r"num_samples: expected a value <= 64 \(time grows with it\), got 65"),
            ({"num_samples": True}, TypeError, r"num_samples: expected an integer"),
            ({"noise_strength": -0.1}, ValueError, r"noise_strength: expected a value >= 0, got -0.1"),
            ({"noise_strength": float("nan")}, ValueError, r"noise_strength: expected a finite value"),
            ({"noise_strength": "0.5"}, TypeError, r"noise_strength: expected a number, got '0.5'"),
            ({"noise_strength": 0.0, "push_away": False}, ValueError, r"noise_strength: expected > 0 when push_away"),
            ({"push_away": 1}, TypeError, r"push_away: expected a bool, got 1"),
            ({"fixed_bias": None}, TypeError, r"fixed_bias: expected a bool, got None"),
            ({"align_corners": "yes"}, TypeError, r"align_corners: expected a bool, got 'yes'"),
            ({"padding_mode": "circular"}, ValueError, r"padding_mode: expected one of .* got 'circular'"),
            ({"backend": "compiled"}, ValueError, r"backend: expected one of \['auto', 'operator', 'eager'\]"),
        ],
    )
    def test_exceptions(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            LSTNConfig(**kwargs)

    def test_offset_std_is_the_references_two_terms(self):
        # N(0, (s / Wo)^2) + push_away * N(0, (2 / W)^2) per axis, in normalized units
        sx, sy = LSTNConfig(noise_strength=2.0).offset_std((20, 40), (30, 16))
        assert (sx, sy) == pytest.approx((math.hypot(2.0 / 16, 2 / 40), math.hypot(2.0 / 30, 2 / 20)))
        assert LSTNConfig(push_away=False).offset_std((20, 40), (30, 16)) == pytest.approx((0.5 / 16, 0.5 / 30))


class TestSmallK:
    """Why ``num_samples`` >= 6 (refused below) and >= 8 (warned below): the plane's intercept blows up."""

    @staticmethod
    def largest_deviation_from_bilinear(k: int) -> float:
        image = F.avg_pool2d(torch.tensor(skimage.data.camera(), dtype=F64)[None, None] / 255, 4)  # 128 x 128
        a = math.radians(7)
        theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]], dtype=F64) / 2
        grid = F.affine_grid(theta, [1, 1, 64, 64], align_corners=False)
        bilinear = F.grid_sample(image, grid, align_corners=False)
        sx, sy = LSTNConfig().offset_std((128, 128), (64, 64))
        largest = 0.0
        for key in range(5):
            offsets = torch.stack(hash_normals(torch.tensor(7919 * key + 1), (1, k - 1, 64, 64), F64))
            value = lstn_eager(image, grid, offsets, sx, sy, "zeros", False, False)
            largest = max(largest, (value - bilinear).abs().max().item())
        return largest

    def test_five_samples_leave_the_image_range_eight_do_not(self):
        # measured: K = 5 deviates up to 7.2 from bilinear on this [0, 1] image, K = 8 up to 0.63 (the fit's own
        # smoothing at edges); the inverse normal matrix has no finite mean below K = 6, no finite variance below 8
        assert self.largest_deviation_from_bilinear(5) > 2.0
        assert self.largest_deviation_from_bilinear(8) < 1.0

    def test_refused_below_six_warned_below_eight(self):
        with pytest.raises(ValueError, match="num_samples: expected at least 6"):
            LSTNConfig(num_samples=MIN_SAMPLES - 1)
        for k in range(MIN_SAMPLES, STABLE_SAMPLES):
            with pytest.warns(RuntimeWarning, match=f"num_samples={k} leaves the plane's intercept with infinite variance"):
                LSTNConfig(num_samples=k)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            LSTNConfig(num_samples=STABLE_SAMPLES)


class TestHashNormals:
    """The counter-based draw both backends share (``interpolators.lstn.eager.hash_normals``)."""

    def test_mul32_is_multiplication_mod_2_32(self):
        x = torch.tensor([0, 1, 12345, 2**31 - 1, 2**31, 2**32 - 1], dtype=torch.int64)
        for constant in (0x7FEB352D, 0x846CA68B):
            assert _mul32(x, constant).tolist() == [(v * constant) % 2**32 for v in x.tolist()]

    def test_mix32_is_a_bijection_on_a_block(self):
        block = torch.arange(2**16, dtype=torch.int64) * 65537
        assert mix32(block).unique().numel() == block.numel()

    def test_independent_standard_normals(self):
        du, dv = hash_normals(torch.tensor(0x2468ACE0), (200_000,), F64)
        for sample in (du, dv):  # KS against N(0, 1): p far from tiny for a good draw
            assert stats.kstest(sample.numpy(), "norm").pvalue > 1e-3
        assert abs(torch.corrcoef(torch.stack([du, dv]))[0, 1]) < 0.01
        assert abs(torch.corrcoef(torch.stack([du[1:], du[:-1]]))[0, 1]) < 0.01  # neighbours independent

    def test_other_keys_other_streams(self):
        a, _ = hash_normals(torch.tensor(1), (1000,), F64)
        b, _ = hash_normals(torch.tensor(2), (1000,), F64)
        assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1]) < 0.1

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_draws_in_float32(self, dtype):
        du, _ = hash_normals(torch.tensor(3), (10_000,), dtype)
        assert du.dtype == dtype and torch.isfinite(du).all()


class TestLstnSample:
    def test_smoke(self, backend):
        image, grid, _ = random_case()
        out = lstn_sample(image.float(), grid.float(), LSTNConfig(backend=backend))
        assert out.shape == (2, 3, 5, 7) and out.dtype == torch.float32
        assert torch.isfinite(out).all()

    @pytest.mark.parametrize(
        "b, c, h, w, ho, wo", [(1, 1, 4, 4, 1, 1), (3, 2, 8, 13, 4, 3), (2, 4, 5, 6, 11, 9), (1, 3, 32, 32, 8, 8)]
    )
    @pytest.mark.parametrize("num_samples", [8, 13])
    def test_cardinality(self, backend, b, c, h, w, ho, wo, num_samples):
        image, grid = torch.rand(b, c, h, w), torch.rand(b, ho, wo, 2) * 2 - 1
        config = LSTNConfig(num_samples=num_samples, backend=backend)
        assert lstn_sample(image, grid, config).shape == (b, c, ho, wo)
        offsets = torch.zeros(num_samples - 1, b, ho, wo, 2).normal_(std=0.1)
        assert lstn_sample(image, grid, config, offsets=offsets).shape == (b, c, ho, wo)

    def test_exception_offsets_config_and_inputs(self):
        image, grid = torch.rand(2, 1, 6, 6), torch.zeros(2, 3, 4, 2)
        with pytest.raises(ValueError, match=r"offsets: expected shape .* = \(7, 2, 3, 4, 2\), got \(7, 3, 4, 2\)"):
            lstn_sample(image, grid, offsets=torch.zeros(7, 3, 4, 2))
        with pytest.raises(ValueError, match=r"offsets: expected shape .* = \(8, 2, 3, 4, 2\), got \(7, 2, 3, 4, 2\)"):
            lstn_sample(image, grid, LSTNConfig(num_samples=9), offsets=torch.zeros(7, 2, 3, 4, 2))
        with pytest.raises(TypeError, match=r"offsets: expected dtype torch.float32 .* got torch.float64"):
            lstn_sample(image, grid, offsets=torch.zeros(7, 2, 3, 4, 2, dtype=F64))
        with pytest.raises(TypeError, match=r"offsets: expected a torch.Tensor or None, got list"):
            lstn_sample(image, grid, offsets=[0.0])
        with pytest.raises(TypeError, match=r"config: expected an LSTNConfig, got dict"):
            lstn_sample(image, grid, {"num_samples": 8})
        with pytest.raises(ValueError, match=r"grid: expected batch size 2 to match input, got 1"):
            lstn_sample(image, torch.zeros(1, 3, 4, 2))

    @pytest.mark.parametrize("align_corners", [False, True])
    @pytest.mark.parametrize("fixed_bias", [False, True])
    @pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
    def test_linear_image_exact_with_fixed_offsets(self, backend, align_corners, fixed_bias, padding_mode):
        h, w, ho, wo = 12, 16, 3, 4
        g = torch.Generator().manual_seed(1)
        image = linear_image(h, w, b=2)
        grid, px, py = interior_grid(h, w, ho, wo, 3.0, align_corners, g, b=2)
        offsets = pixel_offsets(7, 2, ho, wo, h, w, 1.5, align_corners, g)
        grid.requires_grad_()
        config = LSTNConfig(fixed_bias=fixed_bias, padding_mode=padding_mode, align_corners=align_corners, backend=backend)
        out = lstn_sample(image, grid, config, offsets=offsets)
        expected = torch.stack([0.3 + ax * px + ay * py for ax, ay in SLOPES], dim=1)
        torch.testing.assert_close(out, expected)
        out.sum().backward()
        sx, sy = normalized_to_pixel_scale(w, align_corners), normalized_to_pixel_scale(h, align_corners)
        slope = torch.tensor([sum(ax for ax, _ in SLOPES) * sx, sum(ay for _, ay in SLOPES) * sy], dtype=F64)
        torch.testing.assert_close(grid.grad, slope.expand_as(grid))

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_linear_image_exact_with_drawn_offsets(self, backend, seed):
        # default noise: about 3 input pixels here; points stay 20 px inside, so every sample is interior
        h = w = 64
        gen = torch.Generator().manual_seed(seed)
        image = linear_image(h, w)
        grid, px, py = interior_grid(h, w, 6, 6, 20.0, False, gen)
        grid.requires_grad_()
        out = lstn_sample(image, grid, LSTNConfig(backend=backend), generator=gen)
        torch.testing.assert_close(out, torch.stack([0.3 + ax * px + ay * py for ax, ay in SLOPES], dim=1))
        weights = torch.tensor([1.0, -2.0], dtype=F64).view(1, 2, 1, 1)
        (out * weights).sum().backward()
        slope = [sum(wc * s[axis] for wc, s in zip((1.0, -2.0), SLOPES)) * w / 2 for axis in (0, 1)]
        torch.testing.assert_close(grid.grad, torch.tensor(slope, dtype=F64).expand_as(grid))

    def test_constant_image(self, backend):
        image = torch.full((2, 3, 10, 10), 0.37, dtype=F64, requires_grad=True)
        grid = (torch.rand(2, 4, 5, 2, dtype=F64) * 0.4 - 0.2).requires_grad_()
        out = lstn_sample(image, grid, LSTNConfig(padding_mode="border", backend=backend))
        torch.testing.assert_close(out, torch.full_like(out, 0.37))
        grad_out = torch.rand_like(out)
        grad_image, grad_grid = torch.autograd.grad(out, (image, grid), grad_out)
        torch.testing.assert_close(grad_grid, torch.zeros_like(grad_grid), atol=1e-10, rtol=0)
        bilinear = F.grid_sample(image, grid.detach(), align_corners=False, padding_mode="border")
        torch.testing.assert_close(grad_image, torch.autograd.grad(bilinear, image, grad_out)[0])

    @pytest.mark.parametrize("fixed_bias", [False, True])
    def test_input_gradient_is_bilinear_at_the_point(self, backend, fixed_bias):
        image, grid, offsets = random_case()
        image.requires_grad_()
        config = LSTNConfig(fixed_bias=fixed_bias, backend=backend)
        out = lstn_sample(image, grid.requires_grad_(), config, offsets=offsets)
        grad_out = torch.randn_like(out)
        bilinear = F.grid_sample(image, grid.detach(), align_corners=False)
        expected = torch.autograd.grad(bilinear, image, grad_out)[0]
        torch.testing.assert_close(torch.autograd.grad(out, image, grad_out)[0], expected, rtol=1e-12, atol=1e-14)

    def test_fixed_bias(self, backend):
        image, grid, offsets = random_case()
        grid.requires_grad_()
        plain = lstn_sample(image, grid, LSTNConfig(fixed_bias=True, backend=backend), offsets=offsets)
        biased = lstn_sample(image, grid, LSTNConfig(backend=backend), offsets=offsets)
        torch.testing.assert_close(plain, F.grid_sample(image, grid.detach(), align_corners=False))
        assert (biased - plain).abs().max() > 1e-3  # the intercept c: the plane misses the centre on a random image
        torch.testing.assert_close(biased, lstn_reference(image, grid, offsets))
        grad_plain, grad_biased = (torch.autograd.grad(o.sum(), grid)[0] for o in (plain, biased))
        torch.testing.assert_close(grad_plain, grad_biased)  # the slope does not depend on the bias

    @pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
    @pytest.mark.parametrize("align_corners", [False, True])
    @pytest.mark.parametrize("fixed_bias", [False, True])
    def test_matches_reference(self, backend, padding_mode, align_corners, fixed_bias):
        image, grid, offsets = random_case(k=9)
        image.requires_grad_()
        grid.requires_grad_()
        kwargs = dict(fixed_bias=fixed_bias, padding_mode=padding_mode, align_corners=align_corners)
        fast = lstn_sample(image, grid, LSTNConfig(num_samples=9, backend=backend, **kwargs), offsets=offsets)
        slow = lstn_reference(image, grid, offsets, **kwargs)
        torch.testing.assert_close(fast, slow)
        grad_out = torch.randn_like(fast)
        for a, b in zip(torch.autograd.grad(fast, (image, grid), grad_out), torch.autograd.grad(slow, (image, grid), grad_out)):
            torch.testing.assert_close(a, b)

    @pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
    def test_edge_cases_lattice_border_outside(self, backend, padding_mode):
        # lattice points (where bilinear's grid gradient jumps), the border, and points outside the image
        h = w = 8
        image = torch.rand(1, 2, h, w, dtype=F64, requires_grad=True)
        xs = torch.tensor([-1.5, -1.0, -1 + 1 / w, -0.25, 0.0, 0.25, 1 - 1 / w, 1.0, 1.5], dtype=F64)
        grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), dim=-1).unsqueeze(0).requires_grad_()
        offsets = torch.randn(7, *grid.shape, generator=torch.Generator().manual_seed(3), dtype=F64) * 0.1
        out = lstn_sample(image, grid, LSTNConfig(padding_mode=padding_mode, backend=backend), offsets=offsets)
        grad_image, grad_grid = torch.autograd.grad(out.square().sum(), (image, grid))
        assert torch.isfinite(out).all() and torch.isfinite(grad_image).all() and torch.isfinite(grad_grid).all()
        slow = lstn_reference(image, grid, offsets, padding_mode=padding_mode)
        torch.testing.assert_close(out, slow)
        torch.testing.assert_close(grad_grid, torch.autograd.grad(slow.square().sum(), grid)[0])

    @pytest.mark.parametrize("padding_mode", ["zeros", "border"])
    def test_far_outside_is_flat(self, backend, padding_mode):
        # far past a corner every auxiliary point reads the same value (0, or the corner pixel): zero slope
        image = torch.rand(1, 1, 6, 6, dtype=F64)
        grid = torch.full((1, 2, 2, 2), 40.0, dtype=F64, requires_grad=True)
        out = lstn_sample(image, grid, LSTNConfig(padding_mode=padding_mode, backend=backend))
        corner = 0.0 if padding_mode == "zeros" else image[0, 0, -1, -1].item()
        torch.testing.assert_close(out, torch.full_like(out, corner))
        torch.testing.assert_close(torch.autograd.grad(out.sum(), grid)[0], torch.zeros_like(grid), atol=1e-9, rtol=0)

    def test_reproducible(self, backend):
        image, grid, _ = random_case()
        grid.requires_grad_()
        config = LSTNConfig(backend=backend)

        def run(**kwargs):
            out = lstn_sample(image, grid, config, **kwargs)
            return out.detach(), torch.autograd.grad(out.sum(), grid)[0]

        torch.manual_seed(11)
        a = run()
        torch.manual_seed(11)
        b = run()
        c = run()
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        assert not torch.equal(a[1], c[1])
        state = torch.get_rng_state()
        d = run(generator=torch.Generator().manual_seed(5))
        e = run(generator=torch.Generator().manual_seed(5))
        f = run(generator=torch.Generator().manual_seed(6))
        assert torch.equal(torch.get_rng_state(), state)  # an explicit generator leaves the global one alone
        for x, y in zip(d, e):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        assert not torch.equal(d[0], f[0]) and not torch.equal(d[1], f[1])

    def test_drawn_offsets_are_the_hashed_normals_times_the_spread(self, backend):
        """A draw is one key from the generator, hashed into normals; the offsets are those times offset_std."""
        image, grid = torch.rand(2, 3, 20, 24, dtype=F64), torch.rand(2, 7, 9, 2, dtype=F64) * 2 - 1
        key = torch.randint(0, 2**32, (), dtype=torch.int64, generator=torch.Generator().manual_seed(5))
        du, dv = hash_normals(key, (2, 7, 7, 9), F64)
        sx, sy = LSTNConfig().offset_std((20, 24), (7, 9))
        offsets = torch.stack((du * sx, dv * sy), dim=-1).transpose(0, 1)  # (M, B, Ho, Wo, 2)
        fixed = lstn_sample(image, grid, LSTNConfig(backend=backend), offsets=offsets)
        drawn = lstn_sample(image, grid, LSTNConfig(backend=backend), generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(drawn, fixed, rtol=1e-10, atol=1e-12)

    def test_too_many_points_for_the_counter(self, backend):
        grid = torch.zeros(1, 1, 1, 2).expand(2**17, 1, 2**13, 2)  # 2^17 * 7 * 2^13 points > 2^32
        with pytest.raises(ValueError, match=r"at most 2\^32 auxiliary points per call"):
            lstn_sample(torch.zeros(1, 1, 1, 1).expand(2**17, 1, 1, 1), grid, LSTNConfig(backend=backend))

    def test_nothing_of_size_k_saved_for_backward(self, backend):
        image = torch.rand(2, 3, 32, 32, requires_grad=True)
        grid = (torch.rand(2, 16, 16, 2) * 2 - 1).requires_grad_()
        bilinear = saved_tensor_bytes(lambda: F.grid_sample(image, grid, align_corners=False))
        lstn8 = saved_tensor_bytes(lambda: lstn_sample(image, grid, LSTNConfig(backend=backend)))
        lstn32 = saved_tensor_bytes(lambda: lstn_sample(image, grid, LSTNConfig(num_samples=32, backend=backend)))
        assert lstn8 == lstn32  # independent of the number of samples
        assert lstn8 < 2 * bilinear  # grid and two slopes (B, C, Ho, Wo); the operator does not keep the input
        assert lstn8 < 2 * image.numel() * image.element_size()  # far from K copies of the input

    @pytest.mark.parametrize("fixed_bias", [False, True])
    def test_output_can_be_modified_in_place(self, backend, fixed_bias):
        image, grid, offsets = random_case()
        image.requires_grad_()
        grid.requires_grad_()
        out = lstn_sample(image, grid, LSTNConfig(fixed_bias=fixed_bias, backend=backend), offsets=offsets)
        expected = torch.autograd.grad(out.sum(), (image, grid), retain_graph=True)
        out.mul_(1.0)
        for a, b in zip(torch.autograd.grad(out.sum(), (image, grid)), expected):
            torch.testing.assert_close(a, b)

    def test_no_grad(self, backend):
        image, grid, offsets = random_case()
        config = LSTNConfig(backend=backend)
        with torch.no_grad():
            out = lstn_sample(image, grid.requires_grad_(), config, offsets=offsets)
        assert not out.requires_grad
        torch.testing.assert_close(out, lstn_sample(image, grid, config, offsets=offsets).detach())

    def test_gradcheck_input(self, backend):
        # with fixed_bias the value is bilinear's, so its input gradient is the true derivative
        image, grid, offsets = random_case(b=1, c=2, h=5, w=6, ho=3, wo=2)
        config = LSTNConfig(fixed_bias=True, backend=backend)
        assert gradcheck(lambda x: lstn_sample(x, grid, config, offsets=offsets), (image.requires_grad_(),))

    @pytest.mark.parametrize("align_corners", [False, True])
    def test_gradcheck_grid_on_linear_image(self, backend, align_corners):
        # on a linear image the fitted plane is exact, so the slope is the true derivative of the value
        g = torch.Generator().manual_seed(4)
        image = linear_image(10, 12)
        grid, _, _ = interior_grid(10, 12, 2, 3, 3.0, align_corners, g)
        offsets = pixel_offsets(7, 1, 2, 3, 10, 12, 1.5, align_corners, g)
        config = LSTNConfig(align_corners=align_corners, backend=backend)
        assert gradcheck(lambda gr: lstn_sample(image, gr, config, offsets=offsets), (grid.requires_grad_(),))


class TestLstnReference:
    def test_linear_image_exact(self):
        g = torch.Generator().manual_seed(7)
        image = linear_image(12, 16)
        grid, px, py = interior_grid(12, 16, 3, 4, 3.0, False, g)
        offsets = pixel_offsets(7, 1, 3, 4, 12, 16, 1.5, False, g)
        grid.requires_grad_()
        out = lstn_reference(image, grid, offsets)
        torch.testing.assert_close(out, torch.stack([0.3 + ax * px + ay * py for ax, ay in SLOPES], dim=1))
        (grad,) = torch.autograd.grad(out.sum(), grid)
        slope = torch.tensor([sum(a for a, _ in SLOPES) * 8, sum(b for _, b in SLOPES) * 6], dtype=F64)
        torch.testing.assert_close(grad, slope.expand_as(grid))

    def test_bias_is_the_plane_intercept(self):
        # three auxiliary points determine the plane exactly: c = I(p) - fitted plane at p, by hand
        image = torch.rand(1, 1, 6, 6, dtype=F64)
        grid = torch.tensor([[[[0.1, -0.2]]]], dtype=F64)
        offsets = torch.tensor([[0.3, 0.0], [0.0, 0.3], [-0.2, -0.2]], dtype=F64).view(3, 1, 1, 1, 2)
        sample = lambda p: F.grid_sample(image, p, align_corners=False).item()  # noqa: E731
        center = sample(grid)
        rows = torch.tensor([[0.3, 0.0, 1.0], [0.0, 0.3, 1.0], [-0.2, -0.2, 1.0]], dtype=F64)
        values = torch.tensor([sample(grid + d) - center for d in offsets], dtype=F64)
        a_u, a_v, c = torch.linalg.solve(rows, values).tolist()
        gr = grid.clone().requires_grad_()
        out = lstn_reference(image, gr, offsets)
        assert out.item() == pytest.approx(center + c, abs=1e-12)
        assert torch.autograd.grad(out.sum(), gr)[0].flatten().tolist() == pytest.approx([a_u, a_v], abs=1e-10)


class TestLSTN:
    def test_registered(self):
        assert interpolators.get("lstn") is LSTN
        info = interpolators.describe("lstn")
        assert info["stochastic"] is True and "multisample" in info["tags"]
        assert "Jiang" in info["reference"] and info["summary"]
        defaults = {name: spec["default"] for name, spec in info["hparams"].items()}
        assert defaults == {
            "num_samples": 8,
            "noise_strength": 0.5,
            "push_away": True,
            "fixed_bias": False,
            "padding_mode": "zeros",
            "align_corners": False,
            "backend": "auto",
        }
        assert info["hparams"]["padding_mode"]["choices"] == ["zeros", "border", "reflection"]
        assert info["hparams"]["backend"]["choices"] == ["auto", "operator", "eager"]

    def test_signature_is_the_configs(self):
        import inspect

        assert list(inspect.signature(LSTN).parameters) == [f for f in LSTNConfig.__dataclass_fields__]

    def test_module_matches_functional(self, backend):
        image, grid, _ = random_case()
        kwargs = dict(num_samples=9, noise_strength=1.0, push_away=False, fixed_bias=True, padding_mode="border")
        module = interpolators.create("lstn", align_corners=True, backend=backend, **kwargs)
        assert module.hparams() == dict(kwargs, align_corners=True, backend=backend)
        assert module.config == LSTNConfig(align_corners=True, backend=backend, **kwargs)
        out = module(image, grid, generator=torch.Generator().manual_seed(2))
        expected = lstn_sample(image, grid, module.config, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(out, expected, rtol=0, atol=0)

    @pytest.mark.parametrize(
        "kwargs, error, match",
        [
            ({"num_samples": 3}, ValueError, r"num_samples: expected at least 6"),
            ({"noise_strength": -1.0}, ValueError, r"noise_strength: expected a value >= 0, got -1.0"),
            ({"noise_strength": 0, "push_away": False}, ValueError, r"noise_strength: expected > 0 when push_away"),
            ({"fixed_bias": "no"}, TypeError, r"fixed_bias: expected a bool"),
            ({"padding_mode": "wrap"}, ValueError, r"padding_mode: expected one of"),
            ({"num_sample": 8}, TypeError, r"unexpected keyword argument 'num_sample'"),
        ],
    )
    def test_exception(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            LSTN(**kwargs)
        with pytest.raises((TypeError, ValueError), match=list(kwargs)[0]):
            interpolators.create("lstn", **kwargs)
