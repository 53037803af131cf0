"""cost: FLOPs, latency and memory of each interpolator (Fig. 5 of the seed paper).

Every cell samples an ``n x n`` input ``(B, C, n, n)`` onto an ``n x n`` output through
the grid of a small rotation (``ROTATION_DEG`` about the centre, ``align_corners=False``),
so the sampling points fall off the lattice as they do inside an STN. The input and the
grid are float32 leaves that require grad (an STN differentiates through both); the
backward pass is ``output.backward(grad_output)`` with the leaves' gradients reset first.

Metrics per cell (rows ``metric, value, unit``; every row also carries ``threads``):

- ``flops_forward`` / ``flops_forward_backward``: ``torch.utils.flop_counter.FlopCounterMode``
  with :func:`flop_formulas` passed as its ``custom_mapping``: :data:`GRID_SAMPLER_FLOPS` (torch's own
  registry counts the grid sampler ops as zero) and :data:`OPERATOR_FLOPS` for the project's operators
  (``torch.ops.interpolators``, which L-STN and ESTN run by default); the global registry is left alone.
- ``analytic_flops_forward``: the method's own count from :data:`ANALYTIC_FLOPS`; no row for a
  method without a formula (e.g. a plugin).
- ``uncounted_ops``: how many distinct ops with arithmetic ran without a FLOP formula (they count
  zero above); the extra column ``ops`` names them. Views, allocation, copies, indexing and
  comparisons (:data:`NO_ARITHMETIC_OPS`) are not listed.
- ``latency_forward_ms`` (inference: under ``torch.no_grad``, as Fig. 5 measures) and
  ``latency_forward_backward_ms`` (training: forward with autograd plus backward), medians, with
  ``latency_forward_iqr_ms`` / ``latency_forward_backward_iqr_ms``. CPU: ``torch.utils.benchmark``
  (``blocked_autorange`` after a warm-up, at least :data:`MIN_BLOCKS` blocks, at ``torch.get_num_threads()``
  threads, recorded) on the CPU's wall clock, never synchronizing a GPU that may be present; CUDA: CUDA events
  around blocks of plain calls, synchronised, median and IQR over ``cuda_repeats`` blocks. Each latency row's
  ``timing`` column says how.
- ``latency_warnings``: how many warnings the cell's timing raised (0: none), the column ``warning`` says them
  (:func:`latency_warnings`): a latency whose IQR / median is above :data:`SPREAD_THRESHOLD`, a load average
  above the CPU count, other processes busy on the CPUs the cell's threads needed. Beside it ``load_average``
  (1-minute, at the end of the timing) and, on Linux, ``other_processes_cpus`` (CPUs the other processes used
  on average while the cell timed), each with the column ``cpus`` (the CPUs this process may use).
- ``latency_forward_vs_bilinear`` / ``latency_forward_backward_vs_bilinear``: the method's time over
  bilinear's (same padding and ``align_corners``, same tensors) timed in this process: on CPU
  :func:`latency_ratio` (alternating blocks, ``Profile.ratio_rounds`` rounds), on CUDA the two
  medians one after the other. A ratio that does not mix two processes, two moments or two machines
  (for the bilinear cell itself, a second bilinear instance: the ratio's noise floor).
- ``saved_for_backward_bytes``: the storage bytes autograd keeps for the backward pass, counted by
  ``torch.autograd.graph.saved_tensors_hooks`` (each storage once): any device.
- ``peak_allocated_bytes`` (CUDA only): the peak of ``torch.cuda.max_memory_allocated`` during
  forward + backward above what was allocated before it (the inputs).

FLOP convention: one addition, subtraction, multiplication, division, square root or
exponential is one FLOP (so a multiply-add is 2, as torch counts ``mm``); comparisons,
``floor``/rounding, clamping, selection and memory traffic are free.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import statistics
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
# torch.utils.benchmark imports cpp_extension, which logs a CUDA_HOME warning on CUDA builds of torch
# running without a CUDA runtime (every CPU-only machine): noise in `python -m bench list`.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import interpolators
from suites.base import Cell, Metric, Option, ReportData, RunConfig, Suite
from suites.sections import Figure, Note, Points, Section, Table

aten = torch.ops.aten

#: rotation of the sampling grid (degrees): small, so the points fall off the lattice
ROTATION_DEG = 10.0
#: forward calls before any timing
WARMUP_CALLS = 3
#: seconds of calls in each CUDA timing block
CUDA_BLOCK_SECONDS = 0.01
#: fewest timing blocks behind a CPU latency: its IQR is then a spread over blocks, never 0 from one block
MIN_BLOCKS = 5
#: IQR / median above which a latency gets a warning (torch.utils.benchmark's Measurement warns at the same 0.1)
SPREAD_THRESHOLD = 0.1
#: runnable threads (load average) above the CPU count, or other processes' CPUs above what a cell left them,
#: beyond which the machine counts as loaded
LOAD_MARGIN = 0.5
#: CPUs another process must use during a cell's timing to be named in its warning
BUSY_CPUS = 0.2
#: the baseline every ratio is taken against
BASELINE = "bilinear"
#: accuracy metrics Fig. 5c can use, in order of preference (scale/rotation: alignment, fidelity)
ACCURACY_METRICS = ("align_success", "psnr")


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes, batches and channels of a profile, and how long to time each measurement."""

    sizes: tuple[int, ...]
    batches: tuple[int, ...]
    channels: tuple[int, ...]
    min_run_time: float  # seconds per CPU latency measurement (blocked_autorange)
    cuda_repeats: int  # CUDA event measurements per latency (median and IQR over them)
    ratio_rounds: int = 1  # CPU: alternating rounds of bilinear and the method per latency ratio (latency_ratio)


PROFILES = {
    "quick": Profile(sizes=(28, 64), batches=(1,), channels=(1,), min_run_time=0.05, cuda_repeats=10),
    "default": Profile(sizes=(28, 64, 128, 256), batches=(1, 32), channels=(1,), min_run_time=0.2, cuda_repeats=30),
    "full": Profile(sizes=(28, 64, 128, 256), batches=(1, 32), channels=(1, 3), min_run_time=1.0, cuda_repeats=100,
                    ratio_rounds=3),
}

