"""Tests of suites.models: Table 3's networks, the EST layer, norm-preservation and the timm extension."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import interpolators
from suites import models
from suites.classify import train_step


def capture(module_type: type[nn.Module], model: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of every ``module_type`` submodule during ``model(x)``."""
    seen = []
    hooks = [m.register_forward_hook(lambda _m, i, o: seen.append((i[0], o)))
             for m in model.modules() if isinstance(m, module_type)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


class TestAffineTransform:
    def test_identity_is_exact(self):
        x = torch.rand(2, 3, 6, 9, dtype=torch.float64)
        for align_corners in (False, True):
            sampler = interpolators.create("bilinear", align_corners=align_corners)
            out = models.affine_transform(x, models.identity_theta(2, dtype=torch.float64), sampler)
            assert torch.allclose(out, x, atol=1e-12)

    def test_translation_by_one_pixel(self):
        x = torch.rand(1, 1, 4, 8, dtype=torch.float64)
        theta = torch.tensor([[[1.0, 0.0, 2 / 8], [0.0, 1.0, 0.0]]], dtype=torch.float64)
        out = models.affine_transform(x, theta, interpolators.create("bilinear"))
        assert torch.allclose(out[..., :-1], x[..., 1:], atol=1e-12)

    def test_exceptions(self):
        with pytest.raises(ValueError, match="theta"):
            models.affine_transform(torch.rand(2, 1, 4, 4), torch.zeros(2, 3, 3), interpolators.create("bilinear"))
        with pytest.raises(TypeError, match="sampler"):
            models.ESTLayer(4, F.grid_sample)


class TestESTLayer:
    def test_starts_at_identity(self):
        torch.manual_seed(0)
        layer = models.ESTLayer(5, interpolators.create("bilinear"))
        x = torch.randn(3, 5, 11, 11)
        theta = layer.localization(x)
        assert torch.equal(theta, models.identity_theta(3))
        assert torch.allclose(layer(x), x, atol=1e-6)

    def test_localization_gets_gradient(self):
        layer = models.ESTLayer(2, interpolators.create("bilinear"))
        x = torch.randn(2, 2, 8, 8)
        (layer(x) * torch.randn(2, 2, 8, 8)).sum().backward()
        assert layer.localization.theta.weight.grad.abs().sum() > 0


class TestTable3Net:
    @pytest.mark.parametrize("column", sorted(models.TABLE3_WIDTHS))
    def test_shapes_follow_table3(self, column):
        widths = models.TABLE3_WIDTHS[column]
        net = models.Table3Net(3, 10, widths, "bilinear").eval()
        x = torch.randn(2, 3, 32, 32)
        assert net(x).shape == (2, 10)
        pooled = capture(nn.AdaptiveAvgPool2d, net.features, x)
        assert [tuple(i.shape) for i, _ in pooled if i.shape[1] == widths[4]] == [(2, widths[4], 6, 6)]
        convs = [m for m in net.features.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 9 + 3  # nine of Table 3, one in each of the three localization heads
        assert len(net.est_layers) == 3
        assert net.classifier.in_features == widths[4]

    def test_est_layers_start_at_identity(self):
        """With bilinear, every EST layer of a fresh network outputs exactly its input."""
        torch.manual_seed(0)
        net = models.build_model("fashion_mnist", 1, 10, "bilinear").eval()
        pairs = capture(models.ESTLayer, net, torch.randn(4, 1, 32, 32))
        assert len(pairs) == 3
        for inp, out in pairs:
            assert torch.allclose(out, inp, atol=1e-5)

    def test_plain_cnn(self):
        net = models.build_model("digits", 1, 10, None)
        assert net.est_layers == [] and net(torch.randn(2, 1, 16, 16)).shape == (2, 10)

    @pytest.mark.parametrize("name", interpolators.available())
    def test_one_step_reduces_loss(self, name):
        """One Adam step (lr 1e-3) lowers the cross-entropy of a tiny batch, for every interpolator."""
        torch.manual_seed(0)
        net = models.Table3Net(1, 10, (8, 8, 8, 8, 8), name, dropout=0.0)
        x, y = torch.randn(8, 1, 16, 16), torch.arange(8) % 10
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

        def loss() -> float:
            torch.manual_seed(1)  # the same draws for stochastic samplers
            net.train()
            with torch.no_grad():
                return float(F.cross_entropy(net(x), y))

        before = loss()
        torch.manual_seed(1)
        assert train_step(net, optimizer, x, y) == pytest.approx(before, rel=1e-5)
        assert loss() < before

    def test_exceptions(self):
        with pytest.raises(ValueError, match="widths"):
            models.Table3Net(1, 10, (8, 8, 8))
        with pytest.raises(ValueError, match="dropout"):
            models.Table3Net(dropout=1.0)
        with pytest.raises(ValueError, match="dataset"):
            models.build_model("imagenet", 1, 10, "bilinear")
        with pytest.raises(ValueError, match="backbone"):
            models.build_model("digits", 1, 10, "bilinear", backbone="resnet")
        with pytest.raises(ValueError, match="x: expected"):
            models.build_model("digits", 1, 10, "bilinear")(torch.zeros(1, 1, 8, 8))
        with pytest.raises(ValueError, match="unknown"):
            models.build_model("digits", 1, 10, "no_such_sampler")


def input_gradient_norms(stack: nn.Sequential, x: torch.Tensor) -> list[float]:
    """``|dL/d(input of layer l)|`` for every layer of ``stack``, with ``dL/d(output)`` a fixed unit-variance draw."""
    inputs = []

    def keep(_module: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        args[0].retain_grad()
        inputs.append(args[0])

    hooks = [m.register_forward_hook(keep) for m in stack]
    x = x.clone().requires_grad_(True)
    out = stack(x)
    for h in hooks:
        h.remove()
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    return [float(t.grad.norm()) for t in inputs] + [float(out.numel()) ** 0.5]


class TestNormPreservation:
    """Gradient norms through a deep linear stack of 3x3 convolutions (16 channels, circular padding, no BN).

    Documented band: with norm-preserving convolutions every layer's input gradient
    has a norm within [0.5, 2] times the output gradient's, through 12 layers; the
    plain PyTorch initialization (Var w = 1 / (3 fan_in)) shrinks it by about
    sqrt(3) per layer, so the first layer sees less than 1 % of it.
    """

    def stack(self, norm_preserving: bool) -> nn.Sequential:
        torch.manual_seed(0)
        stack = nn.Sequential(*[nn.Conv2d(16, 16, 3, padding=1, padding_mode="circular", bias=False)
                                for _ in range(12)])
        if norm_preserving:
            assert models.apply_norm_preserving(stack) == 12
        return stack

    def test_band(self):
        x = torch.randn(2, 16, 16, 16)
        plain = input_gradient_norms(self.stack(False), x)
        preserved = input_gradient_norms(self.stack(True), x)
        out_norm = preserved[-1]
        assert all(0.5 <= g / out_norm <= 2.0 for g in preserved[:-1]), [g / out_norm for g in preserved]
        assert plain[0] / plain[-1] < 0.01
        assert not all(0.5 <= g / plain[-1] <= 2.0 for g in plain[:-1])

    def test_estn_network_uses_it_and_localization_does_not(self):
        net = models.build_model("digits", 1, 10, "bilinear", norm_preserving=True)
        parametrized = [m for m in net.modules() if isinstance(m, nn.Conv2d) and hasattr(m, "parametrizations")]
        assert len(parametrized) == 9
        heads = [m for est in net.est_layers for m in est.modules() if isinstance(m, nn.Conv2d)]
        assert not any(hasattr(m, "parametrizations") for m in heads)


class TestTimmBackbone:
    def test_builds_and_runs_without_weights(self):
        torch.manual_seed(0)
        net = models.build_model("digits", 1, 10, "bilinear", backbone="timm:test_resnet")
        assert isinstance(net, models.TimmSTN) and len(net.est_layers) == 1
        x = torch.randn(2, 1, 32, 32)
        out = net(x)
        assert out.shape == (2, 10)
        out.sum().backward()
        assert net.est.localization.theta.weight.grad is not None

    def test_unknown_name(self):
        with pytest.raises(ValueError, match="timm model name"):
            models.build_model("digits", 1, 10, "bilinear", backbone="timm:no_such_net")
