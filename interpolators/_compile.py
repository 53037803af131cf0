"""The optional ``backend="compiled"`` of the multi-sample methods: their elementwise math fused by ``torch.compile``.

L-STN and ESTN spend most of their time outside ``grid_sample`` in many small elementwise
passes (offsets, sample points, normal equations, 3x3 solves, reweighting). With
``backend="compiled"`` those passes are written per sample (unrolled over ``K``) and handed
to ``torch.compile`` (Inductor), which fuses each of them into one vectorized loop.
``grid_sample`` and its backward stay torch's own. The numbers are those of the eager path
up to float rounding, which the tests check.

Each fused function is compiled for static shapes (``dynamic=False``: dynamic kernels measured
2.6x slower), so every new input shape, dtype or hyperparameter value costs one compilation
(about 3-30 s on a 2-core CPU; Inductor's on-disk cache makes later processes faster). Up to
``RECOMPILE_LIMIT`` variants per function are kept (torch's default of 8 is too few for a
suite that sweeps sizes); past it torch runs the unfused code, with the same numbers.
Inductor needs a C++ compiler on CPU (Triton on CUDA); without one the first call raises a
``RuntimeError`` that names the backend, and ``backend="eager"`` keeps working.

Inside a caller's own ``torch.compile`` and under a dispatch mode (``FlopCounterMode`` in the
cost suite), the fused functions run as plain torch code: the outer compiler traces them, and
the FLOP counter sees every operation of the same math.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

RECOMPILE_LIMIT = 64


@functools.cache
def _compiled(fn: Callable) -> Callable:
    return torch.compile(fn, dynamic=False, fullgraph=True)


@functools.cache
def compiler_available() -> bool:
    """Whether Inductor finds a C++ compiler here (what ``backend="compiled"`` needs on CPU)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception:
        return False
    return True


def tracing() -> bool:
    """Whether a caller's ``torch.compile`` or a dispatch mode is watching: fused code then runs as plain torch code."""
    return torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None


def run_compiled(fn: Callable, *args, **kwargs):
    """Call the ``torch.compile`` d form of ``fn``; a failure to compile names ``backend="compiled"``."""
    if tracing():
        return fn(*args, **kwargs)
    config = torch._dynamo.config
    saved = config.recompile_limit  # set and restored by hand: config.patch() costs ~80 us a call
    config.recompile_limit = max(saved, RECOMPILE_LIMIT)
    try:
        return _compiled(fn)(*args, **kwargs)
    except torch._dynamo.exc.BackendCompilerFailed as err:
        raise RuntimeError(
            f"backend='compiled': torch.compile could not build {fn.__name__} ({type(err.inner_exception).__name__}: "
            f"{err.inner_exception}); Inductor needs a C++ compiler on CPU and Triton on CUDA. "
            "Use backend='eager' (the default) instead."
        ) from err
    finally:
        config.recompile_limit = saved