#: the options a user may set (``--option cost.sizes=64,128``); ``accuracy_from`` is also ``--accuracy-from``
OPTIONS = {
    "sizes": Option("ints", "input and output sides n (an n x n -> n x n warp)", minimum=1, maximum=4096),
    "batches": Option("ints", "batch sizes", minimum=1, maximum=1024),
    "channels": Option("ints", "channel counts", minimum=1, maximum=256),
    "min_run_time": Option("float", "seconds per CPU latency measurement (blocked_autorange)", minimum=0),
    "cuda_repeats": Option("int", "CUDA event measurements per latency", minimum=1),
    "accuracy_from": Option("run", "a run whose accuracy results the latency-vs-accuracy chart joins (as --accuracy-from)"),
}


def profile_for(config: RunConfig) -> Profile:
    """The :class:`Profile` of ``config`` with the suite's options applied."""
    if config.profile not in PROFILES:
        raise ValueError(f"profile: expected one of {list(PROFILES)}, got {config.profile!r}")
    options = config.options_for(CostSuite.name)
    changes = {k: tuple(int(v) for v in options[k]) for k in ("sizes", "batches", "channels") if k in options}
    changes |= {k: options[k] for k in ("min_run_time", "cuda_repeats") if k in options}
    return dataclasses.replace(PROFILES[config.profile], **changes)


_LATENCY = "latency (median of timed calls)"
METRICS = {
    "flops_forward": Metric("forward FLOPs (flop counter)", "FLOP", "lower", log=True, deterministic=True),
    "flops_forward_backward": Metric("forward + backward FLOPs (flop counter)", "FLOP", "lower", log=True,
                                     deterministic=True),
    "analytic_flops_forward": Metric("forward FLOPs (the method's formula)", "FLOP", "lower", log=True,
                                     deterministic=True),
    "uncounted_ops": Metric("ops with arithmetic but no FLOP formula (counted as zero)", "ops", deterministic=True),
    "saved_for_backward_bytes": Metric("bytes saved for backward", "B", "lower", log=True, deterministic=True),
    "latency_forward_ms": Metric(f"inference {_LATENCY}", "ms", "lower", log=True),
    "latency_forward_backward_ms": Metric(f"forward + backward {_LATENCY}", "ms", "lower", log=True),
    "latency_forward_iqr_ms": Metric("inference latency, interquartile range", "ms", log=True),
    "latency_forward_backward_iqr_ms": Metric("forward + backward latency, interquartile range", "ms", log=True),
    "latency_forward_vs_bilinear": Metric("inference latency over bilinear's, timed in the same process", "x",
                                          "lower", log=True),
    "latency_forward_backward_vs_bilinear": Metric("forward + backward latency over bilinear's, same process", "x",
                                                   "lower", log=True),
    "peak_allocated_bytes": Metric("peak CUDA memory of forward + backward", "B", "lower", log=True),
    "latency_warnings": Metric("timing warnings of the cell (large spread, loaded machine)", "warnings",
                               doc=f"IQR / median above {SPREAD_THRESHOLD}, or a loaded machine: see the column "
                                   "warning and the report's Timing section"),
    "load_average": Metric("1-minute load average at the end of the cell's timing", "threads"),
    "other_processes_cpus": Metric("CPUs other processes used while the cell timed", "CPUs"),
}
#: seconds per cell on a quiet 2-core CPU at the default profile (reports/default, before the native kernels)
CELL_SECONDS = {"nearest": 0.6, "bilinear": 0.6, "bicubic": 0.6, "lstn": 1.2, "estn": 1.7}


# ------------------------------------------------------------------------------------------------------------
# Grid sampler FLOP formulas (torch's flop counter has none)

#: grid_sampler_2d's integer codes
_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
_PADDINGS = {0: "zeros", 1: "border", 2: "reflection"}
#: FLOPs of folding one coordinate into range with padding_mode="reflection" (|x - min|, fmod, floor-div, flip)
REFLECT_FLOPS = 5
#: FLOPs of the 4 Keys cubic weights (a = -0.75) of one axis, argument offsets included: 2 * 5 + 2 * 6 + 3
CUBIC_WEIGHTS_FLOPS = 25
#: FLOPs of the derivatives of those 4 weights: 5 + 4 + 4 + 5
CUBIC_WEIGHT_GRADS_FLOPS = 18


def _unnormalize_flops(align_corners: bool) -> int:
    """FLOPs to map one normalized coordinate to pixels: ``((g + 1) * W - 1) / 2`` is 4, ``(g + 1) / 2 * (W - 1)`` 3."""
    return 3 if align_corners else 4


def _point_flops(mode: str, padding_mode: str, align_corners: bool) -> int:
    """FLOPs per sampling point shared by all channels: coordinates, padding, interpolation weights."""
    unnormalize = 2 * _unnormalize_flops(align_corners)
    reflect = REFLECT_FLOPS if padding_mode == "reflection" else 0
    if mode == "nearest":
        return unnormalize + 2 * reflect
    if mode == "bilinear":
        # fractions tx, ty (2), 1 - tx, 1 - ty (2), four corner weights (4)
        return unnormalize + 2 * reflect + 8
    if mode == "bicubic":
        # fractions (2), 4 weights per axis; padding folds each of the 16 taps on both axes
        return unnormalize + 2 + 2 * CUBIC_WEIGHTS_FLOPS + 32 * reflect
    raise ValueError(f"mode: expected one of {list(_MODES.values())}, got {mode!r}")


def _channel_flops(mode: str) -> int:
    """FLOPs per sampling point and channel of the forward pass."""
    # nearest copies; bilinear: 4 products + 3 sums; bicubic: 4 row lerps of 4 taps (4 * 7) + 1 column (7)
    return {"nearest": 0, "bilinear": 7, "bicubic": 35}[mode]


def grid_sampler_2d_forward_flops(
    batch: int, channels: int, out_h: int, out_w: int, mode: str, padding_mode: str, align_corners: bool
) -> int:
    """FLOPs of ``grid_sample`` forward: ``B Ho Wo (point + C * channel)``.

    ``point`` (shared by the channels) and ``channel`` per sampling point, ``u = 4``
    (``3`` with ``align_corners``), ``f = 5`` per reflection fold (0 for zeros/border):

    ============  =======================  =========
    mode          point                    channel
    ============  =======================  =========
    nearest       ``2u + 2f``              0
    bilinear      ``2u + 2f + 8``          7
    bicubic       ``2u + 2 + 50 + 32f``    35
    ============  =======================  =========

    >>> grid_sampler_2d_forward_flops(1, 1, 1, 1, "bilinear", "zeros", False)
    23
    """
    points = batch * out_h * out_w
    return points * (_point_flops(mode, padding_mode, align_corners) + channels * _channel_flops(mode))


