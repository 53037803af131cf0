"""The rotation suite: cells per profile, its geometry (fixed scale, swept rotation) and tidy finite rows."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import suites
from suites.alignment import AlignmentSettings, draw_perturbations
from suites.base import RunConfig
from suites.images import BUILTIN_IMAGES
from suites.rotation import ANGLES, PROFILES, SCALE, RotationSuite
from test_scale import write_images

METHODS = {"bilinear": {}, "lstn": {"num_samples": 6}, "nearest": {}}


def config(profile: str = "default", **kwargs) -> RunConfig:
    return RunConfig(suites=("rotation",), interpolators=METHODS, profile=profile, **kwargs)


class TiniestRotation(RotationSuite):
    profiles = {name: dataclasses.replace(p, settings=AlignmentSettings(trials=2, steps=2, window=8, max_output=8))
                for name, p in PROFILES.items()}


class TestRotationSuite:
    def test_registered(self):
        suite = suites.get("rotation")
        assert isinstance(suite, RotationSuite) and suite.x_param == "angle" and suite.name == "rotation"

    @pytest.mark.parametrize("profile", ["quick", "default", "full"])
    def test_cells_cardinality(self, profile):
        p = PROFILES[profile]
        cells = RotationSuite().cells(config(profile))
        assert len(cells) == len(METHODS) * len(ANGLES) * p.images * p.seeds
        assert {c.params["angle"] for c in cells} == set(ANGLES) == {0.0, 15.0, 30.0, 45.0, 90.0}
        assert {c.params["image"] for c in cells} == set(BUILTIN_IMAGES[: p.images])
        assert len({c.key for c in cells}) == len(cells)

    def test_seeds_override(self):
        assert len(RotationSuite().cells(config("quick", seeds=3))) == len(METHODS) * len(ANGLES) * 2 * 3

    def test_unknown_profile(self):
        with pytest.raises(ValueError, match="profile"):
            RotationSuite().cells(config("slow"))

    @pytest.mark.parametrize("angle", ANGLES)
    def test_geometry_sweeps_the_perturbation_rotation(self, angle):
        scale, fidelity_angle, align_angle, settings = RotationSuite().geometry(angle, PROFILES["default"].settings)
        assert (scale, fidelity_angle, align_angle) == (SCALE, angle, 0.0)
        rotation = draw_perturbations(settings, torch.Generator().manual_seed(0)).rotation
        assert torch.equal(rotation.abs(), torch.full_like(rotation, angle))


class TestRotationRunCell:
    @pytest.mark.parametrize("angle", [0.0, 90.0])
    def test_rows_are_tidy_and_finite(self, tmp_path, angle):
        write_images(tmp_path, count=1)
        cfg = RunConfig(suites=("rotation",), interpolators={"bilinear": {}}, profile="quick",
                        options={"images": str(tmp_path)})
        suite = TiniestRotation()
        cell = next(c for c in suite.cells(cfg) if c.params["angle"] == angle)
        rows = suite.run_cell(cell, cfg, tmp_path).rows
        values = {r["metric"]: r["value"] for r in rows}
        assert set(values) == {"psnr", "ssim", "align_success", "align_corner_error_median"}
        assert all(math.isfinite(v) for v in values.values())
        # at s = 2 with no rotation (and a right angle on a square image) bilinear is the exact 2 x 2 box average:
        # the reported PSNR is the ceiling
        assert values["psnr"] == 120.0 and values["ssim"] == pytest.approx(1.0)

    def test_off_lattice_angle_is_not_exact(self, tmp_path):
        write_images(tmp_path, count=1)
        cfg = RunConfig(suites=("rotation",), interpolators={"bilinear": {}}, profile="quick",
                        options={"images": str(tmp_path)})
        suite = TiniestRotation()
        cell = next(c for c in suite.cells(cfg) if c.params["angle"] == 30.0)
        values = {r["metric"]: r["value"] for r in suite.run_cell(cell, cfg, tmp_path).rows}
        assert 10 < values["psnr"] < 100
