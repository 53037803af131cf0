"""The gradients suite: each metric on cases with known answers, the FD machinery, cells and cells' rows."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
import skimage.io
import torch
import torch.nn.functional as F

import interpolators
import suites
from suites import gradients as G
from suites.base import Cell, RunConfig
from suites.render import render_affine

D = G.DOWNSAMPLE


def _blob_source(side: int = 256, sigma_px: float = 10.0) -> torch.Tensor:
    """A smooth Gaussian blob, ``(1, 1, side, side)`` float64; ``sigma_px`` in input pixels (source / D)."""
    coords = torch.arange(side, dtype=torch.float64) + 0.5 - side / 2
    sigma = sigma_px * D
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g[:, None] * g[None, :])[None, None]


def _smooth_source(side: int = 256, seed: int = 0) -> torch.Tensor:
    """A smooth random image: white noise low-passed to wavelengths of 8+ input pixels, ``(1, 2, side, side)``."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 2, side // (8 * D), side // (8 * D), generator=g, dtype=torch.float64)
    return F.interpolate(noise, size=(side, side), mode="bicubic", align_corners=False)


def _bilinear():
    return interpolators.create("bilinear")


class TestDownsamplingWarp:
    @pytest.mark.parametrize("factor", [1, 2, 4, 8])
    def test_output_pixel_spans_factor_input_pixels(self, factor):
        theta, (ho, wo) = G.downsampling_warp(factor, 64)
        grid = F.affine_grid(theta, [1, 1, ho, wo], align_corners=False)
        px = (grid + 1) * 64 / 2  # normalized -> input pixels (up to a constant)
        step_x = (px[0, 0, 1] - px[0, 0, 0]).norm()
        step_y = (px[0, 1, 0] - px[0, 0, 0]).norm()
        assert step_x.item() == pytest.approx(factor) and step_y.item() == pytest.approx(factor)

    def test_cardinality(self):
        theta, out = G.downsampling_warp(4, 128)
        assert theta.shape == (1, 2, 3) and out == (24, 24)

    @pytest.mark.parametrize("factor", [0, -1, 2.0, True])
    def test_bad_factor(self, factor):
        with pytest.raises(ValueError, match="factor"):
            G.downsampling_warp(factor, 64)


class TestWarpedRegion:
    def test_area_is_the_footprint_union(self):
        theta, out = G.downsampling_warp(4, 64)
        region = G.warped_region(theta, (64, 64), out)
        assert region.shape == (1, 1, 64, 64) and region.dtype == torch.bool
        # the footprint union is a square of side factor * Wo input pixels
        assert region.sum().item() == pytest.approx((4 * out[0]) ** 2, rel=0.03)

    def test_identity_covers_everything(self):
        theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
        assert G.warped_region(theta, (8, 6), (8, 6)).all()


class TestNormRatio:
    def test_hand_computation_centre_of_four(self):
        # one output at the centre of a 2x2 input: bilinear weights 1/4 each, so |dL/dU| = |r| / 2
        image = torch.rand(1, 1, 2, 2, dtype=torch.float64)
        theta = torch.zeros(1, 2, 3, dtype=torch.float64)
        r = torch.full((1, 1, 1, 1), -3.0, dtype=torch.float64)
        grad = G.input_gradient(_bilinear(), image, theta, (1, 1), r)
        assert torch.allclose(grad, torch.full_like(grad, -0.75))
        assert G.norm_ratio(grad, r) == pytest.approx(0.5)

    def test_hand_computation_two_outputs(self):
        # outputs at x = 0.25 and 1.5 px along a 1x3 row: weights (0.75, 0.25, 0) and (0, 0.5, 0.5)
        image = torch.rand(1, 1, 1, 3, dtype=torch.float64)
        px = torch.tensor([0.25, 1.5], dtype=torch.float64)
        gx = (2 * px + 1) / 3 - 1
        grid = torch.stack([gx, torch.zeros_like(gx)], -1).reshape(1, 1, 2, 2)
        r = torch.tensor([[[[2.0, 4.0]]]], dtype=torch.float64)
        u = image.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((_bilinear()(u, grid) * r).sum(), u)
        expected = torch.tensor([2 * 0.75, 2 * 0.25 + 4 * 0.5, 4 * 0.5], dtype=torch.float64)
        assert torch.allclose(grad.flatten(), expected)
        assert G.norm_ratio(grad, r) == pytest.approx(expected.norm().item() / math.sqrt(20))

    def test_on_lattice_is_one(self):
        # identity warp at f = 1 samples the pixel centres: J_U is a selection, |J^T r| = |r|
        image = torch.rand(1, 3, 8, 8, dtype=torch.float64)
        theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
        r = torch.randn(1, 3, 8, 8, dtype=torch.float64)
        assert G.norm_ratio(G.input_gradient(_bilinear(), image, theta, (8, 8), r), r) == pytest.approx(1.0)


