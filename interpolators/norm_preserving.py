"""Norm-preserving convolution (ESTN paper, Sec. 3.2, Eq. 11-15), without an SVD.

A convolution's weight, reshaped to ``W (d, c k k)`` (``d`` output channels), is replaced by

    W_hat = sqrt(d / min(d, ckk)) * (W W^T)^(-1/2) W        if d <= ckk
    W_hat = sqrt(d / min(d, ckk)) * W (W^T W)^(-1/2)        otherwise

so that every non-zero singular value of ``W_hat`` equals ``sqrt(d / min(d, ckk))`` (``W = U S V^T``
gives ``W_hat = scale * U V^T``). The inverse square root comes from the coupled Newton-Schulz
iteration of Eq. 15 (Higham, "Stable iterations for the matrix square root", 1997) on the Gram
matrix normalized by its Frobenius norm, ``A_n = A / |A|_F`` (eigenvalues in ``(0, 1]``):

    Y_0 = A_n, Z_0 = I,  T_k = (3 I - Z_k Y_k) / 2,  Y_{k+1} = Y_k T_k,  Z_{k+1} = T_k Z_k,

``Y_k -> A_n^(1/2)``, ``Z_k -> A_n^(-1/2)``, and ``A^(-1/2) = Z / sqrt(|A|_F)``. Only matrix products,
so it runs well on GPUs and autograd differentiates through it. The smaller Gram matrix is used
because the iteration does not converge to anything useful on a singular one.

Convergence: an eigenvalue ``lambda`` of ``A_n`` needs about ``log(1/lambda) / log(9/4)`` steps to
reach the quadratic phase, then a handful more, so ill-conditioned weights need more iterations.
PyTorch's default initialization of a 3x3 convolution converges to float precision in 16 steps
or fewer (``(d, c) = (16, 3), (32, 3), (64, 32), (256, 128)``). A square reshape (a 1x1
convolution with ``c == d``) is the hard case: its smallest singular values are ~``1/d`` of the
largest, so the default, 24 steps, reaches 1e-10 in float64 for ``d <= 256``; in float32 the
directions whose singular value is below ~``sqrt(eps)`` of the largest cannot be resolved at all,
so :func:`norm_preserving_weight` forms the Gram matrix and runs the iteration in float64 for
float32/float16/bfloat16 weights and casts the result back (differentiably). Raise ``iterations``
for larger ``d``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from interpolators.base import check_number

#: Newton-Schulz steps by default (see the module docstring for when they suffice)
DEFAULT_ITERATIONS = 24


def inverse_sqrt_newton_schulz(gram: Tensor, iterations: int = DEFAULT_ITERATIONS) -> Tensor:
    """``A^(-1/2)`` of symmetric positive definite ``gram (..., n, n)`` by the coupled iteration of Eq. 15.

    Examples:
        >>> a = torch.tensor([[4.0, 0.0], [0.0, 9.0]])
        >>> inverse_sqrt_newton_schulz(a, iterations=20)
        tensor([[0.5000, 0.0000],
                [0.0000, 0.3333]])
    """
    check_number("iterations", iterations, integer=True, minimum=1)
    if gram.ndim < 2 or gram.shape[-1] != gram.shape[-2]:
        raise ValueError(f"gram: expected square matrices (..., n, n), got shape {tuple(gram.shape)}")
    norm = torch.linalg.matrix_norm(gram, keepdim=True).clamp_min(torch.finfo(gram.dtype).tiny)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    y, z = gram / norm, eye.expand_as(gram)
    for _ in range(iterations):
        t = 1.5 * eye - 0.5 * (z @ y)
        y, z = y @ t, t @ z
    return z / norm.sqrt()


def norm_preserving_weight(weight: Tensor, iterations: int = DEFAULT_ITERATIONS) -> Tensor:
    """``weight (d, ...)`` with every non-zero singular value of its ``d x (c k k)`` reshape set to ``sqrt(d / min(d, ckk))``.

    Works for a convolution's ``(d, c, k, k)`` and a linear layer's ``(d, c)`` weight alike.

    Examples:
        >>> w = norm_preserving_weight(torch.randn(8, 2, 3, 3, dtype=torch.float64))
        >>> torch.linalg.svdvals(w.reshape(8, -1)).allclose(torch.ones(8, dtype=torch.float64))  # sqrt(8 / 8)
        True
    """
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight: expected a torch.Tensor, got {type(weight).__name__}")
    if weight.ndim < 2 or weight.numel() == 0:
        raise ValueError(f"weight: expected a non-empty tensor of at least 2 dimensions (d, ...), got {tuple(weight.shape)}")
    if not weight.is_floating_point():
        raise TypeError(f"weight: expected a floating dtype, got {weight.dtype}")
    # below float64 the weakest directions of an ill-conditioned (e.g. square) weight do not converge:
    # run the Gram matrix and the iteration in float64 and cast back (both casts are differentiable)
    work = torch.float64 if torch.finfo(weight.dtype).bits < 64 else weight.dtype
    matrix = weight.reshape(weight.shape[0], -1).to(work)
    d, m = matrix.shape
    scale = math.sqrt(d / min(d, m))
    if d <= m:
        out = inverse_sqrt_newton_schulz(matrix @ matrix.T, iterations) @ matrix
    else:
        out = matrix @ inverse_sqrt_newton_schulz(matrix.T @ matrix, iterations)
    return (scale * out).reshape(weight.shape).to(weight.dtype)


class NormPreserving(nn.Module):
    """A parametrization (``torch.nn.utils.parametrize``) that makes a weight norm-preserving.

    ``forward(weight)`` is :func:`norm_preserving_weight`; training updates the unconstrained
    ``original`` and always sees the projected weight. ``right_inverse`` is the identity, so
    assigning a weight stores it and the module uses its projection.

    Args:
        iterations: Newton-Schulz steps (``>= 1``); see the module docstring for how many suffice.
    """

    def __init__(self, iterations: int = DEFAULT_ITERATIONS) -> None:
        super().__init__()
        check_number("iterations", iterations, integer=True, minimum=1)
        self.iterations = iterations

    def forward(self, weight: Tensor) -> Tensor:
        return norm_preserving_weight(weight, self.iterations)

    def right_inverse(self, weight: Tensor) -> Tensor:
        return weight

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}"


def norm_preserving(module: nn.Module, name: str = "weight", iterations: int = DEFAULT_ITERATIONS) -> nn.Module:
    """Register :class:`NormPreserving` on ``module.<name>`` (a ``Conv2d`` or ``Linear``); returns ``module``.

    Remove it with ``torch.nn.utils.parametrize.remove_parametrizations(module, name)``.

    Examples:
        >>> conv = norm_preserving(nn.Conv2d(3, 16, 3))
        >>> torch.linalg.svdvals(conv.weight.reshape(16, -1)).min().item() > 0.999
        True
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"name: {type(module).__name__} has no tensor attribute {name!r}")
    if weight.ndim < 2:
        raise ValueError(f"name: expected {name!r} to have at least 2 dimensions (d, ...), got {tuple(weight.shape)}")
    parametrize.register_parametrization(module, name, NormPreserving(iterations))
    return module


class NormPreservingConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is norm-preserving (the "norm." of the ESTN ablation).

    Same arguments as :class:`torch.nn.Conv2d`, plus ``iterations`` (Newton-Schulz steps).

    Shape:
        ``(B, c, H, W) -> (B, d, H', W')`` as the underlying convolution.

    Examples:
        >>> conv = NormPreservingConv2d(3, 8, 3, padding=1)
        >>> conv(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(self, *args, iterations: int = DEFAULT_ITERATIONS, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        norm_preserving(self, "weight", iterations)
