"""Similarity warps, corner error, fidelity and the alignment experiment (suites.alignment)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import interpolators
from suites.alignment import (
    AlignmentSettings,
    align,
    alignment_metrics,
    alignment_output_size,
    corner_error,
    corners_px,
    draw_perturbations,
    fidelity,
    masked_psnr,
    masked_ssim,
    output_size,
    similarity_theta,
    source_and_input,
)


def smooth_source(size: int = 128, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A smooth ``(1, 1, size, size)`` image in [0, 1]: a few broad Gaussian blobs."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size, dtype=dtype), torch.linspace(-1, 1, size, dtype=dtype),
                            indexing="ij")
    image = torch.zeros_like(xs)
    for cx, cy, sigma, amp in ((-0.3, -0.2, 0.25, 0.6), (0.25, 0.3, 0.2, 0.5), (0.1, -0.35, 0.15, 0.4)):
        image += amp * torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return (image / image.max())[None, None]


class TestOutputSize:
    def test_values(self):
        assert output_size((128, 96), 4.0) == (32, 24)
        assert output_size((128, 96), 0.5) == (256, 192)

    @pytest.mark.parametrize("scale", [0, -1.0, math.inf, "2"])
    def test_bad_scale(self, scale):
        with pytest.raises(ValueError, match="scale"):
            output_size((8, 8), scale)

    def test_bad_size(self):
        with pytest.raises(ValueError, match="in_size"):
            output_size((8,), 1.0)


class TestSimilarityTheta:
    def test_cardinality_broadcasts(self):
        theta = similarity_theta(torch.tensor([1.0, 2.0, 3.0]), 0.0, (0.0, 0.0), (16, 16), (8, 8))
        assert theta.shape == (3, 2, 3) and theta.dtype == torch.float32  # follows the floating tensor argument
        assert similarity_theta(1.0, 0.0, (0.0, 0.0), (16, 16), (8, 8)).dtype == torch.float64

    def test_identity(self):
        theta = similarity_theta(1.0, 0.0, (0.0, 0.0), (12, 20), (12, 20))
        torch.testing.assert_close(theta, torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64))

    def test_output_covering_the_input_is_the_identity_at_any_scale(self):
        theta = similarity_theta(4.0, 0.0, (0.0, 0.0), (32, 48), (8, 12))
        torch.testing.assert_close(theta, torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64))

    def test_pure_scale(self):
        # 8 output pixels of 2 input pixels cover 16 of the 8-pixel input: normalized scale 2
        theta = similarity_theta(2.0, 0.0, (0.0, 0.0), (8, 8), (8, 8))
        torch.testing.assert_close(theta, torch.tensor([[[2.0, 0, 0], [0, 2.0, 0]]], dtype=torch.float64))

    def test_translation_in_input_pixels(self):
        theta = similarity_theta(1.0, 0.0, (2.0, -1.0), (8, 16), (8, 16))
        assert theta[0, 0, 2].item() == pytest.approx(2 * 2 / 16) and theta[0, 1, 2].item() == pytest.approx(-2 / 8)

    def test_rotation_90_by_hand(self):
        # R(90) = [[0, 1], [-1, 0]]; theta = diag(2/16, 2/8) R diag(16/2, 8/2) = [[0, 0.5], [-2, 0]]
        theta = similarity_theta(1.0, 90.0, (0.0, 0.0), (8, 16), (8, 16))
        expected = torch.tensor([[[0.0, 0.5, 0.0], [-2.0, 0.0, 0.0]]], dtype=torch.float64)
        torch.testing.assert_close(theta, expected, atol=1e-12, rtol=0)

    def test_rotation_90_maps_corners(self):
        # square input, output of the same size: output's bottom-right corner lands on the input's top-right
        theta = similarity_theta(1.0, 90.0, (0.0, 0.0), (16, 16), (16, 16))
        corners = corners_px(theta, (16, 16))[0]  # order: TL, TR, BR, BL of the output, in input px
        expected = torch.tensor([[-0.5, 15.5], [-0.5, -0.5], [15.5, -0.5], [15.5, 15.5]], dtype=torch.float64)
        torch.testing.assert_close(corners, expected, atol=1e-12, rtol=0)

    def test_preserves_pixel_lengths_on_non_square_images(self):
        theta = similarity_theta(2.0, 30.0, (0.0, 0.0), (40, 60), (10, 10))
        corners = corners_px(theta, (40, 60))[0]
        sides = (corners - corners.roll(1, 0)).norm(dim=-1)
        torch.testing.assert_close(sides, torch.full((4,), 20.0, dtype=torch.float64))

    def test_bad_scale(self):
        with pytest.raises(ValueError, match="scale"):
            similarity_theta(torch.tensor([1.0, -1.0]), 0.0, (0.0, 0.0), (8, 8), (8, 8))


class TestCornerError:
    def test_zero_for_truth(self):
        theta = similarity_theta(torch.tensor([0.5, 2.0]), torch.tensor([3.0, -40.0]), torch.rand(2, 2), (32, 32),
                                 (16, 16))
        assert torch.equal(corner_error(theta, theta, (32, 32)), torch.zeros(2, dtype=torch.float64))

    def test_translation_is_its_length(self):
        a = similarity_theta(2.0, 10.0, (0.0, 0.0), (32, 48), (16, 16))
        b = similarity_theta(2.0, 10.0, (3.0, 4.0), (32, 48), (16, 16))
        torch.testing.assert_close(corner_error(a, b, (32, 48)), torch.tensor([5.0], dtype=torch.float64))

    def test_rotation_about_the_centre(self):
        # a 16-px square rotated by 90 degrees: each corner moves by sqrt(2) * half-diagonal
        a = similarity_theta(1.0, 0.0, (0.0, 0.0), (32, 32), (16, 16))
        b = similarity_theta(1.0, 90.0, (0.0, 0.0), (32, 32), (16, 16))
        torch.testing.assert_close(corner_error(a, b, (32, 32)), torch.tensor([16.0], dtype=torch.float64))

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="theta"):
            corner_error(torch.zeros(2, 2, 3), torch.zeros(1, 2, 3), (8, 8))


class TestFidelity:
    def test_bilinear_integer_translation_is_exact(self):
        source, input = source_and_input(torch.rand(1, 3, 64, 64, dtype=torch.float64), 4)
        theta = similarity_theta(1.0, 0.0, (2.0, -1.0), (16, 16), (16, 16))
        result = fidelity(interpolators.create("bilinear"), source, input, theta, (16, 16))
        assert result["psnr"] == math.inf or result["psnr"] > 100
        assert result["ssim"] == pytest.approx(1.0, abs=1e-9)

    def test_off_lattice_warp_is_not_exact_and_bilinear_beats_nearest(self):
        source, input = source_and_input(smooth_source(128), 4)
        theta = similarity_theta(0.5, 5.0, (0.3, 0.0), (32, 32), (64, 64))
        bilinear = fidelity(interpolators.create("bilinear"), source, input, theta, (64, 64))
        nearest = fidelity(interpolators.create("nearest"), source, input, theta, (64, 64))
        assert 20 < nearest["psnr"] < bilinear["psnr"] < 100
        assert 0 < nearest["ssim"] < bilinear["ssim"] <= 1

    def test_masked_psnr_known_answer(self):
        pred, target = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
        pred[..., 0, 0] = 10.0  # outside the mask: ignored
        pred[..., 1:3, 1:3] = 0.1
        mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
        mask[..., 1:3, 1:3] = True
        assert masked_psnr(pred, target, mask) == pytest.approx(20.0, abs=1e-4)

    def test_masked_psnr_empty_mask(self):
        with pytest.raises(ValueError, match="mask"):
            masked_psnr(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.bool))

    def test_masked_ssim_identical_is_one(self):
        image = torch.rand(1, 1, 32, 32, dtype=torch.float64)
        mask = torch.ones(1, 1, 32, 32, dtype=torch.bool)
        assert masked_ssim(image, image, mask) == pytest.approx(1.0)


class TestDrawPerturbations:
    def test_ranges_and_reproducibility(self):
        settings = AlignmentSettings(trials=256, max_translation=2.0, max_rotation=7.0, max_log_scale=0.1)
        p = draw_perturbations(settings, torch.Generator().manual_seed(3))
        q = draw_perturbations(settings, torch.Generator().manual_seed(3))
        assert torch.equal(p.translation, q.translation) and p.translation.shape == (256, 2)
        assert p.translation.abs().max() <= 2.0 and p.rotation.abs().max() <= 7.0
        assert p.scale.log().abs().max() <= 0.1 + 1e-12 and p.rotation.abs().max() > 5.0

    def test_rotation_magnitude_is_exact_with_both_signs(self):
        settings = AlignmentSettings(trials=64, rotation_magnitude=30.0)
        rotation = draw_perturbations(settings, torch.Generator().manual_seed(0)).rotation
        assert torch.equal(rotation.abs(), torch.full((64,), 30.0, dtype=torch.float64))
        assert (rotation > 0).any() and (rotation < 0).any()


class TestAlignmentSettings:
    @pytest.mark.parametrize("field,value", [("trials", 0), ("steps", 1.5), ("window", -3), ("lr", -0.1),
                                             ("max_translation", math.nan)])
    def test_bad_values(self, field, value):
        with pytest.raises(ValueError, match=field):
            AlignmentSettings(**{field: value})

    def test_output_size_is_capped(self):
        settings = AlignmentSettings(window=64, max_output=32)
        assert alignment_output_size(4.0, settings) == (16, 16)
        assert alignment_output_size(1.0, settings) == (32, 32)
        assert alignment_output_size(0.5, settings) == (32, 32)


class TestAlign:
    SMALL = dict(trials=6, steps=60, lr=0.05, window=16, max_output=16)

    def _run(self, name: str, settings: AlignmentSettings, seed: int = 0) -> torch.Tensor:
        source, input = source_and_input(smooth_source(128, torch.float32), 4)  # input 32 x 32
        return align(interpolators.create(name), source, input, 1.0, 5.0, settings, torch.Generator().manual_seed(seed))

    def _initial_errors(self, settings: AlignmentSettings, seed: int = 0) -> torch.Tensor:
        p = draw_perturbations(settings, torch.Generator().manual_seed(seed))
        size = alignment_output_size(1.0, settings)
        truth = similarity_theta(p.scale, 5.0 + p.rotation, p.translation, (32, 32), size)
        base = similarity_theta(1.0, 5.0, (0.0, 0.0), (32, 32), size).expand_as(truth)
        return corner_error(base, truth, (32, 32))

    def test_zero_perturbation_stays_aligned(self):
        settings = AlignmentSettings(max_translation=0.0, max_rotation=0.0, max_log_scale=0.0, **self.SMALL)
        errors = self._run("bilinear", settings)
        assert errors.shape == (6,)
        assert alignment_metrics(errors, 1.0)["align_success"] == 1.0

    def test_bilinear_recovers_a_small_perturbation_on_a_smooth_image(self):
        settings = AlignmentSettings(max_translation=1.5, max_rotation=3.0, max_log_scale=0.03, **self.SMALL)
        initial = self._initial_errors(settings)
        assert initial.median() > 0.8  # the test is not trivially passed by staying put
        errors = self._run("bilinear", settings)
        assert alignment_metrics(errors, 1.0)["align_success"] == 1.0
        assert (errors < initial).all()

    def test_nearest_cannot_move(self):
        # nearest's gradient w.r.t. the grid is zero: Adam never leaves the start
        settings = AlignmentSettings(max_translation=1.5, max_rotation=3.0, max_log_scale=0.03, **self.SMALL)
        errors = self._run("nearest", settings)
        torch.testing.assert_close(errors, self._initial_errors(settings), rtol=0, atol=1e-5)

    def test_stochastic_sampler_is_reproducible_for_a_seed(self):
        settings = AlignmentSettings(trials=2, steps=3, window=8, max_output=8)
        a, b = self._run("lstn", settings, seed=1), self._run("lstn", settings, seed=1)
        assert torch.equal(a, b) and torch.isfinite(a).all()


class TestAlignmentMetrics:
    def test_known_answer(self):
        metrics = alignment_metrics(torch.tensor([0.2, 0.9, 1.0, 3.0, 0.5], dtype=torch.float64), 1.0)
        assert metrics == {"align_success": pytest.approx(0.6), "align_corner_error_median": pytest.approx(0.9)}


def test_source_and_input_crops_to_a_multiple():
    source, input = source_and_input(torch.rand(1, 1, 30, 41), 4)
    assert source.shape[-2:] == (28, 40) and input.shape[-2:] == (7, 10)
    torch.testing.assert_close(input, F.avg_pool2d(source, 4))
