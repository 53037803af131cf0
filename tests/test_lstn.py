"""L-STN (linearized multi-sampling): the functional form, its straightforward reference, and the module.

Known answers: on an image linear in x and y the fitted plane is exact whatever the offsets, so the
value is bilinear's and the grid gradient is the image's slope; the input gradient is bilinear's at the
sampling point; the fast path equals a plain ``torch.linalg.lstsq`` implementation in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import interpolators
from interpolators.base import normalized_to_pixel_scale
from interpolators.lstn import LSTN, _auxiliary_offsets, _lstn_sample_reference, lstn_sample

F64 = torch.float64
SLOPES = [(0.02, -0.01), (-0.05, 0.03)]  # (dI/dpx, dI/dpy) of each channel of the linear image


def linear_image(h: int, w: int, b: int = 1) -> torch.Tensor:
    """``I_c = 0.3 + a_c px - b_c py`` in input pixel coordinates, ``(b, 2, h, w)`` float64."""
    py, px = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    return torch.stack([0.3 + ax * px + ay * py for ax, ay in SLOPES]).expand(b, -1, -1, -1).clone()


def to_normalized(px: torch.Tensor, size: int, align_corners: bool) -> torch.Tensor:
    return 2 * px / (size - 1) - 1 if align_corners else (2 * px + 1) / size - 1


def interior_grid(h, w, ho, wo, margin, align_corners, generator, b=1):
    """Off-lattice points at least ``margin`` input pixels inside the image; returns (grid, px, py)."""
    px = margin + torch.rand(b, ho, wo, generator=generator, dtype=F64) * (w - 1 - 2 * margin)
    py = margin + torch.rand(b, ho, wo, generator=generator, dtype=F64) * (h - 1 - 2 * margin)
    grid = torch.stack([to_normalized(px, w, align_corners), to_normalized(py, h, align_corners)], dim=-1)
    return grid, px, py


def pixel_offsets(m, b, ho, wo, h, w, max_px, align_corners, generator):
    """Fixed offsets ``(m, b, ho, wo, 2)`` uniform in +-``max_px`` input pixels, in normalized units."""
    px = (torch.rand(m, b, ho, wo, 2, generator=generator, dtype=F64) * 2 - 1) * max_px
    scale = torch.tensor([normalized_to_pixel_scale(w, align_corners), normalized_to_pixel_scale(h, align_corners)])
    return px / scale.to(F64)


def random_case(b=2, c=3, h=9, w=11, ho=5, wo=7, k=8, spread=1.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, c, h, w, generator=g, dtype=F64)
    grid = (torch.rand(b, ho, wo, 2, generator=g, dtype=F64) * 2 - 1) * spread
    offsets = torch.randn(k - 1, b, ho, wo, 2, generator=g, dtype=F64) * 0.15
    return image, grid, offsets


def saved_bytes(fn) -> int:
    """Bytes of every tensor autograd saves for backward while ``fn`` runs."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


