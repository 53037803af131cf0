"""What the operators' Triton kernels share (the CUDA twin of ``csrc/sampling.h`` and ``csrc/sampling.cpp``).

grid_sample's map from normalized coordinates to source pixels, bilinear footprints (gathered samples and scattered
gradients, by ``tl.atomic_add``), the launch helpers, and the two backward operators both methods use:
``bilinear_input_grad`` and ``slope_grid_grad``. Conventions are grid_sample's: input ``(B, C, H, W)``, grid
``(B, Ho, Wo, 2)`` holding normalized ``(x, y)``, padding codes ``0`` zeros / ``1`` border / ``2`` reflection.

Kernels run one program per block of output pixels of one batch element (``program_id(0)`` the block,
``program_id(1)`` the batch element), so pixel indices stay 32-bit and no program divides by the plane size. The
launchers take the operators' arguments and run on whatever device their tensors are on: CUDA, or CPU under
Triton's interpreter (``TRITON_INTERPRET=1``, the tests). Block sizes are fixed, not autotuned.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from interpolators.base import PADDING_CODES

#: output pixels per program of the 1-D kernels (the backward operators)
BLOCK_PIXELS = 256
#: the largest batch a launch takes (the batch is the grid's second axis)
MAX_BATCH = 65535
#: values per program of the forward kernels' 2-D and 3-D tiles in float32 (half that in float64): 4 per thread at 4
#: warps, which keeps the kernels in registers (no spills in ptxas for sm_90 at the default hyperparameters)
TILE = 512


# ---- grid_sample's coordinates (Axis in sampling.h) ---------------------------------------------------------------


@triton.jit
def source(g, size, ALIGN: tl.constexpr, PAD: tl.constexpr):
    """The source pixel of normalized ``g`` along an axis of ``size`` pixels, with padding ``PAD`` applied
    (reflection folds into range, border and reflection clip to ``[0, size - 1]``, zeros leaves it)."""
    last = tl.cast(size - 1, g.dtype)  # (tl.cast: an int argument equal to 1 arrives as a constexpr)
    if ALIGN:
        mul = last * 0.5
        x = tl.fma(g + 1.0, mul, 0.0)
    else:
        mul = tl.cast(size, g.dtype) * 0.5
        x = tl.fma(g + 1.0, mul, -0.5)
    if PAD == 2:  # fold by the period, then mirror
        if ALIGN:
            lo = 0.0
            period = 2.0 * last
        else:
            lo = -0.5
            period = 2.0 * tl.cast(size, g.dtype)
        period = tl.where(period == 0.0, 1.0, period)  # align_corners on one pixel: clipped to 0 below
        d = tl.abs(x - lo)
        extra = d - tl.floor(d / period) * period
        mirrored = period - extra
        x = lo + tl.where(extra < mirrored, extra, mirrored)
    if PAD != 0:
        x = tl.where(x > 0.0, x, 0.0)
        x = tl.where(x < last, x, last)
    return x


@triton.jit
def pixel_scale(size, ALIGN: tl.constexpr, T: tl.constexpr):
    """Input pixels per normalized unit along an axis of ``size`` pixels (``interpolators.base.normalized_to_pixel_scale``)."""
    if ALIGN:
        return tl.cast(size - 1, T) * 0.5
    else:
        return tl.cast(size, T) * 0.5


@triton.jit
def as_dtype(x, T: tl.constexpr):
    """A float argument (annotated ``tl.float64``: a float64 scalar when compiled, a Python float under the
    interpreter) rounded to ``T``."""
    return (x + tl.zeros([], T)).to(T)


@triton.jit
def inverse_sym3(a00, a01, a02, a11, a12, a22):
    """The inverse of ``[[a00, a01, a02], [a01, a11, a12], [a02, a12, a22]]`` by the adjugate, as its six unique
    entries (``interpolators._linalg.inverse_sym3``), elementwise."""
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = a00 * a11 - a01 * a01
    inv_det = 1.0 / (a00 * c00 + a01 * c01 + a02 * c02)
    return c00 * inv_det, c01 * inv_det, c02 * inv_det, c11 * inv_det, c12 * inv_det, c22 * inv_det


@triton.jit
def limits(T: tl.constexpr):
    """``(eps, tiny)`` of the float dtype ``T`` (``torch.finfo``)."""
    if T == tl.float32:
        return 1.1920928955078125e-07, 1.1754943508222875e-38
    else:
        return 2.220446049250313e-16, 2.2250738585072014e-308


# ---- bilinear footprints (Footprint in sampling.h) ----------------------------------------------------------------


@triton.jit
def footprint(x, y, H, W):
    """The bilinear footprint of source pixels ``(x, y)`` in an ``(H, W)`` plane: the flat index of the top-left
    corner (int32), the weights of the right and lower corners, and which of the four corners lie inside.

    Coordinates are first clamped to ``[-2, W + 1]`` (NaN to ``-2``), which keeps the integer conversion defined
    without changing any sample."""
    w = tl.cast(W, x.dtype)  # (tl.cast: an int argument equal to 1 arrives as a constexpr)
    h = tl.cast(H, x.dtype)
    x = tl.where(x > -2.0, x, -2.0)
    x = tl.where(x < w + 1.0, x, w + 1.0)
    y = tl.where(y > -2.0, y, -2.0)
    y = tl.where(y < h + 1.0, y, h + 1.0)
    fx = tl.floor(x)
    fy = tl.floor(y)
    x0 = (fx >= 0.0) & (fx <= w - 1.0)
    x1 = (fx >= -1.0) & (fx <= w - 2.0)
    y0 = (fy >= 0.0) & (fy <= h - 1.0)
    y1 = (fy >= -1.0) & (fy <= h - 2.0)
    corner = fy.to(tl.int32) * W + fx.to(tl.int32)
    return corner, x - fx, y - fy, x0 & y0, x1 & y0, x0 & y1, x1 & y1


@triton.jit
def sample(img_ptr, corner, wx, wy, in00, in01, in10, in11, W, live):
    """The bilinear sample at a footprint of the plane at ``img_ptr`` (zero outside; nothing read where not
    ``live``)."""
    a = tl.load(img_ptr + corner, mask=live & in00, other=0.0)
    b = tl.load(img_ptr + corner + 1, mask=live & in01, other=0.0)
    c = tl.load(img_ptr + corner + W, mask=live & in10, other=0.0)
    d = tl.load(img_ptr + corner + W + 1, mask=live & in11, other=0.0)
    ux = 1.0 - wx
    return (a * ux + b * wx) * (1.0 - wy) + (c * ux + d * wx) * wy


@triton.jit
def scatter(out_ptr, g, corner, wx, wy, in00, in01, in10, in11, W, live):
    """``out[corner] += g * weight`` for the four corners of a footprint, as grid_sample's backward does."""
    gx1 = g * wx
    gx0 = g - gx1
    tl.atomic_add(out_ptr + corner, gx0 * (1.0 - wy), mask=live & in00, sem="relaxed")
    tl.atomic_add(out_ptr + corner + 1, gx1 * (1.0 - wy), mask=live & in01, sem="relaxed")
    tl.atomic_add(out_ptr + corner + W, gx0 * wy, mask=live & in10, sem="relaxed")
    tl.atomic_add(out_ptr + corner + W + 1, gx1 * wy, mask=live & in11, sem="relaxed")


