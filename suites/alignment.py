"""Shared machinery of the scale and rotation suites: similarity warps, fidelity and alignment.

Conventions (all functions here):

- A warp is ``theta (B, 2, 3)`` in :func:`torch.nn.functional.affine_grid`'s
  convention with ``align_corners=False``: it maps output normalized coordinates
  ``u`` in ``[-1, 1]^2`` to input normalized coordinates ``g``. An input of
  ``(H, W)`` pixels has ``px = ((g_x + 1) W - 1) / 2``, so one input pixel is
  ``2 / W`` normalized units along x (``2 / H`` along y).
- A similarity warp is given in input pixels, about the input's centre:
  ``scale`` is the output pixel size in input pixels (``s > 1`` downsamples,
  ``s < 1`` zooms in), ``angle`` (degrees) rotates the sampling frame with
  kornia's :func:`~kornia.geometry.conversions.angle_to_rotation_matrix`
  (``R = [[cos, sin], [-sin, cos]]``, so with ``y`` pointing down the output's
  x axis runs along ``(cos a, -sin a)`` of the input: counter-clockwise as
  displayed) and ``translation`` (input pixels) is where the output's centre
  lands relative to the input's centre. An output of ``(Ho, Wo)`` pixels then
  covers ``(Ho s, Wo s)`` input pixels.
- Corner error: the mean over the output's four outer corners ``u = (+-1, +-1)``
  of the distance, in input pixels, between where two warps send them.
- Fidelity and alignment are scored on the interior: output pixels whose
  footprint lies inside the image (:func:`suites.render.interior_mask`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, Callable, ClassVar

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry.conversions import angle_to_rotation_matrix
from torch import Tensor

import interpolators
from interpolators import Interpolator
from suites.base import Cell, CellResult, Metric, Option, ReportData, RunConfig, Suite
from suites.images import cached_image, image_names
from suites.render import area_downsample, interior_mask, render_affine, supersample_for
from suites.sections import Figure, Image, Lines, Note, Section, Series, to_uint8

Sampler = Callable[..., Tensor]

#: the output's four outer corners (top-left, top-right, bottom-right, bottom-left), normalized output coordinates
OUTPUT_CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))


def _check_size(name: str, size: Any) -> tuple[int, int]:
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise ValueError(f"{name}: expected (height, width) as two positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def output_size(in_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """The output ``(Ho, Wo) = (round(H / s), round(W / s))`` that covers an ``(H, W)`` input at pixel size ``s``.

    >>> output_size((128, 96), 4.0)
    (32, 24)
    """
    h, w = _check_size("in_size", in_size)
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale: expected a finite number > 0, got {scale!r}")
    return max(1, round(h / scale)), max(1, round(w / scale))


def similarity_theta(
    scale: Tensor | float,
    angle: Tensor | float,
    translation: Tensor | tuple[float, float],
    in_size: tuple[int, int],
    out_size: tuple[int, int],
) -> Tensor:
    """The warp ``theta (B, 2, 3)`` of a similarity given in input pixels (see the module's conventions).

    .. math::
        \\theta = \\mathrm{diag}(2/W, 2/H)\\,[\\, s R(a)\\, \\mathrm{diag}(W_o/2, H_o/2) \\mid t \\,]

    Args:
        scale: ``(B,)`` or scalar, output pixel size in input pixels (> 0).
        angle: ``(B,)`` or scalar, rotation of the sampling frame in degrees.
        translation: ``(B, 2)`` or ``(2,)``, ``(tx, ty)`` of the output's centre in input pixels.
        in_size: ``(H, W)`` of the input.
        out_size: ``(Ho, Wo)`` of the output.

    Returns:
        ``(B, 2, 3)`` in float64 unless a tensor argument is floating of another dtype.

    >>> similarity_theta(1.0, 0.0, (2.0, 0.0), (8, 8), (8, 8))
    tensor([[[1.0000, 0.0000, 0.5000],
             [0.0000, 1.0000, 0.0000]]], dtype=torch.float64)
    """
    h, w = _check_size("in_size", in_size)
    ho, wo = _check_size("out_size", out_size)
    dtype = next((t.dtype for t in (scale, angle, translation) if isinstance(t, Tensor) and t.is_floating_point()),
                 torch.float64)
    scale_t = torch.as_tensor(scale, dtype=dtype).reshape(-1)
    angle_t = torch.as_tensor(angle, dtype=dtype).reshape(-1)
    trans_t = torch.as_tensor(translation, dtype=dtype).reshape(-1, 2)
    if (scale_t <= 0).any() or not torch.isfinite(scale_t).all():
        raise ValueError(f"scale: expected finite values > 0, got {scale_t.tolist()}")
    b = max(len(scale_t), len(angle_t), len(trans_t))
    scale_t, angle_t, trans_t = (t.expand(b, *t.shape[1:]) for t in (scale_t, angle_t, trans_t))
    rotation = angle_to_rotation_matrix(angle_t)  # (B, 2, 2)
    half_out = torch.tensor([wo / 2, ho / 2], dtype=dtype)
    to_normalized = torch.tensor([2 / w, 2 / h], dtype=dtype)
    linear = scale_t[:, None, None] * rotation * half_out  # columns scaled: R diag(Wo/2, Ho/2)
    theta = torch.cat([linear, trans_t[:, :, None]], dim=2)
    return theta * to_normalized[None, :, None] + 0.0  # + 0.0 turns -sin(0) = -0.0 into 0.0


def corners_px(theta: Tensor, in_size: tuple[int, int]) -> Tensor:
    """Where ``theta (B, 2, 3)`` sends the output's four outer corners, in input pixels: ``(B, 4, 2)``."""
    h, w = _check_size("in_size", in_size)
    corners = torch.tensor(OUTPUT_CORNERS, dtype=theta.dtype, device=theta.device)
    g = corners @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]
    return ((g + 1) * torch.tensor([w, h], dtype=theta.dtype, device=theta.device) - 1) / 2


