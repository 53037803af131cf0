"""``backend="native"`` of L-STN and ESTN (``interpolators/_native.py``, ``csrc/``): the C++ kernels equal the eager path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch.utils.flop_counter

import interpolators
from interpolators import _native
from interpolators.estn import estn_sample
from interpolators.lstn import _hash_normals, lstn_sample
from suites.cost import saved_tensor_bytes

from torch.autograd import gradcheck

from backend_checks import assert_same, value_and_grads

pytestmark = pytest.mark.skipif(not _native.available(), reason="backend='native' needs a C++ compiler with OpenMP")
f64 = torch.float64
PADDINGS = ["zeros", "border", "reflection"]


def case(dtype=f64, batch: int = 2, size=(20, 24), out=(7, 9), seed: int = 0):
    """An image ``(B, 3, H, W)``, an off-lattice grid reaching past the borders and an output gradient."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, *size, generator=g, dtype=dtype)
    grid = torch.rand(batch, *out, 2, generator=g, dtype=dtype) * 2.4 - 1.2
    grad_out = torch.rand(batch, 3, *out, generator=g, dtype=dtype)
    return image, grid, grad_out


def eager_and_native(dtype=f64, batch: int = 2, **kwargs):
    """Value and both gradients from eager and from native, with the same fixed offsets."""
    image, grid, grad_out = case(dtype, batch)
    m = kwargs.get("num_samples", 8) - 1
    offsets = torch.randn(m, batch, 7, 9, 2, generator=torch.Generator().manual_seed(1), dtype=dtype) * 0.05
    return [
        value_and_grads(lambda i, g: lstn_sample(i, g, offsets=offsets, backend=b, **kwargs), image, grid, grad_out)
        for b in ("eager", "native")
    ]