class TestLstnSample:
    def test_smoke(self):
        image, grid, _ = random_case()
        out = lstn_sample(image.float(), grid.float())
        assert out.shape == (2, 3, 5, 7) and out.dtype == torch.float32
        assert torch.isfinite(out).all()

    @pytest.mark.parametrize(
        "b, c, h, w, ho, wo", [(1, 1, 4, 4, 1, 1), (3, 2, 8, 13, 4, 3), (2, 4, 5, 6, 11, 9), (1, 3, 32, 32, 8, 8)]
    )
    @pytest.mark.parametrize("num_samples", [4, 8, 13])
    def test_cardinality(self, b, c, h, w, ho, wo, num_samples):
        image, grid = torch.rand(b, c, h, w), torch.rand(b, ho, wo, 2) * 2 - 1
        out = lstn_sample(image, grid, num_samples=num_samples)
        assert out.shape == (b, c, ho, wo)
        offsets = torch.zeros(num_samples - 1, b, ho, wo, 2).normal_(std=0.1)
        assert lstn_sample(image, grid, num_samples=num_samples, offsets=offsets).shape == (b, c, ho, wo)

    @pytest.mark.parametrize(
        "kwargs, error, match",
        [
            ({"num_samples": 3}, ValueError, r"num_samples: expected at least 4 .*got 3"),
            ({"num_samples": 1}, ValueError, r"num_samples: expected at least 4 .*got 1"),
            ({"num_samples": 8.0}, TypeError, r"num_samples: expected an integer, got 8.0"),
            ({"num_samples": True}, TypeError, r"num_samples: expected an integer"),
            ({"noise_strength": -0.1}, ValueError, r"noise_strength: expected a value >= 0, got -0.1"),
            ({"noise_strength": float("nan")}, ValueError, r"noise_strength: expected a finite value"),
            ({"noise_strength": "0.5"}, TypeError, r"noise_strength: expected a number, got '0.5'"),
            ({"noise_strength": 0.0, "push_away": False}, ValueError, r"noise_strength: expected > 0 when push_away"),
            ({"push_away": 1}, TypeError, r"push_away: expected a bool, got 1"),
            ({"fixed_bias": None}, TypeError, r"fixed_bias: expected a bool, got None"),
            ({"align_corners": "yes"}, TypeError, r"align_corners: expected a bool, got 'yes'"),
            ({"padding_mode": "circular"}, ValueError, r"padding_mode: expected one of .* got 'circular'"),
        ],
    )
    def test_exception_hparams(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            lstn_sample(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 2, 2), **kwargs)

    def test_exception_offsets_and_inputs(self):
        image, grid = torch.rand(2, 1, 6, 6), torch.zeros(2, 3, 4, 2)
        with pytest.raises(ValueError, match=r"offsets: expected shape .* = \(7, 2, 3, 4, 2\), got \(7, 3, 4, 2\)"):
            lstn_sample(image, grid, offsets=torch.zeros(7, 3, 4, 2))
        with pytest.raises(ValueError, match=r"offsets: expected shape .* = \(3, 2, 3, 4, 2\), got \(7, 2, 3, 4, 2\)"):
            lstn_sample(image, grid, num_samples=4, offsets=torch.zeros(7, 2, 3, 4, 2))
        with pytest.raises(TypeError, match=r"offsets: expected dtype torch.float32 .* got torch.float64"):
            lstn_sample(image, grid, offsets=torch.zeros(7, 2, 3, 4, 2, dtype=F64))
        with pytest.raises(TypeError, match=r"offsets: expected a torch.Tensor or None, got list"):
            lstn_sample(image, grid, offsets=[0.0])
        with pytest.raises(ValueError, match=r"grid: expected batch size 2 to match input, got 1"):
            lstn_sample(image, torch.zeros(1, 3, 4, 2))

    @pytest.mark.parametrize("align_corners", [False, True])
    @pytest.mark.parametrize("fixed_bias", [False, True])
    @pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
    def test_linear_image_exact_with_fixed_offsets(self, align_corners, fixed_bias, padding_mode):
        h, w, ho, wo = 12, 16, 3, 4
        g = torch.Generator().manual_seed(1)
        image = linear_image(h, w, b=2)
        grid, px, py = interior_grid(h, w, ho, wo, 3.0, align_corners, g, b=2)
        offsets = pixel_offsets(7, 2, ho, wo, h, w, 1.5, align_corners, g)
        grid.requires_grad_()
        out = lstn_sample(
            image, grid, offsets=offsets, fixed_bias=fixed_bias, padding_mode=padding_mode, align_corners=align_corners
        )
        expected = torch.stack([0.3 + ax * px + ay * py for ax, ay in SLOPES], dim=1)
        torch.testing.assert_close(out, expected)
        out.sum().backward()
        sx, sy = normalized_to_pixel_scale(w, align_corners), normalized_to_pixel_scale(h, align_corners)
        slope = torch.tensor([sum(ax for ax, _ in SLOPES) * sx, sum(ay for _, ay in SLOPES) * sy], dtype=F64)
        torch.testing.assert_close(grid.grad, slope.expand_as(grid))

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_linear_image_exact_with_drawn_offsets(self, seed):
        # default noise: about 3 input pixels here; points stay 20 px inside, so every sample is interior
        h = w = 64
        gen = torch.Generator().manual_seed(seed)
        image = linear_image(h, w)
        grid, px, py = interior_grid(h, w, 6, 6, 20.0, False, gen)
        grid.requires_grad_()
        out = lstn_sample(image, grid, generator=gen)
        torch.testing.assert_close(out, torch.stack([0.3 + ax * px + ay * py for ax, ay in SLOPES], dim=1))
        weights = torch.tensor([1.0, -2.0], dtype=F64).view(1, 2, 1, 1)
        (out * weights).sum().backward()
        slope = [sum(wc * s[axis] for wc, s in zip((1.0, -2.0), SLOPES)) * w / 2 for axis in (0, 1)]
        torch.testing.assert_close(grid.grad, torch.tensor(slope, dtype=F64).expand_as(grid))

    def test_constant_image(self):
        image = torch.full((2, 3, 10, 10), 0.37, dtype=F64, requires_grad=True)
        grid = (torch.rand(2, 4, 5, 2, dtype=F64) * 0.4 - 0.2).requires_grad_()
        out = lstn_sample(image, grid, padding_mode="border")
        torch.testing.assert_close(out, torch.full_like(out, 0.37))
        grad_out = torch.rand_like(out)
        grad_image, grad_grid = torch.autograd.grad(out, (image, grid), grad_out)
        torch.testing.assert_close(grad_grid, torch.zeros_like(grad_grid), atol=1e-10, rtol=0)
        bilinear = F.grid_sample(image, grid.detach(), align_corners=False, padding_mode="border")
        torch.testing.assert_close(grad_image, torch.autograd.grad(bilinear, image, grad_out)[0])

    @pytest.mark.parametrize("fixed_bias", [False, True])
    def test_input_gradient_is_bilinear_at_the_point(self, fixed_bias):
        image, grid, offsets = random_case()
        image.requires_grad_()
        out = lstn_sample(image, grid.requires_grad_(), offsets=offsets, fixed_bias=fixed_bias)
        grad_out = torch.randn_like(out)
        bilinear = F.grid_sample(image, grid.detach(), align_corners=False)
        expected = torch.autograd.grad(bilinear, image, grad_out)[0]
        torch.testing.assert_close(torch.autograd.grad(out, image, grad_out)[0], expected, rtol=0, atol=0)

    def test_fixed_bias(self):
        image, grid, offsets = random_case()
        grid.requires_grad_()
        plain = lstn_sample(image, grid, offsets=offsets, fixed_bias=True)
        biased = lstn_sample(image, grid, offsets=offsets, fixed_bias=False)
        torch.testing.assert_close(plain, F.grid_sample(image, grid.detach(), align_corners=False), rtol=0, atol=0)
        assert (biased - plain).abs().max() > 1e-3  # the intercept c: the plane misses the centre on a random image
        torch.testing.assert_close(biased, _lstn_sample_reference(image, grid, offsets))
        grad_plain, grad_biased = (torch.autograd.grad(o.sum(), grid)[0] for o in (plain, biased))
        torch.testing.assert_close(grad_plain, grad_biased)  # the slope does not depend on the bias

    @pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
    @pytest.mark.parametrize("align_corners", [False, True])
    @pytest.mark.parametrize("fixed_bias", [False, True])
    def test_matches_reference(self, padding_mode, align_corners, fixed_bias):
        image, grid, offsets = random_case(k=6)
        image.requires_grad_()
        grid.requires_grad_()
        kwargs = dict(fixed_bias=fixed_bias, padding_mode=padding_mode, align_corners=align_corners)
        fast = lstn_sample(image, grid, num_samples=6, offsets=offsets, **kwargs)
        slow = _lstn_sample_reference(image, grid, offsets, **kwargs)
        torch.testing.assert_close(fast, slow)
        grad_out = torch.randn_like(fast)
        fast_grads = torch.autograd.grad(fast, (image, grid), grad_out)
        slow_grads = torch.autograd.grad(slow, (image, grid), grad_out)
        for a, b in zip(fast_grads, slow_grads):
            torch.testing.assert_close(a, b)

    @pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
    def test_edge_cases_lattice_border_outside(self, padding_mode):
        # lattice points (where bilinear's grid gradient jumps), the border, and points outside the image
        h = w = 8
        image = torch.rand(1, 2, h, w, dtype=F64, requires_grad=True)
        xs = torch.tensor([-1.5, -1.0, -1 + 1 / w, -0.25, 0.0, 0.25, 1 - 1 / w, 1.0, 1.5], dtype=F64)
        grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), dim=-1).unsqueeze(0).requires_grad_()
        offsets = torch.randn(7, *grid.shape, generator=torch.Generator().manual_seed(3), dtype=F64) * 0.1
        out = lstn_sample(image, grid, offsets=offsets, padding_mode=padding_mode)
        grad_image, grad_grid = torch.autograd.grad(out.square().sum(), (image, grid))
        assert torch.isfinite(out).all() and torch.isfinite(grad_image).all() and torch.isfinite(grad_grid).all()
        slow = _lstn_sample_reference(image, grid, offsets, padding_mode=padding_mode)
        torch.testing.assert_close(out, slow)
        torch.testing.assert_close(grad_grid, torch.autograd.grad(slow.square().sum(), grid)[0])

    @pytest.mark.parametrize("padding_mode", ["zeros", "border"])
    def test_far_outside_is_flat(self, padding_mode):
        # far past a corner every auxiliary point reads the same value (0, or the corner pixel): zero slope
        image = torch.rand(1, 1, 6, 6, dtype=F64)
        grid = torch.full((1, 2, 2, 2), 40.0, dtype=F64, requires_grad=True)
        out = lstn_sample(image, grid, padding_mode=padding_mode)
        corner = 0.0 if padding_mode == "zeros" else image[0, 0, -1, -1].item()
        torch.testing.assert_close(out, torch.full_like(out, corner))
        torch.testing.assert_close(torch.autograd.grad(out.sum(), grid)[0], torch.zeros_like(grid), atol=1e-9, rtol=0)

    def test_reproducible(self):
        image, grid, _ = random_case()
        grid.requires_grad_()

        def run(**kwargs):
            out = lstn_sample(image, grid, **kwargs)
            return out.detach(), torch.autograd.grad(out.sum(), grid)[0]

        torch.manual_seed(11)
        a = run()
        torch.manual_seed(11)
        b = run()
        c = run()
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        assert not torch.equal(a[1], c[1])
        state = torch.get_rng_state()
        d = run(generator=torch.Generator().manual_seed(5))
        e = run(generator=torch.Generator().manual_seed(5))
        f = run(generator=torch.Generator().manual_seed(6))
        assert torch.equal(torch.get_rng_state(), state)  # an explicit generator leaves the global one alone
        for x, y in zip(d, e):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        assert not torch.equal(d[0], f[0]) and not torch.equal(d[1], f[1])

    def test_drawn_offsets_have_the_reference_spread(self):
        # N(0, (s / Wo)^2) + push_away * N(0, (2 / W)^2) per axis, in normalized units
        b, k, h, w, ho, wo = 4, 8, 20, 40, 30, 16
        image, grid = torch.zeros(b, 1, h, w, dtype=F64), torch.zeros(b, ho, wo, 2, dtype=F64)
        gen = torch.Generator().manual_seed(0)
        for push_away, noise in [(True, 0.5), (False, 0.5), (True, 0.0), (True, 2.0)]:
            drawn, scale_x, scale_y = _auxiliary_offsets(None, image, grid, k, noise, push_away, gen)
            assert drawn.shape == (2, b, k - 1, ho, wo)
            offsets = torch.stack([drawn[0] * scale_x, drawn[1] * scale_y]).flatten(1)
            push = 1.0 if push_away else 0.0
            std = torch.tensor([(noise / wo) ** 2 + push * (2 / w) ** 2, (noise / ho) ** 2 + push * (2 / h) ** 2])
            torch.testing.assert_close(offsets.std(1), std.sqrt().to(F64), rtol=0.03, atol=0)
            assert (offsets.mean(1).abs() < 5 * std.sqrt().to(F64) / offsets.shape[1] ** 0.5).all()

    def test_nothing_of_size_k_saved_for_backward(self):
        image = torch.rand(2, 3, 32, 32, requires_grad=True)
        grid = (torch.rand(2, 16, 16, 2) * 2 - 1).requires_grad_()
        bilinear = saved_bytes(lambda: F.grid_sample(image, grid, align_corners=False))
        lstn8 = saved_bytes(lambda: lstn_sample(image, grid, num_samples=8))
        lstn32 = saved_bytes(lambda: lstn_sample(image, grid, num_samples=32))
        assert lstn8 == lstn32  # independent of the number of samples
        assert bilinear <= lstn8 < 3 * bilinear  # input and grid (as bilinear) plus two slopes (B, C, Ho, Wo)
        assert lstn8 < 2 * image.numel() * image.element_size()  # far from K copies of the input

    @pytest.mark.parametrize("fixed_bias", [False, True])
    def test_output_can_be_modified_in_place(self, fixed_bias):
        image, grid, offsets = random_case()
        image.requires_grad_()
        grid.requires_grad_()
        out = lstn_sample(image, grid, offsets=offsets, fixed_bias=fixed_bias)
        expected = torch.autograd.grad(out.sum(), (image, grid), retain_graph=True)
        out.mul_(1.0)
        for a, b in zip(torch.autograd.grad(out.sum(), (image, grid)), expected):
            torch.testing.assert_close(a, b)

    def test_no_grad(self):
        image, grid, offsets = random_case()
        with torch.no_grad():
            out = lstn_sample(image, grid.requires_grad_(), offsets=offsets)
        assert not out.requires_grad
        torch.testing.assert_close(out, lstn_sample(image, grid, offsets=offsets).detach())

    def test_gradcheck_input(self):
        # with fixed_bias the value is bilinear's, so its input gradient is the true derivative
        image, grid, offsets = random_case(b=1, c=2, h=5, w=6, ho=3, wo=2)
        image.requires_grad_()
        assert gradcheck(lambda x: lstn_sample(x, grid, offsets=offsets, fixed_bias=True), (image,))

    @pytest.mark.parametrize("align_corners", [False, True])
    def test_gradcheck_grid_on_linear_image(self, align_corners):
        # on a linear image the fitted plane is exact, so the slope is the true derivative of the value
        g = torch.Generator().manual_seed(4)
        image = linear_image(10, 12)
        grid, _, _ = interior_grid(10, 12, 2, 3, 3.0, align_corners, g)
        offsets = pixel_offsets(5, 1, 2, 3, 10, 12, 1.5, align_corners, g)
        assert gradcheck(
            lambda gr: lstn_sample(image, gr, num_samples=6, offsets=offsets, align_corners=align_corners),
            (grid.requires_grad_(),),
        )