def corner_error(theta: Tensor, theta_true: Tensor, in_size: tuple[int, int]) -> Tensor:
    """Mean distance in input pixels between the output corners under ``theta`` and ``theta_true``: ``(B,)``.

    >>> t = similarity_theta(2.0, 10.0, (1.0, 0.0), (32, 32), (16, 16))
    >>> corner_error(t, t, (32, 32))
    tensor([0.], dtype=torch.float64)
    """
    if theta.shape != theta_true.shape or theta.shape[-2:] != (2, 3):
        raise ValueError(f"theta: expected two (B, 2, 3) tensors of one shape, got {tuple(theta.shape)} "
                         f"and {tuple(theta_true.shape)}")
    return (corners_px(theta, in_size) - corners_px(theta_true, in_size)).norm(dim=-1).mean(dim=-1)


def call_sampler(sampler: Sampler, input: Tensor, grid: Tensor, generator: torch.Generator | None) -> Tensor:
    """``sampler(input, grid)``, passing ``generator`` to registry interpolators (which accept it)."""
    if isinstance(sampler, Interpolator):
        return sampler(input, grid, generator=generator)
    return sampler(input, grid)


# ----------------------------------------------------------------------------------------------------------------
# Fidelity


def ground_truth(source: Tensor, theta: Tensor, out_size: tuple[int, int]) -> Tensor:
    """The warp of the high-resolution ``source (B, C, Hs, Ws)`` box-averaged per output pixel: ``(B, C, Ho, Wo)``."""
    supersample = supersample_for(theta, tuple(source.shape[-2:]), out_size)
    return render_affine(source, theta, out_size, supersample)


def masked_psnr(pred: Tensor, target: Tensor, mask: Tensor, max_val: float = 1.0) -> float:
    """PSNR in dB over the pixels where ``mask (B, 1, H, W)`` is true (``inf`` when they agree exactly)."""
    m = mask.expand_as(pred)
    if not m.any():
        raise ValueError("mask: expected at least one interior pixel, got none (output too small for the warp)")
    if torch.equal(pred[m], target[m]):
        return math.inf
    return float(kornia.metrics.psnr(pred[m], target[m], max_val))


