"""The contract every interpolator shares: ``grid_sample``'s shapes and conventions.

An interpolator is an ``nn.Module`` whose ``forward(input, grid)`` takes
``input (B, C, H, W)`` and ``grid (B, Ho, Wo, 2)`` holding normalized ``(x, y)``
in ``[-1, 1]`` and returns ``(B, C, Ho, Wo)``. ``padding_mode`` and
``align_corners`` are hyperparameters fixed at construction and mean what they
mean in :func:`torch.nn.functional.grid_sample`. Methods differ only in the
value they return and in the gradients they send to ``input`` and ``grid``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interpolators._extension import ensure_loaded

PaddingMode = Literal["zeros", "border", "reflection"]
PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)
#: ``padding_mode`` as ``grid_sampler_2d``'s integer enum (its backward op and the native kernels take it)
PADDING_CODES = {"zeros": 0, "border": 1, "reflection": 2}

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_sampling_inputs(input: Any, grid: Any) -> None:
    """Raise a clear ``TypeError``/``ValueError`` unless ``(input, grid)`` meet ``grid_sample``'s contract.

    Args:
        input: image batch, expected a floating tensor of shape ``(B, C, H, W)``.
        grid: sampling points, expected a tensor of shape ``(B, Ho, Wo, 2)`` with the
            same dtype and device as ``input``.
    """
    for name, value in (("input", input), ("grid", grid)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
        if value.dtype not in _FLOAT_DTYPES:
            raise TypeError(
                f"{name}: expected a floating dtype (float16, bfloat16, float32, float64), got {value.dtype}"
            )
    if input.ndim != 4:
        raise ValueError(f"input: expected 4 dimensions (B, C, H, W), got shape {tuple(input.shape)}")
    if grid.ndim != 4:
        raise ValueError(f"grid: expected 4 dimensions (B, Ho, Wo, 2), got shape {tuple(grid.shape)}")
    if grid.shape[-1] != 2:
        raise ValueError(f"grid: expected the last dimension to be 2 (x, y), got shape {tuple(grid.shape)}")
    if input.shape[0] != grid.shape[0]:
        raise ValueError(
            f"grid: expected batch size {input.shape[0]} to match input, got {grid.shape[0]} "
            f"(input {tuple(input.shape)}, grid {tuple(grid.shape)})"
        )
    if min(input.shape[2:]) < 1 or input.shape[1] < 1:
        raise ValueError(f"input: expected non-empty C, H and W, got shape {tuple(input.shape)}")
    if input.dtype != grid.dtype:
        raise TypeError(f"grid: expected the same dtype as input ({input.dtype}), got {grid.dtype}")
    if input.device != grid.device:
        raise ValueError(f"grid: expected the same device as input ({input.device}), got {grid.device}")


#: a grid coordinate beyond this magnitude (normalized units) is clamped to it before sampling: ten thousand
#: image half-widths outside, where zeros and border padding read what they read at any farther point
GRID_LIMIT = 1e4
HALF_DTYPES = (torch.float16, torch.bfloat16)


def sample_safely(
    fn: Callable[[Tensor, Tensor], Tensor], input: Tensor, grid: Tensor, neighbours: bool = False
) -> Tensor:
    """``fn(input, grid)`` under the project's policy for grids that are not finite, the same for every method.

    - A grid point that is NaN or infinite in either coordinate gives NaN in every channel of its output
      pixel and no gradient: none to the input from that pixel, zero to that grid point. With ``neighbours``
      (methods that difference the grid, such as ESTN's tangent frame) the output pixels whose stencil
      reaches it, its four neighbours along the output's axes, are NaN too.
    - A finite coordinate beyond :data:`GRID_LIMIT` is clamped to it (its gradient is then zero, as far
      outside the image it is for zeros and border padding).
    - CPU inputs in float16 or bfloat16 are sampled in float32 and the result cast back (torch's CPU
      ``grid_sample`` is wrong in half precision: NaN or values far outside the input's range).

    ``fn`` never sees a non-finite grid, so no kernel does (torch's CPU ``grid_sample`` backward reads out of
    bounds on NaN with border or reflection padding, pytorch#24823). On CPU outside ``torch.compile`` a grid
    within the limit costs one ``aminmax`` and passes through untouched.
    """
    if input.device.type == "cpu" and input.dtype in HALF_DTYPES:
        return sample_safely(fn, input.float(), grid.float(), neighbours).to(input.dtype)
    if input.device.type == "cpu" and not torch.compiler.is_compiling():
        low, high = torch.aminmax(grid.detach())
        if bool((low > -GRID_LIMIT) & (high < GRID_LIMIT)):  # False for NaN: one sync
            return fn(input, grid)
    bad = ~torch.isfinite(grid).all(-1)  # (B, Ho, Wo)
    if neighbours:
        spread = bad.clone()
        spread[:, 1:] |= bad[:, :-1]
        spread[:, :-1] |= bad[:, 1:]
        spread[:, :, 1:] |= bad[:, :, :-1]
        spread[:, :, :-1] |= bad[:, :, 1:]
        bad = spread
    safe = torch.where(bad.unsqueeze(-1), 0.0, grid.clamp(-GRID_LIMIT, GRID_LIMIT))
    return fn(input, safe).masked_fill(bad.unsqueeze(1), float("nan"))


def normalized_to_pixel_scale(size: int, align_corners: bool) -> float:
    """Input pixels per normalized unit along an axis of ``size`` pixels.

    ``px = ((g + 1) * size - 1) / 2`` without ``align_corners`` and
    ``px = (g + 1) * (size - 1) / 2`` with it, so ``dpx / dg`` is ``size / 2`` or
    ``(size - 1) / 2``.
    """
    return (size - 1) / 2 if align_corners else size / 2


def _grid_differences(grid: Tensor, height: int, width: int, align_corners: bool) -> tuple[Tensor, Tensor]:
    """``(d p / d ox, d p / d oy)``, each ``(B, Ho, Wo, 2)`` in input pixels: the columns of :func:`grid_jacobian`."""
    grid = grid.detach()
    pixels = grid * grid.new_tensor([normalized_to_pixel_scale(width, align_corners),
                                     normalized_to_pixel_scale(height, align_corners)])
    return tuple(torch.gradient(pixels, dim=dim)[0] if grid.shape[dim] > 1 else torch.zeros_like(pixels)
                 for dim in (2, 1))


def grid_jacobian(grid: Tensor, height: int, width: int, align_corners: bool) -> Tensor:
    """The grid's local Jacobian ``J (B, Ho, Wo, 2, 2)`` in input pixels per output pixel.

    ``J[..., i, j] = d p_i / d o_j`` with ``p = (px, py)`` the sampling point in pixels of an
    ``(height, width)`` input (``align_corners`` as in ``grid_sample``) and ``o = (ox, oy)`` the
    output pixel: finite differences of ``grid (B, Ho, Wo, 2)`` along the output's x (dim 2) and
    y (dim 1), central inside, one-sided at the edges, zero along an axis of length 1 (ESTN's
    tangent frame uses the same differences). Detached: no gradient flows through it.
    """
    return torch.stack(_grid_differences(grid, height, width, align_corners), dim=-1)


def grid_local_scale(grid: Tensor, height: int, width: int, align_corners: bool) -> Tensor:
    """``rho (B, Ho, Wo)``: the larger singular value of :func:`grid_jacobian`, in input pixels per output pixel.

    The length, in input pixels, of the longest axis of an output pixel's footprint: 4 under a
    4x downsampling whatever the rotation, 0.5 under a 2x zoom. Closed form for a 2x2 ``J``:
    ``rho^2 = (|J|_F^2 + sqrt(|J|_F^4 - 4 det(J)^2)) / 2``.

    >>> import torch.nn.functional as F
    >>> grid = F.affine_grid(torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]), [1, 1, 8, 8], align_corners=False)
    >>> round(float(grid_local_scale(grid, 32, 32, False).mean()), 4)
    4.0
    """
    along_x, along_y = _grid_differences(grid, height, width, align_corners)
    j00, j10, j01, j11 = along_x[..., 0], along_x[..., 1], along_y[..., 0], along_y[..., 1]
    frobenius2 = j00 * j00 + j01 * j01 + j10 * j10 + j11 * j11
    det = j00 * j11 - j01 * j10
    gap = (frobenius2 * frobenius2 - 4.0 * det * det).clamp_min(0.0).sqrt()
    return ((frobenius2 + gap) * 0.5).sqrt()


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def check_number(
    name: str,
    value: Any,
    *,
    integer: bool = False,
    minimum: float | None = None,
    strict: bool = False,
    maximum: float | None = None,
    why: str = "",
) -> None:
    """Raise ``TypeError``/``ValueError`` naming ``name`` unless ``value`` is a finite number in range.

    ``minimum`` is inclusive unless ``strict``; ``maximum`` is inclusive, and ``why`` says what it bounds.
    """
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise TypeError(f"{name}: expected {kind}, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite value, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name}: expected a value {bound}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected a value <= {maximum}{f' ({why})' if why else ''}, got {value!r}")


def grid_sample_points(input: Tensor, points: Tensor, padding_mode: str, align_corners: bool) -> Tensor:
    """Bilinear samples ``(B, C, K, Ho, Wo)`` of ``input (B, C, H, W)`` at ``points (B, K, Ho, Wo, 2)``.

    ``points`` are normalized ``(x, y)`` as in ``grid_sample``, in any layout whose ``K`` and
    ``Ho`` merge into one dimension without a copy (contiguous, or the permuted view of planar
    ``(2, B, K, Ho, Wo)`` points, which ``grid_sample`` reads as it is).

    torch's CPU ``grid_sample`` kernels parallelize over the batch only, so on CPU a batch of one
    is sampled as a batch of ``K`` (the input expanded, not copied): its ``K`` samples then use
    every thread, for the same numbers up to the order of the input gradient's sums. The result
    is then a non-contiguous view. Where the input needs a gradient, that backward zeroes and sums
    ``K`` input-sized gradients, so the batch of ``K`` is used only when the output has at least
    as many pixels as the input (not when downsampling, where those sums would cost more than the
    second thread saves).
    """
    b, k, ho, wo, _ = points.shape
    sample = dict(mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)
    input_grad = torch.is_grad_enabled() and input.requires_grad
    if b == 1 and input.device.type == "cpu" and (not input_grad or input.shape[2] * input.shape[3] <= ho * wo):
        samples = F.grid_sample(input.expand(k, -1, -1, -1), points[0], **sample)
        return samples.transpose(0, 1).unsqueeze(0)
    samples = F.grid_sample(input, points.view(b, k * ho, wo, 2), **sample)
    return samples.view(b, input.shape[1], k, ho, wo)


class Interpolator(nn.Module):
    """Base class: validates the shared hyperparameters and the ``grid_sample`` contract.

    Subclasses set the class attributes below, take their hyperparameters as
    keyword arguments with defaults and type annotations (``describe`` reads
    them), validate them in ``__init__`` and implement :meth:`sample`.

    Args:
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``, as in ``grid_sample``.
        align_corners: ``grid_sample``'s convention for the normalized coordinates.
    """

    #: whether two calls with the same input may return different values
    stochastic: ClassVar[bool] = False
    #: the paper or source the method follows
    reference: ClassVar[str] = ""
    #: one-line summary shown by ``describe`` and ``python -m bench list``
    summary: ClassVar[str] = ""
    #: whether an output pixel's value reads its neighbours' grid points (finite differences of the grid); the
    #: policy for non-finite grids (:func:`sample_safely`) then blanks those neighbours too
    reads_grid_neighbours: ClassVar[bool] = False

    def __init__(self, padding_mode: PaddingMode = "zeros", align_corners: bool = False) -> None:
        super().__init__()
        check_choice("padding_mode", padding_mode, PADDING_MODES)
        if not isinstance(align_corners, bool):
            raise TypeError(f"align_corners: expected a bool, got {align_corners!r}")
        self.padding_mode = padding_mode
        self.align_corners = align_corners

    def forward(self, input: Tensor, grid: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Sample ``input (B, C, H, W)`` at ``grid (B, Ho, Wo, 2)``; returns ``(B, C, Ho, Wo)``.

        ``generator`` seeds the draws of stochastic methods (ignored by the others);
        without one they use torch's global generator, so ``torch.manual_seed``
        makes them reproducible. Grids that are not finite and CPU half precision follow
        :func:`sample_safely`; :meth:`sample` sees a finite grid only.
        """
        check_sampling_inputs(input, grid)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
        return sample_safely(lambda i, g: self.sample(i, g, generator), input, grid, self.reads_grid_neighbours)

    def sample(self, input: Tensor, grid: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def hparams(self) -> dict[str, Any]:
        """The hyperparameters this instance was created with."""
        from interpolators._registry import hyperparameters

        return {name: getattr(self, name) for name in hyperparameters(type(self))}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())


class ConfiguredInterpolator(Interpolator):
    """An interpolator whose hyperparameters are one frozen dataclass, ``Config``, validated when it is built.

    The keyword arguments of ``__init__`` are ``Config``'s fields (``inspect.signature`` shows them); the
    validated instance is ``self.config``, which the functional and every backend take. A config that may run
    the C++ operators (``backend`` other than ``"eager"``) builds them here, on first use on a machine, rather
    than inside a caller's ``torch.compile``.
    """

    Config: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Config" in cls.__dict__:
            cls.__signature__ = inspect.signature(cls.Config)

    def __init__(self, **hparams: Any) -> None:
        config = self.Config(**hparams)
        super().__init__(padding_mode=config.padding_mode, align_corners=config.align_corners)
        self.config = config
        if getattr(config, "backend", "eager") != "eager":
            ensure_loaded()

    def hparams(self) -> dict[str, Any]:
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}