class TestLstnSampleReference:
    def test_linear_image_exact(self):
        g = torch.Generator().manual_seed(7)
        image = linear_image(12, 16)
        grid, px, py = interior_grid(12, 16, 3, 4, 3.0, False, g)
        offsets = pixel_offsets(7, 1, 3, 4, 12, 16, 1.5, False, g)
        grid.requires_grad_()
        out = _lstn_sample_reference(image, grid, offsets)
        torch.testing.assert_close(out, torch.stack([0.3 + ax * px + ay * py for ax, ay in SLOPES], dim=1))
        (grad,) = torch.autograd.grad(out.sum(), grid)
        slope = torch.tensor([sum(a for a, _ in SLOPES) * 8, sum(b for _, b in SLOPES) * 6], dtype=F64)
        torch.testing.assert_close(grad, slope.expand_as(grid))

    def test_bias_is_the_plane_intercept(self):
        # three auxiliary points determine the plane exactly: c = I(p) - fitted plane at p, by hand
        image = torch.rand(1, 1, 6, 6, dtype=F64)
        grid = torch.tensor([[[[0.1, -0.2]]]], dtype=F64)
        offsets = torch.tensor([[0.3, 0.0], [0.0, 0.3], [-0.2, -0.2]], dtype=F64).view(3, 1, 1, 1, 2)
        sample = lambda p: F.grid_sample(image, p, align_corners=False).item()  # noqa: E731
        center = sample(grid)
        rows = torch.tensor([[0.3, 0.0, 1.0], [0.0, 0.3, 1.0], [-0.2, -0.2, 1.0]], dtype=F64)
        values = torch.tensor([sample(grid + d) - center for d in offsets], dtype=F64)
        a_u, a_v, c = torch.linalg.solve(rows, values).tolist()
        for fn in (_lstn_sample_reference, lambda i, g, o: lstn_sample(i, g, num_samples=4, offsets=o)):
            gr = grid.clone().requires_grad_()
            out = fn(image, gr, offsets)
            assert out.item() == pytest.approx(center + c, abs=1e-12)
            assert torch.autograd.grad(out.sum(), gr)[0].flatten().tolist() == pytest.approx([a_u, a_v], abs=1e-10)


