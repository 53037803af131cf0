"""L-STN's forward operator in Triton: the CUDA kernel of ``interpolators::lstn_forward`` (and of
``lstn_hash_normals``), the twin of ``csrc/lstn.cpp``.

One program per block of output pixels of one batch element holds a ``(pixels, M)`` tile of auxiliary points: their
offsets (given, or hashed from the key), the channel-shared normal matrix of the plane fit (sums over the tile's second
axis), then per channel the bilinear samples, the right-hand side and the closed-form solve. The backward is
:mod:`interpolators._triton_sampling`'s ``bilinear_input_grad`` and ``slope_grid_grad``.

The normals are :func:`interpolators.lstn.eager.hash_normals`'s: ``mix32`` of the flat point index, XOR the key,
``mix32`` again, Box-Muller on the two 16-bit halves. float32 evaluates ``ln`` and ``sin``/``cos`` with the C++
kernel's Cephes polynomials (after the same exact octant reduction), float64 with ``tl.log``/``tl.cos``/``tl.sin``
(libdevice), as the C++ kernel uses libm there.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from interpolators._triton_sampling import (
    as_dtype,
    check_input_and_grid,
    footprint,
    inverse_sym3,
    on_device,
    padding_code,
    pixel_grid,
    sample,
    source,
    tile_rows,
)


# ---- the counter-based normals ------------------------------------------------------------------------------------


@triton.jit
def mix32(x):
    """lowbias32 (C. Wellons' hash-prospector) on uint32: a bijective 32-bit hash."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


@triton.jit
def log_unit(x):
    """``ln x`` for float32 ``x`` in ``(0, 1]``: Cephes' ``logf`` (exponent by bits, a degree-9 polynomial)."""
    bits = x.to(tl.uint32, bitcast=True)
    e = ((bits >> 23) & 0xFF).to(tl.float32) - 126.0
    m = ((bits & 0x807FFFFF) | 0x3F000000).to(tl.float32, bitcast=True)  # mantissa in [0.5, 1)
    small = m < 0.70710678118654752
    e = tl.where(small, e - 1.0, e)
    f = tl.where(small, m + m, m) - 1.0
    z = f * f
    p = tl.fma(tl.full(f.shape, 7.0376836292e-2, tl.float32), f, -1.1514610310e-1)
    p = tl.fma(p, f, 1.1676998740e-1)
    p = tl.fma(p, f, -1.2420140846e-1)
    p = tl.fma(p, f, 1.4249322787e-1)
    p = tl.fma(p, f, -1.6668057665e-1)
    p = tl.fma(p, f, 2.0000714765e-1)
    p = tl.fma(p, f, -2.4999993993e-1)
    p = tl.fma(p, f, 3.3333331174e-1)
    y = f * z * p - 2.12194440e-4 * e - 0.5 * z
    return f + y + 0.693359375 * e


@triton.jit
def sincos_turn(j):
    """``(sin, cos)`` in float32 of the angle ``2 pi (j + 1/2) / 2^16`` for 16-bit uint32 ``j``: the octant exactly in
    integers, then Cephes' ``sinf``/``cosf`` polynomials on ``[0, pi/4]`` and the octant's swap and signs."""
    octant = j >> 13
    odd = (octant & 1) == 1
    y = (((j & 0x1FFF) ^ tl.where(odd, 0x1FFF, 0).to(tl.uint32)).to(tl.float32) + 0.5) * 9.587379924285257e-05
    z = y * y
    sy = tl.fma(tl.fma(tl.fma(tl.full(z.shape, -1.9515295891e-4, tl.float32), z, 8.3321608736e-3), z, -1.6666654611e-1) * z, y, y)
    cy = tl.fma(tl.fma(tl.fma(tl.full(z.shape, 2.443315711809948e-5, tl.float32), z, -1.388731625493765e-3), z,
                       4.166664568298827e-2) * z, z, 1.0 - 0.5 * z)  # fmt: skip
    swap = ((octant + 1) & 2) == 2
    sa = tl.where(swap, cy, sy)
    ca = tl.where(swap, sy, cy)
    return tl.where((octant & 4) == 4, -sa, sa), tl.where(((octant + 2) & 4) == 4, -ca, ca)


@triton.jit
def hash_normals(index, key, DTYPE: tl.constexpr):
    """The standard normal pair ``(du, dv)`` in ``DTYPE`` of each uint32 flat point ``index`` under the uint32
    ``key``: Box-Muller on the two 16-bit halves of ``mix32(mix32(index) ^ key)`` as uniforms ``(j + 1/2) / 2^16``."""
    h = mix32(mix32(index) ^ key)
    if DTYPE == tl.float32:
        u1 = ((h & 0xFFFF).to(tl.float32) + 0.5) * (1.0 / 65536.0)
        radius = tl.sqrt_rn(-2.0 * log_unit(u1))
        s, c = sincos_turn(h >> 16)
    else:
        u1 = ((h & 0xFFFF).to(tl.float64) + 0.5) * (1.0 / 65536.0)
        angle = ((h >> 16).to(tl.float64) + 0.5) * (1.0 / 65536.0) * 6.283185307179586
        radius = tl.sqrt(-2.0 * tl.log(u1))
        s = tl.sin(angle)
        c = tl.cos(angle)
    return radius * c, radius * s


@triton.jit
def _hash_normals_kernel(key_ptr, out_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = i < n
    du, dv = hash_normals(i.to(tl.uint32), tl.load(key_ptr).to(tl.uint32), out_ptr.dtype.element_ty)
    tl.store(out_ptr + i, du, mask=live)
    tl.store(out_ptr + n + i, dv, mask=live)


# ---- the forward ------------------------------------------------------------------------------------------------


@triton.jit
def _finite_or_zero(v):
    return tl.where(v - v == 0.0, v, 0.0)  # v - v is 0 for finite v, NaN for inf and NaN


@triton.jit
def _lstn_forward_kernel(input_ptr, grid_ptr, offsets_ptr, key_ptr, value_ptr, slopes_ptr, C, H, W, P, M, NUMEL,
                         OFFSETS_PLANE, scale_x: tl.float64, scale_y: tl.float64, ALIGN: tl.constexpr,
                         PAD: tl.constexpr, FIXED_BIAS: tl.constexpr, HASHED: tl.constexpr, BLOCK_P: tl.constexpr,
                         BLOCK_M: tl.constexpr):  # fmt: skip
    T = input_ptr.dtype.element_ty
    sx = as_dtype(scale_x, T)
    sy = as_dtype(scale_y, T)
    b = tl.program_id(1)
    pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    live = pix < P
    k = tl.arange(0, BLOCK_M)
    use = live[:, None] & (k < M)[None, :]
    gx = tl.load(grid_ptr + (b.to(tl.int64) * P + pix) * 2, mask=live, other=0.0)
    gy = tl.load(grid_ptr + (b.to(tl.int64) * P + pix) * 2 + 1, mask=live, other=0.0)
    if HASHED:  # the flat index of point (b, k, pixel) in (B, M, Ho, Wo), < 2^32
        index = (b.to(tl.uint32) * M + k.to(tl.uint32))[None, :] * P + pix.to(tl.uint32)[:, None]
        du, dv = hash_normals(index, tl.load(key_ptr).to(tl.uint32), T)
    else:
        at = (b.to(tl.int64) * M + k)[None, :] * P + pix[:, None]
        du = tl.load(offsets_ptr + at, mask=use, other=0.0)
        dv = tl.load(offsets_ptr + OFFSETS_PLANE + at, mask=use, other=0.0)
    du = tl.where(use, du, 0.0)
    dv = tl.where(use, dv, 0.0)
    corner, wx, wy, in00, in01, in10, in11 = footprint(
        source(tl.fma(du, sx, gx[:, None]), W, ALIGN, PAD), source(tl.fma(dv, sy, gy[:, None]), H, ALIGN, PAD), H, W
    )
    # the inverse of the symmetric normal matrix [[a00, a01, a02], [a01, a11, a12], [a02, a12, M]], by the adjugate
    a00 = tl.sum(du * du, axis=1)
    a01 = tl.sum(du * dv, axis=1)
    a02 = tl.sum(du, axis=1)
    a11 = tl.sum(dv * dv, axis=1)
    a12 = tl.sum(dv, axis=1)
    n00, n01, n02, n11, n12, n22 = inverse_sym3(a00, a01, a02, a11, a12, tl.cast(M, T))
    if FIXED_BIAS:
        centre = footprint(source(gx, W, ALIGN, PAD), source(gy, H, ALIGN, PAD), H, W)
    for c in range(C):
        plane = (b.to(tl.int64) * C + c) * H * W
        samples = sample(input_ptr + plane, corner, wx, wy, in00, in01, in10, in11, W, use)
        r0 = tl.sum(samples * du, axis=1)
        r1 = tl.sum(samples * dv, axis=1)
        r2 = tl.sum(samples, axis=1)
        out = (b.to(tl.int64) * C + c) * P + pix
        tl.store(slopes_ptr + out, _finite_or_zero(n00 * r0 + n01 * r1 + n02 * r2) / sx, mask=live)
        tl.store(slopes_ptr + NUMEL + out, _finite_or_zero(n01 * r0 + n11 * r1 + n12 * r2) / sy, mask=live)
        if FIXED_BIAS:
            cc, cwx, cwy, c00_, c01_, c10_, c11_ = centre
            value = sample(input_ptr + plane, cc, cwx, cwy, c00_, c01_, c10_, c11_, W, live)
        else:
            value = _finite_or_zero(n02 * r0 + n12 * r1 + n22 * r2)
        tl.store(value_ptr + out, value, mask=live)


def lstn_forward(input: Tensor, grid: Tensor, offsets: Tensor | None, key: Tensor | None, num_auxiliary: int,
                 scale_x: float, scale_y: float, padding_mode: str, align_corners: bool,
                 fixed_bias: bool) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``interpolators::lstn_forward`` in Triton: value ``(B, C, Ho, Wo)`` and slopes ``(2, B, C, Ho, Wo)``
    (the schema in ``csrc/ops.cpp``)."""
    check_input_and_grid(input, grid, "lstn_forward")
    if num_auxiliary < 1:
        raise RuntimeError(f"lstn_forward: num_auxiliary: expected >= 1, got {num_auxiliary}")
    if (offsets is None) == (key is None):
        raise RuntimeError("lstn_forward: expected exactly one of offsets and key")
    input, grid = input.contiguous(), grid.contiguous()
    (b, c, h, w), (ho, wo), m = input.shape, grid.shape[1:3], num_auxiliary
    if offsets is not None:
        offsets = offsets.contiguous()
        if tuple(offsets.shape) != (2, b, m, ho, wo) or offsets.dtype != input.dtype:
            raise RuntimeError(f"lstn_forward: offsets: expected (2, B, M, Ho, Wo) = {(2, b, m, ho, wo)} of "
                               f"{input.dtype}, got {tuple(offsets.shape)} of {offsets.dtype}")  # fmt: skip
    else:
        if key.numel() != 1 or key.dtype != torch.int64:
            raise RuntimeError("lstn_forward: key: expected one int64")
        if b * m * ho * wo > 2**32:
            raise RuntimeError(f"lstn_forward: at most 2^32 auxiliary points per call (a 32-bit counter), got {b * m * ho * wo}")
    value = torch.empty((b, c, ho, wo), dtype=input.dtype, device=input.device)
    slopes = torch.empty((2, b, c, ho, wo), dtype=input.dtype, device=input.device)
    block_m = triton.next_power_of_2(m)
    block_p = tile_rows(input.dtype, block_m)
    p = ho * wo
    with on_device(input):
        _lstn_forward_kernel[pixel_grid(p, b, block_p)](
            input, grid, offsets if offsets is not None else input, key if key is not None else input, value, slopes,
            c, h, w, p, m, value.numel(), b * m * p, float(scale_x), float(scale_y), ALIGN=align_corners,
            PAD=padding_code(padding_mode), FIXED_BIAS=fixed_bias, HASHED=offsets is None, BLOCK_P=block_p,
            BLOCK_M=block_m,
        )  # fmt: skip
    return value, slopes


def lstn_hash_normals(key: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """``interpolators::lstn_hash_normals`` in Triton: the normals ``(2, n)`` the forward hashes for flat point
    indices ``0 .. n - 1`` (on ``key``'s device)."""
    if dtype not in (torch.float32, torch.float64):
        raise RuntimeError(f"lstn_hash_normals: dtype: expected float32 or float64, got {dtype}")
    out = torch.empty((2, n), dtype=dtype, device=key.device)
    block = 1024
    with on_device(key):
        _hash_normals_kernel[(triton.cdiv(n, block),)](key, out, n, BLOCK=block)
    return out


def register() -> None:
    torch.library.register_kernel("interpolators::lstn_forward", "cuda", lstn_forward)
    torch.library.register_kernel("interpolators::lstn_hash_normals", "cuda", lstn_hash_normals)
