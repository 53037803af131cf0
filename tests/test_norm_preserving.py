"""Norm-preserving convolution: singular values against ``torch.linalg.svdvals``, training, gradcheck, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from interpolators.norm_preserving import (
    NormPreserving,
    NormPreservingConv2d,
    inverse_sqrt_newton_schulz,
    norm_preserving,
    norm_preserving_weight,
)


def _svdvals(weight: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(weight.detach().reshape(weight.shape[0], -1).double())


class TestInverseSqrtNewtonSchulz:
    def test_against_eigh(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(6, 10, generator=g, dtype=torch.float64)
        gram = x @ x.T
        evals, evecs = torch.linalg.eigh(gram)
        expected = evecs @ torch.diag(evals.rsqrt()) @ evecs.T
        torch.testing.assert_close(inverse_sqrt_newton_schulz(gram, 30), expected, rtol=1e-10, atol=1e-10)

    def test_batched(self):
        gram = torch.diag_embed(torch.tensor([[1.0, 4.0], [9.0, 16.0]], dtype=torch.float64))
        out = inverse_sqrt_newton_schulz(gram, 30)
        torch.testing.assert_close(out.diagonal(dim1=-2, dim2=-1), gram.diagonal(dim1=-2, dim2=-1).rsqrt())

    def test_exceptions(self):
        with pytest.raises(ValueError, match=r"gram: expected square matrices"):
            inverse_sqrt_newton_schulz(torch.ones(2, 3))
        with pytest.raises(ValueError, match=r"iterations: expected a value >= 1, got 0"):
            inverse_sqrt_newton_schulz(torch.eye(2), 0)


class TestNormPreservingWeight:
    @pytest.mark.parametrize(
        "shape, dtype, tol",
        [
            ((36, 4, 3, 3), torch.float64, 1e-9),
            ((8, 16, 3, 3), torch.float64, 1e-9),
            ((32, 2, 3, 3), torch.float64, 1e-9),
            ((10, 20), torch.float64, 1e-9),
            ((20, 10), torch.float64, 1e-9),
            ((8, 16, 3, 3), torch.float32, 1e-4),
            ((32, 2, 3, 3), torch.float32, 1e-4),
            ((10, 20), torch.float32, 1e-4),
        ],
        ids=["square", "wide", "tall", "linear-wide", "linear-tall", "wide-f32", "tall-f32", "linear-wide-f32"],
    )
    def test_singular_values(self, shape, dtype, tol):
        torch.manual_seed(0)
        layer = nn.Conv2d(shape[1], shape[0], shape[2]) if len(shape) == 4 else nn.Linear(shape[1], shape[0])
        weight = layer.weight.detach().to(dtype)
        out = norm_preserving_weight(weight)
        assert out.shape == weight.shape and out.dtype == dtype
        d, m = shape[0], math.prod(shape[1:])
        sv = _svdvals(out)
        assert sv.numel() == min(d, m)
        torch.testing.assert_close(sv, torch.full_like(sv, math.sqrt(d / min(d, m))), rtol=tol, atol=tol)

    @pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
    def test_square_low_precision_converges_in_float64(self, dtype, tol):
        # a square reshape is ill-conditioned at default init: below float64 the weakest directions would not
        # converge, so the iteration runs in float64 internally and every singular value is right
        for seed in range(4):
            torch.manual_seed(seed)
            weight = nn.Conv2d(4, 36, 3).weight.detach().to(dtype).requires_grad_()
            out = norm_preserving_weight(weight)
            assert out.dtype == dtype
            sv = _svdvals(out)
            assert sv.numel() == 36
            torch.testing.assert_close(sv, torch.ones_like(sv), rtol=tol, atol=tol)
            out.square().sum().backward()  # the casts keep the gradient flowing
            assert weight.grad is not None and weight.grad.dtype == dtype and weight.grad.abs().sum() > 0

    def test_keeps_singular_vectors(self):
        # W = U S V^T -> scale * U V^T: the direction of the weight is kept, only its spectrum changes
        g = torch.Generator().manual_seed(1)
        weight = torch.randn(5, 12, generator=g, dtype=torch.float64)
        u, _, vh = torch.linalg.svd(weight, full_matrices=False)
        torch.testing.assert_close(norm_preserving_weight(weight), u @ vh, rtol=1e-9, atol=1e-9)

    def test_exceptions(self):
        with pytest.raises(ValueError, match=r"weight: expected a non-empty tensor of at least 2 dimensions"):
            norm_preserving_weight(torch.ones(4))
        with pytest.raises(TypeError, match=r"weight: expected a floating dtype"):
            norm_preserving_weight(torch.ones(2, 2, dtype=torch.long))
        with pytest.raises(TypeError, match=r"weight: expected a torch.Tensor"):
            norm_preserving_weight([[1.0]])
        with pytest.raises(TypeError, match=r"iterations: expected an integer"):
            norm_preserving_weight(torch.ones(2, 3), 2.5)

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(2)
        for shape in [(2, 1, 2, 2), (3, 2)]:  # wide (W W^T) and tall (W^T W)
            weight = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
            assert torch.autograd.gradcheck(lambda w: norm_preserving_weight(w, 8), (weight,))


class TestNormPreservingParametrization:
    def test_register_on_conv_and_linear(self):
        conv = norm_preserving(nn.Conv2d(3, 16, 3))
        assert parametrize.is_parametrized(conv, "weight")
        torch.testing.assert_close(_svdvals(conv.weight), torch.ones(16, dtype=torch.float64), rtol=1e-4, atol=1e-4)
        linear = norm_preserving(nn.Linear(4, 12), iterations=30)
        sv = _svdvals(linear.weight)
        torch.testing.assert_close(sv, torch.full_like(sv, math.sqrt(3)), rtol=1e-4, atol=1e-4)

    def test_conv2d_class(self):
        conv = NormPreservingConv2d(3, 8, 3, padding=1)
        assert conv(torch.rand(2, 3, 16, 16)).shape == (2, 8, 16, 16)
        assert isinstance(conv.parametrizations.weight[0], NormPreserving)

    def test_training_step(self):
        torch.manual_seed(0)
        conv = NormPreservingConv2d(2, 6, 3, padding=1)
        target_conv = NormPreservingConv2d(2, 6, 3, padding=1)
        x = torch.randn(8, 2, 10, 10)
        with torch.no_grad():
            target = target_conv(x)
        optimizer = torch.optim.SGD(conv.parameters(), lr=0.05)
        losses = []
        for _ in range(5):
            optimizer.zero_grad()
            loss = (conv(x) - target).square().mean()
            loss.backward()
            assert conv.parametrizations.weight.original.grad.abs().sum() > 0
            optimizer.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0]
        torch.testing.assert_close(_svdvals(conv.weight), torch.ones(6, dtype=torch.float64), rtol=1e-4, atol=1e-4)

    def test_exceptions(self):
        with pytest.raises(TypeError, match=r"module: expected a torch.nn.Module"):
            norm_preserving(torch.ones(2, 2))
        with pytest.raises(ValueError, match=r"name: ReLU has no tensor attribute 'weight'"):
            norm_preserving(nn.ReLU())
        with pytest.raises(ValueError, match=r"name: expected 'bias' to have at least 2 dimensions"):
            norm_preserving(nn.Linear(2, 3), "bias")
        with pytest.raises(ValueError, match=r"iterations: expected a value >= 1"):
            NormPreserving(iterations=0)
        with pytest.raises(TypeError, match=r"iterations: expected an integer"):
            NormPreservingConv2d(1, 2, 3, iterations=True)