def masked_ssim(pred: Tensor, target: Tensor, mask: Tensor, window_size: int = 11) -> float:
    """Mean SSIM (kornia, Gaussian window) over ``mask (B, 1, H, W)`` eroded by half the window.

    The erosion keeps windows that reach outside the interior from counting; when
    nothing survives it (tiny outputs) the mean is over the whole mask.
    """
    ssim_map = kornia.metrics.ssim(pred, target, window_size, max_val=1.0)
    eroded = -F.max_pool2d(-mask.to(pred.dtype), window_size, stride=1, padding=window_size // 2) > 0.5
    use = eroded if eroded.any() else mask
    return float(ssim_map[use.expand_as(ssim_map)].mean())


def fidelity(sampler: Sampler, source: Tensor, input: Tensor, theta: Tensor, out_size: tuple[int, int],
             generator: torch.Generator | None = None) -> dict[str, float]:
    """PSNR (dB) and SSIM of ``sampler(input, affine_grid(theta))`` against the ground-truth render of ``source``.

    Args:
        sampler: a ``grid_sample``-like callable.
        source: ``(1, C, Hs, Ws)`` the high-resolution image (``input`` area-downsampled from it).
        input: ``(1, C, H, W)`` the benchmark input.
        theta: ``(1, 2, 3)`` the warp.
        out_size: ``(Ho, Wo)``.

    Returns:
        ``{"psnr": dB, "ssim": 1}`` on the interior (footprints at least 1 input px inside).
    """
    pred, target, mask = fidelity_images(sampler, source, input, theta, out_size, generator)
    return {"psnr": masked_psnr(pred, target, mask), "ssim": masked_ssim(pred, target, mask)}


def fidelity_images(sampler: Sampler, source: Tensor, input: Tensor, theta: Tensor, out_size: tuple[int, int],
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """What :func:`fidelity` compares: the warp ``(1, C, Ho, Wo)``, its ground truth and the interior ``(1, 1, Ho, Wo)``."""
    theta = theta.to(input.dtype)
    grid = F.affine_grid(theta, [theta.shape[0], input.shape[1], *out_size], align_corners=False)
    with torch.no_grad():
        pred = call_sampler(sampler, input, grid, generator)
        target = ground_truth(source, theta, out_size)
    return pred, target, interior_mask(theta, tuple(input.shape[-2:]), out_size)


# ----------------------------------------------------------------------------------------------------------------
# Alignment


@dataclasses.dataclass(frozen=True)
class AlignmentSettings:
    """One alignment experiment's protocol.

    Attributes:
        trials: perturbations per cell, run as one batch.
        steps: Adam steps.
        lr: Adam's learning rate in input pixels per step: the six optimized parameters
            are the affine's entries scaled so that a unit change moves the output's
            corners (linear entries) or centre (translation) by one input pixel.
        window: side of the aligned square region in input pixels (centred), capped at
            ``max_output * s`` so that the output, ``round(window / s)`` pixels a side,
            has at most ``max_output`` pixels a side: zoom-ins align a smaller region,
            which keeps every cell's cost at most that of ``s = 1``.
        max_output: the cap on the output's side in pixels.
        max_translation: translation perturbation, uniform in ``[-T, T]`` per axis, input pixels.
        max_rotation: rotation perturbation, uniform in ``[-R, R]`` degrees (see ``rotation_magnitude``).
        max_log_scale: scale perturbation ``exp(U(-L, L))``.
        rotation_magnitude: if set, the rotation perturbation is ``+-`` this many degrees (random sign)
            instead of uniform in ``[-max_rotation, max_rotation]``: the rotation suite's sweep.
        success_px: a trial succeeds when its mean corner error is below this (input pixels).
    """

    trials: int = 16
    steps: int = 60
    lr: float = 0.15
    window: int = 64
    max_output: int = 64
    max_translation: float = 3.0
    max_rotation: float = 5.0
    max_log_scale: float = 0.05
    rotation_magnitude: float | None = None
    success_px: float = 1.0

    def __post_init__(self) -> None:
        for name in ("trials", "steps", "window", "max_output"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        for name in ("lr", "max_translation", "max_rotation", "max_log_scale", "success_px"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """Similarity perturbations: scale factors ``(B,)``, rotations ``(B,)`` in degrees, translations ``(B, 2)`` in px."""

    scale: Tensor
    rotation: Tensor
    translation: Tensor


def draw_perturbations(settings: AlignmentSettings, generator: torch.Generator) -> Perturbation:
    """Draw ``settings.trials`` perturbations from ``generator`` (float64, reproducible for a seed)."""
    b = settings.trials

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1

    log_scale = uniform(b) * settings.max_log_scale
    if settings.rotation_magnitude is None:
        rotation = uniform(b) * settings.max_rotation
    else:
        rotation = torch.sign(uniform(b)) * settings.rotation_magnitude
    translation = uniform(b, 2) * settings.max_translation
    return Perturbation(scale=log_scale.exp(), rotation=rotation, translation=translation)


def align(
    sampler: Sampler,
    source: Tensor,
    input: Tensor,
    scale: float,
    angle: float,
    settings: AlignmentSettings,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    sampler_generator: torch.Generator | None = None,
) -> Tensor:
    """Run ``settings.trials`` alignment trials in one batch; returns their final corner errors ``(B,)``, input px.

    The last row of :func:`align_trajectory` (same arguments).
    """
    return align_trajectory(sampler, source, input, scale, angle, settings, generator, dtype, sampler_generator)[-1]


def align_trajectory(
    sampler: Sampler,
    source: Tensor,
    input: Tensor,
    scale: float,
    angle: float,
    settings: AlignmentSettings,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    sampler_generator: torch.Generator | None = None,
) -> Tensor:
    """Run ``settings.trials`` alignment trials in one batch; returns the corner errors before the first
    step and after each: ``(steps + 1, B)``, input px.

    The base warp is the similarity (``scale``, ``angle``, no translation) of a
    centred square of ``min(window, max_output * scale)`` input pixels, output
    ``round(side / scale)`` pixels a side.
    Each trial's template is the ground-truth render of ``source`` under the base
    warp composed with a random similarity perturbation (scale factor, rotation,
    translation). The estimate, a full affine started at the base warp, is moved by
    Adam on the MSE between ``sampler(input, affine_grid(theta))`` and the template
    over the template's interior, the gradient flowing through the sampler. Both
    images are the channel mean (luminance), which the box model commutes with.

    Args:
        sampler: the interpolator under test.
        source: ``(1, C, Hs, Ws)`` high-resolution image; ``input`` is its area-downsampling.
        input: ``(1, C, H, W)``.
        scale: output pixel size in input pixels.
        angle: base rotation in degrees.
        settings: the protocol.
        generator: a CPU generator; draws the perturbations (and the stochastic samplers'
            noise unless ``sampler_generator`` is given).
        dtype: the optimisation's dtype.
        sampler_generator: the stochastic samplers' generator, on ``input``'s device.
    """
    h, w = input.shape[-2:]
    device = input.device
    sampler_generator = generator if sampler_generator is None else sampler_generator
    out_size = alignment_output_size(scale, settings)
    pert = draw_perturbations(settings, generator)
    b = settings.trials
    theta_true = similarity_theta(scale * pert.scale, angle + pert.rotation, pert.translation, (h, w), out_size)
    theta_base = similarity_theta(scale, angle, (0.0, 0.0), (h, w), out_size).expand(b, 2, 3)
    theta_true, theta_base = theta_true.to(device), theta_base.to(device)

    grey_source = source.mean(dim=1, keepdim=True)
    grey_input = input.mean(dim=1, keepdim=True).to(dtype).expand(b, 1, h, w)
    with torch.no_grad():
        template = ground_truth(grey_source.expand(b, -1, -1, -1), theta_true, out_size).to(dtype)
    mask = interior_mask(theta_true, (h, w), out_size).to(dtype)
    weight = mask / mask.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)

    # optimise the affine in input pixels at the corners: theta = base + diag(2/W, 2/H) * delta
    unit = torch.tensor([2 / w, 2 / h], dtype=torch.float64, device=device)[None, :, None]
    delta = torch.zeros(b, 2, 3, dtype=dtype, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=settings.lr)
    base, unit = theta_base.to(dtype), unit.to(dtype)

    def error_now() -> Tensor:
        with torch.no_grad():
            return corner_error((base + unit * delta).to(torch.float64), theta_true, (h, w))

    errors = [error_now()]
    for _ in range(settings.steps):
        theta = base + unit * delta
        grid = F.affine_grid(theta, [b, 1, *out_size], align_corners=False)
        warped = call_sampler(sampler, grey_input, grid, sampler_generator)
        loss = (weight * (warped - template) ** 2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        errors.append(error_now())
    return torch.stack(errors)


def alignment_output_size(scale: float, settings: AlignmentSettings) -> tuple[int, int]:
    """The alignment output ``(n, n)``: ``n = round(min(window, max_output * s) / s)``.

    >>> alignment_output_size(4.0, AlignmentSettings(window=64, max_output=64))
    (16, 16)
    >>> alignment_output_size(0.25, AlignmentSettings(window=64, max_output=64))
    (64, 64)
    """
    side = max(1, round(min(settings.window, settings.max_output * scale) / scale))
    return side, side


def alignment_metrics(errors: Tensor, success_px: float) -> dict[str, float]:
    """``align_success`` (fraction of trials under ``success_px``) and ``align_corner_error_median`` (px)."""
    return {
        "align_success": float((errors < success_px).to(torch.float64).mean()),
        "align_corner_error_median": float(errors.quantile(0.5)),  # the mean of the middle two for even counts
    }


def source_and_input(image: Tensor, downsample: int) -> tuple[Tensor, Tensor]:
    """``(source, input)``: the image cropped to a multiple of ``downsample`` and its area-downsampling."""
    h, w = image.shape[-2:]
    hc, wc = (h // downsample) * downsample, (w // downsample) * downsample
    if hc == 0 or wc == 0:
        raise ValueError(f"image: {tuple(image.shape[-2:])} is smaller than the downsampling factor {downsample}")
    source = image[..., :hc, :wc]
    return source, area_downsample(source, downsample)


# ----------------------------------------------------------------------------------------------------------------
# The suites built on the above

#: the downsampling from the source to the benchmark input (suites.md: D = 4, e.g. 512 -> 128)
DOWNSAMPLE = 4
#: reported PSNR ceiling: an exact reproduction (PSNR = inf) is reported as this many dB
PSNR_CEILING_DB = 120.0
#: the pictures keep at most this many output pixels a side (the centre of the output)
PICTURE_SIDE = 64
#: alignment trajectories kept per picture cell (the first trials)
TRAJECTORIES = 8

#: what each metric of the scale and rotation suites means
METRICS = {
    "psnr": Metric("PSNR against the ground truth", "dB", "higher", exact=PSNR_CEILING_DB,
                   doc=f"of the whole warped input, on the interior; an exact reproduction (infinite PSNR, stored as "
                   f"{PSNR_CEILING_DB:g} dB) is written 'exact'"),
    "ssim": Metric("SSIM against the ground truth", "", "higher",
                   doc="mean SSIM (11 x 11 Gaussian window) over the interior"),
    "align_success": Metric("alignment success rate", "", "higher",
                            doc="the share of alignment trials whose mean corner error ends under the success "
                            "threshold (1 input px by default; the protocol above gives this run's)"),
    "align_corner_error_median": Metric("median corner error after alignment", "input px", "lower", log=True,
                                        doc="the median over a cell's trials of the final mean corner error"),
}


@functools.lru_cache(maxsize=64)
def benchmark_pair(name: str, folder: str | None) -> tuple[Tensor, Tensor]:
    """``(source, input)`` float32 for image ``name`` (built-in, or a file stem in ``folder``); cached per process."""
    return source_and_input(cached_image(name, folder, DOWNSAMPLE).to(torch.float32), DOWNSAMPLE)


@dataclasses.dataclass(frozen=True)
class Profile:
    """A suite profile: the sweep, how many built-in images and seeds, and the alignment protocol."""

    sweep: tuple[float, ...]
    images: int
    seeds: int
    settings: AlignmentSettings


#: the alignment protocol's fields a user may set (``--option scale.trials=64``)
SETTING_OPTIONS = {
    "trials": Option("int", "alignment trials (random perturbations) per image and seed", minimum=1,
                     maximum=4096),
    "steps": Option("int", "Adam steps per trial", minimum=1, maximum=10_000),
    "lr": Option("float", "Adam's learning rate, input pixels per step", minimum=0),
    "window": Option("int", "side of the aligned square region, input px", minimum=1, maximum=1024),
    "max_output": Option("int", "the most output pixels a side of the alignment", minimum=1, maximum=1024),
    "max_translation": Option("float", "translation perturbation, uniform in +-T input px per axis", minimum=0),
    "max_rotation": Option("float", "rotation perturbation, uniform in +-R degrees (scale suite)", minimum=0),
    "max_log_scale": Option("float", "scale perturbation exp(U(-L, L))", minimum=0),
    "success_px": Option("float", "success threshold on the mean corner error, input px", minimum=0),
}


def similarity_options(sweep_key: str, sweep_help: str) -> dict[str, Option]:
    """The options of a :class:`SimilaritySuite`: its sweep, image count and folder, the alignment protocol."""
    return {
        sweep_key: Option("floats", sweep_help),
        "num_images": Option("int", "how many built-in images (the first of the list), or of --images' folder",
                             minimum=1),
        "images": Option("folder", "a folder of your own images (as --images)"),
        **SETTING_OPTIONS,
    }


def centre_crop(picture: Tensor, side: int = PICTURE_SIDE) -> Tensor:
    """The centre ``side x side`` of ``picture (..., H, W)`` (all of it along an axis shorter than ``side``)."""
    h, w = picture.shape[-2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return picture[..., top : top + min(h, side), left : left + min(w, side)]


def picture_arrays(pred: Tensor, target: Tensor, mask: Tensor, trajectory: Tensor) -> dict[str, Any]:
    """A picture cell's arrays: the centre crops of the warp and its ground truth (uint8), the error map
    ``|warp - truth|`` averaged over channels (float16, NaN outside the interior) and the first
    :data:`TRAJECTORIES` trials' corner errors per step (float16 ``(steps + 1, trials)``)."""
    error = (pred - target).abs().mean(dim=1, keepdim=True).to(torch.float64)
    error = torch.where(mask, error, torch.full_like(error, math.nan))
    return {
        "warped": to_uint8(centre_crop(pred[0])),
        "truth": to_uint8(centre_crop(target[0])),
        "error": centre_crop(error[0, 0]).cpu().numpy().astype(np.float16),
        "trajectory": trajectory[:, :TRAJECTORIES].cpu().numpy().astype(np.float16),
    }


class SimilaritySuite(Suite):
    """Fidelity and alignment under a similarity warp, swept over one parameter (``x_param``).

    Subclasses set ``name``, ``x_param``, ``profiles``, ``sweep_option``, ``options`` and
    :meth:`geometry`. Each cell is one (interpolator, swept value, image, seed) and returns
    ``psnr`` (dB), ``ssim`` (1), ``align_success`` (one row per trial: 1 when it ended
    under ``success_px``, else 0, with its ``trial``) and ``align_corner_error_median``
    (input px). The cells of the first image at seed 0 also keep pictures (the warp's
    centre, its ground truth, the error map) and the first trials' trajectories.
    """

    profiles: ClassVar[dict[str, Profile]]
    #: the option that replaces the profile's sweep
    sweep_option: ClassVar[str]
    metrics = METRICS

    def geometry(self, x: float, settings: AlignmentSettings) -> tuple[float, float, float, AlignmentSettings]:
        """``(scale, angle, align_angle, settings)`` at swept value ``x``.

        The fidelity warp is (``scale``, ``angle``); the alignment's base warp is
        (``scale``, ``align_angle``) and ``settings`` its protocol.
        """
        raise NotImplementedError

    def profile(self, config: RunConfig) -> Profile:
        """The profile of ``config``, with the suite's options applied (range errors raise ``ValueError``)."""
        if config.profile not in self.profiles:
            raise ValueError(f"profile: expected one of {list(self.profiles)}, got {config.profile!r}")
        base = self.profiles[config.profile]
        options = config.options_for(self.name)
        settings = dataclasses.replace(base.settings, **{k: options[k] for k in SETTING_OPTIONS if k in options})
        sweep = tuple(float(v) for v in options.get(self.sweep_option, base.sweep))
        return dataclasses.replace(base, sweep=sweep, images=options.get("num_images", base.images),
                                   settings=settings)

    def image_names(self, config: RunConfig) -> list[str]:
        """The profile's first ``images`` built-in images, or the images of ``options['images']`` (a folder):
        all of them unless ``num_images`` is set."""
        options = config.options_for(self.name)
        folder = options.get("images")
        count = options.get("num_images") if folder is not None else self.profile(config).images
        return image_names(count, folder, DOWNSAMPLE)

    def cells(self, config: RunConfig) -> list[Cell]:
        profile = self.profile(config)
        seeds = profile.seeds if config.seeds is None else config.seeds
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
            raise ValueError(f"seeds: expected an int >= 1, got {seeds!r}")
        images = self.image_names(config)
        return [
            Cell(suite=self.name, interpolator=name, hparams=dict(hparams),
                 params={self.x_param: x, "image": image}, seed=seed)
            for name, hparams in config.interpolators.items()
            for x in profile.sweep
            for image in images
            for seed in range(seeds)
        ]

    def run_cell(self, cell: Cell, config: RunConfig, run_dir: Path) -> CellResult:
        folder = config.options_for(self.name).get("images")
        source, input = benchmark_pair(cell.params["image"], None if folder is None else str(folder))
        device = torch.device(config.device)
        source, input = source.to(device), input.to(device)
        sampler = interpolators.create(cell.interpolator, **cell.hparams).to(device)
        x = float(cell.params[self.x_param])
        scale, angle, align_angle, settings = self.geometry(x, self.profile(config).settings)

        sampler_generator = torch.Generator(device=device).manual_seed(cell.seed)
        out_size = output_size(tuple(input.shape[-2:]), scale)
        theta = similarity_theta(scale, angle, (0.0, 0.0), tuple(input.shape[-2:]), out_size).to(device)
        pred, target, mask = fidelity_images(sampler, source, input, theta, out_size, sampler_generator)
        psnr, ssim = masked_psnr(pred, target, mask), masked_ssim(pred, target, mask)

        perturbation_generator = torch.Generator().manual_seed(cell.seed)
        trajectory = align_trajectory(sampler, source, input, scale, align_angle, settings, perturbation_generator,
                                      sampler_generator=sampler_generator)
        errors = trajectory[-1]
        aligned = alignment_metrics(errors, settings.success_px)
        rows = [
            {"metric": "psnr", "value": min(psnr, PSNR_CEILING_DB), "unit": "dB"},
            {"metric": "ssim", "value": ssim, "unit": "1"},
            *({"metric": "align_success", "value": float(e < settings.success_px), "unit": "fraction", "trial": i}
              for i, e in enumerate(errors.tolist())),
            {"metric": "align_corner_error_median", "value": aligned["align_corner_error_median"], "unit": "px"},
        ]
        if cell.seed != 0 or cell.params["image"] != self.image_names(config)[0]:
            return CellResult(rows)
        return CellResult(rows, picture_arrays(pred, target, mask, trajectory))

    def estimate_seconds(self, cell: Cell, config: RunConfig) -> float:
        """Seconds per cell measured on 2 CPU cores at the default profile, scaled by trials x steps."""
        settings = self.profile(config).settings
        default = self.profiles["default"].settings
        work = (settings.trials * settings.steps) / (default.trials * default.steps)
        return CELL_SECONDS.get(cell.interpolator, max(CELL_SECONDS.values())) * work

    def protocol_note(self, config: RunConfig) -> Note:
        """The run's alignment protocol in words."""
        p = self.profile(config)
        st = p.settings
        rotation = (f"a rotation of exactly +-{self.x_symbol or self.x_param}" if self.name == "rotation"
                    else f"a rotation uniform in +-{st.max_rotation:g} degrees")
        return Note(
            f"Alignment protocol of this run: {st.trials} trials per image and seed, each a template rendered under "
            f"a random perturbation of the warp ({rotation}, a scale factor exp(U(+-{st.max_log_scale:g})), a "
            f"translation uniform in +-{st.max_translation:g} input px per axis); {st.steps} Adam steps at "
            f"lr {st.lr:g} on the MSE through the sampler; a trial succeeds when its mean corner error ends under "
            f"{st.success_px:g} input px. Output at most {st.max_output} px a side. Fidelity: the whole input "
            f"warped, against the ground truth (the source rendered with {DOWNSAMPLE}x the resolution, box-averaged "
            "per output pixel), on the interior."
        )

    def report_sections(self, data: ReportData) -> list[Section]:
        sections = [Section("Protocol", (self.protocol_note(data.config),))]
        pictures, image = {}, ""
        for cell, arrays in data.with_arrays(self.name):
            pictures[(cell.interpolator, float(cell.params[self.x_param]))] = arrays
            image = cell.params["image"]
        if not pictures:
            return sections
        names = list(dict.fromkeys(name for name, _ in pictures))
        xs = sorted({x for _, x in pictures})
        symbol = self.x_symbol or self.x_param
        headline = float(self.headline.get(self.x_param, xs[-1]))
        headline = headline if headline in xs else xs[-1]
        sections.insert(0, Section(f"Pictures at {symbol} = {headline:g}", (
            glance_strip(pictures, names, headline, symbol, image),), glance=True))
        sections.append(Section(f"Pictures over {symbol}", picture_grids(pictures, names, xs, symbol, image)))
        sections.append(Section(f"Alignment trajectories at {symbol} = {headline:g}",
                                (trajectory_figure(pictures, names, headline, symbol, image, data.config, self),)))
        return sections


#: seconds per cell on a quiet 2-core CPU at the default profile (reports/default, before the native kernels)
CELL_SECONDS = {"nearest": 0.08, "bilinear": 0.08, "bicubic": 0.2, "lstn": 0.3, "estn": 0.4}


def _error_scale(maps: list[np.ndarray]) -> float:
    """A colour scale shared by error maps: their largest 99th percentile (interior only)."""
    finite = [np.asarray(m, dtype=np.float64)[np.isfinite(np.asarray(m, dtype=np.float64))] for m in maps]
    tops = [float(np.percentile(f, 99)) for f in finite if f.size]
    return max(tops) if tops and max(tops) > 0 else 1.0


def _error_panel(arrays: dict[str, np.ndarray], vmax: float) -> Image:
    error = arrays["error"].astype(np.float64)
    return Image(error, cmap="magma", vmin=0.0, vmax=vmax, note=f"mean {np.nanmean(error):.3f}")


def glance_strip(pictures, names: list[str], x: float, symbol: str, image: str) -> Figure:
    """The ground truth and each method's warp at ``x`` (first row), each error map under it (second row)."""
    at = {name: pictures[(name, x)] for name in names if (name, x) in pictures}
    truth = next(iter(at.values()))["truth"]
    vmax = _error_scale([a["error"] for a in at.values()])
    return Figure(
        panels=(
            (Image(truth), *(Image(a["warped"]) for a in at.values())),
            (None, *(_error_panel(a, vmax) for a in at.values())),
        ),
        row_labels=("output", "|error|"),
        col_labels=("ground truth", *at),
        caption=f"Image {image!r} at {symbol} = {x:g}: the centre of the output (at most {PICTURE_SIDE} x "
        f"{PICTURE_SIDE} output pixels), enlarged without smoothing, and |output - ground truth| averaged over "
        f"channels (black 0 to yellow {vmax:.3g}, a scale shared by the row; grey: outside the interior, not "
        "scored).",
        alt=f"warped outputs and error maps at {symbol} = {x:g}",
    )


def picture_grids(pictures, names: list[str], xs: list[float], symbol: str, image: str) -> tuple[Figure, Figure]:
    """Outputs (rows: ground truth, then methods; columns: the sweep) and error maps (rows: methods)."""
    cols = tuple(f"{symbol} = {x:g}" for x in xs)
    truth_row = tuple(Image(next(pictures[(n, x)] for n in names if (n, x) in pictures)["truth"]) for x in xs)
    outputs = Figure(
        panels=(truth_row, *(tuple(Image(pictures[(n, x)]["warped"]) if (n, x) in pictures else None for x in xs)
                             for n in names)),
        row_labels=("ground truth", *names), col_labels=cols,
        caption=f"Image {image!r}: the centre of each output (at most {PICTURE_SIDE} x {PICTURE_SIDE} output "
        f"pixels, the whole output where it is smaller), enlarged without smoothing.",
        alt="warped outputs over the sweep",
    )
    scales = {x: _error_scale([pictures[(n, x)]["error"] for n in names if (n, x) in pictures]) for x in xs}
    errors = Figure(
        panels=tuple(tuple(_error_panel(pictures[(n, x)], scales[x]) if (n, x) in pictures else None for x in xs)
                     for n in names),
        row_labels=tuple(names), col_labels=tuple(f"{c} (0 to {scales[x]:.3g})" for c, x in zip(cols, xs)),
        caption="|output - ground truth| averaged over channels, black 0 to yellow at the column's top value "
        "(shared by the column); grey: outside the interior.",
        alt="error maps over the sweep",
    )
    return outputs, errors


def trajectory_figure(pictures, names: list[str], x: float, symbol: str, image: str, config: RunConfig,
                      suite: SimilaritySuite) -> Figure:
    """Per method, the corner error against the step of the first trials at ``x`` (log axis)."""
    success = suite.profile(config).settings.success_px
    panels = []
    for name in names:
        if (name, x) not in pictures:
            continue
        trajectory = np.asarray(pictures[(name, x)]["trajectory"], dtype=np.float64)
        steps = np.arange(trajectory.shape[0])
        series = tuple(Series(name if i == 0 else "", steps, np.maximum(trajectory[:, i], 1e-3), key=name, alpha=0.7)
                       for i in range(trajectory.shape[1]))
        panels.append(Lines(series, xlabel="Adam step", ylabel="corner error (input px)" if not panels else "",
                            ylog=True, hline=success, hline_label="success", title=name))
    return Figure(
        panels=(tuple(panels),), panel_size=(2.6, 2.3),
        caption=f"Image {image!r} at {symbol} = {x:g}: the mean corner error (input px, log axis) of the first "
        f"{TRAJECTORIES} alignment trials after each Adam step; a trial succeeds when it ends under the dashed line.",
        alt="alignment trajectories",
    )
