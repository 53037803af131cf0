"""Batched closed-form solves of small symmetric systems (the 3x3 normal equations of local plane fits)."""

from __future__ import annotations

import torch
from torch import Tensor


def solve_sym3(a: tuple[Tensor, ...], b: Tensor) -> Tensor:
    """Solve ``A x = b`` for many symmetric 3x3 ``A`` by the adjugate (Cramer's rule), elementwise.

    Args:
        a: the six unique entries ``(a00, a01, a02, a11, a12, a22)``, each of shape ``S``.
        b: right-hand sides of shape ``(3, *R)`` where ``R`` broadcasts against ``S``
            (e.g. ``S = (B, 1, Ho, Wo)`` and ``R = (B, C, Ho, Wo)`` for channel-shared systems).

    Returns:
        ``x`` of shape ``(3, *broadcast(S, R))``. Singular systems give ``inf``/``nan``: callers
        keep ``A`` well-posed (enough points, a ridge).
    """
    return torch.stack(torch.broadcast_tensors(*solve_sym3_parts(a, (b[0], b[1], b[2]))))


def solve_sym3_parts(a: tuple[Tensor, ...], b: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`solve_sym3` with the right-hand side and the solution as three separate components (no stacking,
    which lets ``torch.compile`` fuse the solve into its consumers)."""
    a00, a01, a02, a11, a12, a22 = a
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = a00 * a11 - a01 * a01
    inv_det = 1.0 / (a00 * c00 + a01 * c01 + a02 * c02)
    b0, b1, b2 = b
    x0 = (c00 * b0 + c01 * b1 + c02 * b2) * inv_det
    x1 = (c01 * b0 + c11 * b1 + c12 * b2) * inv_det
    x2 = (c02 * b0 + c12 * b1 + c22 * b2) * inv_det
    return x0, x1, x2