class TestNonzeroFraction:
    @pytest.mark.parametrize("factor, expected, tol", [(1, 1.0, 0.005), (4, 0.25, 0.02)])
    def test_bilinear(self, factor, expected, tol):
        scene = G.make_scene(_smooth_source(), 64, factor, margin_px=2)
        r = torch.randn(scene.template.shape, dtype=torch.float64) * scene.mask
        grad = G.input_gradient(_bilinear(), scene.input, scene.theta, scene.out_size, r)
        assert G.nonzero_fraction(grad, scene.region) == pytest.approx(expected, abs=tol)

    def test_counts_only_the_region(self):
        grad = torch.tensor([[[[1.0, 0.0], [0.0, 5.0]]]])
        region = torch.tensor([[[[True, True], [False, False]]]])
        assert G.nonzero_fraction(grad, region) == 0.5


class TestDirectionAccuracy:
    @pytest.fixture(scope="class")
    def blob_scene(self):
        return G.make_scene(_blob_source(), 64, 1, margin_px=2)

    def test_bilinear_on_blob_is_perfect(self, blob_scene):
        offsets = G.translation_grid(5, 1.0, 64)
        grads = G.translation_gradients(
            _bilinear(), blob_scene.input, blob_scene.theta, offsets, blob_scene.template, blob_scene.mask
        )
        assert grads.shape == (24, 2)
        assert G.direction_accuracy(grads, offsets) == 1.0
        assert G.direction_accuracy(-grads, offsets) == 0.0

    def test_nearest_scores_zero(self, blob_scene):
        offsets = G.translation_grid(5, 1.0, 64)
        grads = G.translation_gradients(
            interpolators.create("nearest"),
            blob_scene.input,
            blob_scene.theta,
            offsets,
            blob_scene.template,
            blob_scene.mask,
        )
        assert (grads == 0).all()
        assert G.direction_accuracy(grads, offsets) == 0.0

    def test_translation_grid(self):
        offsets = G.translation_grid(5, 2.0, 64)
        assert offsets.shape == (24, 2)  # 25 minus the zero offset
        assert offsets.abs().max().item() == pytest.approx(2.0 * 2 / 64)
        assert G.translation_grid(10, 2.0, 64).shape == (100, 2)
        with pytest.raises(ValueError, match="grid"):
            G.translation_grid(1, 2.0, 64)


class TestCentralDifference:
    def test_against_analytic_gradient(self):
        c = torch.linspace(0.5, 2.0, 6, dtype=torch.float64).reshape(1, 2, 3)

        def loss(th):
            return (torch.sin(c * th) + th**3).sum(dim=(1, 2)) + torch.exp(th[:, 0, 0] * th[:, 1, 2])

        theta = torch.tensor([[[0.9, -0.1, 0.2], [0.05, 1.1, -0.3]]], dtype=torch.float64, requires_grad=True)
        (exact,) = torch.autograd.grad(loss(theta).sum(), theta)
        exact = exact.flatten()
        errors = [(G.central_difference(loss, theta.detach(), h) - exact).abs().max().item() for h in (1e-2, 5e-3)]
        assert errors[0] < 1e-3
        assert errors[1] == pytest.approx(errors[0] / 4, rel=0.05)  # O(h^2)

    def test_true_gradient_matches_autograd_through_renderer(self):
        # render_affine is differentiable in theta (bilinear on the fine source): the FD must agree with it
        scene = G.make_scene(_smooth_source(), 32, 2, margin_px=2)
        theta1 = G.perturbed_warp(scene.theta, 32, torch.Generator().manual_seed(1))
        step = G.px_to_normalized(G.FD_STEP_PX, 32)
        fd = G.true_affine_gradient(scene.source, theta1, scene.template, scene.mask, scene.supersample, step)
        th = theta1.clone().requires_grad_(True)
        rendered = render_affine(scene.source, th, scene.out_size, scene.supersample)
        (exact,) = torch.autograd.grad(G.masked_mse(rendered, scene.template, scene.mask).sum(), th)
        assert G.cosine(fd[None], exact.flatten()).item() > 0.9999


