"""``backend="compiled"`` (``interpolators/_compile.py``): the fused paths equal the eager ones.

Each compiled case costs a compilation (seconds), so the cases share one image and grid size.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torch.utils.flop_counter
from torch.autograd import gradcheck

import interpolators
import interpolators._compile as compile_module
from interpolators.estn import estn_sample
from interpolators.lstn import _box_muller, lstn_sample


needs_compiler = pytest.mark.skipif(not compile_module.compiler_available(), reason="backend='compiled' needs a C++ compiler (Inductor)")
f64 = torch.float64


def case(dtype=f64, seed: int = 0):
    """An image ``(2, 3, 20, 24)``, an off-lattice grid ``(2, 7, 9, 2)`` and an output gradient."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, 20, 24, generator=g, dtype=dtype)
    grid = torch.rand(2, 7, 9, 2, generator=g, dtype=dtype) * 2.2 - 1.1
    grad_out = torch.rand(2, 3, 7, 9, generator=g, dtype=dtype)
    return image, grid, grad_out


def value_and_grads(fn, image, grid, grad_out):
    image, grid = image.clone().requires_grad_(), grid.clone().requires_grad_()
    out = fn(image, grid)
    out.backward(grad_out)
    return out.detach(), image.grad, grid.grad


def assert_same(eager, compiled, rtol: float, atol: float) -> None:
    for name, a, b in zip(("value", "input grad", "grid grad"), eager, compiled):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")


@needs_compiler
class TestCompiledLSTN:
    @pytest.mark.parametrize(
        "kwargs",
        [{}, {"fixed_bias": True}, {"num_samples": 5, "padding_mode": "border", "align_corners": True}],
        ids=["default", "fixed_bias", "odd_border_corners"],
    )
    def test_matches_eager_with_fixed_offsets(self, kwargs):
        image, grid, grad_out = case()
        m = kwargs.get("num_samples", 8) - 1
        offsets = torch.randn(m, 2, 7, 9, 2, generator=torch.Generator().manual_seed(1), dtype=f64) * 0.05
        results = [
            value_and_grads(lambda i, g: lstn_sample(i, g, offsets=offsets, backend=backend, **kwargs), image, grid, grad_out)
            for backend in ("eager", "compiled")
        ]
        assert_same(*results, rtol=1e-10, atol=1e-12)

    def test_float32_close_to_eager(self):
        image, grid, grad_out = case(torch.float32)
        offsets = torch.randn(7, 2, 7, 9, 2, generator=torch.Generator().manual_seed(1)) * 0.05
        results = [
            value_and_grads(lambda i, g: lstn_sample(i, g, offsets=offsets, backend=b), image, grid, grad_out)
            for b in ("eager", "compiled")
        ]
        assert_same(*results, rtol=1e-4, atol=1e-4)

    def test_drawn_offsets_follow_the_generator(self):
        image, grid, _ = case(torch.float32)

        def draw(seed: int) -> torch.Tensor:
            return lstn_sample(image, grid, backend="compiled", generator=torch.Generator().manual_seed(seed))

        assert torch.equal(draw(3), draw(3))
        assert not torch.equal(draw(3), draw(4))
        # the plane's intercept moves the value off bilinear's, by a fraction of the image's range
        shift = (draw(3) - F.grid_sample(image, grid, align_corners=False)).abs()
        assert 0 < shift.mean() < 0.5

    def test_linear_image_exact_slope_with_drawn_offsets(self):
        px = torch.arange(32.0, dtype=f64)
        ramp = (px / 8 + px[:, None] / 4).expand(1, 1, 32, 32)  # I = px / 8 + py / 4
        grid = (torch.rand(1, 6, 6, 2, dtype=f64, generator=torch.Generator().manual_seed(2)) - 0.5).requires_grad_()
        out = lstn_sample(ramp, grid, backend="compiled", generator=torch.Generator().manual_seed(0))
        out.sum().backward()
        # d/dgx = (1/8) * W/2 = 2 and d/dgy = (1/4) * H/2 = 4 per normalized unit, at every point
        torch.testing.assert_close(grid.grad, torch.tensor([2.0, 4.0], dtype=f64).expand(1, 6, 6, 2))
        expected = F.grid_sample(ramp, grid.detach(), align_corners=False)  # the plane's value is exact
        torch.testing.assert_close(out.detach(), expected)