def grid_sampler_2d_backward_flops(
    batch: int,
    channels: int,
    out_h: int,
    out_w: int,
    mode: str,
    padding_mode: str,
    align_corners: bool,
    input_grad: bool = True,
    grid_grad: bool = True,
) -> int:
    """FLOPs of ``grid_sample``'s backward (``grid_sampler_2d_backward``).

    The backward recomputes each point's forward ``point`` FLOPs, then per point and channel:

    - input gradient (``input_grad``): bilinear scatters ``gOut * w`` to 4 pixels (8), bicubic
      forms ``gOut * wy_i`` (4) then ``* wx_j`` and accumulates to 16 pixels (32): 36, nearest adds
      ``gOut`` to 1 pixel (1);
    - grid gradient (``grid_grad``): bilinear ``gx += ((ne - nw) s + (se - sw) n) gOut`` and the same
      for ``gy`` (2 x 7 = 14), bicubic the separable sums of values times weights and weight derivatives
      (4 rows x 2 x 7 + 2 x 7 + 2 = 72), nearest 0; plus per point the chain rule through the
      unnormalization (2) and, for bicubic, the weight derivatives (2 x 18).

    >>> grid_sampler_2d_backward_flops(1, 1, 1, 1, "bilinear", "zeros", False)
    40
    """
    point = _point_flops(mode, padding_mode, align_corners)
    channel = 0
    if input_grad:
        channel += {"nearest": 1, "bilinear": 8, "bicubic": 36}[mode]
    if grid_grad and mode != "nearest":
        point += 2 + (2 * CUBIC_WEIGHT_GRADS_FLOPS if mode == "bicubic" else 0)
        channel += {"bilinear": 14, "bicubic": 72}[mode]
    return batch * out_h * out_w * (point + channels * channel)


def _grid_sampler_2d_flop(input_shape, grid_shape, interpolation_mode, padding_mode, align_corners, *args,
                          out_shape=None, **kwargs) -> int:
    b, c = input_shape[:2]
    return grid_sampler_2d_forward_flops(
        b, c, grid_shape[1], grid_shape[2], _MODES[interpolation_mode], _PADDINGS[padding_mode], align_corners
    )


def _grid_sampler_2d_backward_flop(grad_output_shape, input_shape, grid_shape, interpolation_mode, padding_mode,
                                   align_corners, output_mask, *args, out_shape=None, **kwargs) -> int:
    b, c = input_shape[:2]
    return grid_sampler_2d_backward_flops(
        b, c, grid_shape[1], grid_shape[2], _MODES[interpolation_mode], _PADDINGS[padding_mode], align_corners,
        input_grad=bool(output_mask[0]), grid_grad=bool(output_mask[1]),
    )


def _cudnn_grid_sampler_flop(input_shape, grid_shape, *args, out_shape=None, **kwargs) -> int:
    # cuDNN takes over bilinear, zeros, align_corners=True on CUDA
    return grid_sampler_2d_forward_flops(input_shape[0], input_shape[1], grid_shape[1], grid_shape[2],
                                         "bilinear", "zeros", True)


def _cudnn_grid_sampler_backward_flop(input_shape, grid_shape, grad_output_shape, *args, out_shape=None,
                                      **kwargs) -> int:
    return grid_sampler_2d_backward_flops(input_shape[0], input_shape[1], grid_shape[1], grid_shape[2],
                                          "bilinear", "zeros", True)


#: ``custom_mapping`` for ``FlopCounterMode``: the grid sampler ops torch counts as zero
GRID_SAMPLER_FLOPS: dict[Any, Callable[..., int]] = {
    aten.grid_sampler_2d: _grid_sampler_2d_flop,
    aten.grid_sampler_2d_backward: _grid_sampler_2d_backward_flop,
    aten.cudnn_grid_sampler: _cudnn_grid_sampler_flop,
    aten.cudnn_grid_sampler_backward: _cudnn_grid_sampler_backward_flop,
}


# ------------------------------------------------------------------------------------------------------------
# Each method's analytic forward count

#: FLOPs of an LU factorization of a 3 x 3 matrix without pivoting: (2 divisions + 4 multiply-adds) + (1 + 1)
LU3_FLOPS = 13
#: FLOPs of the forward and back substitution of one right-hand side with that LU: 6 + 9
SOLVE3_FLOPS = 15


def _baseline_flops(mode: str) -> Callable[..., int]:
    def count(b: int, c: int, h: int, w: int, ho: int, wo: int, hparams: dict[str, Any]) -> int:
        return grid_sampler_2d_forward_flops(b, c, ho, wo, mode, hparams["padding_mode"], hparams["align_corners"])

    count.__doc__ = f"``grid_sample(mode={mode!r})`` forward."
    return count


def lstn_forward_flops(b: int, c: int, h: int, w: int, ho: int, wo: int, hparams: dict[str, Any]) -> int:
    """L-STN forward as ``interpolators/lstn`` computes it, per output pixel, ``M = K - 1`` auxiliary points.

    - offsets: one standard-normal draw per axis (the two offset terms' variances summed, so
      ``push_away`` changes no count), scaled and added to the sampling point: ``2 * 2 M``;
    - ``M`` bilinear samples at the auxiliary points, plus the centre with ``fixed_bias`` (without it the
      centre is not sampled: the fitted intercept is the value): ``(M + fixed_bias) (point + 7 C)``
      (see :func:`grid_sampler_2d_forward_flops`);
    - channel-shared normal matrix of the rows ``[du, dv, 1]`` (fit units): products ``du^2, du dv, dv^2``
      (``3 M``) and five sums (``5 M``), then the cofactors and determinant of
      :func:`interpolators._linalg.inverse_sym3` (``6 * 3 + 5 + 1``): ``8 M + 24``;
    - per channel: right-hand sides ``sum I du, sum I dv, sum I`` (``5 M``), the adjugate solve (``3 * 6``)
      and the slopes back to normalized units (2): ``5 M + 20``; the value is the intercept (no further FLOP).
    """
    k = hparams["num_samples"]
    m = k - 1
    fixed_bias = int(hparams["fixed_bias"])
    point = _point_flops("bilinear", hparams["padding_mode"], hparams["align_corners"])
    offsets = 4 * m
    samples = (m + fixed_bias) * (point + 7 * c)
    fit = 8 * m + 24 + c * (5 * m + 20)
    return b * ho * wo * (offsets + samples + fit)