class TestNativeLSTN:
    @pytest.mark.parametrize("padding_mode", PADDINGS)
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_matches_eager_with_fixed_offsets(self, padding_mode, align_corners):
        pair = eager_and_native(padding_mode=padding_mode, align_corners=align_corners)
        assert_same(*pair, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize(
        ("batch", "kwargs"),
        [(1, {}), (2, {"fixed_bias": True}), (2, {"num_samples": 5}), (2, {"num_samples": 20})],
        ids=["batch_of_one", "fixed_bias", "K5", "K20"],
    )
    def test_matches_eager_variants(self, batch, kwargs):
        assert_same(*eager_and_native(batch=batch, **kwargs), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("padding_mode", PADDINGS)
    def test_float32_close_to_eager(self, padding_mode):
        assert_same(*eager_and_native(torch.float32, padding_mode=padding_mode), rtol=1e-4, atol=1e-4)

    def test_drawn_offsets_are_the_hashed_normals(self):
        """With a generator, native draws one 32-bit key and the normals of ``_hash_normals`` (plain torch code)."""
        image, grid, grad_out = case(f64)
        b, ho, wo, m = 2, 7, 9, 7
        key = torch.empty(1, dtype=torch.int64).random_(0, 2**32, generator=torch.Generator().manual_seed(5))
        du, dv = _hash_normals(key, (b, m, ho, wo), f64)  # in standard deviations: N(0, 1)
        std_x = ((0.5 / wo) ** 2 + (2.0 / 24) ** 2) ** 0.5  # noise_strength / Wo and one input pixel, summed
        std_y = ((0.5 / ho) ** 2 + (2.0 / 20) ** 2) ** 0.5
        offsets = torch.stack((du * std_x, dv * std_y), dim=-1).transpose(0, 1)  # (M, B, Ho, Wo, 2)
        eager = value_and_grads(lambda i, g: lstn_sample(i, g, offsets=offsets), image, grid, grad_out)
        generator = torch.Generator().manual_seed(5)
        native = value_and_grads(lambda i, g: lstn_sample(i, g, backend="native", generator=generator), image, grid, grad_out)
        assert_same(eager, native, rtol=1e-9, atol=1e-11)

    @pytest.mark.parametrize("dtype", [torch.float32, f64], ids=["float32", "float64"])
    def test_kernel_normals_equal_the_torch_hash(self, dtype):
        du, dv = _native.lstn_hash_normals(0x2468ACE0, 50_000, dtype)
        expected = _hash_normals(torch.tensor([0x2468ACE0]), (1, 1, 1, 50_000), dtype)
        tolerance = 2e-6 if dtype == torch.float32 else 1e-14  # float32: polynomial log, sin and cos
        torch.testing.assert_close(du, expected[0].flatten(), rtol=tolerance, atol=tolerance)
        torch.testing.assert_close(dv, expected[1].flatten(), rtol=tolerance, atol=tolerance)

    def test_linear_image_exact_slope_with_drawn_offsets(self):
        px = torch.arange(32.0, dtype=f64)
        ramp = (px / 8 + px[:, None] / 4).expand(1, 1, 32, 32)  # I = px / 8 + py / 4
        grid = (torch.rand(1, 6, 6, 2, dtype=f64, generator=torch.Generator().manual_seed(2)) - 0.5).requires_grad_()
        out = lstn_sample(ramp, grid, backend="native", generator=torch.Generator().manual_seed(0))
        out.sum().backward()
        # d/dgx = (1/8) * W/2 = 2 and d/dgy = (1/4) * H/2 = 4 per normalized unit, at every point
        torch.testing.assert_close(grid.grad, torch.tensor([2.0, 4.0], dtype=f64).expand(1, 6, 6, 2))
        torch.testing.assert_close(out.detach(), F.grid_sample(ramp, grid.detach(), align_corners=False))

    @pytest.mark.parametrize("padding_mode", PADDINGS)
    @pytest.mark.parametrize("align_corners", [False, True])
    @pytest.mark.parametrize(("size", "out"), [((5, 6), (11, 13)), ((23, 17), (4, 3)), ((1, 7), (3, 3))])
    def test_input_gradient_is_grid_samples(self, padding_mode, align_corners, size, out):
        """The scatter kernel against torch's own ``grid_sampler_2d_backward`` (up- and downsampling, one row)."""
        image, grid, grad_out = case(f64, 2, size, out, seed=3)
        codes = {"zeros": 0, "border": 1, "reflection": 2}
        expected = torch.ops.aten.grid_sampler_2d_backward(
            grad_out, image, grid, 0, codes[padding_mode], align_corners, (True, False)
        )[0]
        actual = _native.bilinear_input_grad(grad_out, image.shape, grid, codes[padding_mode], align_corners)
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)

    def test_non_contiguous_inputs(self):
        image, grid, grad_out = case(f64)
        offsets = torch.randn(7, 2, 7, 9, 2, generator=torch.Generator().manual_seed(1), dtype=f64) * 0.05
        image_t = image.transpose(2, 3).contiguous().transpose(2, 3)  # same values, channels-last-like strides
        grid_t = grid.permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)  # planar storage, interleaved view
        results = [
            value_and_grads(lambda i, g: lstn_sample(i, g, offsets=offsets, backend="native"), im, gr, grad_out)
            for im, gr in ((image, grid), (image_t, grid_t))
        ]
        assert_same(*results, rtol=0, atol=0)

    def test_same_numbers_with_any_thread_count(self):
        """Every output and every input-gradient plane has one owner thread: no order of sums depends on threads."""
        image, grid, grad_out = case(torch.float32, batch=3, size=(40, 40), out=(30, 70))
        results = []
        threads = torch.get_num_threads()
        try:
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                generator = torch.Generator().manual_seed(0)
                fn = lambda i, g: lstn_sample(i, g, backend="native", generator=generator)  # noqa: E731
                results.append(value_and_grads(fn, image, grid, grad_out))
        finally:
            torch.set_num_threads(threads)
        assert_same(results[0], results[1], rtol=0, atol=0)
        assert_same(results[0], results[2], rtol=0, atol=0)

    def test_only_the_requested_gradients(self):
        image, grid, _ = case(torch.float32)
        grid.requires_grad_()
        lstn_sample(image, grid, backend="native").sum().backward()
        assert image.grad is None and grid.grad is not None and torch.isfinite(grid.grad).all()

    def test_saves_two_slopes_for_backward(self):
        image, grid, _ = case(torch.float32)
        image.requires_grad_(), grid.requires_grad_()
        saved = saved_tensor_bytes(lambda: lstn_sample(image, grid, backend="native"))
        slopes = 2 * 2 * 3 * 7 * 9 * 4  # two (B, C, Ho, Wo) float32 planes in one storage
        assert saved == image.nbytes + grid.nbytes + slopes

    def test_runs_plain_torch_under_a_flop_counter(self):
        """Under a dispatch mode the kernels would be invisible: the compiled backend's torch code runs, same offsets."""
        image, grid, _ = case(torch.float32)
        sampler = interpolators.create("lstn", backend="native")
        native = sampler(image, grid, generator=torch.Generator().manual_seed(4))
        with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
            traced = sampler(image, grid, generator=torch.Generator().manual_seed(4))
        torch.testing.assert_close(traced, native, rtol=1e-4, atol=1e-4)
        assert counter.get_total_flops() >= 0


