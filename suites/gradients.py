"""The gradients suite: what each sampler sends back to the input and to the warp, against the truth.

Per interpolator, downsampling factor ``f``, image and seed, one cell measures on a
*scene*: the input ``U (1, C, n, n)`` is a centre crop of the source
area-downsampled by ``D = 4``; the warp ``theta0`` (``affine_grid``'s convention,
``align_corners=False``) rotates by 5 degrees, shifts by a sub-pixel offset and
scales so that one output pixel spans exactly ``f`` input pixels, covering about
75% of the input; the template ``T`` is the ground-truth render of the
high-resolution source at ``theta0`` (:func:`suites.render.render_affine`,
supersampled so sub-samples are at most one source pixel apart, box-averaged).
Losses are means over the interior output pixels (footprint at least
``radius + 1`` input pixels inside the input) and channels.

Metrics (see ``docs/suites/gradients.md``):

- ``norm_ratio`` (unit ``1``): ``|dL/dU|_2 / |dL/dV|_2`` for the random-projection loss
  ``L = sum(R * V)``, ``V`` the sampler's output at ``theta0`` and ``R`` standard normal
  on the interior (zero elsewhere), so ``dL/dV = R`` and ``dL/dU = J_U^T R``.
- ``nonzero_grad_fraction`` (``fraction``): of the input pixels whose centre lies inside
  the warped region (the union of the output pixels' footprints), the share whose
  gradient ``dL/dU`` (summed ``|.|`` over channels) exceeds ``1e-9`` times its maximum.
- ``direction_accuracy`` (``fraction``): over a ``G x G`` grid of translation offsets
  ``delta`` within ``+- radius`` input pixels (0 excluded), the share where
  ``-dL/dt`` of the alignment loss ``L(t) = MSE(sampler(U, theta0 + t), T)`` at
  ``t = delta`` has a positive dot product with the true correction ``-delta``. A zero
  gradient (nearest) counts as wrong, so nearest scores 0.
- ``grad_cosine`` (``cosine``): at perturbed warps ``theta1`` (random similarities drawn
  from the seed: rotation within 1.5 degrees, scale within 3%, a 1 input pixel shift),
  the cosine between the sampler's ``dL/dtheta`` (6 parameters) and the central finite
  difference of ``L_true(theta) = MSE(render(source, theta), T)`` with the step
  ``h = 0.05`` input pixels (``0.1 / n`` normalized units, the largest displacement a
  step of any of the 6 parameters causes); the mean over ``perturbations`` warps (and,
  for stochastic samplers, over draws).
- ``grad_spread`` (``1``, stochastic samplers only): ``1 -`` the mean pairwise cosine of
  ``dL/dtheta`` over ``draws`` independent draws at ``theta1``, averaged over the
  perturbed warps; 0 means every draw gives the same direction. Deterministic samplers
  get no row (their spread is 0 by definition).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import interpolators
from suites.alignment import similarity_theta
from suites.base import PROFILES, Cell, CellResult, Metric, Option, ReportData, RunConfig, Suite
from suites.images import cached_image, image_names
from suites.render import area_downsample, interior_mask, render_affine, supersample_for
from suites.sections import Arrows, Figure, Image, Section

#: the benchmark input is the source area-downsampled by this factor
DOWNSAMPLE = 4
#: the fixed rotation of the warp, so that sampling points fall off the lattice (degrees)
ROTATION_DEG = 5.0
#: the fixed sub-pixel shift of the warp (input pixels, x and y)
SHIFT_PX = (0.3, 0.2)
#: the share of the input's side the warped (unrotated) square covers
COVERAGE = 0.75
#: the central-difference step, as the largest displacement it causes (input pixels)
FD_STEP_PX = 0.05
#: relative threshold under which an input pixel's gradient counts as zero
ZERO_TOLERANCE = 1e-9
#: the perturbation at which ``grad_cosine`` and ``grad_spread`` are taken
PERTURB_ROTATION_DEG = 1.5
PERTURB_LOG_SCALE = 0.03
PERTURB_SHIFT_PX = 1.0


@dataclasses.dataclass(frozen=True)
class Profile:
    """How big a run is.

    Attributes:
        images: how many images (the first of the built-in list, or of the folder by name); ``None`` for all.
        crop: side of the input crop in input pixels (the source crop is ``DOWNSAMPLE`` times that).
        grid: ``G``, the translation grid is ``G x G``.
        radius: the translation grid spans ``+- radius`` input pixels.
        draws: gradient draws per perturbed warp for stochastic samplers.
        perturbations: perturbed warps ``grad_cosine`` and ``grad_spread`` average over.
        seeds: seeds per cell group (``RunConfig.seeds`` overrides it).
        factors: the downsampling factors swept.
    """

    images: int | None
    crop: int
    grid: int
    radius: float
    draws: int
    perturbations: int
    seeds: int
    factors: tuple[int, ...] = (1, 2, 4, 8)


PROFILE_SETTINGS: dict[str, Profile] = {
    "quick": Profile(images=1, crop=64, grid=5, radius=2.0, draws=4, perturbations=2, seeds=1),
    "default": Profile(images=2, crop=128, grid=10, radius=2.0, draws=8, perturbations=4, seeds=1),
    "full": Profile(images=None, crop=128, grid=16, radius=2.0, draws=16, perturbations=8, seeds=3),
}


#: the profile's fields a user may set (``--option gradients.grid=16``); ``num_images`` sets ``images``
OPTIONS = {
    "num_images": Option("int", "how many images (the first built-in ones, or of the folder by name)", minimum=1),
    "images": Option("folder", "a folder of your own images (as --images)"),
    "crop": Option("int", "side of the input crop, input px", minimum=8, maximum=1024),
    "grid": Option("int", "G: the translation grid is G x G", minimum=2, maximum=64),
    "radius": Option("float", "the translation grid spans +- radius input px", minimum=0),
    "draws": Option("int", "gradient draws per perturbed warp for stochastic samplers", minimum=2, maximum=256),
    "perturbations": Option("int", "perturbed warps grad_cosine and grad_spread average over", minimum=1,
                            maximum=256),
    "factors": Option("ints", "the downsampling factors f swept", minimum=1),
}


def profile_settings(profile: str, options: dict[str, Any] | None = None) -> Profile:
    """The :class:`Profile` of ``profile`` with ``options`` (:data:`OPTIONS`) applied; an unknown name raises."""
    if profile not in PROFILE_SETTINGS:
        raise ValueError(f"profile: expected one of {list(PROFILES)}, got {profile!r}")
    options = options or {}
    changes = {k: options[k] for k in ("crop", "grid", "radius", "draws", "perturbations") if k in options}
    if "factors" in options:
        changes["factors"] = tuple(int(f) for f in options["factors"])
    if "num_images" in options:
        changes["images"] = int(options["num_images"])
    return dataclasses.replace(PROFILE_SETTINGS[profile], **changes)


# --- geometry ---------------------------------------------------------------------------------------


def px_to_normalized(px: float | Tensor, size: int) -> float | Tensor:
    """Input pixels -> normalized units along an axis of ``size`` pixels (``align_corners=False``: ``2 / size``)."""
    return px * 2.0 / size


def downsampling_warp(
    factor: int, size: int, angle_deg: float = ROTATION_DEG, shift_px: tuple[float, float] = SHIFT_PX
) -> tuple[Tensor, tuple[int, int]]:
    """The scene's warp: ``theta (1, 2, 3)`` float64 and the output size for an ``size x size`` input.

    ``theta = [s R(angle) | t]`` with ``s = factor * Wo / size``, so each output pixel spans
    exactly ``factor`` input pixels along both of its (rotated) axes, and
    ``Wo = Ho = max(2, floor(COVERAGE * size / factor))``.

    >>> theta, out = downsampling_warp(4, 64, angle_deg=0.0, shift_px=(0.0, 0.0))
    >>> out, round(theta[0, 0, 0].item(), 4)
    ((12, 12), 0.75)
    """
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"factor: expected an integer >= 1, got {factor!r}")
    out = max(2, math.floor(COVERAGE * size / factor))
    # similarity_theta rotates by kornia's R(a) = [[cos, sin], [-sin, cos]]: R(-angle) is the R(angle) above
    return similarity_theta(float(factor), -angle_deg, shift_px, (size, size), (out, out)), (out, out)


def warped_region(theta: Tensor, in_size: tuple[int, int], out_size: tuple[int, int]) -> Tensor:
    """``(1, 1, H, W)`` bool: input pixels whose centre lies in the union of the output pixels' footprints.

    A pixel centre ``p`` (normalized ``g``) is inside when ``A^-1 (g - t)``, the output
    normalized coordinate it comes from, lies in ``[-1, 1]^2``.
    """
    h, w = in_size
    ys = (2 * torch.arange(h, dtype=theta.dtype, device=theta.device) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=theta.dtype, device=theta.device) + 1) / w - 1
    g = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
    a, t = theta[0, :, :2], theta[0, :, 2]
    o = (g - t) @ torch.linalg.inv(a).T
    return (o.abs() <= 1).all(dim=-1)[None, None]


def translated(theta: Tensor, offsets: Tensor) -> Tensor:
    """``theta (1, 2, 3)`` with each of ``offsets (N, 2)`` (normalized ``x, y``) added to its translation.

    Returns ``(N, 2, 3)``.
    """
    return theta + F.pad(offsets.unsqueeze(-1), (2, 0))


def translation_grid(grid: int, radius_px: float, size: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """``(N, 2)`` normalized offsets on a ``grid x grid`` lattice over ``[-radius, radius]^2`` input px, 0 left out."""
    if grid < 2:
        raise ValueError(f"grid: expected at least 2 translations per axis, got {grid!r}")
    axis = torch.linspace(-radius_px, radius_px, grid, dtype=dtype)
    offsets = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
    offsets = offsets[offsets.abs().sum(-1) > 0]
    return px_to_normalized(offsets, size)


def perturbed_warp(theta: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """``theta`` composed with a random similarity: rotation and log-scale uniform within
    ``PERTURB_ROTATION_DEG`` and ``PERTURB_LOG_SCALE``, and a ``PERTURB_SHIFT_PX`` shift in a uniform direction."""
    u = torch.rand(3, generator=generator, dtype=torch.float64)
    angle = math.radians(PERTURB_ROTATION_DEG) * (2 * u[0].item() - 1)
    scale = math.exp(PERTURB_LOG_SCALE * (2 * u[1].item() - 1))
    phi = 2 * math.pi * u[2].item()
    rot = torch.tensor(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=theta.dtype
    ).to(theta.device)
    shift = px_to_normalized(PERTURB_SHIFT_PX, size) * torch.tensor(
        [math.cos(phi), math.sin(phi)], dtype=theta.dtype
    ).to(theta.device)
    linear = scale * rot @ theta[0, :, :2]
    return torch.cat([linear, (theta[0, :, 2] + shift)[:, None]], dim=1)[None]


# --- losses and gradients ---------------------------------------------------------------------------


def masked_mse(output: Tensor, template: Tensor, mask: Tensor) -> Tensor:
    """Per-batch-element mean squared error over ``mask``'s pixels and all channels -> ``(B,)``.

    ``output (B, C, Ho, Wo)``, ``template (1 or B, C, Ho, Wo)``, ``mask (1, 1, Ho, Wo)`` bool.
    """
    weight = mask.to(output.dtype)
    count = weight.sum() * output.shape[1]
    return ((output - template) ** 2 * weight).sum(dim=(1, 2, 3)) / count


def _sample(sampler: Callable, input: Tensor, theta: Tensor, out_size: tuple[int, int], generator) -> Tensor:
    b = theta.shape[0]
    grid = F.affine_grid(theta, [b, input.shape[1], *out_size], align_corners=False)
    return sampler(input.expand(b, -1, -1, -1), grid, generator=generator)


def input_gradient(
    sampler: Callable, input: Tensor, theta: Tensor, out_size: tuple[int, int], output_grad: Tensor, generator=None
) -> Tensor:
    """``dL/dU (1, C, H, W)`` for the linear loss ``L = sum(output_grad * V)``, ``V = sampler(U, grid(theta))``."""
    u = input.detach().clone().requires_grad_(True)
    v = _sample(sampler, u, theta.detach(), out_size, generator)
    (grad,) = torch.autograd.grad((v * output_grad).sum(), u)
    return grad


def norm_ratio(input_grad: Tensor, output_grad: Tensor) -> float:
    """``|dL/dU|_2 / |dL/dV|_2`` (Frobenius norms over all elements).

    >>> norm_ratio(torch.full((1, 1, 2, 2), 0.25), torch.ones(1, 1, 1, 1))
    0.5
    """
    return (input_grad.norm() / output_grad.norm()).item()


def nonzero_fraction(input_grad: Tensor, region: Tensor, tolerance: float = ZERO_TOLERANCE) -> float:
    """Share of the pixels in ``region (1, 1, H, W)`` whose ``sum_c |grad|`` exceeds ``tolerance * max``."""
    magnitude = input_grad.abs().sum(dim=1, keepdim=True)
    nonzero = magnitude > tolerance * magnitude.max()
    return (nonzero & region).sum().item() / region.sum().item()


#: values of :func:`coverage_map`
HOLE, OUTSIDE, COVERED = 0, 1, 2


def coverage_map(input_grad: Tensor, region: Tensor, tolerance: float = ZERO_TOLERANCE) -> np.ndarray:
    """Which input pixels receive gradient, as ``(H, W)`` uint8: :data:`COVERED` (2) inside ``region`` with a
    gradient as :func:`nonzero_fraction` counts it, :data:`HOLE` (0) inside without, :data:`OUTSIDE` (1)."""
    magnitude = input_grad.abs().sum(dim=1, keepdim=True)
    nonzero = (magnitude > tolerance * magnitude.max())[0, 0].cpu().numpy()
    inside = region[0, 0].cpu().numpy()
    return np.where(inside, np.where(nonzero, COVERED, HOLE), OUTSIDE).astype(np.uint8)


def translation_gradients(
    sampler: Callable,
    input: Tensor,
    theta: Tensor,
    offsets: Tensor,
    template: Tensor,
    mask: Tensor,
    generator=None,
) -> Tensor:
    """``dL/dt (N, 2)`` of ``L(t) = masked_mse(sampler(U, theta + t), T)`` at each of ``offsets (N, 2)``.

    All ``N`` translations go through the sampler in one batch.
    """
    t = offsets.detach().clone().requires_grad_(True)
    out = _sample(sampler, input.detach(), translated(theta.detach(), t), template.shape[-2:], generator)
    (grad,) = torch.autograd.grad(masked_mse(out, template, mask).sum(), t)
    return grad


def direction_accuracy(gradients: Tensor, offsets: Tensor) -> float:
    """Share of offsets where ``-gradient`` has a positive dot product with the correction ``-offset``.

    A zero gradient counts as wrong.

    >>> direction_accuracy(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[2.0, 1.0], [1.0, 0.0]]))
    0.5
    """
    return ((gradients * offsets).sum(-1) > 0).double().mean().item()


def affine_gradients(
    sampler: Callable, input: Tensor, theta: Tensor, template: Tensor, mask: Tensor, draws: int = 1, generator=None
) -> Tensor:
    """``dL/dtheta (draws, 6)`` of ``L = masked_mse(sampler(U, grid(theta)), T)``.

    ``theta (1, 2, 3)`` is repeated ``draws`` times in one batch, so a stochastic sampler
    makes an independent draw for each row.
    """
    thetas = theta.detach().expand(draws, 2, 3).clone().requires_grad_(True)
    out = _sample(sampler, input.detach(), thetas, template.shape[-2:], generator)
    (grad,) = torch.autograd.grad(masked_mse(out, template, mask).sum(), thetas)
    return grad.reshape(draws, 6)


def central_difference(loss: Callable[[Tensor], Tensor], theta: Tensor, step: float) -> Tensor:
    """Central finite difference ``(L(theta + h e_k) - L(theta - h e_k)) / 2h`` for the 6 parameters -> ``(6,)``.

    ``loss`` maps a batch of warps ``(B, 2, 3)`` to ``(B,)``; the 12 warps go in one batch.
    Error ``O(h^2)`` for a smooth loss.

    >>> theta = torch.arange(6, dtype=torch.float64).reshape(1, 2, 3)
    >>> fd = central_difference(lambda th: (th ** 2).sum(dim=(1, 2)), theta, 1e-3)
    >>> torch.allclose(fd, 2 * theta.flatten())
    True
    """
    basis = torch.eye(6, dtype=theta.dtype, device=theta.device).reshape(6, 2, 3) * step
    values = loss(torch.cat([theta + basis, theta - basis]))
    return (values[:6] - values[6:]) / (2 * step)


def true_affine_gradient(
    source: Tensor, theta: Tensor, template: Tensor, mask: Tensor, supersample: int, step: float
) -> Tensor:
    """Central difference ``(6,)`` of ``masked_mse(render_affine(source, theta), T)``: the ground truth's gradient."""

    def loss(thetas: Tensor) -> Tensor:
        rendered = render_affine(source.expand(thetas.shape[0], -1, -1, -1), thetas, template.shape[-2:], supersample)
        return masked_mse(rendered, template, mask)

    return central_difference(loss, theta, step)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine between the rows of ``a (N, K)`` and ``b (K,)`` -> ``(N,)``; 0 where either is zero."""
    norms = a.norm(dim=-1) * b.norm()
    return torch.where(norms > 0, (a @ b) / norms.clamp_min(torch.finfo(a.dtype).tiny), torch.zeros_like(norms))


def gradient_spread(gradients: Tensor) -> float:
    """``1 -`` the mean pairwise cosine of the rows of ``gradients (K, P)``, ``K >= 2``: 0 when all agree.

    >>> round(gradient_spread(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])), 4)
    0.6667
    """
    k = gradients.shape[0]
    if k < 2:
        raise ValueError(f"gradients: expected at least 2 draws, got shape {tuple(gradients.shape)}")
    unit = gradients / gradients.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(gradients.dtype).tiny)
    sims = unit @ unit.T
    mean_pairwise = (sims.sum() - sims.diagonal().sum()) / (k * (k - 1))
    return 1.0 - mean_pairwise.item()


# --- the scene ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scene:
    """Everything one cell measures on.

    Attributes:
        source: the high-resolution crop ``(1, C, nD, nD)``.
        input: ``U``, the source area-downsampled by ``D``: ``(1, C, n, n)``.
        theta: the warp ``(1, 2, 3)``.
        out_size: ``(Ho, Wo)``.
        supersample: sub-samples per output pixel and axis of the ground-truth renders.
        template: ``T``, the ground-truth render at ``theta``: ``(1, C, Ho, Wo)``.
        mask: interior output pixels ``(1, 1, Ho, Wo)`` bool.
        region: the warped region of the input ``(1, 1, n, n)`` bool.
    """

    source: Tensor
    input: Tensor
    theta: Tensor
    out_size: tuple[int, int]
    supersample: int
    template: Tensor
    mask: Tensor
    region: Tensor


def make_scene(image: Tensor, crop: int, factor: int, margin_px: float, downsample: int = DOWNSAMPLE) -> Scene:
    """Build the :class:`Scene` for ``image (1, C, H, W)`` (the source), an ``crop``-pixel input and ``factor``.

    The source is centre-cropped to a square of ``n * downsample`` pixels,
    ``n = min(crop, H // downsample, W // downsample)``; ``margin_px`` is the interior
    mask's margin in input pixels.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"image: expected shape (1, C, H, W), got {tuple(image.shape)}")
    n = min(crop, image.shape[-2] // downsample, image.shape[-1] // downsample)
    if n < 8:
        raise ValueError(
            f"image: expected at least {8 * downsample} source pixels per side, got {tuple(image.shape[-2:])}"
        )
    side = n * downsample
    top, left = (image.shape[-2] - side) // 2, (image.shape[-1] - side) // 2
    source = image[..., top : top + side, left : left + side].to(torch.float64)
    input = area_downsample(source, downsample)
    theta, out_size = downsampling_warp(factor, n)
    theta = theta.to(source.device)
    # sub-samples at most one source pixel apart over the widest warp the suite renders
    supersample = supersample_for(theta * math.exp(PERTURB_LOG_SCALE), (side, side), out_size)
    template = render_affine(source, theta, out_size, supersample)
    mask = interior_mask(theta, (n, n), out_size, margin=margin_px)
    return Scene(source, input, theta, out_size, supersample, template, mask, warped_region(theta, (n, n), out_size))


def measure(
    sampler: Callable,
    scene: Scene,
    *,
    grid: int,
    radius: float,
    draws: int,
    perturbations: int,
    stochastic: bool,
    seed: int,
    maps: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """All of the suite's metrics for ``sampler`` on ``scene`` -> ``{metric: value}``.

    ``grad_cosine`` and ``grad_spread`` are means over ``perturbations`` perturbed warps;
    ``draws`` only matters when ``stochastic``. The draws, the projection and the
    perturbations all come from generators seeded by ``seed``. A ``maps`` dict receives
    the pictures of the measurement: ``coverage`` (:func:`coverage_map`), ``offsets_px``
    (the translations, input px, ``(N, 2)``) and ``directions`` (``-dL/dt`` per
    translation as a unit vector, zero where the gradient is, ``(N, 2)``), float16.
    """
    n = scene.input.shape[-1]
    device = scene.input.device
    draw_gen = torch.Generator(device=device).manual_seed(seed)
    cpu_gen = torch.Generator().manual_seed(seed)

    projection = torch.randn(scene.template.shape, generator=cpu_gen, dtype=torch.float64).to(device) * scene.mask
    grad_u = input_gradient(sampler, scene.input, scene.theta, scene.out_size, projection, draw_gen)
    results = {
        "norm_ratio": norm_ratio(grad_u, projection),
        "nonzero_grad_fraction": nonzero_fraction(grad_u, scene.region),
    }

    offsets = translation_grid(grid, radius, n).to(device)
    grads_t = translation_gradients(sampler, scene.input, scene.theta, offsets, scene.template, scene.mask, draw_gen)
    results["direction_accuracy"] = direction_accuracy(grads_t, offsets)
    if maps is not None:
        norms = grads_t.norm(dim=-1, keepdim=True)
        unit = torch.where(norms > 0, -grads_t / norms.clamp_min(torch.finfo(grads_t.dtype).tiny), 0.0)
        maps["coverage"] = coverage_map(grad_u, scene.region)
        maps["offsets_px"] = (offsets * n / 2).cpu().numpy().astype(np.float16)  # normalized -> input px
        maps["directions"] = unit.cpu().numpy().astype(np.float16)

    k = draws if stochastic else 1
    cosines, spreads = [], []
    for _ in range(perturbations):
        theta1 = perturbed_warp(scene.theta, n, cpu_gen)
        grads = affine_gradients(sampler, scene.input, theta1, scene.template, scene.mask, k, draw_gen)
        truth = true_affine_gradient(
            scene.source, theta1, scene.template, scene.mask, scene.supersample, px_to_normalized(FD_STEP_PX, n)
        )
        cosines.append(cosine(grads, truth).mean().item())
        if stochastic:
            spreads.append(gradient_spread(grads))
    results["grad_cosine"] = sum(cosines) / len(cosines)
    if stochastic:
        results["grad_spread"] = sum(spreads) / len(spreads)
    return results


UNITS = {
    "norm_ratio": "1",
    "nonzero_grad_fraction": "fraction",
    "direction_accuracy": "fraction",
    "grad_cosine": "cosine",
    "grad_spread": "1",
}

METRICS = {
    "norm_ratio": Metric("input-gradient norm over output-gradient norm, |dL/dU| / |dL/dV|"),
    "nonzero_grad_fraction": Metric("share of the input pixels under the warp that receive a gradient",
                                    better="higher"),
    "direction_accuracy": Metric("share of translations whose gradient points toward alignment", better="higher"),
    "grad_cosine": Metric("cosine of the gradient w.r.t. the affine to the ground truth's finite difference",
                          better="higher"),
    "grad_spread": Metric("spread of the gradient over random draws, 1 - mean pairwise cosine", better="lower"),
}
#: seconds per cell on a quiet 2-core CPU at the default profile (reports/default, before the native kernels)
CELL_SECONDS = {"nearest": 0.21, "bilinear": 0.21, "bicubic": 0.21, "lstn": 0.4, "estn": 0.7}


# --- the suite ---------------------------------------------------------------------------------------


class GradientsSuite(Suite):
    """Gradient quality per interpolator and downsampling factor: norm, coverage, direction, truth, spread."""

    name: ClassVar[str] = "gradients"
    summary: ClassVar[str] = (
        "gradients vs downsampling factor: input-gradient norm and coverage, translation direction accuracy, "
        "cosine to the ground-truth finite difference, spread over draws"
    )
    x_param: ClassVar[str | None] = "factor"
    x_symbol = "f"
    x_doc = (
        "the warp's downsampling factor: each output pixel spans f x f input pixels (the warp also rotates by "
        f"{ROTATION_DEG:g} degrees and shifts by a sub-pixel offset, so samples fall off the lattice)."
    )
    headline = {"factor": 4}
    metrics = METRICS
    options = OPTIONS

    def profile(self, config: RunConfig) -> Profile:
        return profile_settings(config.profile, config.options_for(self.name))

    def cells(self, config: RunConfig) -> list[Cell]:
        profile = self.profile(config)
        seeds = profile.seeds if config.seeds is None else config.seeds
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds: expected an integer >= 1, got {seeds!r}")
        images = image_names(profile.images, config.options_for(self.name).get("images"), DOWNSAMPLE)
        return [
            Cell(
                suite=self.name,
                interpolator=name,
                hparams=dict(hparams),
                params={"factor": factor, "image": image},
                seed=seed,
            )
            for name, hparams in config.interpolators.items()
            for factor in profile.factors
            for image in images
            for seed in range(seeds)
        ]

    def run_cell(self, cell: Cell, config: RunConfig, run_dir: Path) -> CellResult:
        profile = self.profile(config)
        sampler = interpolators.create(cell.interpolator, **cell.hparams).to(config.device)
        # the instance's flag: the class default, or set per hparams (ESTN with sampling="random")
        stochastic = bool(sampler.stochastic)
        folder = config.options_for(self.name).get("images")
        image = cached_image(cell.params["image"], folder, DOWNSAMPLE).to(config.device)
        scene = make_scene(image, profile.crop, int(cell.params["factor"]), margin_px=profile.radius + 1)
        first = cell.seed == 0 and cell.params["image"] == self.cells_first_image(config)
        maps: dict[str, np.ndarray] | None = {} if first else None
        with torch.enable_grad():
            values = measure(
                sampler,
                scene,
                grid=profile.grid,
                radius=profile.radius,
                draws=profile.draws,
                perturbations=profile.perturbations,
                stochastic=stochastic,
                seed=cell.seed,
                maps=maps,
            )
        rows = [{"metric": metric, "value": value, "unit": UNITS[metric]} for metric, value in values.items()]
        return CellResult(rows, maps or {})

    def cells_first_image(self, config: RunConfig) -> str:
        """The image whose seed-0 cells keep pictures."""
        folder = config.options_for(self.name).get("images")
        return image_names(1, folder, DOWNSAMPLE)[0]

    def estimate_seconds(self, cell: Cell, config: RunConfig) -> float:
        """Seconds per cell measured on 2 CPU cores at the default profile, scaled by the grid and crop."""
        p, d = self.profile(config), PROFILE_SETTINGS["default"]
        work = (p.grid**2 + p.perturbations * 12 + p.draws) / (d.grid**2 + d.perturbations * 12 + d.draws)
        work *= (p.crop / d.crop) ** 2
        return CELL_SECONDS.get(cell.interpolator, max(CELL_SECONDS.values())) * work

    def report_sections(self, data: ReportData) -> list[Section]:
        maps, image = {}, ""
        for cell, arrays in data.with_arrays(self.name):
            maps[(cell.interpolator, int(cell.params["factor"]))] = arrays
            image = cell.params["image"]
        if not maps:
            return []
        names = list(dict.fromkeys(name for name, _ in maps))
        factors = sorted({f for _, f in maps})
        headline = int(self.headline["factor"]) if self.headline["factor"] in factors else factors[-1]
        return [
            Section(f"Gradient pictures at f = {headline}", (
                coverage_figure(maps, names, [headline], image, strip=True),
                direction_figure(maps, names, [headline], image, strip=True)), glance=True),
            Section("Input-gradient coverage over f", (coverage_figure(maps, names, factors, image),)),
            Section("Translation-gradient direction over f", (direction_figure(maps, names, factors, image),)),
        ]


def _grid(maps, names, factors, strip, panel):
    """Rows methods, columns factors; a ``strip`` (one factor) lays the methods out in one row instead."""
    if strip:
        return (tuple(panel(maps[(n, factors[0])]) if (n, factors[0]) in maps else None for n in names),)
    return tuple(tuple(panel(maps[(n, f)]) if (n, f) in maps else None for f in factors) for n in names)


def coverage_figure(maps, names: list[str], factors: list[int], image: str, strip: bool = False) -> Figure:
    """The coverage maps (white: the pixel receives gradient; black: a hole; grey: outside the warped region)."""

    def panel(arrays):
        coverage = arrays["coverage"]
        inside = coverage != OUTSIDE
        share = float((coverage == COVERED).sum() / max(1, inside.sum()))
        return Image(coverage.astype(np.float32), cmap="gray", vmin=0, vmax=2, note=f"{share:.2f} covered")

    return Figure(
        panels=_grid(maps, names, factors, strip, panel),
        row_labels=() if strip else tuple(names),
        col_labels=tuple(names) if strip else tuple(f"f = {f}" for f in factors),
        caption=f"Image {image!r}{f' at f = {factors[0]}' if strip else ''}: which input pixels receive a "
        "gradient from a random projection of the output (white), and which under the warp do not (black); "
        "grey: outside the warped region. The share is the nonzero_grad_fraction metric of this image.",
        alt="input-gradient coverage maps",
    )


def direction_figure(maps, names: list[str], factors: list[int], image: str, strip: bool = False) -> Figure:
    """The translation-gradient field: at each offset, the direction of -dL/dt (green: toward alignment)."""

    def panel(arrays):
        points = np.asarray(arrays["offsets_px"], dtype=np.float64)
        vectors = np.asarray(arrays["directions"], dtype=np.float64)
        good = (vectors * -points).sum(axis=1) > 0
        return Arrows(points, vectors, good, xlabel="t_x (input px)", note=f"{good.mean():.2f} toward")

    return Figure(
        panels=_grid(maps, names, factors, strip, panel),
        row_labels=() if strip else tuple(names),
        col_labels=tuple(names) if strip else tuple(f"f = {f}" for f in factors),
        panel_size=(2.0, 2.1),
        caption=f"Image {image!r}{f' at f = {factors[0]}' if strip else ''}: the gradient direction field of "
        "the alignment loss over a grid of translations t of the warp (input px, y down): each arrow is -dL/dt "
        "at t, green where it points toward alignment (the origin, +), red where not; a red dot is a zero "
        "gradient. The share is the direction_accuracy metric of this image.",
        alt="translation-gradient direction fields",
    )