def estn_forward_flops(b: int, c: int, h: int, w: int, ho: int, wo: int, hparams: dict[str, Any]) -> int:
    """ESTN forward (this project's reading), per output pixel with ``K`` samples, ``M = K - 1``.

    - tangent frame: Jacobian by differences of the grid (12), ``S = J J^T + r^2 I`` (14), the closed-form
      square root of a 2 x 2 SPD matrix (14) and its scaling by ``t`` (4): 44;
    - sample points ``p + (t sqrt(S)) z_k`` and their normalization: 10 per auxiliary point;
    - prior weights: constants for the spiral; for random draws ``|z|``, ``t |z|`` and Eq. 5: 7 per point;
    - ``K`` bilinear samples: ``K (point + 7 C)``;
    - each weighted fit: ``W A`` (``3 K``), ``A^T W A`` (``18 K``), LU (13), per channel ``A^T W b``
      (``6 K``) and a solve (15); without the entropy term one fit plus the ridge (5), with it
      ``1 + iterations`` fits;
    - each reweighting (``iterations``): per channel the residuals (``6 K``) and the weighted variance
      (``5 K - 2``), summed over channels (``(C - 1)(K + 1)``), ``gamma`` (1), ``w exp(-r / gamma)``
      (``3 K``) and the normalization (``2 K - 1``);
    - the output is the intercept (or the centre sample): no further FLOPs.
    """
    k = hparams["num_samples"]
    m = k - 1
    point = _point_flops("bilinear", hparams["padding_mode"], hparams["align_corners"])
    frame = 44 + 10 * m + (7 * m if hparams["sampling"] == "random" else 0)
    samples = k * (point + 7 * c)
    fit = 21 * k + LU3_FLOPS + c * (6 * k + SOLVE3_FLOPS)
    if hparams["entropy"] is None:
        solve = fit + 5
    else:
        reweight = c * (11 * k - 2) + (c - 1) * (k + 1) + 1 + 3 * k + 2 * k - 1
        solve = (1 + hparams["iterations"]) * fit + hparams["iterations"] * reweight
    return b * ho * wo * (frame + samples + solve)


#: interpolator name -> ``f(B, C, H, W, Ho, Wo, hparams)``: its forward FLOPs by the convention above
ANALYTIC_FLOPS: dict[str, Callable[..., int]] = {
    "nearest": _baseline_flops("nearest"),
    "bilinear": _baseline_flops("bilinear"),
    "bicubic": _baseline_flops("bicubic"),
    "lstn": lstn_forward_flops,
    "estn": estn_forward_flops,
}


# ------------------------------------------------------------------------------------------------------------
# FLOP formulas of the project's operators (torch.ops.interpolators; interpolators/csrc/ops.cpp): the forward
# operators count as their method's analytic forward, the backward operators by the same convention


def _lstn_forward_op_flops(input_shape, grid_shape, offsets_shape, key_shape, num_auxiliary, scale_x, scale_y,
                           padding_mode, align_corners, fixed_bias, *args, out_shape=None, **kwargs) -> int:  # fmt: skip
    hparams = {"num_samples": num_auxiliary + 1, "fixed_bias": fixed_bias, "padding_mode": padding_mode,
               "align_corners": align_corners}  # fmt: skip
    return lstn_forward_flops(*input_shape, grid_shape[1], grid_shape[2], hparams)


def _estn_forward_op_flops(input_shape, grid_shape, spiral_x, spiral_y, prior, tangent_scale, min_radius, entropy,
                           iterations, ridge, padding_mode, align_corners, *args, out_shape=None, **kwargs) -> int:  # fmt: skip
    hparams = {"num_samples": len(spiral_x), "padding_mode": padding_mode, "align_corners": align_corners,
               "sampling": "spiral", "entropy": entropy, "iterations": iterations}  # fmt: skip
    return estn_forward_flops(*input_shape, grid_shape[1], grid_shape[2], hparams)


def _bilinear_input_grad_op_flops(grad_shape, grid_shape, height, width, padding_mode, align_corners, *args,
                                  out_shape=None, **kwargs) -> int:  # fmt: skip
    return grid_sampler_2d_backward_flops(*grad_shape, "bilinear", padding_mode, align_corners, grid_grad=False)


def _slope_grid_grad_op_flops(grad_shape, slopes_shape, *args, out_shape=None, **kwargs) -> int:
    b, c, ho, wo = grad_shape
    return b * ho * wo * 4 * c  # per channel and axis a multiply-add


def _estn_input_grad_op_flops(grad_shape, grid_shape, spiral_x, spiral_y, beta_shape, height, width, tangent_scale,
                              min_radius, padding_mode, align_corners, *args, out_shape=None, **kwargs) -> int:  # fmt: skip
    """The frame and points again (``44 + 10 M``), the centre's weight ``1 - sum`` (``M``), per sample its bilinear
    point FLOPs, and per sample and channel ``grad * beta`` (1) scattered to 4 corners (8)."""
    b, c, ho, wo = grad_shape
    k = len(spiral_x)
    point = _point_flops("bilinear", padding_mode, align_corners)
    return b * ho * wo * (44 + 11 * (k - 1) + k * point + 9 * k * c)


#: operator name (in torch.ops.interpolators) -> its FLOP formula, for ``FlopCounterMode``'s ``custom_mapping``
OPERATOR_FLOPS: dict[str, Callable[..., int]] = {
    "lstn_forward": _lstn_forward_op_flops,
    "estn_forward": _estn_forward_op_flops,
    "bilinear_input_grad": _bilinear_input_grad_op_flops,
    "slope_grid_grad": _slope_grid_grad_op_flops,
    "estn_input_grad": _estn_input_grad_op_flops,
}


