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
import torch
import torch.nn.functional as F
from kornia.geometry.conversions import angle_to_rotation_matrix
from torch import Tensor

import interpolators
from interpolators import Interpolator
from suites.base import Cell, RunConfig, Suite
from suites.images import cached_image, image_names
from suites.render import area_downsample, interior_mask, render_affine, supersample_for

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
    theta = theta.to(input.dtype)
    grid = F.affine_grid(theta, [theta.shape[0], input.shape[1], *out_size], align_corners=False)
    with torch.no_grad():
        pred = call_sampler(sampler, input, grid, generator)
        target = ground_truth(source, theta, out_size)
    mask = interior_mask(theta, tuple(input.shape[-2:]), out_size)
    return {"psnr": masked_psnr(pred, target, mask), "ssim": masked_ssim(pred, target, mask)}


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
    for _ in range(settings.steps):
        theta = base + unit * delta
        grid = F.affine_grid(theta, [b, 1, *out_size], align_corners=False)
        warped = call_sampler(sampler, grey_input, grid, sampler_generator)
        loss = (weight * (warped - template) ** 2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        theta = (base + unit * delta).to(torch.float64)
    return corner_error(theta, theta_true, (h, w))


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


class SimilaritySuite(Suite):
    """Fidelity and alignment under a similarity warp, swept over one parameter (``x_param``).

    Subclasses set ``name``, ``x_param``, ``profiles`` and :meth:`geometry`.
    Each cell is one (interpolator, swept value, image, seed) and returns
    ``psnr`` (dB), ``ssim`` (1), ``align_success`` (fraction) and
    ``align_corner_error_median`` (input px).
    """

    profiles: ClassVar[dict[str, Profile]]

    def geometry(self, x: float, settings: AlignmentSettings) -> tuple[float, float, float, AlignmentSettings]:
        """``(scale, angle, align_angle, settings)`` at swept value ``x``.

        The fidelity warp is (``scale``, ``angle``); the alignment's base warp is
        (``scale``, ``align_angle``) and ``settings`` its protocol.
        """
        raise NotImplementedError

    def profile(self, config: RunConfig) -> Profile:
        if config.profile not in self.profiles:
            raise ValueError(f"profile: expected one of {list(self.profiles)}, got {config.profile!r}")
        return self.profiles[config.profile]

    def image_names(self, config: RunConfig) -> list[str]:
        """The profile's first ``images`` built-in images, or every image of ``options['images']`` (a folder)."""
        folder = config.options.get("images")
        return image_names(None if folder is not None else self.profile(config).images, folder, DOWNSAMPLE)

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

    def run_cell(self, cell: Cell, config: RunConfig, run_dir: Path) -> list[dict[str, Any]]:
        folder = config.options.get("images")
        source, input = benchmark_pair(cell.params["image"], None if folder is None else str(folder))
        device = torch.device(config.device)
        source, input = source.to(device), input.to(device)
        sampler = interpolators.create(cell.interpolator, **cell.hparams).to(device)
        x = float(cell.params[self.x_param])
        scale, angle, align_angle, settings = self.geometry(x, self.profile(config).settings)

        sampler_generator = torch.Generator(device=device).manual_seed(cell.seed)
        out_size = output_size(tuple(input.shape[-2:]), scale)
        theta = similarity_theta(scale, angle, (0.0, 0.0), tuple(input.shape[-2:]), out_size).to(device)
        quality = fidelity(sampler, source, input, theta, out_size, sampler_generator)

        perturbation_generator = torch.Generator().manual_seed(cell.seed)
        errors = align(sampler, source, input, scale, align_angle, settings, perturbation_generator,
                       sampler_generator=sampler_generator)
        aligned = alignment_metrics(errors, settings.success_px)
        return [
            {"metric": "psnr", "value": min(quality["psnr"], PSNR_CEILING_DB), "unit": "dB"},
            {"metric": "ssim", "value": quality["ssim"], "unit": "1"},
            {"metric": "align_success", "value": aligned["align_success"], "unit": "fraction"},
            {"metric": "align_corner_error_median", "value": aligned["align_corner_error_median"], "unit": "px"},
        ]
