"""L-STN: linearized multi-sampling (Jiang, Sun, Tagliasacchi, Trulls, Yi, ICCV 2019).

Around every sampling point the image is sampled bilinearly at ``K - 1`` random
auxiliary points, a plane is fitted to those samples by least squares, and the
plane's slope is what the grid receives as its gradient. The value is bilinear's
(plus the plane's intercept unless ``fixed_bias``) and the input gradient is
bilinear's at the sampling point only.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from interpolators import _native
from interpolators._compile import run_compiled, tracing
from interpolators._linalg import solve_sym3, solve_sym3_parts
from interpolators._registry import register
from interpolators.base import (
    PADDING_CODES,
    PADDING_MODES,
    Interpolator,
    PaddingMode,
    check_choice,
    check_number,
    check_sampling_inputs,
    grid_sample_points,
)

__all__ = ["LSTN", "lstn_sample"]

#: ``"compiled"`` fuses with ``torch.compile``; ``"native"`` runs hand-written C++ kernels (CPU; :mod:`interpolators._native`)
LSTNBackend = Literal["eager", "compiled", "native"]
LSTN_BACKENDS: tuple[str, ...] = get_args(LSTNBackend)

REFERENCE = (
    "Jiang, Sun, Tagliasacchi, Trulls, Yi, Linearized Multi-Sampling for Differentiable Image "
    "Transformation, ICCV 2019 (arXiv 1901.07124); vcg-uvic/linearized_multisampling_release"
)


def _check_hparams(
    num_samples: int,
    noise_strength: float,
    push_away: bool,
    fixed_bias: bool,
    padding_mode: str,
    align_corners: bool,
    backend: str = "eager",
) -> None:
    check_number("num_samples", num_samples, integer=True)
    if num_samples < 4:
        raise ValueError(
            f"num_samples: expected at least 4 (the sampling point and at least 3 auxiliary points, "
            f"fewer leave the plane fit singular), got {num_samples}"
        )
    check_number("noise_strength", noise_strength, minimum=0)
    for name, value in (("push_away", push_away), ("fixed_bias", fixed_bias), ("align_corners", align_corners)):
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected a bool, got {value!r} ({type(value).__name__})")
    if noise_strength == 0 and not push_away:
        raise ValueError(
            "noise_strength: expected > 0 when push_away is False (otherwise every auxiliary point is the "
            f"sampling point itself and the plane fit is singular), got {noise_strength!r}"
        )
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    check_choice("backend", backend, LSTN_BACKENDS)


def _auxiliary_offsets(
    offsets: Tensor | None,
    input: Tensor,
    grid: Tensor,
    num_samples: int,
    noise_strength: float,
    push_away: bool,
    generator: torch.Generator | None,
    backend: str = "eager",
) -> tuple[Tensor, float, float]:
    """The auxiliary offsets ``(du, dv)`` as one ``(2, B, K - 1, Ho, Wo)`` tensor in fit units, and the
    normalized units per fit unit along x and along y.

    Drawn offsets stay standard normals (fit unit: one standard deviation per axis), which keeps the
    normal equations well conditioned whatever the sizes; given offsets are fitted in input pixels.
    With ``backend="compiled"`` or ``"native"`` the draw is one random 32-bit key that :func:`_hash_normals` turns
    into the normals inside the fused kernel.
    """
    (b, _, h, w), (_, ho, wo, _) = input.shape, grid.shape
    m = num_samples - 1
    if offsets is None:
        # N(0, (s / Wo)^2) + N(0, (2 / W)^2) drawn as one normal with the summed variance: the same
        # distribution as the reference's two draws, at half the cost (drawing dominates on CPU).
        push = 1.0 if push_away else 0.0
        std_x = math.sqrt((noise_strength / wo) ** 2 + push * (2.0 / w) ** 2)
        std_y = math.sqrt((noise_strength / ho) ** 2 + push * (2.0 / h) ** 2)
        if backend != "eager":  # a 32-bit key; the fused kernel hashes it into normals
            if b * m * ho * wo > 2**32:
                raise ValueError(
                    f"backend: {backend!r} draws at most 2^32 auxiliary points per call (a 32-bit counter), got "
                    f"B * (num_samples - 1) * Ho * Wo = {b * m * ho * wo}; split the batch or use backend='eager'"
                )
            key = torch.empty(1, dtype=torch.int64, device=grid.device)
            return key.random_(0, 2**32, generator=generator), std_x, std_y
        drawn = torch.randn((2, b, m, ho, wo), generator=generator, device=grid.device, dtype=grid.dtype)
        return drawn, std_x, std_y
    if not isinstance(offsets, Tensor):
        raise TypeError(f"offsets: expected a torch.Tensor or None, got {type(offsets).__name__}")
    expected = (m, b, ho, wo, 2)
    if tuple(offsets.shape) != expected:
        raise ValueError(
            f"offsets: expected shape (num_samples - 1, B, Ho, Wo, 2) = {expected}, got {tuple(offsets.shape)}"
        )
    if offsets.dtype != grid.dtype or offsets.device != grid.device:
        raise TypeError(
            f"offsets: expected dtype {grid.dtype} on {grid.device} like grid, got {offsets.dtype} on {offsets.device}"
        )
    pixel_x, pixel_y = 2.0 / w, 2.0 / h  # normalized units per input pixel (up to align_corners: any scale fits)
    offsets = offsets.detach().transpose(0, 1)
    return torch.stack((offsets[..., 0] / pixel_x, offsets[..., 1] / pixel_y)), pixel_x, pixel_y


def lstn_sample(
    input: Tensor,
    grid: Tensor,
    *,
    num_samples: int = 8,
    noise_strength: float = 0.5,
    push_away: bool = True,
    fixed_bias: bool = False,
    padding_mode: PaddingMode = "zeros",
    align_corners: bool = False,
    backend: LSTNBackend = "eager",
    generator: torch.Generator | None = None,
    offsets: Tensor | None = None,
) -> Tensor:
    r"""Linearized multi-sampling: bilinear value, least-squares plane slope as the grid gradient.

    For every output pixel with sampling point ``p`` (normalized ``(x, y)``), ``K - 1``
    auxiliary points ``p + d_k`` (``K = num_samples``) are sampled bilinearly and the plane

    .. math::
        I(p + d_k) - I(p) \approx a_u\, du_k + a_v\, dv_k + c

    is fitted by least squares (one channel-shared 3x3 normal-equation system per output
    pixel, solved in closed form). The offsets are
    ``d = N(0, 1) * noise_strength / (Wo, Ho)`` (half an output pixel) plus, with
    ``push_away``, ``N(0, 1) * 2 / (W, H)`` (one input pixel), in normalized units; they
    carry no gradient.

    - Value: ``I(p) + c``, or ``I(p)`` with ``fixed_bias``.
    - Gradient to ``grid``: the slope ``(a_u, a_v)`` per channel (per normalized unit),
      contracted with the output gradient over channels; the fit is a constant.
    - Gradient to ``input``: bilinear's at ``p`` only (``c`` is a constant).

    All auxiliary points are sampled in one ``grid_sample`` call outside autograd, so
    nothing of size ``K x`` anything is kept for backward.

    Args:
        input: ``(B, C, H, W)`` image batch.
        grid: ``(B, Ho, Wo, 2)`` sampling points, normalized ``(x, y)`` in ``[-1, 1]``
            (``grid_sample``'s convention for ``align_corners``).
        num_samples: ``K``, the sampling point plus ``K - 1 >= 3`` auxiliary points.
        noise_strength: standard deviation of the first offset term, in half output pixels.
        push_away: add the second offset term of one input pixel standard deviation.
        fixed_bias: return ``I(p)`` instead of ``I(p) + c``.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``, as in ``grid_sample``.
        align_corners: ``grid_sample``'s coordinate convention.
        backend: ``"eager"``, or ``"compiled"`` to fuse the offsets, the sample points and the fit
            with ``torch.compile``. Its offsets are Box-Muller normals from 16-bit uniforms that a
            counter-based hash makes inside the fused kernel, keyed by a 32-bit draw of
            ``generator`` (torch's CPU generator is serial: ``randn`` alone costs several
            bilinear passes): the same distribution to 16 bits, a different random stream. With
            ``offsets`` given, the backends agree to rounding. ``"native"``: hand-written C++ kernels
            (CPU, float32 and float64; built with the system's C++ compiler on first use) that fuse
            the same offsets, the points, their samples and the fit in one pass, and the input
            gradient in one scatter; the same numbers as ``"compiled"`` to rounding, fastest on CPU.
            Under a caller's ``torch.compile`` or a dispatch mode (the cost suite's FLOP counter) it
            runs the compiled backend's plain torch code, with the same offsets.
        generator: draws the offsets; torch's global generator when ``None``.
        offsets: fixed offsets ``(K - 1, B, Ho, Wo, 2)`` in normalized units instead of
            random ones (for tests); same dtype and device as ``grid``.

    Returns:
        ``(B, C, Ho, Wo)``.

    Examples:
        >>> import torch
        >>> px = torch.arange(32.0)
        >>> ramp = (px / 8 + px[:, None] / 4).expand(1, 1, 32, 32)  # I = px / 8 + py / 4, W = H = 32
        >>> grid = torch.zeros(1, 8, 8, 2, requires_grad=True)
        >>> out = lstn_sample(ramp, grid, generator=torch.Generator().manual_seed(0))
        >>> out.sum().backward()
        >>> round(out[0, 0, 0, 0].item(), 4)  # I at the image centre (15.5, 15.5)
        5.8125
        >>> [round(v, 4) for v in grid.grad[0, 0, 0].tolist()]  # (1 / 8, 1 / 4) per pixel times W / 2 = 16
        [2.0, 4.0]
    """
    check_sampling_inputs(input, grid)
    _check_hparams(num_samples, noise_strength, push_away, fixed_bias, padding_mode, align_corners, backend)
    if backend == "native":
        _native.check_inputs(input)
    offset, scale_x, scale_y = _auxiliary_offsets(
        offsets, input, grid, num_samples, noise_strength, push_away, generator, backend
    )
    return _LinearizedSample.apply(
        input, grid, offset, num_samples - 1, scale_x, scale_y, fixed_bias, padding_mode, align_corners, backend
    )


class _LinearizedSample(torch.autograd.Function):
    """Forward: sample the auxiliary points in one pass and fit the planes. Backward: the spec's gradients.

    Saved for backward: ``input`` and ``grid`` (as bilinear saves them) and the two slopes
    ``(B, C, Ho, Wo)``; nothing that grows with ``K``.
    """

    @staticmethod
    def forward(ctx, input, grid, offset, m, scale_x, scale_y, fixed_bias, padding_mode, align_corners, backend):
        sample = dict(mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
        ctx.native = backend == "native" and not tracing()  # traced: the compiled backend's plain torch code
        ctx.compiled = backend != "eager" and not ctx.native
        if ctx.native:
            input, grid = input.contiguous(), grid.contiguous()
            padding = PADDING_CODES[padding_mode]
            value, slopes = _native.lstn_fit(input, grid, offset, m, scale_x, scale_y, padding, align_corners)
            return _LinearizedSample._finish(ctx, input, grid, value, slopes[0], slopes[1], fixed_bias, sample)
        if ctx.compiled:
            planar = grid.detach().permute(3, 0, 1, 2).contiguous()
            points = run_compiled(_fused_points, planar, offset, m, scale_x, scale_y)
            samples = grid_sample_points(input, points.permute(1, 2, 3, 4, 0), padding_mode, align_corners)
            value, slope_x, slope_y = run_compiled(_fused_fit, samples, points, planar, m, scale_x, scale_y)
            return _LinearizedSample._finish(ctx, input, grid, value, slope_x, slope_y, fixed_bias, sample)
        b, c, ho, wo = *input.shape[:2], *grid.shape[1:3]
        du, dv = offset[0], offset[1]  # (B, M, Ho, Wo) in fit units
        auxiliary = grid.new_empty((b, m, ho, wo, 2))
        torch.add(grid[..., 0].unsqueeze(1), du, alpha=scale_x, out=auxiliary[..., 0])
        torch.add(grid[..., 1].unsqueeze(1), dv, alpha=scale_y, out=auxiliary[..., 1])
        samples = grid_sample_points(input, auxiliary, padding_mode, align_corners)

        # Least squares over the auxiliary points of I(p_k) = a_u du_k + a_v dv_k + c': the slope is the
        # same as for I(p_k) - I(p), and the intercept c' is I(p) + c, so the centre need not be sampled.
        normal = ((du * du).sum(1), (du * dv).sum(1), du.sum(1), (dv * dv).sum(1), dv.sum(1))
        normal = tuple(x.unsqueeze(1) for x in normal) + (float(m),)  # channel-shared: (B, 1, Ho, Wo)
        rhs = samples.new_zeros((3, b, c, ho, wo))
        for k in range(m):  # accumulated point by point: no (K - 1) x (B, C, Ho, Wo) temporaries
            rhs[0].addcmul_(samples[:, :, k], du[:, k : k + 1])
            rhs[1].addcmul_(samples[:, :, k], dv[:, k : k + 1])
            rhs[2].add_(samples[:, :, k])
        del samples
        fit = solve_sym3(normal, rhs).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)  # as the reference zeroes NaNs

        value = fit[2].clone()  # not a view of the fit: callers may modify the output in place
        return _LinearizedSample._finish(ctx, input, grid, value, fit[0] / scale_x, fit[1] / scale_y, fixed_bias, sample)

    @staticmethod
    def _finish(ctx, input, grid, value, slope_x, slope_y, fixed_bias, sample):
        """Save what backward needs (slopes per normalized unit) and return the output."""
        slopes = (slope_x, slope_y) if ctx.needs_input_grad[1] else (None, None)
        ctx.save_for_backward(input, grid, *slopes)
        ctx.codes = (PADDING_CODES[sample["padding_mode"]], sample["align_corners"])
        if fixed_bias:
            return F.grid_sample(input, grid, **sample)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, grid, slope_x, slope_y = ctx.saved_tensors
        grad_input = grad_grid = None
        if ctx.native:
            padding, align_corners = ctx.codes
            if ctx.needs_input_grad[0]:
                grad_input = _native.bilinear_input_grad(grad_out, input.shape, grid, padding, align_corners)
            if ctx.needs_input_grad[1]:
                grad_grid = _native.slope_grid_grad(grad_out, slope_x, slope_y)
            return grad_input, grad_grid, None, None, None, None, None, None, None, None
        if ctx.needs_input_grad[0]:  # bilinear's, at the sampling point only
            padding, align_corners = ctx.codes
            grad_input = torch.ops.aten.grid_sampler_2d_backward(
                grad_out, input, grid, 0, padding, align_corners, (True, False)
            )[0]
        if ctx.needs_input_grad[1] and ctx.compiled:
            grad_grid = run_compiled(_fused_grid_grad, grad_out, slope_x, slope_y).permute(1, 2, 3, 0)
        elif ctx.needs_input_grad[1]:  # the fitted slope, summed over channels against the output gradient
            grad_grid = grid.new_empty(grid.shape)
            torch.sum(grad_out * slope_x, dim=1, out=grad_grid[..., 0])
            torch.sum(grad_out * slope_y, dim=1, out=grad_grid[..., 1])
        return grad_input, grad_grid, None, None, None, None, None, None, None, None


# --- backend="compiled": offsets, points and fit per auxiliary point, for torch.compile to fuse ---------


_MASK32 = 0xFFFFFFFF


def _mul32(x: Tensor, constant: int) -> Tensor:
    """``x * constant mod 2^32`` for ``0 <= x < 2^32`` in int64, by 16-bit halves (no signed overflow)."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """A bijective 32-bit integer hash (``lowbias32``, C. Wellons' hash-prospector) in int64."""
    x = _mul32(x ^ (x >> 16), 0x7FEB352D)
    x = _mul32(x ^ (x >> 15), 0x846CA68B)
    return x ^ (x >> 16)


def _hash_normals(key: Tensor, shape: tuple[int, int, int, int], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Standard normal pairs ``(du, dv)`` of ``shape (B, M, Ho, Wo)`` from a random 32-bit ``key (1,)``.

    A counter-based generator: point ``i`` (flat index) gets the 32-bit hash
    ``h = mix32(mix32(i) ^ key)`` (the key enters after a round: XOR-ing it into the counter
    would only permute the counters, so keys that differ in low bits would give the same
    normals in another order), whose two 16-bit halves are the uniforms
    ``u = (j + 1/2) / 2^16`` of one Box-Muller transform: ``r = sqrt(-2 ln u_1)``,
    ``(du, dv) = r (cos 2 pi u_2, sin 2 pi u_2)``. Computed inside the fused kernel, it costs
    no memory traffic and runs in parallel, where torch's CPU generator is serial. A 32-bit key
    gives 2^32 streams: among ``n`` calls two share their offsets with probability about
    ``n^2 / 2^33`` (a third key round for a 64-bit key measured 0.2 ms more at ``(8, 3, 256, 64)``,
    a quarter of bilinear's forward + backward).
    """
    work = torch.promote_types(dtype, torch.float32)  # 16-bit uniforms need float32 (float16 rounds 65535.5 to inf)
    count = torch.arange(math.prod(shape), dtype=torch.int64, device=key.device).view(shape)
    h = _mix32(_mix32(count) ^ key)
    u1 = (h & 0xFFFF).to(work).add(0.5).mul(2.0**-16)
    u2 = (h >> 16).to(work).add(0.5).mul(2.0**-16)
    radius, angle = (-2.0 * u1.log()).sqrt(), (2.0 * math.pi) * u2
    return (radius * angle.cos()).to(dtype), (radius * angle.sin()).to(dtype)


def _fused_points(grid: Tensor, offset: Tensor, m: int, scale_x: float, scale_y: float) -> Tensor:
    """The auxiliary points ``(2, B, M, Ho, Wo)`` around ``grid (2, B, Ho, Wo)``, both planar ``(x, y)`` in
    normalized units, from given offsets or from a random key (planar: Inductor vectorizes only
    contiguous loads and stores, not interleaved pairs).
    """
    _, b, ho, wo = grid.shape
    if offset.dtype == torch.int64:
        du, dv = _hash_normals(offset, (b, m, ho, wo), grid.dtype)
    else:
        du, dv = offset[0], offset[1]
    return torch.stack([grid[0].unsqueeze(1) + du * scale_x, grid[1].unsqueeze(1) + dv * scale_y])


def _fused_fit(
    samples: Tensor, points: Tensor, grid: Tensor, m: int, scale_x: float, scale_y: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The plane fit of ``samples (B, C, M, Ho, Wo)`` at ``points (2, B, M, Ho, Wo)`` around ``grid (2, B, Ho, Wo)``:
    ``(I(p) + c, slope_x, slope_y)``, each ``(B, C, Ho, Wo)``. The offsets are read back from the points, which
    is cheaper than drawing them again.
    """
    u = [((points[0, :, k] - grid[0]) / scale_x).unsqueeze(1) for k in range(m)]
    v = [((points[1, :, k] - grid[1]) / scale_y).unsqueeze(1) for k in range(m)]
    ys = [samples[:, :, k] for k in range(m)]
    normal = (
        sum(a * a for a in u), sum(a * b for a, b in zip(u, v)), sum(u), sum(b * b for b in v), sum(v), float(m)
    )  # fmt: skip
    rhs = (sum(y * a for y, a in zip(ys, u)), sum(y * b for y, b in zip(ys, v)), sum(ys))
    slope_u, slope_v, value = (x.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0) for x in solve_sym3_parts(normal, rhs))
    return value, slope_u / scale_x, slope_v / scale_y


def _fused_grid_grad(grad_out: Tensor, slope_x: Tensor, slope_y: Tensor) -> Tensor:
    """The grid gradient, planar ``(2, B, Ho, Wo)``: the slopes ``(B, C, Ho, Wo)`` against ``grad_out``, summed over channels."""
    return torch.stack([(grad_out * slope_x).sum(1), (grad_out * slope_y).sum(1)])


def _lstn_sample_reference(
    input: Tensor,
    grid: Tensor,
    offsets: Tensor,
    *,
    fixed_bias: bool = False,
    padding_mode: PaddingMode = "zeros",
    align_corners: bool = False,
) -> Tensor:
    """Straightforward L-STN for testing :func:`lstn_sample`: K separate samplings and ``torch.linalg.lstsq``.

    Same arguments as :func:`lstn_sample` with fixed ``offsets (K - 1, B, Ho, Wo, 2)``; the
    gradients are written out in an ``autograd.Function`` (grid: the slope contracted with
    the output gradient; input: ``grid_sample``'s vector-Jacobian product at ``p``).
    """
    return _ReferenceLSTN.apply(input, grid, offsets.detach(), fixed_bias, padding_mode, align_corners)


class _ReferenceLSTN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, grid, offsets, fixed_bias, padding_mode, align_corners):
        sample = dict(mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
        center = F.grid_sample(input, grid, **sample)  # (B, C, Ho, Wo)
        values = torch.stack([F.grid_sample(input, grid + d, **sample) for d in offsets])  # (M, B, C, Ho, Wo)
        design = torch.cat([offsets, torch.ones_like(offsets[..., :1])], dim=-1)  # (M, B, Ho, Wo, 3)
        design = design.permute(1, 2, 3, 0, 4)  # (B, Ho, Wo, M, 3)
        target = (values - center).permute(1, 3, 4, 0, 2)  # (B, Ho, Wo, M, C)
        solution = torch.linalg.lstsq(design, target).solution  # (B, Ho, Wo, 3, C)
        slope = solution[..., :2, :].permute(0, 4, 1, 2, 3)  # (B, C, Ho, Wo, 2)
        bias = solution[..., 2, :].permute(0, 3, 1, 2)  # (B, C, Ho, Wo)
        ctx.save_for_backward(input, grid, slope)
        ctx.sample = sample
        return center if fixed_bias else center + bias

    @staticmethod
    def backward(ctx, grad_out):
        input, grid, slope = ctx.saved_tensors
        grad_grid = (grad_out.unsqueeze(-1) * slope).sum(1)
        with torch.enable_grad():
            leaf = input.detach().requires_grad_()
            (grad_input,) = torch.autograd.grad(F.grid_sample(leaf, grid, **ctx.sample), leaf, grad_out)
        return grad_input, grad_grid, None, None, None, None


@register("lstn", tags=("multisample",))
class LSTN(Interpolator):
    """Linearized multi-sampling (L-STN): the grid gradient is a least-squares plane slope around each point.

    A thin module around :func:`lstn_sample`; see it for the math and conventions.

    Args:
        num_samples: ``K >= 4``, the sampling point plus ``K - 1`` random auxiliary points.
        noise_strength: offset standard deviation in half output pixels (``>= 0``).
        push_away: add a one-input-pixel standard deviation to the offsets.
        fixed_bias: output bilinear's value instead of bilinear's plus the plane's intercept.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: ``grid_sample``'s coordinate convention.
        backend: ``"eager"``, ``"compiled"`` or ``"native"`` (see :func:`lstn_sample`).

    Shape:
        input ``(B, C, H, W)``, grid ``(B, Ho, Wo, 2)`` -> ``(B, C, Ho, Wo)``.
    """

    stochastic = True
    reference = REFERENCE
    summary = "linearized multi-sampling: least-squares plane over K random samples; its value (bilinear with fixed_bias) and slope as grid gradient"

    def __init__(
        self,
        num_samples: int = 8,
        noise_strength: float = 0.5,
        push_away: bool = True,
        fixed_bias: bool = False,
        padding_mode: PaddingMode = "zeros",
        align_corners: bool = False,
        backend: LSTNBackend = "eager",
    ) -> None:
        super().__init__(padding_mode=padding_mode, align_corners=align_corners)
        _check_hparams(num_samples, noise_strength, push_away, fixed_bias, padding_mode, align_corners, backend)
        self.num_samples = num_samples
        self.noise_strength = noise_strength
        self.push_away = push_away
        self.fixed_bias = fixed_bias
        self.backend = backend

    def sample(self, input: Tensor, grid: Tensor, generator: torch.Generator | None) -> Tensor:
        return lstn_sample(input, grid, generator=generator, **self.hparams())