def flop_formulas() -> dict[Any, Callable[..., int]]:
    """``custom_mapping`` for ``FlopCounterMode``: :data:`GRID_SAMPLER_FLOPS` and, where they are loaded, the
    project's operators (:data:`OPERATOR_FLOPS`)."""
    formulas = dict(GRID_SAMPLER_FLOPS)
    for name, formula in OPERATOR_FLOPS.items():
        if hasattr(torch.ops.interpolators, name):
            formulas[getattr(torch.ops.interpolators, name)] = formula
    return formulas


# ------------------------------------------------------------------------------------------------------------
# Measurements

#: ops that move, allocate, view, index, compare or draw random numbers but do no arithmetic: not listed as uncounted
NO_ARITHMETIC_OPS = frozenset(
    """
    alias as_strided cat clone contiguous copy detach diagonal empty empty_like empty_strided expand
    expand_as fill flip full full_like gather index index_put index_select lift_fresh
    lift_fresh_copy masked_fill movedim narrow new_empty new_empty_strided new_full new_ones
    new_zeros ones ones_like permute repeat reshape roll select select_backward slice slice_backward
    split split_with_sizes squeeze stack t transpose unbind unfold unsqueeze view _unsafe_view _to_copy
    _local_scalar_dense zero zeros zeros_like scalar_tensor arange linspace where eq ne lt le gt ge
    logical_and logical_or logical_not floor ceil round trunc clamp clamp_min clamp_max sign
    constant_pad_nd pad _reshape_alias set_ resize_ rand randn randint random normal uniform bernoulli
    aminmax amin amax max min isfinite isnan isinf bitwise_and bitwise_or bitwise_not masked_fill
    """.split()
)


class _OpLog(TorchDispatchMode):
    """Records the overload packet of every op that runs (below the flop counter, after its decompositions)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[Any] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """Total FLOPs, per op, and the names of the ops with arithmetic that had no formula."""

    total: int
    by_op: dict[str, int]
    uncounted: tuple[str, ...]


def count_flops(fn: Callable[[], Any]) -> FlopCount:
    """FLOPs of ``fn()`` by ``FlopCounterMode`` with :func:`flop_formulas` as its ``custom_mapping``."""
    counter = FlopCounterMode(display=False, custom_mapping=flop_formulas())
    with _OpLog() as log, counter:  # the log sits below the counter: it sees what the counter lets through
        fn()
    counted = counter.flop_registry
    by_op = {str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items()}
    uncounted = sorted(
        str(op).removeprefix("aten.")
        for op in log.ops
        if op not in counted and not {op.__name__, op.__name__.removesuffix("_")} & NO_ARITHMETIC_OPS
    )
    return FlopCount(counter.get_total_flops(), by_op, tuple(uncounted))


def saved_tensor_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of the storages autograd saves for backward while ``fn()`` runs (each storage counted once)."""
    storages: dict[tuple[str, int], int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        storages[(str(t.device), storage.data_ptr())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


#: the CPU clock of every CPU latency (module state, so a test can put a fake clock in its place)
CLOCK: Callable[[], float] = timeit.default_timer


@dataclasses.dataclass(frozen=True)
class Latency:
    """Seconds per call of one latency measurement: median and IQR over ``blocks`` timed blocks of ``number`` calls."""

    median: float
    iqr: float
    blocks: int
    number: int

    @property
    def spread(self) -> float:
        """IQR over median (0 for a zero median): above :data:`SPREAD_THRESHOLD` the measurement is noisy."""
        return self.iqr / self.median if self.median > 0 else 0.0


def cpu_measurement(fn: Callable[[], Any], min_run_time: float, threads: int,
                    min_blocks: int = MIN_BLOCKS) -> Latency:  # fmt: skip
    """Time ``fn`` on the CPU: ``torch.utils.benchmark``'s ``blocked_autorange`` at ``threads`` threads after
    :data:`WARMUP_CALLS` calls, topped up to ``min_blocks`` blocks (of the same calls per block) when one call is
    too slow for ``min_run_time`` to hold that many, so the IQR is a spread over blocks and never 0 from one block.

    Timed by the CPU's wall clock (:data:`CLOCK`): torch's ``Timer`` otherwise synchronizes CUDA around every
    measurement wherever a GPU is present, which would time a CPU cell with the GPU's queue in it.
    """
    for _ in range(WARMUP_CALLS):
        fn()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, timer=CLOCK)
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    number, times = measurement.number_per_run, list(measurement.raw_times)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        while len(times) < min_blocks:
            start = CLOCK()
            for _ in range(number):
                fn()
            times.append(CLOCK() - start)
    finally:
        torch.set_num_threads(previous)
    merged = benchmark.Measurement(number_per_run=number, raw_times=times, task_spec=measurement.task_spec)
    return Latency(merged.median, merged.iqr, len(times), number)


def cpu_latency(fn: Callable[[], Any], min_run_time: float, threads: int) -> tuple[float, float]:
    """``(median, IQR)`` seconds per call of ``fn``: :func:`cpu_measurement`."""
    latency = cpu_measurement(fn, min_run_time, threads)
    return latency.median, latency.iqr


def timing_note(device: torch.device, profile: Profile, threads: int) -> str:
    """What a latency row of a cell on ``device`` timed, for its ``timing`` column."""
    if device.type == "cuda":
        return (f"CUDA events around blocks of plain calls (about {CUDA_BLOCK_SECONDS * 1e3:.0f} ms each, no CUDA "
                f"graph), synchronized, after {WARMUP_CALLS} warm-up calls; median and IQR of the per-call time over "
                f"{profile.cuda_repeats} blocks")  # fmt: skip
    return (f"CPU wall clock (torch.utils.benchmark blocked_autorange, {profile.min_run_time} s and at least "
            f"{MIN_BLOCKS} blocks, after {WARMUP_CALLS} warm-up calls, no CUDA synchronization), {threads} threads; "
            "median and IQR over its blocks")  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Is the timing to be trusted: spread and machine load


def _process_cpu_ticks() -> dict[int, tuple[str, int]]:
    """``{pid: (name, user + system clock ticks)}`` of every other process (Linux ``/proc``; ``{}`` elsewhere)."""
    ticks: dict[int, tuple[str, int]] = {}
    own = os.getpid()
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit() and int(e) != own]
    except OSError:
        return ticks
    for entry in entries:
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        name, _, rest = text.partition("(")[2].rpartition(")")
        fields = rest.split()
        if len(fields) > 12:
            ticks[int(entry)] = (name, int(fields[11]) + int(fields[12]))  # utime, stime (fields 14, 15 of stat)
    return ticks


