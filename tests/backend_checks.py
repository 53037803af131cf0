"""Helpers for the tests that compare the operators with the eager path (tests/test_operators.py and the AVX2 build probe)."""

from __future__ import annotations

import torch


def value_and_grads(fn, image, grid, grad_out):
    """``fn(image, grid)``, and the gradients of ``<fn(image, grid), grad_out>`` to image and grid."""
    image, grid = image.clone().requires_grad_(), grid.clone().requires_grad_()
    out = fn(image, grid)
    out.backward(grad_out)
    return out.detach(), image.grad, grid.grad


def assert_same(expected, actual, rtol: float, atol: float) -> None:
    """Two ``value_and_grads`` results agree, each part named in the failure."""
    for name, a, b in zip(("value", "input grad", "grid grad"), expected, actual):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")