def estn_both(dtype=f64, batch: int = 2, size=(20, 24), out=(7, 9), backends=("eager", "native"), **kwargs):
    """ESTN's value and both gradients from each backend (the spiral: no randomness)."""
    image, grid, grad_out = case(dtype, batch, size, out)
    return [
        value_and_grads(lambda i, g: estn_sample(i, g, backend=b, **kwargs), image, grid, grad_out) for b in backends
    ]


class TestNativeESTN:
    @pytest.mark.parametrize("padding_mode", PADDINGS)
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_matches_eager(self, padding_mode, align_corners):
        assert_same(*estn_both(padding_mode=padding_mode, align_corners=align_corners), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize(
        ("batch", "kwargs"),
        [
            (2, {"entropy": None}),
            (2, {"iterations": 0}),
            (2, {"num_samples": 12, "iterations": 1, "entropy": 0.5}),
            (2, {"num_samples": 4, "iterations": 5, "entropy": 0.05, "tangent_scale": 1.5, "kernel_size": 5}),
            (2, {"value": "center"}),
            (2, {"ridge": 0.0, "min_radius": 0.0}),
            (1, {}),
        ],
        ids=["no_entropy", "no_iterations", "k12_one_round", "k4_sharp_entropy", "center", "no_ridge", "batch_of_one"],
    )
    def test_matches_eager_variants(self, batch, kwargs):
        assert_same(*estn_both(batch=batch, **kwargs), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize(
        ("size", "out", "align_corners"),
        [((30, 40), (5, 70), False), ((30, 40), (3, 130), False), ((9, 11), (1, 6), False), ((9, 11), (6, 1), False),
         ((1, 11), (4, 5), True), ((9, 1), (4, 5), True)],
        ids=["two_tiles", "three_tiles", "one_row", "one_column", "one_pixel_high", "one_pixel_wide"],
    )
    def test_matches_eager_shapes(self, size, out, align_corners):
        """Tiles that end mid-row, finite differences along an axis of length 1, a zero pixel scale (align_corners)."""
        pair = estn_both(size=size, out=out, align_corners=align_corners)
        assert_same(*pair, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("kwargs", [{}, {"tangent_scale": 3.0, "entropy": 0.1}], ids=["default", "zero_priors"])
    def test_float32_close_to_eager(self, kwargs):
        """float32 runs the kernel's own exp; samples past Eq. 5's radius have prior weight 0 (log -inf)."""
        assert_same(*estn_both(torch.float32, **kwargs), rtol=1e-4, atol=1e-4)

    def test_float32_close_to_compiled_on_a_smooth_grid(self):
        """What the benchmarks run: a rotation and zoom, float32, against the compiled backend."""
        g = torch.Generator().manual_seed(3)
        image, grad_out = torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 40, 40, generator=g)
        theta = torch.tensor([[0.8, -0.3, 0.05], [0.3, 0.8, -0.1]]).expand(4, 2, 3)
        grid = F.affine_grid(theta, [4, 3, 40, 40], align_corners=False)
        results = [
            value_and_grads(lambda i, gr: estn_sample(i, gr, backend=b), image, grid, grad_out) for b in ("eager", "native")
        ]
        assert_same(*results, rtol=1e-4, atol=1e-4)

    def test_gradcheck_input_with_fixed_weights(self):
        # the input gradient is exact where the output is linear in the input: the prior's fixed weights
        image, grid, _ = case(f64, 1, (8, 8), (3, 4))
        image = image[:, :2].clone().requires_grad_()
        assert gradcheck(lambda x: estn_sample(x, grid * 0.8, entropy=None, backend="native"), (image,))

    def test_linear_image_known_answer(self):
        image = torch.arange(64.0, dtype=f64).view(1, 1, 8, 8)  # I = 8 py + px
        grid = torch.zeros(1, 1, 1, 2, dtype=f64, requires_grad=True)  # pixel (3.5, 3.5)
        out = estn_sample(image, grid, ridge=0.0, backend="native")  # no ridge: exact slopes and value
        out.backward()
        assert out.item() == pytest.approx(31.5, abs=1e-10)
        assert grid.grad.flatten().tolist() == pytest.approx([4.0, 32.0], abs=1e-8)

    def test_non_contiguous_inputs(self):
        image, grid, grad_out = case(f64)
        image_t = image.transpose(2, 3).contiguous().transpose(2, 3)
        grid_t = grid.permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)
        fn = lambda i, g: estn_sample(i, g, backend="native")  # noqa: E731
        assert_same(value_and_grads(fn, image, grid, grad_out), value_and_grads(fn, image_t, grid_t, grad_out), 0, 0)

    def test_same_numbers_with_any_thread_count(self):
        """A batch of 2 on 1, 2 and 3 threads: the input gradient's work items switch from whole batch elements to
        single planes, and every plane still gets the same adds in the same order."""
        image, grid, grad_out = case(torch.float32, batch=2, size=(40, 40), out=(30, 70))
        results = []
        threads = torch.get_num_threads()
        try:
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                results.append(value_and_grads(lambda i, g: estn_sample(i, g, backend="native"), image, grid, grad_out))
        finally:
            torch.set_num_threads(threads)
        assert_same(results[0], results[1], rtol=0, atol=0)
        assert_same(results[0], results[2], rtol=0, atol=0)

    @pytest.mark.parametrize("value", ["fit", "center"])
    def test_non_finite_grid_gives_nan_where_eager_does(self, value):
        """A NaN grid point spoils its own and its neighbours' tangent frames, in eager and in native alike."""
        image = torch.arange(64.0, dtype=f64).view(1, 1, 8, 8)
        grid = torch.zeros(1, 3, 4, 2, dtype=f64)
        grid[0, 1, 1, 0] = float("nan")
        grid[0, 2, 3, 1] = float("inf")
        eager, native = (estn_sample(image, grid, value=value, backend=b) for b in ("eager", "native"))
        assert torch.isnan(eager).any()
        torch.testing.assert_close(native, eager, equal_nan=True)

    def test_no_backward_state_without_grad(self, monkeypatch):
        """Under no_grad (or without inputs that need a gradient) the kernel is asked for no beta."""
        image, grid, _ = case(torch.float32)
        image.requires_grad_()
        calls, estn_fit = [], _native.estn_fit
        monkeypatch.setattr(_native, "estn_fit", lambda *a, **k: calls.append(k["need_beta"]) or estn_fit(*a, **k))
        with torch.no_grad():
            value = estn_sample(image, grid, backend="native")
        torch.testing.assert_close(value, estn_sample(image, grid, backend="native").detach())
        assert calls == [False, True] and not value.requires_grad

    @pytest.mark.parametrize("wanted", ["input", "grid"])
    def test_only_the_requested_gradients(self, wanted):
        image, grid, _ = case(torch.float32)
        (image if wanted == "input" else grid).requires_grad_()
        estn_sample(image, grid, backend="native").sum().backward()
        assert (image.grad is not None) == (wanted == "input") and (grid.grad is not None) == (wanted == "grid")
        assert torch.isfinite(image.grad if wanted == "input" else grid.grad).all()

    @pytest.mark.parametrize("value", ["fit", "center"])
    def test_saves_grid_beta_and_slopes_for_backward(self, value):
        """Not the input, not the points: the grid, beta (B, K, Ho, Wo) unless value='center', the slopes."""
        image, grid, _ = case(torch.float32)
        image.requires_grad_(), grid.requires_grad_()
        saved = saved_tensor_bytes(lambda: estn_sample(image, grid, backend="native", value=value))
        beta = 2 * 9 * 7 * 9 * 4 if value == "fit" else 0
        slopes = 2 * 2 * 3 * 7 * 9 * 4
        assert saved == grid.nbytes + beta + slopes

    def test_runs_plain_torch_under_a_flop_counter(self, monkeypatch):
        """Under a dispatch mode the kernels would be invisible: the compiled backend's torch code runs instead."""
        image, grid, _ = case(torch.float32)
        sampler = interpolators.create("estn", backend="native")
        native = sampler(image, grid)

        def kernel_called(*args, **kwargs):
            raise AssertionError("the native kernel ran under a dispatch mode")

        monkeypatch.setattr(_native, "estn_fit", kernel_called)
        with torch.utils.flop_counter.FlopCounterMode(display=False):
            traced = sampler(image, grid)
        torch.testing.assert_close(traced, native, rtol=1e-4, atol=1e-4)


class TestNativeErrors:
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision(self, dtype):
        image, grid, _ = case(dtype)
        with pytest.raises(TypeError, match=rf"backend: 'native' runs on CPU float32 and float64 tensors, got {dtype}"):
            lstn_sample(image, grid, backend="native")

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    def test_cuda(self):
        image, grid, _ = case(torch.float32)
        with pytest.raises(TypeError, match="backend: 'native' runs on CPU"):
            lstn_sample(image.cuda(), grid.cuda(), backend="native")

    def test_too_many_points_for_the_counter(self):
        image = torch.rand(1, 1, 4, 4)
        grid = torch.zeros(1, 1, 1, 2).expand(1, 30000, 30000, 2)  # 7 * 9e8 points > 2^32, no memory
        with pytest.raises(ValueError, match=r"backend: 'native' draws at most 2\^32 auxiliary points"):
            lstn_sample(image, grid, backend="native")

    def test_planes_past_32_bit_indexing(self):
        image = torch.zeros(1, 1, 1, 1).expand(1, 1, 46341, 46341)  # H * W >= 2^31, no memory
        with pytest.raises(ValueError, match=r"backend: 'native' indexes input planes with 32 bits, got H \* W = 2147488281"):
            lstn_sample(image, torch.zeros(1, 2, 2, 2), backend="native")

    def test_estn_native_needs_the_spiral(self):
        with pytest.raises(ValueError, match="backend: 'native' fuses the shared spiral only"):
            interpolators.create("estn", backend="native", sampling="random")

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_estn_half_precision(self, dtype):
        image, grid, _ = case(dtype)
        with pytest.raises(TypeError, match=rf"backend: 'native' runs on CPU float32 and float64 tensors, got {dtype}"):
            estn_sample(image, grid, backend="native")

    @pytest.mark.parametrize(
        ("compiler", "message"),
        [
            ("/nonexistent/c++", r"backend='native': no C\+\+ compiler found.*backend='compiled' or 'eager'"),
            ("false", r"(?s)backend='native': false could not build sampling.cpp, lstn.cpp, estn.cpp \(exit 1\).*backend='compiled' or 'eager'"),
        ],
        ids=["missing", "failing"],
    )
    def test_build_failure_names_the_backend(self, monkeypatch, tmp_path, compiler, message):
        monkeypatch.setenv("CXX", compiler)
        monkeypatch.setenv("STN_BENCH_CACHE", str(tmp_path))
        _native.library.cache_clear()
        try:
            with pytest.raises(RuntimeError, match=message):
                _native.library()
        finally:
            monkeypatch.undo()
            _native.library.cache_clear()
        assert _native.library() is not None