@dataclasses.dataclass(frozen=True)
class LoadWatch:
    """Other processes' CPU time between :meth:`start` and :meth:`stop` (Linux), and the load average at the end."""

    ticks: dict[int, tuple[str, int]]
    started: float

    @classmethod
    def start(cls) -> LoadWatch:
        return cls(_process_cpu_ticks(), CLOCK())

    def stop(self, threads: int) -> MachineLoad:
        seconds = max(CLOCK() - self.started, 1e-9)
        after = _process_cpu_ticks()
        per_second = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        used = {pid: (name, (n - self.ticks.get(pid, (name, 0))[1]) / per_second / seconds)
                for pid, (name, n) in after.items()}  # fmt: skip
        busy = tuple(f"{name} ({pid}, {cpus:.1f} CPUs)"
                     for pid, (name, cpus) in sorted(used.items(), key=lambda item: -item[1][1]) if cpus >= BUSY_CPUS)  # fmt: skip
        others = sum(max(cpus, 0.0) for _, cpus in used.values()) if after else None
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on this platform
            load = None
        return MachineLoad(load, usable_cpus(), threads, others, busy)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform says, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class MachineLoad:
    """How busy the machine was while a cell timed.

    ``load_average``: the 1-minute load average (runnable threads, this process's own included) at the end;
    ``others_cpus``: CPUs the other processes kept busy on average during the timing (``None`` without ``/proc``);
    ``busy``: those that used at least :data:`BUSY_CPUS` each, by name.
    """

    load_average: float | None
    cpus: int
    threads: int
    others_cpus: float | None
    busy: tuple[str, ...] = ()

    def warnings(self) -> list[str]:
        """Why the machine counts as loaded: more runnable threads than CPUs (by more than :data:`LOAD_MARGIN`), or
        other processes using more CPUs than the ``cpus - threads`` this cell left them (by the same margin)."""
        out = []
        if self.load_average is not None and self.load_average > self.cpus + LOAD_MARGIN:
            out.append(f"loaded machine: 1-minute load average {self.load_average:.2f} on {self.cpus} CPUs")
        if self.others_cpus is not None and self.others_cpus > self.cpus - self.threads + LOAD_MARGIN:
            named = f": {', '.join(self.busy[:3])}" if self.busy else ""
            out.append(f"other processes used {self.others_cpus:.1f} of {self.cpus} CPUs while {self.threads} "
                       f"threads timed{named}")  # fmt: skip
        return out


def latency_warnings(latencies: dict[str, Latency], load: MachineLoad) -> list[str]:
    """The warnings of one cell's timing: each latency whose IQR / median is above :data:`SPREAD_THRESHOLD`, then
    the machine's load (:meth:`MachineLoad.warnings`)."""
    out = [f"{metric}: IQR/median {latency.spread:.2f} over {latency.blocks} blocks (above {SPREAD_THRESHOLD})"
           for metric, latency in latencies.items() if latency.spread > SPREAD_THRESHOLD]  # fmt: skip
    return out + load.warnings()


def latency_ratio(
    fn: Callable[[], Any], baseline: Callable[[], Any], min_run_time: float, threads: int, rounds: int = 5
) -> tuple[float, float, float]:
    """``(median, low, high)`` of ``fn``'s time over ``baseline``'s, timed in alternating blocks in this process.

    Each of ``rounds`` rounds times ``baseline`` then ``fn`` (:func:`cpu_latency`, ``min_run_time`` seconds each)
    and takes the ratio of their medians; the result is the median ratio and the range over rounds. Alternating
    keeps a slow drift of the machine (frequency, other load) out of the ratio.
    """
    ratios = sorted(cpu_latency(fn, min_run_time, threads)[0] / cpu_latency(baseline, min_run_time, threads)[0]
                    for _ in range(rounds))  # fmt: skip
    return statistics.median(ratios), ratios[0], ratios[-1]


def cuda_measurement(fn: Callable[[], Any], repeats: int) -> Latency:
    """Seconds per call of ``fn`` by CUDA events, synchronised, after a warm-up.

    Each of ``repeats`` measurements times a block of plain calls (what a training step launches, Python and launch
    overhead included: batch-1 calls are launch-bound) sized to last about :data:`CUDA_BLOCK_SECONDS`.
    """
    for _ in range(WARMUP_CALLS):
        fn()
    torch.cuda.synchronize()

    def block(number: int) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(number):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000 / number

    number = max(1, min(1000, int(CUDA_BLOCK_SECONDS / max(block(1), 1e-6))))
    times = [block(number) for _ in range(repeats)]
    q1, median, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return Latency(median, q3 - q1, len(times), number)


def cuda_latency(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """``(median, IQR)`` seconds per call of ``fn`` by CUDA events: :func:`cuda_measurement`."""
    latency = cuda_measurement(fn, repeats)
    return latency.median, latency.iqr


def cuda_peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak allocated CUDA bytes while ``fn()`` runs, above what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def rotation_grid(batch: int, size: int, angle_deg: float = ROTATION_DEG, device: str = "cpu") -> Tensor:
    """``(B, n, n, 2)`` float32: the grid of a rotation by ``angle_deg`` about the centre, ``n x n`` -> ``n x n``."""
    a = math.radians(angle_deg)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], device=device)
    return F.affine_grid(theta.expand(batch, 2, 3), [batch, 1, size, size], align_corners=False)


# ------------------------------------------------------------------------------------------------------------
# The suite


