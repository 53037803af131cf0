"""The ground-truth renderer: box model, exact answers on box-averaged and linear images, interior mask."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from suites.render import area_downsample, interior_mask, render_affine, supersample_for

IDENTITY = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)


def _translation(tx_px: float, ty_px: float, size: tuple[int, int]) -> torch.Tensor:
    """Identity warp shifted by ``(tx, ty)`` pixels of an image of ``size`` (align_corners=False)."""
    h, w = size
    theta = IDENTITY.clone()
    theta[0, 0, 2], theta[0, 1, 2] = 2 * tx_px / w, 2 * ty_px / h
    return theta


class TestAreaDownsample:
    def test_cardinality(self):
        assert area_downsample(torch.rand(2, 3, 16, 24, dtype=torch.float64), 4).shape == (2, 3, 4, 6)

    def test_identity_factor(self):
        image = torch.rand(1, 1, 5, 5)
        assert area_downsample(image, 1) is image

    def test_block_means(self):
        image = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
        expected = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]], dtype=torch.float64)
        torch.testing.assert_close(area_downsample(image, 2), expected)


class TestRenderAffine:
    def test_cardinality(self):
        out = render_affine(torch.rand(2, 3, 32, 32, dtype=torch.float64), IDENTITY.expand(2, 2, 3), (5, 7), 3)
        assert out.shape == (2, 3, 5, 7)

    def test_identity_reproduces_box_average(self):
        source = torch.rand(1, 3, 32, 48, dtype=torch.float64)
        out = render_affine(source, IDENTITY, (8, 12), supersample=4)
        torch.testing.assert_close(out, area_downsample(source, 4), rtol=0, atol=1e-12)

    def test_integer_translation_reproduces_shifted_box_average(self):
        source = torch.rand(1, 1, 64, 64, dtype=torch.float64)
        expected = area_downsample(source, 4)  # (16, 16)
        out = render_affine(source, _translation(2, -1, (16, 16)), (16, 16), supersample=4)
        # output pixel (i, j) is input pixel (i - 1, j + 2); compare where that exists
        torch.testing.assert_close(out[..., 1:, :-2], expected[..., :-1, 2:], rtol=0, atol=1e-12)

    @pytest.mark.parametrize("angle", [0.0, 17.0, 90.0])
    def test_linear_image_is_value_at_footprint_centre(self, angle):
        hs = ws = 64
        ys, xs = torch.meshgrid(torch.arange(hs, dtype=torch.float64), torch.arange(ws, dtype=torch.float64),
                                indexing="ij")
        a, bx, cy = 0.2, 0.004, -0.003
        source = (a + bx * xs + cy * ys)[None, None]
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        theta = torch.tensor([[[0.5 * c, 0.4 * s, 0.05], [-0.5 * s, 0.4 * c, -0.1]]], dtype=torch.float64)
        out_size = (10, 12)
        out = render_affine(source, theta, out_size, supersample_for(theta, (hs, ws), out_size))
        centres = F.affine_grid(theta, [1, 1, *out_size], align_corners=False)
        px = ((centres[..., 0] + 1) * ws - 1) / 2
        py = ((centres[..., 1] + 1) * hs - 1) / 2
        expected = (a + bx * px + cy * py)[:, None]
        mask = interior_mask(theta, (hs, ws), out_size)
        assert mask.sum() > 50
        torch.testing.assert_close(out[mask], expected[mask], rtol=0, atol=1e-12)


class TestSupersampleFor:
    def test_downsampling_needs_one_sample_per_source_pixel(self):
        # output pixel spans 8 source pixels along each axis
        assert supersample_for(IDENTITY, (64, 64), (8, 8)) == 8

    def test_minimum(self):
        assert supersample_for(IDENTITY, (16, 16), (64, 64)) == 2


class TestInteriorMask:
    def test_cardinality_batched(self):
        theta = torch.cat([IDENTITY, _translation(3, 0, (16, 16))])
        assert interior_mask(theta, (16, 16), (16, 16)).shape == (2, 1, 16, 16)

    def test_identity_drops_a_one_pixel_border(self):
        mask = interior_mask(IDENTITY, (16, 16), (16, 16), margin=1.0)[0, 0]
        expected = torch.zeros(16, 16, dtype=torch.bool)
        expected[1:-1, 1:-1] = True
        assert torch.equal(mask, expected)

    def test_zero_margin_keeps_everything(self):
        assert interior_mask(IDENTITY, (16, 16), (16, 16), margin=0.0).all()

    def test_translation_shifts_the_mask_per_batch_item(self):
        theta = torch.cat([IDENTITY, _translation(4, 0, (16, 16))])
        mask = interior_mask(theta, (16, 16), (16, 16), margin=1.0)[:, 0]
        # shifted right by 4 input pixels: the last 4 + 1 columns leave the image
        assert mask[0, 5, :].sum() == 14 and mask[1, 5, :].sum() == 11
        assert not mask[1, 5, -5:].any() and mask[1, 5, 1:-5].all()