class TestLSTN:
    def test_registered(self):
        assert interpolators.get("lstn") is LSTN
        info = interpolators.describe("lstn")
        assert info["stochastic"] is True and "multisample" in info["tags"]
        assert "Jiang" in info["reference"] and info["summary"]
        defaults = {name: spec["default"] for name, spec in info["hparams"].items()}
        assert defaults == {
            "num_samples": 8,
            "noise_strength": 0.5,
            "push_away": True,
            "fixed_bias": False,
            "padding_mode": "zeros",
            "align_corners": False,
            "backend": "eager",
        }
        assert info["hparams"]["padding_mode"]["choices"] == ["zeros", "border", "reflection"]

    def test_module_matches_functional(self):
        image, grid, _ = random_case()
        kwargs = dict(num_samples=5, noise_strength=1.0, push_away=False, fixed_bias=True, padding_mode="border")
        module = interpolators.create("lstn", align_corners=True, **kwargs)
        assert module.hparams() == dict(kwargs, align_corners=True, backend="eager")
        out = module(image, grid, generator=torch.Generator().manual_seed(2))
        expected = lstn_sample(image, grid, align_corners=True, generator=torch.Generator().manual_seed(2), **kwargs)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)

    @pytest.mark.parametrize(
        "kwargs, error, match",
        [
            ({"num_samples": 3}, ValueError, r"num_samples: expected at least 4"),
            ({"noise_strength": -1.0}, ValueError, r"noise_strength: expected a value >= 0, got -1.0"),
            ({"noise_strength": 0, "push_away": False}, ValueError, r"noise_strength: expected > 0 when push_away"),
            ({"fixed_bias": "no"}, TypeError, r"fixed_bias: expected a bool"),
            ({"padding_mode": "wrap"}, ValueError, r"padding_mode: expected one of"),
        ],
    )
    def test_exception(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            LSTN(**kwargs)
        with pytest.raises((TypeError, ValueError), match=list(kwargs)[0]):
            interpolators.create("lstn", **kwargs)
