"""The rotation suite: fidelity and alignment capture range, swept over a rotation angle at a fixed scale.

At :data:`SCALE` (output pixel = 2 input pixels) and for each angle ``a``:

- fidelity: PSNR (dB) and SSIM of the whole input warped by a rotation of ``a``
  degrees against the ground-truth render of the source, on the interior;
- alignment capture range: the template is the ground-truth render under the
  unrotated base warp perturbed by a rotation of exactly ``+-a`` degrees (random
  sign) plus the scale suite's random scale and translation; success rate
  (mean corner error < 1 input px) and median corner error (input px) of Adam
  through the sampler.

See ``docs/suites/rotation.md`` for the profiles.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from suites.alignment import AlignmentSettings, Profile, SimilaritySuite, similarity_options

__all__ = ["ANGLES", "PROFILES", "RotationSuite", "SCALE"]

#: the fixed scale factor (output pixel size in input pixels): a 2x downsampling
SCALE = 2.0
#: the default sweep of the rotation, degrees
ANGLES = (0.0, 15.0, 30.0, 45.0, 90.0)

PROFILES: dict[str, Profile] = {
    "quick": Profile(sweep=ANGLES, images=2, seeds=1, settings=AlignmentSettings(trials=4, steps=40, lr=0.6)),
    "default": Profile(sweep=ANGLES, images=3, seeds=1, settings=AlignmentSettings(trials=16, steps=100, lr=0.4)),
    "full": Profile(sweep=ANGLES, images=8, seeds=3, settings=AlignmentSettings(trials=64, steps=200, lr=0.25)),
}


class RotationSuite(SimilaritySuite):
    """PSNR, SSIM and alignment capture range vs the rotation angle, at ``s = 2``."""

    name = "rotation"
    summary = "fidelity and alignment capture range vs the rotation angle at s = 2, against the box-filtered source"
    x_param = "angle"
    x_doc = (
        "the rotation in degrees: of the warp whose fidelity is measured, and (with a random sign) of the "
        f"alignment's perturbation, its capture range. The scale is fixed at s = {SCALE:g}: each output pixel "
        f"covers {SCALE:g} x {SCALE:g} input pixels."
    )
    headline = {"angle": 45.0}
    profiles: ClassVar[dict[str, Profile]] = PROFILES
    sweep_option = "angles"
    options = {k: v for k, v in similarity_options("angles", "the rotation angles swept, degrees").items()
               if k != "max_rotation"}  # the sweep sets the rotation

    def geometry(self, x: float, settings: AlignmentSettings) -> tuple[float, float, float, AlignmentSettings]:
        """Fidelity warp rotated by ``x``; alignment from the unrotated warp to a ``+-x`` degree perturbation."""
        return SCALE, x, 0.0, dataclasses.replace(settings, rotation_magnitude=x)
