"""The scale suite: its cells for each profile and option, and tidy finite rows from a tiny run."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import skimage.io
import torch

import suites
from suites.alignment import AlignmentSettings, Profile
from suites.base import Cell, RunConfig
from suites.images import BUILTIN_IMAGES
from suites.scale import BASE_ANGLE, PROFILES, SCALES, ScaleSuite

METHODS = {"bilinear": {}, "nearest": {"padding_mode": "border"}}


def config(profile: str = "default", **kwargs) -> RunConfig:
    return RunConfig(suites=("scale",), interpolators=METHODS, profile=profile, **kwargs)


def write_images(folder, count: int = 2, size: int = 96) -> None:
    """Small textured PNGs: smooth ramps plus a checker of 8-px squares."""
    ys, xs = np.mgrid[:size, :size]
    for i in range(count):
        image = 0.4 * xs / size + 0.2 * ys / size + 0.3 * (((xs + 3 * i) // 8 + ys // 8) % 2)
        skimage.io.imsave(folder / f"img{i}.png", (image * 255).astype(np.uint8), check_contrast=False)


class TiniestScale(ScaleSuite):
    """The scale suite with a tiny protocol, for run_cell tests."""

    profiles = {name: dataclasses.replace(p, settings=AlignmentSettings(trials=2, steps=2, window=8, max_output=8))
                for name, p in PROFILES.items()}


class TestScaleSuite:
    def test_registered(self):
        suite = suites.get("scale")
        assert isinstance(suite, ScaleSuite) and suite.x_param == "scale" and suite.name == "scale"

    @pytest.mark.parametrize("profile", ["quick", "default", "full"])
    def test_cells_cardinality(self, profile):
        p = PROFILES[profile]
        cells = ScaleSuite().cells(config(profile))
        assert len(cells) == len(METHODS) * len(SCALES) * p.images * p.seeds
        assert len({c.key for c in cells}) == len(cells)
        assert {c.params["image"] for c in cells} == set(BUILTIN_IMAGES[: p.images])
        assert {c.params["scale"] for c in cells} == set(SCALES)
        assert {c.interpolator for c in cells} == set(METHODS)
        nearest = next(c for c in cells if c.interpolator == "nearest")
        assert nearest.hparams == {"padding_mode": "border"} and nearest.suite == "scale"

    def test_profiles_grow(self):
        quick, default, full = (PROFILES[p] for p in ("quick", "default", "full"))
        assert quick.images < default.images < full.images == len(BUILTIN_IMAGES)
        assert quick.settings.trials < default.settings.trials < full.settings.trials
        assert full.seeds >= 3

    def test_seeds_override(self):
        cells = ScaleSuite().cells(config("default", seeds=2))
        assert sorted({c.seed for c in cells}) == [0, 1]
        assert len(cells) == len(METHODS) * len(SCALES) * PROFILES["default"].images * 2

    @pytest.mark.parametrize("seeds", [0, -1, 1.5, True])
    def test_bad_seeds(self, seeds):
        with pytest.raises(ValueError, match="seeds"):
            ScaleSuite().cells(config("default", seeds=seeds))

    def test_unknown_profile(self):
        with pytest.raises(ValueError, match="profile"):
            ScaleSuite().cells(config("huge"))

    def test_image_folder(self, tmp_path):
        write_images(tmp_path, count=3)
        cells = ScaleSuite().cells(config("quick", options={"images": str(tmp_path)}))
        assert {c.params["image"] for c in cells} == {"img0", "img1", "img2"}
        assert len(cells) == len(METHODS) * len(SCALES) * 3

    def test_missing_folder(self, tmp_path):
        with pytest.raises(ValueError, match="images"):
            ScaleSuite().cells(config("quick", options={"images": str(tmp_path / "nope")}))

    def test_geometry(self):
        scale, angle, align_angle, settings = ScaleSuite().geometry(4.0, PROFILES["default"].settings)
        assert (scale, angle, align_angle) == (4.0, BASE_ANGLE, BASE_ANGLE)
        assert settings == PROFILES["default"].settings and settings.rotation_magnitude is None


class TestScaleRunCell:
    @pytest.mark.parametrize("scale", [0.5, 4.0])
    @pytest.mark.parametrize("method", ["bilinear", "lstn"])
    def test_rows_are_tidy_and_finite(self, tmp_path, scale, method):
        write_images(tmp_path, count=1)
        cfg = RunConfig(suites=("scale",), interpolators={method: {}}, profile="quick",
                        options={"images": str(tmp_path)})
        suite = TiniestScale()
        cell = next(c for c in suite.cells(cfg) if c.params["scale"] == scale)
        rows = suite.run_cell(cell, cfg, tmp_path).rows
        trials = suite.profile(cfg).settings.trials
        assert [r["metric"] for r in rows] == ["psnr", "ssim", *["align_success"] * trials, "align_corner_error_median"]
        assert [r["unit"] for r in rows] == ["dB", "1", *["fraction"] * trials, "px"]
        assert all(isinstance(r["value"], float) and math.isfinite(r["value"]) for r in rows)
        values = {r["metric"]: r["value"] for r in rows}
        assert 5 < values["psnr"] < 120 and -1 <= values["ssim"] <= 1 and values["align_corner_error_median"] >= 0
        # one success row per trial: 0 or 1, numbered
        success = [r for r in rows if r["metric"] == "align_success"]
        assert [r["trial"] for r in success] == list(range(trials)) and {r["value"] for r in success} <= {0.0, 1.0}

    def test_same_seed_same_rows(self, tmp_path):
        write_images(tmp_path, count=1)
        cfg = RunConfig(suites=("scale",), interpolators={"lstn": {}}, profile="quick",
                        options={"images": str(tmp_path)})
        suite = TiniestScale()
        cell = suite.cells(cfg)[0]
        first, second = suite.run_cell(cell, cfg, tmp_path), suite.run_cell(cell, cfg, tmp_path)
        assert first.rows == second.rows
        assert first.arrays.keys() == second.arrays.keys() == {"warped", "truth", "error", "trajectory"}
        for name in first.arrays:
            np.testing.assert_array_equal(first.arrays[name], second.arrays[name])


def test_profile_type():
    assert all(isinstance(p, Profile) for p in PROFILES.values())


class TestPictures:
    """The arrays a picture cell keeps: the ground truth is the renderer's, the error map is the difference."""

    @staticmethod
    def run(tmp_path, scale: float, image: str = "img0", seed: int = 0, method: str = "bilinear"):
        write_images(tmp_path, count=2)
        cfg = RunConfig(suites=("scale",), interpolators={method: {}}, profile="quick",
                        options={"images": str(tmp_path)}, suite_options={"scale": {"trials": 3, "steps": 4}})
        suite = ScaleSuite()
        cell = Cell("scale", method, {}, {"scale": scale, "image": image}, seed)
        return suite, cfg, cell, suite.run_cell(cell, cfg, tmp_path)

    @pytest.mark.parametrize("scale", [0.5, 4.0])
    def test_truth_warp_and_error(self, tmp_path, scale):
        from suites.alignment import (PICTURE_SIDE, benchmark_pair, centre_crop, interior_mask, output_size,
                                      similarity_theta)
        from suites.render import render_affine, supersample_for
        from suites.sections import to_uint8

        suite, cfg, cell, result = self.run(tmp_path, scale)
        arrays = result.arrays
        source, input = benchmark_pair("img0", str(tmp_path))
        out_size = output_size(tuple(input.shape[-2:]), scale)
        theta = similarity_theta(scale, BASE_ANGLE, (0.0, 0.0), tuple(input.shape[-2:]), out_size).float()
        truth = render_affine(source, theta, out_size, supersample_for(theta, tuple(source.shape[-2:]), out_size))
        side = min(PICTURE_SIDE, out_size[0]), min(PICTURE_SIDE, out_size[1])
        assert arrays["truth"].shape == arrays["warped"].shape == side and arrays["truth"].dtype == np.uint8
        np.testing.assert_array_equal(arrays["truth"], to_uint8(centre_crop(truth[0])))
        grid = torch.nn.functional.affine_grid(theta, [1, 1, *out_size], align_corners=False)
        warped = torch.nn.functional.grid_sample(input, grid, align_corners=False)  # bilinear is grid_sample
        np.testing.assert_array_equal(arrays["warped"], to_uint8(centre_crop(warped[0])))
        inside = centre_crop(interior_mask(theta, tuple(input.shape[-2:]), out_size)[0, 0]).numpy()
        error = arrays["error"].astype(np.float64)
        assert arrays["error"].dtype == np.float16 and np.isnan(error[~inside]).all()
        expected = centre_crop((warped - truth).abs()[0, 0]).numpy()
        np.testing.assert_allclose(error[inside], expected[inside], rtol=2e-3, atol=1e-4)  # float16

    def test_trajectories_end_where_the_rows_say(self, tmp_path):
        suite, cfg, cell, result = self.run(tmp_path, 2.0)
        trajectory = result.arrays["trajectory"].astype(np.float64)
        assert trajectory.shape == (4 + 1, 3)  # steps + 1, the first trials (all 3 here)
        success = [r["value"] for r in result.rows if r["metric"] == "align_success"]
        assert success == [float(e < 1.0) for e in trajectory[-1]]
        assert (trajectory[0] > 0).all()  # before the first step: the perturbation itself

    def test_only_the_first_image_at_seed_0_keeps_pictures(self, tmp_path):
        assert self.run(tmp_path, 2.0, image="img1")[-1].arrays == {}
        assert self.run(tmp_path, 2.0, seed=1)[-1].arrays == {}
