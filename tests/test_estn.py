"""ESTN as implemented here: exact answers on linear images, Eq. 5 and the entropy weights in closed form,
independent least squares, the slow reference (tests/reference.py), gradient coverage and accuracy under
downsampling, gradcheck; the functional on both backends (``sampling="random"`` is eager only)."""

from __future__ import annotations

import math

import pytest
import skimage.data
import torch
import torch.nn.functional as F

import interpolators
from interpolators.estn import ESTN, GOLDEN_ANGLE, ESTNConfig, estn_sample, prior_weights, spiral_offsets
from interpolators.estn.eager import estn_parts
from reference import estn_reference
from suites.render import area_downsample, interior_mask, render_affine, supersample_for

f64 = torch.float64


def _affine_grid(size: int, out: int, scale: float = 1.0, angle_deg: float = 0.0, shift=(0.0, 0.0), dtype=f64):
    a = math.radians(angle_deg)
    theta = torch.tensor(
        [[[scale * math.cos(a), -scale * math.sin(a), shift[0]], [scale * math.sin(a), scale * math.cos(a), shift[1]]]],
        dtype=dtype,
    )
    return theta, F.affine_grid(theta, [1, 1, out, out], align_corners=False)


def _linear_image(h: int, w: int, coefficients, dtype=f64) -> torch.Tensor:
    """``I_c = a_c + b_c px + c_c py`` in pixel coordinates, ``(1, C, H, W)``."""
    py, px = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return torch.stack([a + b * px + c * py for a, b, c in coefficients])[None]


def estn_fit(image, grid, generator=None, **hparams):
    """Every intermediate of the eager path (:func:`interpolators.estn.eager.estn_parts`)."""
    return estn_parts(image, grid, ESTNConfig(**hparams), generator)


def sample(image, grid, backend="auto", generator=None, **hparams):
    return estn_sample(image, grid, ESTNConfig(backend=backend, **hparams), generator=generator)


def _camera(factor: int) -> torch.Tensor:
    source = torch.from_numpy(skimage.data.camera()).to(f64)[None, None] / 255.0  # (1, 1, 512, 512)
    return source, area_downsample(source, factor)


class TestSpiralOffsets:
    def test_smoke_and_cardinality(self):
        z = spiral_offsets(9, dtype=torch.float32)
        assert z.shape == (9, 2) and z.dtype == torch.float32
        assert z[0].tolist() == [0.0, 0.0]

    def test_gaussian_radial_quantiles_on_a_golden_spiral(self):
        k = 12
        z = spiral_offsets(k, dtype=f64)
        u = (torch.arange(1, k, dtype=f64) - 0.5) / (k - 1)
        torch.testing.assert_close(z[1:].norm(dim=-1), torch.sqrt(-2 * torch.log(1 - u)))
        # the radius CDF of N(0, I) is 1 - exp(-rho^2 / 2): the radii sit at the quantiles u
        torch.testing.assert_close(1 - torch.exp(-z[1:].norm(dim=-1) ** 2 / 2), u)
        angle = torch.atan2(z[1:, 1], z[1:, 0])
        step = torch.remainder(angle[1:] - angle[:-1], 2 * math.pi)
        torch.testing.assert_close(step, torch.full_like(step, GOLDEN_ANGLE))

    def test_exception(self):
        with pytest.raises(ValueError, match=r"num_samples: expected a value >= 2, got 1"):
            spiral_offsets(1)


class TestPriorWeights:
    def test_hand_values_kernel_3(self):
        # c = 1, c sqrt(c) = 1: w = max(0, 2 - d), d = 0.5 |z|
        z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [6.0, 8.0]], dtype=f64)
        torch.testing.assert_close(prior_weights(z, 0.5, 3), torch.tensor([2.0, 1.0, 0.5, 0.0], dtype=f64))

    def test_hand_values_kernel_5(self):
        # c = 2, c sqrt(c) = 2 sqrt 2: w(0) = (1 + 2 sqrt 2) / (2 sqrt 2), w(1) = 1
        z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 8.0]], dtype=f64)
        expected = torch.tensor([(1 + 2 * math.sqrt(2)) / (2 * math.sqrt(2)), 1.0, 0.0], dtype=f64)
        torch.testing.assert_close(prior_weights(z, 1.0, 5), expected)

    def test_cardinality(self):
        assert prior_weights(torch.zeros(2, 9, 3, 4, 2)).shape == (2, 9, 3, 4)

    def test_exceptions(self):
        with pytest.raises(ValueError, match=r"kernel_size: expected an odd integer >= 3, got 4"):
            prior_weights(torch.zeros(3, 2), 0.5, 4)
        with pytest.raises(ValueError, match=r"tangent_scale: expected a value > 0"):
            prior_weights(torch.zeros(3, 2), 0.0, 3)


