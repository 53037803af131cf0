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
from interpolators.base import grid_sample_points
from interpolators.estn import estn_sample
from interpolators.lstn import _hash_normals, _mix32, _mul32, lstn_sample

from backend_checks import assert_same, value_and_grads


needs_compiler = pytest.mark.skipif(not compile_module.compiler_available(), reason="backend='compiled' needs a C++ compiler (Inductor)")
f64 = torch.float64


def case(dtype=f64, seed: int = 0):
    """An image ``(2, 3, 20, 24)``, an off-lattice grid ``(2, 7, 9, 2)`` and an output gradient."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, 20, 24, generator=g, dtype=dtype)
    grid = torch.rand(2, 7, 9, 2, generator=g, dtype=dtype) * 2.2 - 1.1
    grad_out = torch.rand(2, 3, 7, 9, generator=g, dtype=dtype)
    return image, grid, grad_out


@needs_compiler
class TestCompiledLSTN:
    @staticmethod
    def both_backends(dtype=f64, batch: int = 2, **kwargs):
        """Value and both gradients from eager and from compiled, with the same fixed offsets."""
        image, grid, grad_out = (t[:batch] for t in case(dtype))
        m = kwargs.get("num_samples", 8) - 1
        offsets = torch.randn(m, batch, 7, 9, 2, generator=torch.Generator().manual_seed(1), dtype=dtype) * 0.05
        return [
            value_and_grads(lambda i, g: lstn_sample(i, g, offsets=offsets, backend=b, **kwargs), image, grid, grad_out)
            for b in ("eager", "compiled")
        ]

    @pytest.mark.parametrize(
        ("batch", "kwargs"),
        [
            (2, {}),
            (2, {"fixed_bias": True}),
            (2, {"num_samples": 5, "padding_mode": "border", "align_corners": True}),
            (1, {}),  # a batch of one samples its auxiliary points as a batch of K - 1 (grid_sample_points)
        ],
        ids=["default", "fixed_bias", "odd_border_corners", "batch_of_one"],
    )
    def test_matches_eager_with_fixed_offsets(self, batch, kwargs):
        assert_same(*self.both_backends(batch=batch, **kwargs), rtol=1e-10, atol=1e-12)

    def test_float32_close_to_eager(self):
        assert_same(*self.both_backends(torch.float32), rtol=1e-4, atol=1e-4)

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


def ks_statistic(z: torch.Tensor) -> float:
    """``sqrt(n)`` times the Kolmogorov-Smirnov distance of ``z`` to N(0, 1) (1% critical value 1.63, 0.1% 1.95)."""
    n = z.numel()
    ordered = z.flatten().double().sort().values
    cdf = torch.special.ndtr(ordered)
    steps = torch.arange(1, n + 1, dtype=f64) / n
    return torch.maximum(steps - cdf, cdf - (steps - 1 / n)).max().item() * math.sqrt(n)


def assert_standard_normal(z: torch.Tensor) -> None:
    """Kolmogorov-Smirnov at the 1% level, mean within 4 sigma, variance within 2%."""
    n = z.numel()
    assert ks_statistic(z) < 1.63
    assert abs(z.mean().item()) < 4 / math.sqrt(n)
    assert z.var().item() == pytest.approx(1.0, abs=0.02)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


class TestGridSamplePoints:
    @pytest.mark.parametrize("batch", [1, 2], ids=["batch_of_one_as_batch_of_K", "batch"])
    @pytest.mark.parametrize("padding_mode", ["zeros", "reflection"])
    def test_matches_grid_sample_on_interleaved_points(self, batch, padding_mode):
        image, _, _ = case()
        image = image[:batch]
        points = torch.rand(2, batch, 5, 7, 9, generator=torch.Generator().manual_seed(3), dtype=f64) * 2.4 - 1.2
        grad_out = torch.rand(batch, 3, 5, 7, 9, dtype=f64, generator=torch.Generator().manual_seed(4))
        interleaved = points.permute(1, 2, 3, 4, 0).reshape(batch, 5 * 7, 9, 2)
        leaf = image.clone().requires_grad_()
        expected = F.grid_sample(leaf, interleaved, padding_mode=padding_mode, align_corners=False).view(batch, 3, 5, 7, 9)
        (expected_grad,) = torch.autograd.grad(expected, leaf, grad_out)
        leaf = image.clone().requires_grad_()
        samples = grid_sample_points(leaf, points.permute(1, 2, 3, 4, 0), padding_mode, False)
        (grad,) = torch.autograd.grad(samples, leaf, grad_out)
        assert samples.shape == (batch, 3, 5, 7, 9)
        torch.testing.assert_close(samples, expected, rtol=0, atol=1e-14)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-13)

    def test_batch_of_K_only_where_its_backward_is_cheap(self):
        """The expanded batch (a transposed, non-contiguous result) costs K input-sized gradients in backward:
        used without an input gradient or when the output is at least as large as the input, not to downsample."""
        image = torch.rand(1, 2, 16, 16, dtype=f64)
        small, large = (torch.rand(1, 3, n, n, 2, dtype=f64) * 2 - 1 for n in (4, 16))
        assert not grid_sample_points(image, small, "zeros", False).is_contiguous()  # no gradient: batch of K
        leaf = image.clone().requires_grad_()
        assert grid_sample_points(leaf, small, "zeros", False).is_contiguous()  # downsampling: one batch
        assert not grid_sample_points(leaf, large, "zeros", False).is_contiguous()


class TestHashNormals:
    """The compiled L-STN's counter-based offsets."""

    def test_mul32_is_multiplication_mod_2_32(self):
        x = torch.tensor([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 123456789])
        for constant in (0x7FEB352D, 0x846CA68B):
            assert _mul32(x, constant).tolist() == [(v * constant) % 2**32 for v in x.tolist()]

    def test_mix32_is_a_bijection_on_a_block(self):
        x = torch.arange(2**20) * 4093  # distinct inputs spread over the 32-bit range
        h = _mix32(x)
        assert h.unique().numel() == x.numel() and 0 <= h.min() and h.max() < 2**32

    def test_independent_standard_normals(self):
        """7 x 40000 pairs per key, against N(0, 1); pairs, neighbours and key streams uncorrelated."""
        keys = torch.randint(0, 2**32, (8, 1), generator=torch.Generator().manual_seed(0))
        statistics = []
        for key in keys:
            du, dv = _hash_normals(key, (10000, 7, 2, 2), f64)
            statistics += [ks_statistic(du), ks_statistic(dv)]
        # each key's draws pass at the 0.1% level, and the 16 statistics average like Kolmogorov's
        # distribution (mean 0.87, standard deviation 0.26 / sqrt(16))
        assert max(statistics) < 1.95
        assert abs(sum(statistics) / len(statistics) - 0.87) < 4 * 0.26 / 4
        du, dv = _hash_normals(keys[0], (10000, 7, 2, 2), f64)
        assert du.shape == dv.shape == (10000, 7, 2, 2)
        n = du.numel()
        assert_standard_normal(du)
        assert_standard_normal(dv)
        assert abs(correlation(du, dv)) < 4 / math.sqrt(n)
        assert abs(correlation(du[:, 0], du[:, 1])) < 4 / math.sqrt(n / 7)  # neighbouring counters
        # keys one bit apart give unrelated streams (not shifted or permuted copies)
        (k,) = keys[0].tolist()
        for other in ([k ^ 1], [k ^ 2], [k ^ 2**31]):
            du2, _ = _hash_normals(torch.tensor(other), (10000, 7, 2, 2), f64)
            assert abs(correlation(du, du2)) < 4 / math.sqrt(n)
            assert (du.flatten().sort().values - du2.flatten().sort().values).abs().max() > 1e-3

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_draws_in_float32(self, dtype):
        """The 16-bit uniforms overflow float16 (65535.5 -> inf) and collapse in bfloat16; the math runs in float32."""
        key = torch.tensor([7])
        du, dv = _hash_normals(key, (50, 7, 4, 4), dtype)
        du32, dv32 = _hash_normals(key, (50, 7, 4, 4), torch.float32)
        assert du.dtype == dv.dtype == dtype
        assert torch.equal(du, du32.to(dtype)) and torch.equal(dv, dv32.to(dtype))
        assert torch.isfinite(du32).all() and torch.isfinite(dv32).all()

    @needs_compiler
    def test_compiled_kernel_draws_the_same_normals(self):
        """Inductor's kernel against the plain torch code of the same hash, and its draws against N(0, 1)."""
        from interpolators.lstn import _fused_points

        key = torch.tensor([0x2468ACE0])
        planar_grid = torch.zeros(2, 100, 20, 20)
        points = compile_module.run_compiled(_fused_points, planar_grid, key, 7, 1.0, 1.0)  # offsets = points
        du, dv = _hash_normals(key, (100, 7, 20, 20), torch.float32)
        torch.testing.assert_close(points[0], du, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(points[1], dv, rtol=1e-5, atol=1e-5)
        assert_standard_normal(points[0].double())
        assert_standard_normal(points[1].double())

    def test_too_many_points_for_the_counter(self):
        image = torch.rand(1, 1, 4, 4)
        grid = torch.zeros(1, 1, 1, 2).expand(1, 30000, 30000, 2)  # 7 * 9e8 points > 2^32, no memory
        with pytest.raises(ValueError, match=r"backend: 'compiled' draws at most 2\^32 auxiliary points"):
            lstn_sample(image, grid, backend="compiled")


@needs_compiler
class TestCompiledESTN:
    @staticmethod
    def both_backends(dtype=f64, batch: int = 2, **kwargs):
        image, grid, grad_out = (t[:batch] for t in case(dtype))
        return [
            value_and_grads(lambda i, g: estn_sample(i, g, backend=b, **kwargs), image, grid, grad_out)
            for b in ("eager", "compiled")
        ]

    @pytest.mark.parametrize(
        ("batch", "kwargs"),
        [
            (2, {}),
            (2, {"entropy": None}),
            (2, {"num_samples": 12, "iterations": 1, "entropy": 0.5}),
            (2, {"value": "center"}),
            (2, {"padding_mode": "reflection", "align_corners": True}),
            (1, {}),  # a batch of one is sampled as a batch of K (grid_sample_points)
        ],
        ids=["default", "no_entropy", "k12_one_round", "center", "reflection_corners", "batch_of_one"],
    )
    def test_matches_eager(self, batch, kwargs):
        assert_same(*self.both_backends(batch=batch, **kwargs), rtol=1e-10, atol=1e-12)

    def test_float32_close_to_eager(self):
        assert_same(*self.both_backends(torch.float32), rtol=1e-4, atol=1e-4)

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
        with pytest.raises(ValueError, match=rf"{name}.backend: expected one of 'eager', 'compiled'(, 'native')?, got 'fast'"):
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
