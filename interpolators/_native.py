"""``backend="native"`` of L-STN and ESTN: hand-written C++ kernels (``csrc/``), built on first use, loaded with ctypes.

``torch.compile`` fuses L-STN's and ESTN's elementwise math but keeps torch's ``grid_sample``
kernels, whose gathers and scatters run apart from it; the native kernels fuse what is left. Per
tile of output pixels, one pass makes the sample points (L-STN: random offsets from the same
counter-based hash as the compiled backend; ESTN: the tangent frame and the spiral), their
bilinear samples and the fit (ESTN: with its entropy reweighting); the input gradient is one
scatter. Shared code is in ``csrc/sampling.h``. They run on CPU tensors of float32 or float64.

The sources are compiled once per machine with the system's C++ compiler (``$CXX``, else ``g++``)
and OpenMP, for the machine's own instruction set (``-march=native``), into
``$STN_BENCH_CACHE`` (default ``~/.cache/stn-interp-bench``), under a name that hashes the
sources, the flags, the compiler's version and the processor's flags; later processes load that
file. A build takes about 5 s. The kernels join the OpenMP runtime torch has loaded, so
``torch.set_num_threads`` sets their threads too.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

SOURCE_DIR = Path(__file__).parent / "csrc"
SOURCES = ("sampling.cpp", "lstn.cpp", "estn.cpp")  # one library; sampling.h is part of the build key too
FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC"]
if platform.machine() in ("x86_64", "AMD64"):
    FLAGS.append("-mprefer-vector-width=512")  # full-width AVX-512 where there is any (gcc defaults to 256 bits)
DTYPES = (torch.float32, torch.float64)
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _compiler() -> str:
    cxx = os.environ.get("CXX") or "g++"
    path = shutil.which(cxx)
    if path is None:
        raise RuntimeError(
            f"backend='native': no C++ compiler found ({cxx!r}; set CXX to one with OpenMP, such as g++). "
            "Use backend='compiled' or 'eager' instead."
        )
    return path


def _cpu_flags() -> str:
    try:
        return next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.processor()


def _cache_dir() -> Path:
    return Path(os.environ.get("STN_BENCH_CACHE") or Path.home() / ".cache" / "stn-interp-bench")


@functools.cache
def library() -> ctypes.CDLL:
    """The loaded kernels, built first if this machine has no build of these sources yet."""
    cxx = _compiler()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    texts = [(SOURCE_DIR / name).read_text() for name in (*SOURCES, "sampling.h")]
    key = hashlib.sha256("\n".join([*texts, " ".join(FLAGS), *version, _cpu_flags()]).encode()).hexdigest()
    target = _cache_dir() / f"kernels-{key[:16]}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            built = Path(scratch) / target.name
            sources = [str(SOURCE_DIR / name) for name in SOURCES]
            result = subprocess.run([cxx, *FLAGS, *sources, "-o", str(built)], capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(
                    f"backend='native': {Path(cxx).name} could not build {', '.join(SOURCES)} (exit {result.returncode}):\n"
                    f"{result.stderr[-2000:]}\nUse backend='compiled' or 'eager' instead."
                )
            os.replace(built, target)  # atomic: a concurrent build leaves one whole file
    lib = ctypes.CDLL(str(target))
    ptr, i64, f64, i32, u32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int, ctypes.c_uint32
    for suffix in _SUFFIX.values():
        getattr(lib, f"lstn_fit_{suffix}").argtypes = [ptr, ptr, ptr, u32, *[i64] * 7, f64, f64, i32, i32, ptr, ptr, ptr]
        getattr(lib, f"lstn_hash_normals_{suffix}").argtypes = [u32, i64, ptr, ptr]
        getattr(lib, f"bilinear_input_grad_{suffix}").argtypes = [ptr, ptr, *[i64] * 5, i32, i32, ptr]
        getattr(lib, f"slope_grid_grad_{suffix}").argtypes = [ptr, ptr, ptr, i64, i64, i64, ptr]
        getattr(lib, f"estn_fit_{suffix}").argtypes = [
            *[ptr] * 5, *[i64] * 7, *[f64] * 5, i64, f64, i32, i32, i32, *[ptr] * 4
        ]
        getattr(lib, f"estn_input_grad_{suffix}").argtypes = [*[ptr] * 4, *[i64] * 7, *[f64] * 4, i32, i32, ptr]
    return lib


@functools.cache
def available() -> bool:
    """Whether the kernels build and load here (a C++ compiler with OpenMP)."""
    try:
        library()
    except (RuntimeError, OSError):
        return False
    return True


def check_inputs(input: Tensor) -> None:
    """Raise a clear error unless the kernels take ``input (B, C, H, W)`` (and so its grid): CPU, float32 or float64."""
    if input.device.type != "cpu" or input.dtype not in DTYPES:
        raise TypeError(
            f"backend: 'native' runs on CPU float32 and float64 tensors, got {input.dtype} on {input.device}; "
            "use backend='compiled' (which also fuses on CUDA) or 'eager'"
        )
    if input.shape[2] * input.shape[3] >= 2**31:
        raise ValueError(f"backend: 'native' indexes input planes with 32 bits, got H * W = {input.shape[2] * input.shape[3]}")


def lstn_fit(
    input: Tensor, grid: Tensor, offset: Tensor, m: int, scale_x: float, scale_y: float, padding: int, align: bool
) -> tuple[Tensor, Tensor]:
    """L-STN's forward: ``(value (B, C, Ho, Wo), slopes (2, B, C, Ho, Wo))`` per normalized unit.

    ``input`` and ``grid (B, Ho, Wo, 2)`` contiguous; ``offset`` is the offsets ``(2, B, M, Ho, Wo)`` in fit
    units or an int64 key ``(1,)`` to hash them from; ``padding`` is grid_sample's code (0 zeros, 1 border,
    2 reflection).
    """
    (b, c, h, w), (_, ho, wo, _) = input.shape, grid.shape
    value, slopes = input.new_empty((b, c, ho, wo)), input.new_empty((2, b, c, ho, wo))
    if offset.dtype == torch.int64:
        offsets, key = None, int(offset.item())
    else:
        offset = offset.contiguous()
        offsets, key = offset.data_ptr(), 0
    getattr(library(), f"lstn_fit_{_SUFFIX[input.dtype]}")(
        input.data_ptr(), grid.data_ptr(), offsets, key, b, c, h, w, ho, wo, m, scale_x, scale_y, padding, int(align),
        value.data_ptr(), slopes[0].data_ptr(), slopes[1].data_ptr(),
    )  # fmt: skip
    return value, slopes


def bilinear_input_grad(grad_out: Tensor, input_shape: torch.Size, grid: Tensor, padding: int, align: bool) -> Tensor:
    """Bilinear's input gradient, ``input_shape (B, C, H, W)``, of ``grad_out (B, C, Ho, Wo)`` at ``grid (B, Ho, Wo, 2)``."""
    grad_out = grad_out.contiguous()
    (b, c, h, w), (ho, wo) = input_shape, grid.shape[1:3]
    grad_input = torch.zeros((b, c, h, w), dtype=grad_out.dtype, device="cpu")
    getattr(library(), f"bilinear_input_grad_{_SUFFIX[grad_out.dtype]}")(
        grad_out.data_ptr(), grid.data_ptr(), b, c, h, w, ho * wo, padding, int(align), grad_input.data_ptr()
    )
    return grad_input