class TestEstnFit:
    @pytest.mark.parametrize(
        "kwargs",
        [{}, {"entropy": None}, {"sampling": "random"}, {"iterations": 5, "entropy": 0.2}, {"align_corners": True}],
    )
    def test_intercept_weights_sum_to_one(self, kwargs):
        g = torch.Generator().manual_seed(0)
        image = torch.rand(2, 3, 12, 10, generator=g, dtype=f64)
        grid = torch.rand(2, 5, 6, 2, generator=g, dtype=f64) * 2.2 - 1.1
        fit = estn_fit(image, grid, generator=g, **kwargs)
        ones = torch.ones(2, 1, 5, 6, dtype=f64)
        torch.testing.assert_close(fit.beta.expand(2, 1, -1, 5, 6).sum(2), ones)
        torch.testing.assert_close(fit.weights.expand(2, 1, -1, 5, 6).sum(2), ones)
        # the output is that fixed combination of the samples
        torch.testing.assert_close((fit.beta * fit.samples).sum(2), fit.value)

    def test_cardinality(self):
        image, grid = torch.rand(2, 3, 12, 10), torch.rand(2, 5, 6, 2) * 2 - 1
        fit = estn_fit(image, grid, num_samples=7)
        assert fit.unit_offsets.shape == (7, 1, 1, 2) and fit.prior.shape == (7, 1, 1)  # shared by every pixel
        assert fit.offsets.shape == fit.points.shape == (2, 7, 5, 6, 2)
        assert fit.samples.shape == (2, 3, 7, 5, 6)
        assert fit.weights.shape == fit.beta.shape == (2, 1, 7, 5, 6)
        assert fit.value.shape == (2, 3, 5, 6) and fit.slopes.shape == (2, 2, 3, 5, 6)
        random = estn_fit(image, grid, num_samples=7, sampling="random")
        assert random.unit_offsets.shape == (2, 7, 5, 6, 2) and random.prior.shape == (2, 1, 7, 5, 6)

    def test_samples_follow_the_footprint(self):
        # a pure 4x zoom-out: J = 4 I, sqrt(S) = sqrt(16 + r^2) I, so offsets = t sqrt(16.25) z
        _, grid = _affine_grid(64, 16)
        fit = estn_fit(torch.rand(1, 1, 64, 64, dtype=f64), grid)
        expected = 0.5 * math.sqrt(16.25) * spiral_offsets(9, dtype=f64).view(1, 9, 1, 1, 2)
        torch.testing.assert_close(fit.offsets[:, :, 1:-1, 1:-1], expected.expand(1, 9, 14, 14, 2))
        # points are the grid plus the offsets, in normalized units (2 / W per pixel)
        torch.testing.assert_close(fit.points, grid.unsqueeze(1) + fit.offsets * (2 / 64))
        # ... and they spread over the 4x4-pixel footprint
        assert 3.5 < fit.offsets[0, :, 5, 5].norm(dim=-1).max() < 5.0

    def test_anisotropic_footprint(self):
        # shrink x by 4, keep y: the offsets spread 4x further along x
        theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=f64)
        grid = F.affine_grid(theta, [1, 1, 32, 8], align_corners=False)
        fit = estn_fit(torch.rand(1, 1, 32, 32, dtype=f64), grid, min_radius=0.0)
        z = spiral_offsets(9, dtype=f64)
        torch.testing.assert_close(fit.offsets[0, :, 10, 4], 0.5 * z * torch.tensor([4.0, 1.0], dtype=f64))

    def test_without_entropy_is_plain_weighted_least_squares(self):
        g = torch.Generator().manual_seed(1)
        image = torch.rand(1, 2, 16, 16, generator=g, dtype=f64)
        _, grid = _affine_grid(16, 6, scale=0.8, angle_deg=20)
        fit = estn_fit(image, grid, entropy=None, ridge=0.0)
        # independently: lstsq on the sqrt(w)-scaled design [du, dv, 1] (input pixels), per pixel and channel
        design = torch.cat([fit.offsets, torch.ones_like(fit.offsets[..., :1])], dim=-1)  # (1, K, Ho, Wo, 3)
        design = design[0].permute(1, 2, 0, 3)  # (Ho, Wo, K, 3)
        root_w = fit.prior.expand(9, 6, 6).permute(1, 2, 0).sqrt().unsqueeze(-1)  # (Ho, Wo, K, 1)
        values = fit.samples[0].permute(2, 3, 1, 0)  # (Ho, Wo, K, C)
        solution = torch.linalg.lstsq(root_w * design, root_w * values).solution  # (Ho, Wo, 3, C)
        torch.testing.assert_close(fit.value[0], solution[:, :, 2].permute(2, 0, 1), rtol=1e-9, atol=1e-9)
        slope_px = torch.stack([fit.slopes[0, 0] / 8, fit.slopes[1, 0] / 8], dim=-1)  # 2 / W per pixel
        torch.testing.assert_close(slope_px, solution[:, :, :2].permute(3, 0, 1, 2), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(fit.weights, fit.prior / fit.prior.sum(0, keepdim=True))

    def test_entropy_weights_in_closed_form(self):
        # one round: pi ∝ w exp(-r / gamma), r the squared residuals of the w-weighted fit,
        # gamma = entropy x the w-weighted variance of the samples (+ eps E_w[y^2])
        g = torch.Generator().manual_seed(2)
        image = torch.rand(1, 3, 16, 16, generator=g, dtype=f64)
        _, grid = _affine_grid(16, 5, scale=0.7, angle_deg=-15)
        fit = estn_fit(image, grid, entropy=0.5, iterations=1, ridge=0.0)
        w = fit.prior.expand(9, 5, 5).permute(1, 2, 0)  # (Ho, Wo, K)
        design = torch.cat([fit.offsets, torch.ones_like(fit.offsets[..., :1])], dim=-1)[0].permute(1, 2, 0, 3)
        values = fit.samples[0].permute(2, 3, 1, 0)  # (Ho, Wo, K, C)
        root_w = w.sqrt().unsqueeze(-1)
        solution = torch.linalg.lstsq(root_w * design, root_w * values).solution
        residual = (values - design @ solution).square().sum(-1)  # (Ho, Wo, K)
        wn = w / w.sum(-1, keepdim=True)
        mean = (wn.unsqueeze(-1) * values).sum(-2)
        second = (wn.unsqueeze(-1) * values**2).sum(-2)
        gamma = 0.5 * (second - mean**2).sum(-1) + torch.finfo(f64).eps * second.sum(-1)
        expected = w * torch.exp(-residual / gamma.unsqueeze(-1))
        expected = expected / expected.sum(-1, keepdim=True)
        torch.testing.assert_close(fit.weights[0, 0].permute(1, 2, 0), expected, rtol=1e-9, atol=1e-12)
        assert not torch.allclose(fit.weights, fit.prior / fit.prior.sum(0, keepdim=True))


class TestEstnSample:
    @pytest.mark.parametrize("b, c, h, w, ho, wo", [(1, 1, 8, 8, 4, 4), (2, 3, 9, 11, 5, 7), (1, 2, 6, 5, 1, 3), (1, 1, 1, 7, 3, 1)])
    def test_cardinality(self, backend, b, c, h, w, ho, wo):
        out = sample(torch.rand(b, c, h, w), torch.rand(b, ho, wo, 2) * 2 - 1, backend)
        assert out.shape == (b, c, ho, wo) and torch.isfinite(out).all()

    @pytest.mark.parametrize("ridge, tol", [(0.0, 1e-10), (1e-6, 1e-5)])
    @pytest.mark.parametrize("entropy", [1.0, None])
    def test_linear_image_exact(self, backend, ridge, tol, entropy):
        coefficients = [(0.3, 0.05, -0.02), (1.0, -0.01, 0.04)]
        image = _linear_image(24, 20, coefficients)
        theta = torch.tensor([[[0.5, -0.1, 0.05], [0.12, 0.55, -0.03]]], dtype=f64)
        grid = F.affine_grid(theta, [1, 1, 9, 8], align_corners=False).requires_grad_()
        fit = estn_fit(image, grid, ridge=ridge, entropy=entropy)
        px = fit.points[..., 0] * 10 + 9.5  # ((gx + 1) W - 1) / 2
        py = fit.points[..., 1] * 12 + 11.5
        inside = ((px >= 0) & (px <= 19) & (py >= 0) & (py <= 23)).all(1)[0]  # every sample inside: exact bilinear
        assert inside.float().mean() > 0.5
        gx, gy = grid[0, ..., 0].detach() * 10 + 9.5, grid[0, ..., 1].detach() * 12 + 11.5
        for ch, (a, b, c) in enumerate(coefficients):
            expected = a + b * gx + c * gy
            torch.testing.assert_close(fit.value[0, ch][inside], expected[inside], rtol=tol, atol=tol)
            # slopes in normalized units: dI/dgx = b W / 2, dI/dgy = c H / 2
            torch.testing.assert_close(fit.slopes[0, 0, ch][inside], torch.full_like(gx[inside], b * 10), rtol=tol, atol=tol)
            torch.testing.assert_close(fit.slopes[1, 0, ch][inside], torch.full_like(gx[inside], c * 12), rtol=tol, atol=tol)
        out = sample(image, grid, backend, ridge=ridge, entropy=entropy)
        torch.testing.assert_close(out, fit.value)
        out.sum().backward()
        sum_b, sum_c = sum(co[1] for co in coefficients), sum(co[2] for co in coefficients)
        expected_grad = torch.tensor([sum_b * 10, sum_c * 12], dtype=f64).expand(int(inside.sum()), 2)
        torch.testing.assert_close(grid.grad[0][inside], expected_grad, rtol=tol, atol=tol)

    def test_linear_image_align_corners(self, backend):
        image = _linear_image(10, 10, [(0.0, 1.0, 2.0)])
        grid = torch.tensor([[[[0.1, -0.2]]]], dtype=f64, requires_grad=True)
        out = sample(image, grid, backend, align_corners=True, ridge=0.0)
        px, py = (0.1 + 1) * 4.5, (-0.2 + 1) * 4.5
        torch.testing.assert_close(out, torch.tensor([[[[px + 2 * py]]]], dtype=f64))
        out.sum().backward()
        torch.testing.assert_close(grid.grad, torch.tensor([[[[4.5, 9.0]]]], dtype=f64))  # (W - 1) / 2 per unit

    def test_constant_image(self, backend):
        image = torch.full((2, 3, 10, 10), 0.42, dtype=f64)
        grid = (torch.rand(2, 4, 5, 2, dtype=f64) * 2.4 - 1.2).requires_grad_()
        out = sample(image, grid, backend, padding_mode="border")
        torch.testing.assert_close(out, torch.full_like(out, 0.42), rtol=0, atol=1e-12)
        out.sum().backward()
        torch.testing.assert_close(grid.grad, torch.zeros_like(grid), rtol=0, atol=1e-10)

    def test_gradient_reaches_the_whole_footprint(self, backend):
        # 4x downsampling of a textured image: bilinear feeds 2x2 of every 4x4 input block, ESTN nearly all
        _, image = _camera(4)  # (1, 1, 128, 128)
        _, grid = _affine_grid(128, 32)
        weights = torch.rand(1, 1, 32, 32, dtype=f64, generator=torch.Generator().manual_seed(0)) + 0.5
        coverage = {}
        samplers = (("estn", lambda x, g: sample(x, g, backend)), ("bilinear", lambda x, g: F.grid_sample(x, g, align_corners=False)))
        for name, sampler in samplers:
            x = image.clone().requires_grad_()
            (sampler(x, grid) * weights).sum().backward()
            coverage[name] = (x.grad != 0).double().mean().item()
        assert coverage["estn"] > 0.9
        assert coverage["bilinear"] < 0.35

    def test_closer_to_area_ground_truth_than_bilinear(self, backend):
        source, image = _camera(2)  # 512 -> 256 input; 64 x 64 output: 4x downsampling, rotated
        theta, _ = _affine_grid(256, 64, angle_deg=10, shift=(0.02, -0.01))
        out_size = (64, 64)
        truth = render_affine(source, theta, out_size, supersample_for(theta, (512, 512), out_size))
        mask = interior_mask(theta, (256, 256), out_size, margin=3).expand_as(truth)
        grid = F.affine_grid(theta, [1, 1, *out_size], align_corners=False)

        def psnr(x):
            return (10 * torch.log10(1 / (x - truth)[mask].square().mean())).item()

        estn, bilinear = psnr(sample(image, grid, backend)), psnr(F.grid_sample(image, grid, align_corners=False))
        assert estn > bilinear + 3.0

    @pytest.mark.parametrize(
        "kwargs",
        [
            {},
            {"entropy": None},
            {"value": "center"},
            {"sampling": "random"},
            {"padding_mode": "border", "align_corners": True},
            {"padding_mode": "reflection", "entropy": 0.1, "iterations": 4, "kernel_size": 5},
            {"num_samples": 5, "min_radius": 0.0, "tangent_scale": 1.0},
            {"num_samples": 16, "iterations": 0},
        ],
    )
    @pytest.mark.parametrize("batch", [1, 2])  # a batch of one is sampled as a batch of K (grid_sample_points)
    def test_matches_reference(self, backend, kwargs, batch):
        if backend == "operator" and kwargs.get("sampling") == "random":
            pytest.skip("sampling='random' has no operator")
        g = torch.Generator().manual_seed(3)
        image = torch.rand(batch, 3, 9, 11, generator=g, dtype=f64, requires_grad=True)
        grid = (torch.rand(batch, 5, 7, 2, generator=g, dtype=f64) * 2.4 - 1.2).requires_grad_()
        upstream = torch.randn(batch, 3, 5, 7, generator=g, dtype=f64)
        results = []
        for sampler in (lambda i, gr, gen: sample(i, gr, backend, gen, **kwargs), lambda i, gr, gen: estn_reference(i, gr, generator=gen, **kwargs)):
            out = sampler(image, grid, torch.Generator().manual_seed(5))
            results.append((out, *torch.autograd.grad((out * upstream).sum(), (image, grid))))
        for fast, reference in zip(*results):
            torch.testing.assert_close(fast, reference, rtol=1e-9, atol=1e-11)

    def test_gradcheck_input(self, backend):
        # the input gradient is exact where the output is linear in the input: fixed weights
        g = torch.Generator().manual_seed(4)
        image = torch.rand(1, 2, 6, 7, generator=g, dtype=f64, requires_grad=True)
        grid = torch.rand(1, 3, 4, 2, generator=g, dtype=f64) * 1.6 - 0.8  # off-lattice
        for kwargs in ({"entropy": None}, {"value": "center"}):
            assert torch.autograd.gradcheck(lambda x: sample(x, grid, backend, **kwargs), (image,))

    def test_gradcheck_grid_on_linear_image(self, backend):
        # on a linear image the fitted slope is the true derivative of the output
        image = _linear_image(12, 12, [(0.2, 0.3, -0.1)])
        grid = (torch.rand(1, 3, 3, 2, dtype=f64, generator=torch.Generator().manual_seed(6)) * 0.6 - 0.3)
        assert torch.autograd.gradcheck(lambda gr: sample(image, gr, backend, ridge=0.0), (grid.requires_grad_(),))

    def test_random_sampling_reproducible(self):
        image, grid = torch.rand(1, 2, 12, 12), torch.rand(1, 4, 4, 2) * 2 - 1
        random = ESTNConfig(sampling="random", backend="eager")
        a = estn_sample(image, grid, random, generator=torch.Generator().manual_seed(1))
        b = estn_sample(image, grid, random, generator=torch.Generator().manual_seed(1))
        c = estn_sample(image, grid, random, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert not torch.equal(a, c)
        torch.manual_seed(9)
        d = estn_sample(image, grid, random)
        torch.manual_seed(9)
        torch.testing.assert_close(estn_sample(image, grid, random), d, rtol=0, atol=0)
        torch.testing.assert_close(estn_sample(image, grid), estn_sample(image, grid), rtol=0, atol=0)

    def test_random_sampling_on_auto_runs_the_eager_path_with_a_warning(self):
        image, grid = torch.rand(1, 2, 12, 12), torch.rand(1, 4, 4, 2) * 2 - 1
        with pytest.warns(RuntimeWarning, match=r"estn: backend='auto' runs the eager path: sampling='random' has no operator"):
            auto = estn_sample(image, grid, ESTNConfig(sampling="random"), generator=torch.Generator().manual_seed(1))
        eager = estn_sample(image, grid, ESTNConfig(sampling="random", backend="eager"), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(auto, eager, rtol=0, atol=0)

    def test_saves_nothing_input_sized_per_sample(self, backend):
        image = torch.rand(2, 3, 64, 64, requires_grad=True)
        grid = (torch.rand(2, 8, 8, 2) * 1.6 - 0.8).requires_grad_()
        saved = []

        def pack(t):
            saved.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = sample(image, grid, backend)
        out.sum().backward()
        k_output = 9 * 3 * 8 * 8 * 2  # K x C x Ho x Wo x 2
        others = [t for t in saved if t.data_ptr() != image.data_ptr()]  # grid_sample keeps the input itself
        assert max(t.numel() for t in others) <= k_output
        assert sum(t.numel() for t in others) <= 4 * k_output < 9 * image.numel()

    @pytest.mark.parametrize(
        "kwargs, error, match",
        [
            ({"num_samples": 3}, ValueError, r"num_samples: expected a value >= 4, got 3"),
            ({"num_samples": 9.0}, TypeError, r"num_samples: expected an integer"),
            ({"num_samples": 10**9}, ValueError, r"num_samples: expected a value <= 64 \(time and memory grow"),
            ({"iterations": 10**9}, ValueError, r"iterations: expected a value <= 20 \(each round costs"),
            ({"tangent_scale": 0.0}, ValueError, r"tangent_scale: expected a value > 0"),
            ({"min_radius": -1.0}, ValueError, r"min_radius: expected a value >= 0"),
            ({"kernel_size": 4}, ValueError, r"kernel_size: expected an odd integer >= 3, got 4"),
            ({"kernel_size": 1}, ValueError, r"kernel_size: expected a value >= 3"),
            ({"entropy": 0.0}, ValueError, r"entropy: expected a value > 0"),
            ({"entropy": "high"}, TypeError, r"entropy: expected a number"),
            ({"iterations": -1}, ValueError, r"iterations: expected a value >= 0"),
            ({"ridge": float("nan")}, ValueError, r"ridge: expected a finite value"),
            ({"sampling": "grid"}, ValueError, r"sampling: expected one of \['spiral', 'random'\], got 'grid'"),
            ({"value": "mean"}, ValueError, r"value: expected one of \['fit', 'center'\], got 'mean'"),
            ({"padding_mode": "circular"}, ValueError, r"padding_mode: expected one of"),
            ({"align_corners": 1}, TypeError, r"align_corners: expected a bool"),
            ({"backend": "native"}, ValueError, r"backend: expected one of \['auto', 'operator', 'eager'\]"),
            ({"backend": "operator", "sampling": "random"}, ValueError, r"backend: 'operator' runs the shared spiral only"),
        ],
    )
    def test_exceptions(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            ESTNConfig(**kwargs)
        with pytest.raises(error, match=match):
            ESTN(**kwargs)

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match=r"grid: expected 4 dimensions"):
            estn_sample(torch.rand(1, 1, 4, 4), torch.zeros(2, 2, 2))
        with pytest.raises(TypeError, match=r"config: expected an ESTNConfig, got LSTNConfig"):
            from interpolators.lstn import LSTNConfig

            estn_sample(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 2, 2), LSTNConfig())


class TestESTNModule:
    def test_registered(self):
        assert "estn" in interpolators.available(tag="multisample")
        info = interpolators.describe("estn")
        assert info["stochastic"] is False
        assert info["hparams"]["entropy"] == {"default": 1.0, "type": "float or None", "choices": None}
        assert info["hparams"]["sampling"]["choices"] == ["spiral", "random"]
        assert info["hparams"]["value"]["choices"] == ["fit", "center"]
        assert info["hparams"]["backend"] == {"default": "auto", "type": "one of 'auto', 'operator', 'eager'",
                                              "choices": ["auto", "operator", "eager"]}

    def test_module_matches_function(self, backend):
        image, grid = torch.rand(2, 3, 10, 10), torch.rand(2, 4, 4, 2) * 2 - 1
        sampler = interpolators.create("estn", entropy=None, num_samples=6, padding_mode="border", backend=backend)
        expected = estn_sample(image, grid, ESTNConfig(entropy=None, num_samples=6, padding_mode="border", backend=backend))
        torch.testing.assert_close(sampler(image, grid), expected)
        assert "num_samples=6" in repr(sampler)

    def test_stochastic_follows_sampling(self):
        assert ESTN().stochastic is False
        assert ESTN(sampling="random").stochastic is True

    def test_hparams_roundtrip(self):
        sampler = ESTN(entropy=None, iterations=3, sampling="random", value="center")
        assert ESTN(**sampler.hparams()).hparams() == sampler.hparams()
        assert sampler.config == ESTNConfig(**sampler.hparams())