class TestGradCosine:
    def test_bilinear_is_accurate_at_f1_on_a_smooth_image(self):
        scene = G.make_scene(_smooth_source(), 64, 1, margin_px=3)
        theta1 = G.perturbed_warp(scene.theta, 64, torch.Generator().manual_seed(0))
        grads = G.affine_gradients(_bilinear(), scene.input, theta1, scene.template, scene.mask)
        truth = G.true_affine_gradient(
            scene.source, theta1, scene.template, scene.mask, scene.supersample, G.px_to_normalized(0.05, 64)
        )
        assert grads.shape == (1, 6)
        assert G.cosine(grads, truth).item() > 0.99

    def test_cosine(self):
        a = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-2.0, 0.0]])
        assert G.cosine(a, torch.tensor([3.0, 0.0])).tolist() == [1.0, 0.0, -1.0]


class NoisyBilinear(interpolators.Interpolator):
    """A stochastic test sampler: bilinear at the grid jittered by N(0, (0.3 px)^2)."""

    stochastic: ClassVar[bool] = True

    def sample(self, input, grid, generator):
        noise = torch.randn(grid.shape, generator=generator, dtype=grid.dtype, device=grid.device)
        return F.grid_sample(input, grid + noise * 0.6 / input.shape[-1], align_corners=False)


@pytest.fixture
def noisy_registered():
    interpolators.register(NoisyBilinear, name="noisy_bilinear_test")
    yield "noisy_bilinear_test"
    interpolators.unregister("noisy_bilinear_test")


