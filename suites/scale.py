"""The scale suite: fidelity and alignment against the ground truth, swept over the sampler's scale factor.

``s`` is the output pixel size in input pixels (``s < 1`` zooms in, ``s > 1``
downsamples). Every warp carries a fixed rotation of :data:`BASE_ANGLE` degrees
so that samples fall off the lattice. Per interpolator, ``s``, image and seed:

- fidelity: PSNR (dB) and SSIM of ``sampler(input, affine_grid(theta))`` over the
  whole input (output ``round(H / s) x round(W / s)``) against the ground-truth
  render of the source, on the interior;
- alignment (Jiang et al. 2019): success rate (mean corner error < 1 input px)
  and median corner error (input px) of Adam through the sampler from the
  unperturbed warp to a template rendered under a random similarity perturbation.

See ``docs/suites/scale.md`` for the profiles and why they are what they are.
"""

from __future__ import annotations

from typing import ClassVar

from suites.alignment import AlignmentSettings, Profile, SimilaritySuite, similarity_options

__all__ = ["BASE_ANGLE", "PROFILES", "ScaleSuite"]

#: the fixed rotation (degrees) of every warp, so that samples fall off the lattice
BASE_ANGLE = 5.0
#: the default sweep of s
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)

PROFILES: dict[str, Profile] = {
    # a smoke run: two images, few trials and steps; numbers are indicative only
    "quick": Profile(
        sweep=SCALES, images=2, seeds=1, settings=AlignmentSettings(trials=4, steps=30, lr=0.3, max_output=64)
    ),
    # about a minute on two CPU cores for the five built-in methods; shows bilinear's collapse at s = 4
    "default": Profile(
        sweep=SCALES, images=3, seeds=1, settings=AlignmentSettings(trials=16, steps=60, lr=0.15, max_output=64)
    ),
    # the protocol for a paper: all eight built-in images, 64 trials, three seeds, more and smaller steps
    "full": Profile(
        sweep=SCALES, images=8, seeds=3, settings=AlignmentSettings(trials=64, steps=120, lr=0.1, max_output=128)
    ),
}


class ScaleSuite(SimilaritySuite):
    """PSNR, SSIM, alignment success and corner error vs the scale factor ``s`` (a fixed 5 degree rotation)."""

    name = "scale"
    summary = "fidelity (PSNR, SSIM) and alignment success vs the scale factor s, against the box-filtered source"
    x_param = "scale"
    x_symbol = "s"
    x_doc = (
        "the sampler's scale factor, the output pixel size in input pixels: at s = 4 each output pixel covers "
        "4 x 4 input pixels (a 4x downsampling), at s = 1 one, and s < 1 zooms in. Every warp also rotates by "
        f"{BASE_ANGLE:g} degrees, so that samples fall off the pixel lattice."
    )
    headline = {"scale": 4.0}
    profiles: ClassVar[dict[str, Profile]] = PROFILES
    sweep_option = "scales"
    options = similarity_options("scales", "the scale factors s swept, e.g. 1,2,4,8")

    def geometry(self, x: float, settings: AlignmentSettings) -> tuple[float, float, float, AlignmentSettings]:
        """Scale ``x`` with the fixed :data:`BASE_ANGLE` for both measurements; the profile's protocol unchanged."""
        return x, BASE_ANGLE, BASE_ANGLE, settings
