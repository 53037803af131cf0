"""Closed-form inverses of many small symmetric 3x3 systems (the normal equations of local plane fits), elementwise."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")  # a tensor or a float


def inverse_sym3(a00: T, a01: T, a02: T, a11: T, a12: T, a22: T) -> tuple[T, T, T, T, T, T]:
    """The inverse of ``[[a00, a01, a02], [a01, a11, a12], [a02, a12, a22]]`` by the adjugate, as its six unique entries.

    Works elementwise on tensors of any broadcastable shapes (or on floats). Singular systems give ``inf``/``nan``:
    callers keep them well posed (enough points, a ridge).

    Examples:
        >>> inverse_sym3(2.0, 0.0, 0.0, 4.0, 0.0, 1.0)  # diag(2, 4, 1)
        (0.5, 0.0, 0.0, 0.25, 0.0, 1.0)
    """
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = a00 * a11 - a01 * a01
    inv_det = 1.0 / (a00 * c00 + a01 * c01 + a02 * c02)
    return c00 * inv_det, c01 * inv_det, c02 * inv_det, c11 * inv_det, c12 * inv_det, c22 * inv_det


def apply_sym3(inverse: tuple[T, T, T, T, T, T], b0: T, b1: T, b2: T) -> tuple[T, T, T]:
    """``inverse @ (b0, b1, b2)`` for the six entries of a symmetric 3x3 ``inverse`` (:func:`inverse_sym3`)."""
    i00, i01, i02, i11, i12, i22 = inverse
    return (i00 * b0 + i01 * b1 + i02 * b2, i01 * b0 + i11 * b1 + i12 * b2, i02 * b0 + i12 * b1 + i22 * b2)