class TestGradientSpread:
    def test_known_answers(self):
        assert G.gradient_spread(torch.tensor([[1.0, 2.0], [2.0, 4.0]])) == pytest.approx(0.0, abs=1e-7)
        assert G.gradient_spread(torch.tensor([[1.0, 0.0], [0.0, 3.0]])) == pytest.approx(1.0)
        assert G.gradient_spread(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(2.0)

    def test_needs_two_draws(self):
        with pytest.raises(ValueError, match="gradients"):
            G.gradient_spread(torch.ones(1, 6))

    def test_draws_are_independent(self):
        scene = G.make_scene(_smooth_source(), 32, 2, margin_px=2)
        gen = torch.Generator().manual_seed(0)
        noisy = G.affine_gradients(NoisyBilinear(), scene.input, scene.theta, scene.template, scene.mask, 4, gen)
        same = G.affine_gradients(_bilinear(), scene.input, scene.theta, scene.template, scene.mask, 4)
        assert G.gradient_spread(noisy) > 1e-3
        assert G.gradient_spread(same) == pytest.approx(0.0, abs=1e-9)


def _config(profile="quick", seeds=None, names=("nearest", "bilinear"), **options):
    return RunConfig(
        suites=("gradients",), interpolators={n: {} for n in names}, profile=profile, seeds=seeds, options=options
    )


class TestSuite:
    def test_registered(self):
        suite = suites.get("gradients")
        assert isinstance(suite, G.GradientsSuite) and suite.x_param == "factor"

    @pytest.mark.parametrize("profile, images, seeds", [("quick", 1, 1), ("default", 2, 1), ("full", 8, 3)])
    def test_cells_cardinality(self, profile, images, seeds):
        cells = G.GradientsSuite().cells(_config(profile))
        assert len(cells) == 2 * 4 * images * seeds
        assert {c.params["factor"] for c in cells} == {1, 2, 4, 8}
        assert len({c.key for c in cells}) == len(cells)
        assert all(c.suite == "gradients" and set(c.params) == {"factor", "image"} for c in cells)

    def test_seeds_override_and_hparams(self):
        config = RunConfig(
            suites=("gradients",), interpolators={"bilinear": {"padding_mode": "border"}}, profile="quick", seeds=3
        )
        cells = G.GradientsSuite().cells(config)
        assert sorted(c.seed for c in cells) == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
        assert all(c.hparams == {"padding_mode": "border"} for c in cells)

    def test_bad_profile_and_seeds(self):
        with pytest.raises(ValueError, match="profile"):
            G.GradientsSuite().cells(_config("huge"))
        with pytest.raises(ValueError, match="seeds"):
            G.GradientsSuite().cells(_config(seeds=0))

    def test_image_folder(self, tmp_path):
        rng = np.random.default_rng(0)
        for stem in ("b_img", "a_img"):
            skimage.io.imsave(tmp_path / f"{stem}.png", (rng.random((96, 112)) * 255).astype(np.uint8))
        suite = G.GradientsSuite()
        default_cells = suite.cells(_config("default", names=("bilinear",), images=str(tmp_path)))
        assert sorted({c.params["image"] for c in default_cells}) == ["a_img", "b_img"]
        quick = _config("quick", names=("bilinear",), images=str(tmp_path))
        cells = suite.cells(quick)
        assert {c.params["image"] for c in cells} == {"a_img"}
        rows = suite.run_cell(cells[0], quick, tmp_path).rows
        assert {r["metric"] for r in rows} == {
            "norm_ratio",
            "nonzero_grad_fraction",
            "direction_accuracy",
            "grad_cosine",
        }

    @pytest.mark.parametrize("name", interpolators.available())
    def test_run_cell_rows(self, name, tmp_path):
        config = _config(names=(name,))
        cell = Cell(suite="gradients", interpolator=name, hparams={}, params={"factor": 4, "image": "camera"})
        rows = G.GradientsSuite().run_cell(cell, config, tmp_path).rows
        metrics = {r["metric"]: r for r in rows}
        expected = {"norm_ratio", "nonzero_grad_fraction", "direction_accuracy", "grad_cosine"}
        if interpolators.describe(name)["stochastic"]:
            expected |= {"grad_spread"}
        assert set(metrics) == expected
        for row in rows:
            assert set(row) == {"metric", "value", "unit"} and math.isfinite(row["value"])
            assert row["unit"] == G.UNITS[row["metric"]]
        for metric in ("nonzero_grad_fraction", "direction_accuracy"):
            assert 0.0 <= metrics[metric]["value"] <= 1.0
        assert -1.0 <= metrics["grad_cosine"]["value"] <= 1.0

    def test_stochastic_gets_a_spread_row(self, noisy_registered, tmp_path):
        config = _config(names=(noisy_registered,))
        (cell,) = [c for c in G.GradientsSuite().cells(config) if c.params["factor"] == 2]
        rows = {r["metric"]: r["value"] for r in G.GradientsSuite().run_cell(cell, config, tmp_path).rows}
        assert rows["grad_spread"] > 0
        # same seed, same rows
        again = {r["metric"]: r["value"] for r in G.GradientsSuite().run_cell(cell, config, tmp_path).rows}
        assert again == rows

    @pytest.mark.skipif("estn" not in interpolators.available(), reason="estn not registered")
    def test_instance_stochasticity_counts(self, tmp_path):
        config = RunConfig(suites=("gradients",), interpolators={"estn": {"sampling": "random"}}, profile="quick")
        (cell,) = [c for c in G.GradientsSuite().cells(config) if c.params["factor"] == 4]
        rows = {r["metric"]: r["value"] for r in G.GradientsSuite().run_cell(cell, config, tmp_path).rows}
        assert rows["grad_spread"] > 0

    def test_nearest_reports_zero_direction(self, tmp_path):
        config = _config(names=("nearest",))
        cell = Cell(suite="gradients", interpolator="nearest", hparams={}, params={"factor": 1, "image": "camera"})
        rows = {r["metric"]: r["value"] for r in G.GradientsSuite().run_cell(cell, config, tmp_path).rows}
        assert rows["direction_accuracy"] == 0.0 and rows["grad_cosine"] == 0.0


class TestPictures:
    """The coverage map and the direction field a picture cell keeps match the cell's own numbers."""

    @pytest.mark.parametrize("name", ["bilinear", "estn", "nearest"])
    def test_maps_match_the_metrics(self, name, tmp_path):
        config = _config(names=(name,))
        cell = Cell(suite="gradients", interpolator=name, hparams={}, params={"factor": 4, "image": "camera"})
        result = G.GradientsSuite().run_cell(cell, config, tmp_path)
        rows = {r["metric"]: r["value"] for r in result.rows}
        profile = G.GradientsSuite().profile(config)
        coverage = result.arrays["coverage"]
        n = min(profile.crop, 512 // G.DOWNSAMPLE)
        assert coverage.shape == (n, n) and coverage.dtype == np.uint8 and set(np.unique(coverage)) <= {0, 1, 2}
        inside = coverage != G.OUTSIDE
        assert (coverage == G.COVERED).sum() / inside.sum() == pytest.approx(rows["nonzero_grad_fraction"])
        theta, out = G.downsampling_warp(4, n)
        np.testing.assert_array_equal(inside, G.warped_region(theta, (n, n), out)[0, 0].numpy())
        offsets, directions = (result.arrays[k].astype(np.float64) for k in ("offsets_px", "directions"))
        assert offsets.shape == directions.shape == (profile.grid**2 - (profile.grid % 2), 2)
        assert np.abs(offsets).max() == pytest.approx(profile.radius, rel=1e-3)
        norms = np.linalg.norm(directions, axis=1)
        assert np.allclose(norms[norms > 0], 1.0, atol=2e-3)
        toward = (directions * -offsets).sum(axis=1) > 0
        assert toward.mean() == pytest.approx(rows["direction_accuracy"])
        if name == "nearest":
            assert (norms == 0).all()  # no gradient to the grid