class CostSuite(Suite):
    """FLOPs (counted and analytic), latency and memory per interpolator, input size, batch and channels."""

    name = "cost"
    summary = "FLOPs, latency (median, IQR) and memory per interpolator, size and batch (Fig. 5)"
    x_param = "size"
    x_symbol = "n"
    x_doc = (
        f"the input's and the output's side in pixels: an n x n input sampled onto an n x n output through the "
        f"grid of a {ROTATION_DEG:g} degree rotation about the centre, float32, input and grid requiring grad."
    )
    headline = {"size": 256, "batch": 1}
    metrics = METRICS
    options = OPTIONS
    exclusive = True  # timing: the parallel executors run each cell alone on its node

    def cells(self, config: RunConfig) -> list[Cell]:
        profile = profile_for(config)
        seeds = range(config.seeds or 1)
        cells = []
        for name, overrides in config.interpolators.items():
            hparams = interpolators.create(name, **overrides).hparams()
            for size in profile.sizes:
                for batch in profile.batches:
                    for channels in profile.channels:
                        params = {"size": size, "batch": batch, "channels": channels, "device": config.device}
                        cells.extend(Cell(self.name, name, hparams, params, seed) for seed in seeds)
        return cells

    def run_cell(self, cell: Cell, config: RunConfig, run_dir: Path) -> list[dict[str, Any]]:
        profile = profile_for(config)
        p = cell.params
        size, batch, channels, device = p["size"], p["batch"], p["channels"], torch.device(p["device"])
        sampler = interpolators.create(cell.interpolator, **cell.hparams).to(device)
        baseline = interpolators.create(BASELINE, padding_mode=sampler.padding_mode,
                                        align_corners=sampler.align_corners).to(device)
        generator = torch.Generator().manual_seed(cell.seed)
        input = torch.rand(batch, channels, size, size, generator=generator).to(device).requires_grad_(True)
        grid = rotation_grid(batch, size, device=str(device)).requires_grad_(True)
        grad_output = torch.rand(batch, channels, size, size, generator=generator).to(device)

        def forward(sampler=sampler) -> Tensor:
            return sampler(input, grid)

        def inference(sampler=sampler) -> Tensor:
            with torch.no_grad():
                return sampler(input, grid)

        def forward_backward(sampler=sampler) -> None:
            # .backward with the gradients reset (not autograd.grad, which the flop counter's module
            # tracker refuses for leaf inputs): no accumulation into old gradients is timed
            input.grad = grid.grad = None
            sampler(input, grid).backward(grad_output)

        threads = torch.get_num_threads()
        rows: list[dict[str, Any]] = []

        def row(metric: str, value: float, unit: str, **extra: Any) -> None:
            rows.append({"metric": metric, "value": float(value), "unit": unit, "threads": threads, **extra})

        fwd, fwd_bwd = count_flops(forward), count_flops(forward_backward)
        row("flops_forward", fwd.total, "FLOP")
        row("flops_forward_backward", fwd_bwd.total, "FLOP")
        analytic = ANALYTIC_FLOPS.get(cell.interpolator)
        if analytic is not None:
            row("analytic_flops_forward", analytic(batch, channels, size, size, size, size, cell.hparams), "FLOP")
        row("uncounted_ops", len(fwd_bwd.uncounted), "ops", ops=" ".join(fwd_bwd.uncounted))
        row("saved_for_backward_bytes", saved_tensor_bytes(forward), "B")

        timing = timing_note(device, profile, threads)
        watch, latencies = LoadWatch.start(), {}
        for metric, fn in (("latency_forward", inference), ("latency_forward_backward", forward_backward)):
            beside = lambda fn=fn: fn(baseline)  # noqa: E731  bilinear on the same tensors, in this process
            if device.type == "cuda":
                latency = cuda_measurement(fn, profile.cuda_repeats)
                ratio = latency.median / cuda_measurement(beside, profile.cuda_repeats).median
            else:
                latency = cpu_measurement(fn, profile.min_run_time, threads)
                ratio, _, _ = latency_ratio(fn, beside, profile.min_run_time, threads, rounds=profile.ratio_rounds)
            latencies[metric] = latency
            row(f"{metric}_ms", latency.median * 1e3, "ms", timing=timing)
            row(f"{metric}_iqr_ms", latency.iqr * 1e3, "ms", timing=timing)
            row(f"{metric}_vs_{BASELINE}", ratio, "x", timing=timing)
        load = watch.stop(threads)
        if load.load_average is not None:
            row("load_average", load.load_average, "threads", cpus=load.cpus)
        if load.others_cpus is not None:
            row("other_processes_cpus", load.others_cpus, "CPUs", cpus=load.cpus)
        warnings = latency_warnings(latencies, load)
        row("latency_warnings", len(warnings), "warnings", warning="; ".join(warnings))
        if device.type == "cuda":
            row("peak_allocated_bytes", cuda_peak_bytes(forward_backward, device), "B")
        return rows

    def estimate_seconds(self, cell: Cell, config: RunConfig) -> float:
        """Seconds per cell measured on 2 CPU cores at the default profile, scaled by the timing budget."""
        work = profile_for(config).min_run_time / PROFILES["default"].min_run_time
        return CELL_SECONDS.get(cell.interpolator, max(CELL_SECONDS.values())) * max(work, 0.25)

    def report_sections(self, data: ReportData) -> list[Section]:
        results = data.results
        cost = results[results["suite"] == self.name] if "suite" in results else results.iloc[:0]
        if cost.empty:
            return []
        return [
            Section("Timing", timing_section(cost)),
            Section("Cost relative to bilinear", ratio_section(cost)),
            Section("Latency vs accuracy (Fig. 5c)", latency_accuracy_section(cost, results,
                                                                              data.linked.get("accuracy_from"))),
        ]


# ------------------------------------------------------------------------------------------------------------
# Report sections

#: metrics of the ratio table, in display order
RATIO_METRICS = (
    "latency_forward_ms",
    "latency_forward_backward_ms",
    "flops_forward",
    "flops_forward_backward",
    "analytic_flops_forward",
    "saved_for_backward_bytes",
    "peak_allocated_bytes",
)
_GROUP = ["metric", "size", "batch", "channels", "device"]
#: latency metrics whose ratio each cell timed itself, in one process with bilinear beside it
TIMED_RATIOS = {f"{m}_vs_{BASELINE}": f"{m}_ms" for m in ("latency_forward", "latency_forward_backward")}