# ---- the shared backward operators (sampling.cpp) ----------------------------------------------------------------


@triton.jit
def _bilinear_input_grad_kernel(grad_ptr, grid_ptr, out_ptr, C, H, W, P, ALIGN: tl.constexpr, PAD: tl.constexpr,
                                BLOCK: tl.constexpr):  # fmt: skip
    b = tl.program_id(1).to(tl.int64)
    pix = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = pix < P
    gx = tl.load(grid_ptr + (b * P + pix) * 2, mask=live, other=0.0)
    gy = tl.load(grid_ptr + (b * P + pix) * 2 + 1, mask=live, other=0.0)
    corner, wx, wy, in00, in01, in10, in11 = footprint(source(gx, W, ALIGN, PAD), source(gy, H, ALIGN, PAD), H, W)
    for c in range(C):
        g = tl.load(grad_ptr + (b * C + c) * P + pix, mask=live, other=0.0)
        scatter(out_ptr + (b * C + c) * H * W, g, corner, wx, wy, in00, in01, in10, in11, W, live)


@triton.jit
def _slope_grid_grad_kernel(grad_ptr, slopes_ptr, out_ptr, C, P, NUMEL, BLOCK: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    pix = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = pix < P
    x = tl.zeros([BLOCK], dtype=grad_ptr.dtype.element_ty)
    y = tl.zeros([BLOCK], dtype=grad_ptr.dtype.element_ty)
    for c in range(C):
        at = (b * C + c) * P + pix
        g = tl.load(grad_ptr + at, mask=live, other=0.0)
        x = tl.fma(g, tl.load(slopes_ptr + at, mask=live, other=0.0), x)
        y = tl.fma(g, tl.load(slopes_ptr + NUMEL + at, mask=live, other=0.0), y)
    tl.store(out_ptr + (b * P + pix) * 2, x, mask=live)
    tl.store(out_ptr + (b * P + pix) * 2 + 1, y, mask=live)


def bilinear_input_grad(grad_value: Tensor, grid: Tensor, height: int, width: int, padding_mode: str,
                        align_corners: bool) -> Tensor:  # fmt: skip
    """``interpolators::bilinear_input_grad``: bilinear's input gradient ``(B, C, height, width)`` of ``grad``
    ``(B, C, Ho, Wo)`` at ``grid (B, Ho, Wo, 2)``, scattered with atomic adds."""
    grad, grid = grad_value.contiguous(), grid.contiguous()
    b, c, ho, wo = grad.shape
    if tuple(grid.shape) != (b, ho, wo, 2):
        raise RuntimeError(f"bilinear_input_grad: grid: expected (B, Ho, Wo, 2) for grad {tuple(grad.shape)}, got {tuple(grid.shape)}")
    check_not_deterministic("bilinear_input_grad", grad)
    out = torch.zeros((b, c, height, width), dtype=grad.dtype, device=grad.device)
    p = ho * wo
    with on_device(grad):
        _bilinear_input_grad_kernel[pixel_grid(p, b, BLOCK_PIXELS)](
            grad, grid, out, c, height, width, p, ALIGN=align_corners, PAD=padding_code(padding_mode), BLOCK=BLOCK_PIXELS
        )
    return out


def slope_grid_grad(grad_value: Tensor, slopes: Tensor) -> Tensor:
    """``interpolators::slope_grid_grad``: the grid gradient ``(B, Ho, Wo, 2)`` of ``slopes (2, B, C, Ho, Wo)``
    against ``grad (B, C, Ho, Wo)``, summed over channels."""
    grad, slopes = grad_value.contiguous(), slopes.contiguous()
    b, c, ho, wo = grad.shape
    if tuple(slopes.shape) != (2, b, c, ho, wo):
        raise RuntimeError(f"slope_grid_grad: slopes: expected (2, B, C, Ho, Wo) for grad {tuple(grad.shape)}, got {tuple(slopes.shape)}")
    out = torch.empty((b, ho, wo, 2), dtype=grad.dtype, device=grad.device)
    p = ho * wo
    with on_device(grad):
        _slope_grid_grad_kernel[pixel_grid(p, b, BLOCK_PIXELS)](grad, slopes, out, c, p, grad.numel(), BLOCK=BLOCK_PIXELS)
    return out


# ---- launch helpers ---------------------------------------------------------------------------------------------


def padding_code(mode: str) -> int:
    if mode not in PADDING_CODES:
        raise RuntimeError(f"padding_mode: expected 'zeros', 'border' or 'reflection', got {mode!r}")
    return PADDING_CODES[mode]


def pixel_grid(pixels: int, batch: int, block: int) -> tuple[int, int]:
    """The launch grid: blocks of ``block`` output pixels by batch elements."""
    if batch > MAX_BATCH:
        raise RuntimeError(f"input: at most {MAX_BATCH} batch elements per call on CUDA, got {batch}; split the batch")
    return triton.cdiv(pixels, block), batch


def tile_rows(dtype: torch.dtype, row: int) -> int:
    """How many rows of ``row`` values (a power of two) one program's tile holds, for ``dtype``."""
    return max(1, (TILE if dtype == torch.float32 else TILE // 2) // row)


def on_device(t: Tensor):
    """The CUDA device guard for ``t``'s device (nothing for the interpreter's CPU tensors)."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def check_input_and_grid(input: Tensor, grid: Tensor, op: str) -> None:
    """The checks of ``check_input_and_grid`` in ``csrc/sampling.h``."""
    if input.dim() != 4:
        raise RuntimeError(f"{op}: input: expected (B, C, H, W), got {tuple(input.shape)}")
    if grid.dim() != 4 or grid.shape[3] != 2 or grid.shape[0] != input.shape[0]:
        raise RuntimeError(f"{op}: grid: expected (B, Ho, Wo, 2) with B = {input.shape[0]}, got {tuple(grid.shape)}")
    if input.dtype != grid.dtype or input.dtype not in (torch.float32, torch.float64):
        raise RuntimeError(f"{op}: expected float32 or float64 input and grid of one dtype, got {input.dtype} and {grid.dtype}")
    if input.device != grid.device:
        raise RuntimeError(f"{op}: expected input and grid on one device, got {input.device} and {grid.device}")
    if input.shape[2] * input.shape[3] >= 2**31:
        raise RuntimeError(f"{op}: input: planes are indexed with 32 bits, got H * W = {input.shape[2] * input.shape[3]}")


def check_not_deterministic(op: str, t: Tensor) -> None:
    """What torch does for its own atomic scatters (``grid_sample``'s CUDA backward): under
    ``torch.use_deterministic_algorithms(True)`` an error, or a warning with ``warn_only=True``."""
    if t.device.type != "cuda" or not torch.are_deterministic_algorithms_enabled():
        return
    message = (f"interpolators::{op} on CUDA scatters with atomic adds and does not have a deterministic "
               f"implementation, but you set 'torch.use_deterministic_algorithms(True)'")  # fmt: skip
    if torch.is_deterministic_algorithms_warn_only_enabled():
        import warnings

        warnings.warn(message, UserWarning, stacklevel=3)
    else:
        raise RuntimeError(message + "; use warn_only=True, or the CPU")


@functools.lru_cache(maxsize=64)
def constants(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """``values`` as a tensor on ``device``, made once per distinct tuple (per-call constants such as ESTN's spiral,
    without a host-to-device copy per call)."""
    return torch.tensor(values, dtype=dtype, device=device)


def register() -> None:
    torch.library.register_kernel("interpolators::bilinear_input_grad", "cuda", bilinear_input_grad)
    torch.library.register_kernel("interpolators::slope_grid_grad", "cuda", slope_grid_grad)
