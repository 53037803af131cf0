"""ESTN's operators in Triton: the CUDA kernels of ``interpolators::estn_forward`` and ``estn_input_grad``, the
twins of ``csrc/estn.cpp`` (the math is :mod:`interpolators.estn.eager`'s, step by step).

The forward runs one program per block of output pixels of one batch element on a ``(pixels, channels, K)`` tile
(channels and samples padded to powers of two): the tangent frame by finite differences of the grid, the spiral's
points and bilinear samples, the entropy-reweighted plane fit (every fit, the first with the prior's weights, solves
the ridged 3x3 normal equations by the adjugate), the slopes through the frame's pseudo-inverse and the intercept
weights ``beta``. The input gradient recomputes the points from the grid and scatters ``grad * beta_k`` at each
sample's footprint with atomic adds. The grid gradient is :mod:`interpolators._triton_sampling`'s
``slope_grid_grad``.

Many channels make the tile large (it holds every channel's samples, as the C++ kernel's scratch does); the block of
pixels shrinks to keep it at :data:`interpolators._triton_sampling.TILE` values.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from interpolators._triton_sampling import (
    as_dtype,
    check_input_and_grid,
    check_not_deterministic,
    constants,
    footprint,
    inverse_sym3,
    limits,
    on_device,
    padding_code,
    pixel_grid,
    pixel_scale,
    sample,
    scatter,
    source,
    tile_rows,
)


@triton.jit
def spiral(spiral_ptr, K, BLOCK_K: tl.constexpr):
    """The sample index ``k``, which of them exist (``k < K``), and the spiral's ``z_x``, ``z_y`` as ``(1, K)``
    (the first ``2 K`` values at ``spiral_ptr``; padded samples at the centre)."""
    k = tl.arange(0, BLOCK_K)
    in_k = k < K
    return k, in_k, tl.load(spiral_ptr + k, mask=in_k, other=0.0)[None, :], tl.load(spiral_ptr + K + k, mask=in_k, other=0.0)[None, :]


@triton.jit
def frame_and_footprints(grid_ptr, b, pix, live, H, W, Ho, Wo, P, zx, zy, tangent_scale, min_radius,
                         ALIGN: tl.constexpr, PAD: tl.constexpr):  # fmt: skip
    """Steps 1-2 for the pixels ``pix`` of batch element ``b``: the frame ``A = t sqrt(J J^T + r^2 I)`` (``J`` by
    finite differences of the grid in input pixels: central inside, one-sided at the edges, zero along an axis of
    length 1, as ``torch.gradient``), the grid point, and the footprints of the samples ``p + A z_k`` for ``zx``,
    ``zy`` of shape ``(1, K)``. Returns ``(a00, a01, a10, a11, gx, gy)``, each ``(pixels,)``, and the footprints
    (:func:`interpolators._triton_sampling.footprint`), ``(pixels, K)``."""
    T = grid_ptr.dtype.element_ty
    sx = pixel_scale(W, ALIGN, T)
    sy = pixel_scale(H, ALIGN, T)
    inv_x = tl.where(sx > 0.0, 1.0 / tl.where(sx > 0.0, sx, 1.0), 0.0)
    inv_y = tl.where(sy > 0.0, 1.0 / tl.where(sy > 0.0, sy, 1.0), 0.0)
    kx = tl.where(sx > 0.0, as_dtype(tangent_scale, T), 0.0)
    ky = tl.where(sy > 0.0, as_dtype(tangent_scale, T), 0.0)
    r2 = as_dtype(min_radius * min_radius, T)
    oy = pix // Wo
    ox = pix % Wo
    left = tl.where(ox > 0, ox - 1, ox)
    right = tl.where(ox < Wo - 1, ox + 1, ox)
    up = tl.where(oy > 0, oy - 1, oy)
    down = tl.where(oy < Ho - 1, oy + 1, oy)
    div_x = tl.maximum((ox > 0).to(tl.int32) + (ox < Wo - 1).to(tl.int32), 1).to(T)
    div_y = tl.maximum((oy > 0).to(tl.int32) + (oy < Ho - 1).to(tl.int32), 1).to(T)
    row = grid_ptr + b.to(tl.int64) * P * 2
    gx = tl.load(row + pix * 2, mask=live, other=0.0)
    gy = tl.load(row + pix * 2 + 1, mask=live, other=0.0)
    lx = tl.load(row + (oy * Wo + left) * 2, mask=live, other=0.0)
    ly = tl.load(row + (oy * Wo + left) * 2 + 1, mask=live, other=0.0)
    rx = tl.load(row + (oy * Wo + right) * 2, mask=live, other=0.0)
    ry = tl.load(row + (oy * Wo + right) * 2 + 1, mask=live, other=0.0)
    ux = tl.load(row + (up * Wo + ox) * 2, mask=live, other=0.0)
    uy = tl.load(row + (up * Wo + ox) * 2 + 1, mask=live, other=0.0)
    dx = tl.load(row + (down * Wo + ox) * 2, mask=live, other=0.0)
    dy = tl.load(row + (down * Wo + ox) * 2 + 1, mask=live, other=0.0)
    j00 = (rx * sx - lx * sx) / div_x
    j10 = (ry * sy - ly * sy) / div_x
    j01 = (dx * sx - ux * sx) / div_y
    j11 = (dy * sy - uy * sy) / div_y
    s00 = j00 * j00 + j01 * j01 + r2
    s11 = j10 * j10 + j11 * j11 + r2
    s01 = j00 * j10 + j01 * j11
    det = s00 * s11 - s01 * s01
    root_det = tl.sqrt(tl.where(det > 0.0, det, 0.0))
    norm = tl.sqrt(s00 + s11 + 2.0 * root_det)
    _, tiny = limits(T)
    norm = tl.where(norm > tiny, norm, tiny)
    s01n = s01 / norm
    a00 = kx * (s00 + root_det) / norm
    a01 = kx * s01n
    a10 = ky * s01n
    a11 = ky * (s11 + root_det) / norm
    # along z_x and z_y in normalized units
    px = source(zx * (a00 * inv_x)[:, None] + zy * (a01 * inv_x)[:, None] + gx[:, None], W, ALIGN, PAD)
    py = source(zx * (a10 * inv_y)[:, None] + zy * (a11 * inv_y)[:, None] + gy[:, None], H, ALIGN, PAD)
    return a00, a01, a10, a11, gx, gy, footprint(px, py, H, W)


@triton.jit
def weighted_fit(y, w, zx, zy, ridge_eps):
    """Step 5 on a ``(pixels, channels, K)`` tile of samples ``y`` with weights ``w`` ``(pixels, 1, K)`` and the
    spiral ``zx``, ``zy`` ``(1, 1, K)``: the ridged normal matrix's inverse by the adjugate (``lambda = ridge_eps *
    trace``), ``theta = (t0, t1, t2)`` per channel ``(pixels, channels, 1)`` and ``M^-1 e_3`` ``(pixels, 1, 1)``."""
    wx = w * zx
    wy = w * zy
    mxx = tl.sum(wx * zx, axis=2, keep_dims=True)
    mxy = tl.sum(wx * zy, axis=2, keep_dims=True)
    myy = tl.sum(wy * zy, axis=2, keep_dims=True)
    mx = tl.sum(wx, axis=2, keep_dims=True)
    my = tl.sum(wy, axis=2, keep_dims=True)
    m1 = tl.sum(w, axis=2, keep_dims=True)
    lam = (mxx + myy + m1) * ridge_eps
    i00, i01, i02, i11, i12, i22 = inverse_sym3(mxx + lam, mxy, mx, myy + lam, my, m1)
    wy_ = w * y
    b0 = tl.sum(wy_ * zx, axis=2, keep_dims=True)
    b1 = tl.sum(wy_ * zy, axis=2, keep_dims=True)
    b2 = tl.sum(wy_, axis=2, keep_dims=True)
    t0 = i00 * b0 + i01 * b1 + i02 * b2
    t1 = i01 * b0 + i11 * b1 + i12 * b2
    t2 = i02 * b0 + i12 * b1 + i22 * b2
    return t0, t1, t2, i02, i12, i22


@triton.jit
def _estn_forward_kernel(input_ptr, grid_ptr, spiral_ptr, value_ptr, slopes_ptr, beta_ptr, C, H, W, Ho, Wo, P, K,
                         NUMEL, iterations, tangent_scale: tl.float64, min_radius: tl.float64, entropy: tl.float64,
                         ridge: tl.float64, ALIGN: tl.constexpr, PAD: tl.constexpr, CENTER: tl.constexpr,
                         KEEP_BETA: tl.constexpr, REWEIGHT: tl.constexpr, BLOCK_P: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    T = input_ptr.dtype.element_ty
    b = tl.program_id(1)
    pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    live = pix < P
    k, in_k, zx, zy = spiral(spiral_ptr, K, BLOCK_K)
    prior = tl.load(spiral_ptr + 2 * K + k, mask=in_k, other=0.0)[None, None, :]
    a00, a01, a10, a11, gx, gy, (corner, wx, wy, in00, in01, in10, in11) = frame_and_footprints(
        grid_ptr, b, pix, live, H, W, Ho, Wo, P, zx, zy, tangent_scale, min_radius, ALIGN, PAD
    )
    c = tl.arange(0, BLOCK_C)
    use = live[:, None, None] & (c < C)[None, :, None] & in_k[None, None, :]
    planes = (b.to(tl.int64) * C + c) * H * W
    y = sample(input_ptr + planes[None, :, None], corner[:, None, :], wx[:, None, :], wy[:, None, :],
               in00[:, None, :], in01[:, None, :], in10[:, None, :], in11[:, None, :], W, use)  # fmt: skip
    zx = zx[:, None, :]
    zy = zy[:, None, :]
    eps, tiny = limits(T)
    ridge_eps = as_dtype(ridge, T) + eps
    w = prior + tl.zeros([BLOCK_P, 1, BLOCK_K], T)
    t0, t1, t2, r0, r1, r2 = weighted_fit(y, w, zx, zy, ridge_eps)  # the first fit: the prior's weights
    if REWEIGHT:  # step 4: gamma, then rounds of pi_k = w_k exp(-r_k / gamma) (up to a per-pixel factor) and fits
        mean = tl.sum(y * (prior / tl.sum(prior, axis=2, keep_dims=True)), axis=2, keep_dims=True)
        second = tl.sum(y * y * (prior / tl.sum(prior, axis=2, keep_dims=True)), axis=2, keep_dims=True)
        variance = second - mean * mean
        per_channel = as_dtype(entropy, T) * tl.where(variance > 0.0, variance, 0.0) + eps * second
        gamma = tiny + tl.sum(per_channel, axis=1, keep_dims=True)
        neg_inv_gamma = -1.0 / gamma
        log_prior = tl.where(in_k[None, None, :], tl.log(tl.where(in_k[None, None, :], prior, 1.0)), -float("inf"))
        for _ in range(iterations):
            d = y - (t0 * zx + t1 * zy + t2)  # padded channels: y = 0 and theta = 0
            r = tl.sum(d * d, axis=1, keep_dims=True)
            logits = tl.where(in_k[None, None, :], tl.fma(r, neg_inv_gamma, log_prior), -float("inf"))
            w = tl.exp(logits - tl.max(logits, axis=2, keep_dims=True))  # the largest is w_k exp(0)
            t0, t1, t2, r0, r1, r2 = weighted_fit(y, w, zx, zy, ridge_eps)
    # 0 where the grid point and its frame are finite, else NaN: added to every output, it makes a non-finite grid
    # give NaN as the eager path does (the clamped footprints would have read it as outside)
    probe = ((a00 + a01 + a10 + a11 + gx + gy) * 0.0)[:, None, None]
    if KEEP_BETA:  # step 6: beta_k = pi_k [z_k, 1] . M^-1 e_3, for k = 1 .. K - 1
        beta = w * (r0 * zx + r1 * zy + r2) + probe
        at = (b.to(tl.int64) * (K - 1) + k[None, None, :] - 1) * P + pix[:, None, None]
        tl.store(beta_ptr + at, beta, mask=live[:, None, None] & (in_k & (k >= 1))[None, None, :])
    # the frame's pseudo-inverse, which maps footprint slopes to pixel slopes: adj / det, or A^T / |A|_F^2 at rank 1
    det = a00 * a11 - a01 * a10
    fro2 = a00 * a00 + a01 * a01 + a10 * a10 + a11 * a11
    full = tl.abs(det) > 64.0 * eps * fro2
    inv_det = 1.0 / tl.where(full, det, 1.0)
    inv_fro2 = 1.0 / tl.where(fro2 > tiny, fro2, tiny)
    p00 = tl.where(full, a11 * inv_det, a00 * inv_fro2)[:, None, None]
    p01 = tl.where(full, 0.0 - a01 * inv_det, a10 * inv_fro2)[:, None, None]
    p10 = tl.where(full, 0.0 - a10 * inv_det, a01 * inv_fro2)[:, None, None]
    p11 = tl.where(full, a00 * inv_det, a11 * inv_fro2)[:, None, None]
    sx = pixel_scale(W, ALIGN, T)
    sy = pixel_scale(H, ALIGN, T)
    out = (b.to(tl.int64) * C + c[None, :, None]) * P + pix[:, None, None]
    written = live[:, None, None] & (c < C)[None, :, None]
    tl.store(slopes_ptr + out, (p00 * t0 + p10 * t1) * sx + probe, mask=written)
    tl.store(slopes_ptr + NUMEL + out, (p01 * t0 + p11 * t1) * sy + probe, mask=written)
    if CENTER:
        value = tl.sum(tl.where(k[None, None, :] == 0, y, 0.0), axis=2, keep_dims=True)
    else:
        value = t2
    tl.store(value_ptr + out, value + probe, mask=written)


@triton.jit
def _estn_input_grad_kernel(grad_ptr, grid_ptr, spiral_ptr, beta_ptr, out_ptr, C, H, W, Ho, Wo, P, K,
                            tangent_scale: tl.float64, min_radius: tl.float64, ALIGN: tl.constexpr,
                            PAD: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    b = tl.program_id(1)
    pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    live = pix < P
    k, in_k, zx, zy = spiral(spiral_ptr, K, BLOCK_K)
    _, _, _, _, _, _, (corner, wx, wy, in00, in01, in10, in11) = frame_and_footprints(
        grid_ptr, b, pix, live, H, W, Ho, Wo, P, zx, zy, tangent_scale, min_radius, ALIGN, PAD
    )
    others = live[:, None] & (in_k & (k >= 1))[None, :]
    beta = tl.load(beta_ptr + (b.to(tl.int64) * (K - 1) + k[None, :] - 1) * P + pix[:, None], mask=others, other=0.0)
    beta = tl.where(k[None, :] == 0, 1.0 - tl.sum(beta, axis=1, keep_dims=True), beta)  # the centre: 1 - the others
    use = live[:, None] & in_k[None, :]
    for c in range(C):
        g = tl.load(grad_ptr + (b.to(tl.int64) * C + c) * P + pix, mask=live, other=0.0)
        scatter(out_ptr + (b.to(tl.int64) * C + c) * H * W, g[:, None] * beta, corner, wx, wy, in00, in01, in10, in11,
                W, use)  # fmt: skip


def _check_spiral(spiral_x, spiral_y, op: str) -> None:
    if len(spiral_x) < 2 or len(spiral_x) != len(spiral_y):
        raise RuntimeError(f"{op}: spiral_x, spiral_y: expected K >= 2 values each, got {len(spiral_x)} and {len(spiral_y)}")


def estn_forward(input: Tensor, grid: Tensor, spiral_x: list[float], spiral_y: list[float], prior: list[float],
                 tangent_scale: float, min_radius: float, entropy: float | None, iterations: int, ridge: float,
                 padding_mode: str, align_corners: bool, center_value: bool,
                 keep_beta: bool) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """``interpolators::estn_forward`` in Triton: value ``(B, C, Ho, Wo)``, slopes ``(2, B, C, Ho, Wo)`` and, with
    ``keep_beta``, the intercept weights of samples ``1 .. K - 1`` ``(B, K - 1, Ho, Wo)``, else ``(0,)``."""
    check_input_and_grid(input, grid, "estn_forward")
    _check_spiral(spiral_x, spiral_y, "estn_forward")
    if len(prior) != len(spiral_x):
        raise RuntimeError(f"estn_forward: prior: expected {len(spiral_x)} weights, got {len(prior)}")
    input, grid = input.contiguous(), grid.contiguous()
    (b, c, h, w), (ho, wo), k = input.shape, grid.shape[1:3], len(spiral_x)
    options = dict(dtype=input.dtype, device=input.device)
    value = torch.empty((b, c, ho, wo), **options)
    slopes = torch.empty((2, b, c, ho, wo), **options)
    beta = torch.empty((b, k - 1, ho, wo) if keep_beta else (0,), **options)
    spiral = constants((*spiral_x, *spiral_y, *prior), input.dtype, input.device)
    block_c, block_k = triton.next_power_of_2(c), triton.next_power_of_2(k)
    block_p = tile_rows(input.dtype, block_c * block_k)
    p = ho * wo
    with on_device(input):
        _estn_forward_kernel[pixel_grid(p, b, block_p)](
            input, grid, spiral, value, slopes, beta if keep_beta else value, c, h, w, ho, wo, p, k, value.numel(),
            iterations, float(tangent_scale), float(min_radius), float(entropy or 0.0), float(ridge),
            ALIGN=align_corners, PAD=padding_code(padding_mode), CENTER=center_value, KEEP_BETA=keep_beta,
            REWEIGHT=entropy is not None and iterations > 0, BLOCK_P=block_p, BLOCK_C=block_c, BLOCK_K=block_k,
        )  # fmt: skip
    return value, slopes, beta


def estn_input_grad(grad_value: Tensor, grid: Tensor, spiral_x: list[float], spiral_y: list[float], beta: Tensor,
                    height: int, width: int, tangent_scale: float, min_radius: float, padding_mode: str,
                    align_corners: bool) -> Tensor:  # fmt: skip
    """``interpolators::estn_input_grad`` in Triton: ``grad (B, C, Ho, Wo)`` times ``beta`` at the samples'
    footprints, ``(B, C, height, width)``, scattered with atomic adds."""
    _check_spiral(spiral_x, spiral_y, "estn_input_grad")
    grad, grid, beta = grad_value.contiguous(), grid.contiguous(), beta.contiguous()
    (b, c, ho, wo), k = grad.shape, len(spiral_x)
    if tuple(grid.shape) != (b, ho, wo, 2) or tuple(beta.shape) != (b, k - 1, ho, wo):
        raise RuntimeError(f"estn_input_grad: expected grid (B, Ho, Wo, 2) and beta (B, K - 1, Ho, Wo) for grad "
                           f"{tuple(grad.shape)}, got {tuple(grid.shape)} and {tuple(beta.shape)}")  # fmt: skip
    check_not_deterministic("estn_input_grad", grad)
    out = torch.zeros((b, c, height, width), dtype=grad.dtype, device=grad.device)
    spiral = constants((*spiral_x, *spiral_y), grad.dtype, grad.device)
    block_k = triton.next_power_of_2(k)
    block_p = tile_rows(grad.dtype, block_k)
    p = ho * wo
    with on_device(grad):
        _estn_input_grad_kernel[pixel_grid(p, b, block_p)](
            grad, grid, spiral, beta, out, c, height, width, ho, wo, p, k, float(tangent_scale), float(min_radius),
            ALIGN=align_corners, PAD=padding_code(padding_mode), BLOCK_P=block_p, BLOCK_K=block_k,
        )  # fmt: skip
    return out


def register() -> None:
    torch.library.register_kernel("interpolators::estn_forward", "cuda", estn_forward)
    torch.library.register_kernel("interpolators::estn_input_grad", "cuda", estn_input_grad)