def slope_grid_grad(grad_out: Tensor, slope_x: Tensor, slope_y: Tensor) -> Tensor:
    """The grid gradient ``(B, Ho, Wo, 2)``: the contiguous slopes ``(B, C, Ho, Wo)`` against ``grad_out``, summed over channels."""
    grad_out = grad_out.contiguous()
    b, c, ho, wo = grad_out.shape
    grad_grid = grad_out.new_empty((b, ho, wo, 2))
    getattr(library(), f"slope_grid_grad_{_SUFFIX[grad_out.dtype]}")(
        grad_out.data_ptr(), slope_x.data_ptr(), slope_y.data_ptr(), b, c, ho * wo, grad_grid.data_ptr()
    )
    return grad_grid


def lstn_hash_normals(key: int, n: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The normal pairs ``(du, dv)``, each ``(n,)``, that the forward kernel draws for flat point indices ``0 .. n-1``."""
    du, dv = torch.empty(n, dtype=dtype, device="cpu"), torch.empty(n, dtype=dtype, device="cpu")
    getattr(library(), f"lstn_hash_normals_{_SUFFIX[dtype]}")(key, n, du.data_ptr(), dv.data_ptr())
    return du, dv


def estn_fit(
    input: Tensor,
    grid: Tensor,
    spiral: tuple[Tensor, Tensor, Tensor],
    geometry: tuple[float, float, float, float],
    entropy: float | None,
    iterations: int,
    ridge: float,
    padding: int,
    align: bool,
    center: bool,
    need_beta: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """ESTN's forward for the shared spiral: ``spiral`` is ``(z (K, 2), prior weights (K,), their logs (K,))``.

    ``input`` and ``grid (B, Ho, Wo, 2)`` contiguous; ``geometry`` is ``(scale_x, scale_y, min_radius,
    tangent_scale)``. Returns ``(value (B, C, Ho, Wo), slopes (2, B, C, Ho, Wo) per normalized unit,
    beta (B, K, Ho, Wo) or None)``: the intercept (or the centre sample with ``center``), and its weights.
    """
    (b, c, h, w), (_, ho, wo, _), (z, prior, log_prior) = input.shape, grid.shape, spiral
    k = z.shape[0]
    value, slopes = input.new_empty((b, c, ho, wo)), input.new_empty((2, b, c, ho, wo))
    beta = input.new_empty((b, k, ho, wo)) if need_beta else None
    getattr(library(), f"estn_fit_{_SUFFIX[input.dtype]}")(
        input.data_ptr(), grid.data_ptr(), z.data_ptr(), prior.data_ptr(), log_prior.data_ptr(),
        b, c, h, w, ho, wo, k, *geometry, -1.0 if entropy is None else entropy, iterations, ridge, padding,
        int(align), int(center), value.data_ptr(), slopes[0].data_ptr(), slopes[1].data_ptr(),
        None if beta is None else beta.data_ptr(),
    )  # fmt: skip
    return value, slopes, beta


def estn_input_grad(
    grad_out: Tensor,
    input_shape: torch.Size,
    grid: Tensor,
    z: Tensor,
    beta: Tensor,
    geometry: tuple[float, float, float, float],
    padding: int,
    align: bool,
) -> Tensor:
    """ESTN's input gradient ``(B, C, H, W)``: ``grad_out (B, C, Ho, Wo)`` times ``beta (B, K, Ho, Wo)`` scattered
    at the bilinear footprints of the samples, whose points the kernel recomputes from ``grid`` (contiguous) and
    the spiral ``z (K, 2)``."""
    grad_out = grad_out.contiguous()
    (b, c, h, w), (ho, wo), k = input_shape, grid.shape[1:3], z.shape[0]
    grad_input = torch.zeros((b, c, h, w), dtype=grad_out.dtype, device="cpu")
    getattr(library(), f"estn_input_grad_{_SUFFIX[grad_out.dtype]}")(
        grad_out.data_ptr(), grid.data_ptr(), z.data_ptr(), beta.data_ptr(), b, c, h, w, ho, wo, k, *geometry,
        padding, int(align), grad_input.data_ptr(),
    )  # fmt: skip
    return grad_input