def ratios_to_baseline(cost: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Each interpolator's value over ``baseline``'s in the same (metric, size, batch, channels, device).

    Latency ratios are the cells' own (:data:`TIMED_RATIOS`: timed in one process with bilinear
    beside it) where the cells have them; the rest divide means across cells (counts and bytes,
    which do not depend on the moment or the process). Returns a wide table: index
    ``(metric, size, batch, channels, device)``, one column per interpolator.
    """
    rows = cost[cost["metric"].isin(RATIO_METRICS)]
    means = rows.groupby(_GROUP + ["interpolator"])["value"].mean().unstack("interpolator")
    if baseline not in means:
        raise ValueError(f"{baseline} is not in this run's cost results, so there is nothing to take ratios against")
    ratios = means.div(means[baseline], axis=0)
    timed = cost[cost["metric"].isin(TIMED_RATIOS)]
    if not timed.empty:
        timed = timed.assign(metric=timed["metric"].map(TIMED_RATIOS))
        own = timed.groupby(_GROUP + ["interpolator"])["value"].mean().unstack("interpolator")
        ratios = own.combine_first(ratios)
    order = {m: i for i, m in enumerate(RATIO_METRICS)}
    return ratios.sort_index(key=lambda level: level.map(order) if level.name == "metric" else level)


def ratio_section(cost: pd.DataFrame) -> tuple[Note | Table, ...]:
    """The ratio table and the ops that went uncounted by the FLOP counter."""
    note = Note(
        f"Each method's cost divided by {BASELINE}'s in the same run, size, batch and channels "
        f"(latency: the cell's median over {BASELINE}'s timed in the same process right after it; "
        "FLOPs by the flop counter with the grid sampler formulas, and analytic)."
    )
    try:
        items: list[Note | Table] = [note, Table(ratios_to_baseline(cost).round(2))]
    except ValueError as err:
        items = [note, Note(f"{err}.")]
    uncounted = cost[cost["metric"] == "uncounted_ops"]
    if "ops" in uncounted:
        names = uncounted["ops"].fillna("").astype(str).str.split()
        listed = names.groupby(uncounted["interpolator"]).agg(lambda lists: " ".join(sorted(set().union(*lists))))
        items.append(Table(listed.to_frame("ops"), caption="Ops that ran without a FLOP formula (counted as zero)."))
    return tuple(items)


#: the columns that name a cell in the timing warnings' table
_CELL_COLUMNS = ["interpolator", "size", "batch", "channels", "device", "seed"]


def timing_section(cost: pd.DataFrame) -> tuple[Note | Table, ...]:
    """How the latencies were timed (the rows' ``timing`` column) and the cells whose timing raised warnings."""
    items: list[Note | Table] = []
    hows = sorted(cost["timing"].dropna().astype(str).unique()) if "timing" in cost else []
    items += [Note(f"Latency timing: {how}.") for how in hows] or [Note("No latency rows in this run.")]
    rules = (f"A cell's timing warns when a latency's IQR / median is above {SPREAD_THRESHOLD}, when the 1-minute "
             f"load average exceeds the CPUs by more than {LOAD_MARGIN}, or when other processes used more than the "
             f"CPUs the cell's threads left them (by {LOAD_MARGIN} CPUs): such latencies and ratios measure the "
             "machine's load as much as the method.")  # fmt: skip
    flagged = cost[cost["metric"] == "latency_warnings"]
    if flagged.empty:
        return (*items, Note(f"{rules} This run's cells predate the timing warnings (no latency_warnings rows)."))
    counted = pd.to_numeric(flagged["value"], errors="coerce").fillna(0)
    flagged = flagged[counted > 0]
    cells = len(counted)
    if flagged.empty:
        return (*items, Note(f"{rules} No cell of the {cells} warned."))
    columns = [c for c in _CELL_COLUMNS if c in flagged] + ["warning"]
    table = flagged.reindex(columns=columns).reset_index(drop=True)
    return (*items, Note(f"{rules} {len(flagged)} of the {cells} cells warned: rerun them on a quiet machine, "
                         "or with fewer threads than CPUs (OMP_NUM_THREADS)."),
            Table(table, caption="Cells whose timing warned, and why."))


def accuracy_by_interpolator(results: pd.DataFrame) -> tuple[str, pd.Series] | None:
    """``(metric, mean per interpolator)`` for the first of :data:`ACCURACY_METRICS` in ``results``, else ``None``."""
    if "metric" not in results:
        return None
    others = results[results["suite"] != CostSuite.name] if "suite" in results else results
    for metric in ACCURACY_METRICS:
        rows = others[(others["metric"] == metric) & pd.to_numeric(others["value"], errors="coerce").notna()]
        rows = rows[rows["value"].astype(float).map(math.isfinite)]
        if not rows.empty:
            return metric, rows.groupby("interpolator")["value"].mean()
    return None


def latency_accuracy_section(cost: pd.DataFrame, results: pd.DataFrame,
                             linked: pd.DataFrame | None) -> tuple[Note | Figure, ...]:
    """Latency (batch 1, largest size) vs accuracy per interpolator, from this run or the ``accuracy_from`` run."""
    found, origin = accuracy_by_interpolator(results), "this run"
    if found is None and linked is not None:
        found, origin = accuracy_by_interpolator(linked), "the run of the option accuracy_from"
    if found is None:
        return (Note(
            "No accuracy results to join: run the cost suite together with scale or rotation "
            f"(metrics {', '.join(ACCURACY_METRICS)}), or pass a previous run folder as --accuracy-from."
        ),)
    metric, accuracy = found
    batch1 = cost[cost["batch"].astype(int) == 1] if "batch" in cost else cost
    if batch1.empty:
        return (Note("No batch-1 cost cells in this run: Fig. 5c uses batch 1."),)
    size = int(batch1["size"].max())
    at = batch1[batch1["size"].astype(int) == size]
    panels = []
    for metric_name, label in (("latency_forward_ms", "inference"), ("latency_forward_backward_ms", "forward + backward")):
        latency = at[at["metric"] == metric_name].groupby("interpolator")["value"].median()
        names = [n for n in latency.index if n in accuracy.index]
        panels.append(Points(tuple((n, float(latency[n]), float(accuracy[n])) for n in names), xlog=True,
                             xlabel=f"{label} latency (ms, batch 1, {size}x{size}, log axis)", ylabel=metric))
    return (Figure(panels=(tuple(panels),), panel_size=(5.0, 4.0), alt=f"latency vs {metric}",
                   caption=f"Accuracy: mean {metric} per interpolator from {origin}."),)