def test_box_muller_gives_independent_standard_normals():
    """The compiled backend's offsets: 7 x 40000 pairs from a fixed seed, against N(0, 1) by Kolmogorov-Smirnov."""
    words = torch.empty(10000, 4, 2, 2, dtype=torch.int64).random_(-(2**63), None, generator=torch.Generator().manual_seed(0))
    du, dv = _box_muller(words, 7, f64)
    assert du.shape == dv.shape == (10000, 7, 2, 2)
    n = du.numel()
    for z in (du.flatten(), dv.flatten()):
        ordered = z.sort().values
        cdf = torch.special.ndtr(ordered)
        steps = torch.arange(1, n + 1, dtype=f64) / n
        ks = torch.maximum(steps - cdf, cdf - (steps - 1 / n)).max().item()
        assert ks < 1.63 / math.sqrt(n)  # the 1% critical value
        assert abs(z.mean().item()) < 4 / math.sqrt(n)
        assert z.var().item() == pytest.approx(1.0, abs=0.02)
    assert abs(torch.corrcoef(torch.stack([du.flatten(), dv.flatten()]))[0, 1].item()) < 4 / math.sqrt(n)
    # neighbouring points (the two halves of one word) are uncorrelated too
    assert abs(torch.corrcoef(torch.stack([du[:, 0].flatten(), du[:, 1].flatten()]))[0, 1].item()) < 4 / math.sqrt(n / 7)


@needs_compiler
class TestCompiledESTN:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {},
            {"entropy": None},
            {"num_samples": 12, "iterations": 1, "entropy": 0.5},
            {"value": "center"},
            {"padding_mode": "reflection", "align_corners": True},
        ],
        ids=["default", "no_entropy", "k12_one_round", "center", "reflection_corners"],
    )
    def test_matches_eager(self, kwargs):
        image, grid, grad_out = case()
        results = [
            value_and_grads(lambda i, g: estn_sample(i, g, backend=backend, **kwargs), image, grid, grad_out)
            for backend in ("eager", "compiled")
        ]
        assert_same(*results, rtol=1e-10, atol=1e-12)

    def test_float32_close_to_eager(self):
        image, grid, grad_out = case(torch.float32)
        results = [value_and_grads(lambda i, g: estn_sample(i, g, backend=b), image, grid, grad_out) for b in ("eager", "compiled")]
        assert_same(*results, rtol=1e-4, atol=1e-4)

    def test_gradcheck_input_with_fixed_weights(self):
        # the input gradient is exact where the output is linear in the input: the prior's fixed weights
        image, grid, _ = case()
        image = image[:1, :2, :8, :8].clone().requires_grad_()
        grid = grid[:1, :3, :4].clone() * 0.8
        assert gradcheck(lambda x: estn_sample(x, grid, entropy=None, backend="compiled"), (image,))

    def test_linear_image_known_answer(self):
        image = torch.arange(64.0, dtype=f64).view(1, 1, 8, 8)  # I = 8 py + px
        grid = torch.zeros(1, 1, 1, 2, dtype=f64, requires_grad=True)  # pixel (3.5, 3.5)
        out = estn_sample(image, grid, ridge=0.0, backend="compiled")  # no ridge: exact slopes and value
        out.backward()
        assert out.item() == pytest.approx(31.5, abs=1e-10)
        assert grid.grad.flatten().tolist() == pytest.approx([4.0, 32.0], abs=1e-8)


@needs_compiler
@pytest.mark.parametrize("name", ["lstn", "estn"])
def test_runs_unfused_under_a_flop_counter(name):
    """The cost suite counts FLOPs under FlopCounterMode, where torch.compile would find no frame to compile."""
    image, grid, _ = case(torch.float32)
    sampler = interpolators.create(name, backend="compiled")
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        out = sampler(image, grid)
    assert out.shape == (2, 3, 7, 9) and torch.isfinite(out).all()
    assert counter.get_total_flops() >= 0


class TestBackendErrors:
    @pytest.mark.parametrize("name", ["lstn", "estn"])
    def test_unknown_backend(self, name):
        with pytest.raises(ValueError, match=rf"{name}.backend: expected one of 'eager', 'compiled', got 'fast'"):
            interpolators.create(name, backend="fast")

    def test_functional_unknown_backend(self):
        image, grid, _ = case()
        with pytest.raises(ValueError, match="backend"):
            lstn_sample(image, grid, backend="inductor")
        with pytest.raises(ValueError, match="backend"):
            estn_sample(image, grid, backend="inductor")

    def test_compiled_estn_needs_the_spiral(self):
        with pytest.raises(ValueError, match="backend: 'compiled' fuses the shared spiral only"):
            interpolators.create("estn", backend="compiled", sampling="random")

    def test_compile_failure_names_the_backend(self, monkeypatch):
        def failing(fn):
            def call(*args, **kwargs):
                raise torch._dynamo.exc.BackendCompilerFailed(None, RuntimeError("no C++ compiler found"), None)

            return call

        monkeypatch.setattr(compile_module, "_compiled", failing)
        image, grid, _ = case()
        with pytest.raises(RuntimeError, match="backend='compiled'.*no C\\+\\+ compiler found.*backend='eager'"):
            interpolators.create("lstn", backend="compiled")(image, grid)
