"""The C++ operators behind ``backend="operator"`` and ``"auto"`` (``interpolators/_extension.py``, ``csrc/``).

``torch.library.opcheck`` on the contract test's cases, ``torch.compile(fullgraph=True)`` calling the operators,
``FlopCounterMode`` counting them through the cost suite's formulas, the eager path's numbers (float64 to 1e-10,
float32 to 1e-4) on awkward shapes, any thread count, non-contiguous inputs, exactly what is saved for backward,
the fallback of ``"auto"``, and an ``x86-64-v3`` (AVX2) build giving the same numbers as this machine's own,
built by two processes at once.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import interpolators
from backend_checks import GraphRecorder, assert_same, both_backends, case, fixed_offsets, value_and_grads
from interpolators import _extension
from interpolators.estn import ESTNConfig, estn_sample
from interpolators.estn.eager import estn_parts
from interpolators.lstn.eager import hash_normals
from suites.cost import count_flops, estn_forward_flops, lstn_forward_flops, saved_tensor_bytes

pytestmark = pytest.mark.skipif(not _extension.ensure_loaded(), reason=f"no operators: {_extension._why_not}")
ops = torch.ops.interpolators
f64 = torch.float64
PADDINGS = ["zeros", "border", "reflection"]
ROOT = Path(__file__).resolve().parent.parent


# ---- the contract test's cases, through opcheck -----------------------------------------------------------------

CONTRACT_CASES = [  # (B, C), padding, align_corners, dtype, requires grad (input, grid)
    ((2, 3), "zeros", False, torch.float32, (True, True)),
    ((1, 1), "border", True, f64, (True, True)),
    ((4, 1), "reflection", False, f64, (False, True)),
    ((3, 3), "reflection", True, torch.float32, (True, False)),
]


@pytest.mark.parametrize("shape, padding_mode, align_corners, dtype, needs", CONTRACT_CASES)
class TestOpcheck:
    device = "cpu"  # tests/test_cuda_operators.py runs these on CUDA

    def inputs(self, shape, dtype, needs):
        g = torch.Generator().manual_seed(0)
        image = torch.rand(*shape, 9, 11, generator=g, dtype=dtype).to(self.device).requires_grad_(needs[0])
        grid = (torch.rand(shape[0], 5, 7, 2, generator=g, dtype=dtype) * 2.6 - 1.3).to(self.device).requires_grad_(needs[1])
        return image, grid

    def test_lstn_forward(self, shape, padding_mode, align_corners, dtype, needs):
        image, grid = self.inputs(shape, dtype, needs)
        offsets = torch.randn(2, shape[0], 7, 5, 7, dtype=dtype).to(self.device)
        common = (7, 0.05, 0.06, padding_mode, align_corners)
        key = torch.tensor(99, device=self.device)
        for fixed_bias in (False, True):
            torch.library.opcheck(ops.lstn_forward.default, (image, grid, offsets, None, *common, fixed_bias))
            torch.library.opcheck(ops.lstn_forward.default, (image, grid, None, key, *common, fixed_bias))

    def test_estn_forward(self, shape, padding_mode, align_corners, dtype, needs):
        image, grid = self.inputs(shape, dtype, needs)
        for config in (ESTNConfig(), ESTNConfig(entropy=None, num_samples=12), ESTNConfig(value="center")):
            keep_beta = config.value == "fit" and image.requires_grad
            args = (image, grid, *config.spiral, config.tangent_scale, config.min_radius, config.entropy,
                    config.iterations, config.ridge, padding_mode, align_corners, config.value == "center", keep_beta)  # fmt: skip
            torch.library.opcheck(ops.estn_forward.default, args)

    def test_backward_operators(self, shape, padding_mode, align_corners, dtype, needs):
        image, grid = self.inputs(shape, dtype, needs)
        grid = grid.detach()
        grad = torch.rand(shape[0], shape[1], 5, 7, dtype=dtype).to(self.device)
        z_x, z_y, _ = ESTNConfig().spiral
        beta = torch.rand(shape[0], 8, 5, 7, dtype=dtype).to(self.device)
        slopes = torch.rand(2, *grad.shape, dtype=dtype).to(self.device)
        torch.library.opcheck(ops.bilinear_input_grad.default, (grad, grid, 9, 11, padding_mode, align_corners))
        torch.library.opcheck(ops.slope_grid_grad.default, (grad, slopes))
        torch.library.opcheck(
            ops.estn_input_grad.default, (grad, grid, z_x, z_y, beta, 9, 11, 0.5, 0.5, padding_mode, align_corners)
        )


# ---- torch.compile and FlopCounterMode see the operators --------------------------------------------------------


@pytest.mark.parametrize(
    "name, forward, backward",
    [
        ("lstn", {"lstn_forward"}, {"bilinear_input_grad", "slope_grid_grad"}),
        ("estn", {"estn_forward"}, {"estn_input_grad", "slope_grid_grad"}),
    ],
)
def test_compile_fullgraph_calls_the_operators(name, forward, backward):
    sampler = interpolators.create(name)
    recorder = GraphRecorder()
    compiled = torch.compile(sampler, fullgraph=True, backend=recorder)
    image, grid, grad_out = case(torch.float32)
    torch.manual_seed(3)
    got = value_and_grads(compiled, image, grid, grad_out)
    torch.manual_seed(3)
    assert_same(value_and_grads(sampler, image, grid, grad_out), got, rtol=0, atol=0)
    assert recorder.operators() == {"forward": forward, "backward": backward}
    assert not any("grid_sampler" in t for targets in recorder.graphs.values() for t in targets)  # no other code


@pytest.mark.parametrize("name, analytic", [("lstn", lstn_forward_flops), ("estn", estn_forward_flops)])
def test_flop_counter_counts_the_operators(name, analytic):
    sampler = interpolators.create(name)
    image, grid, grad_out = case(torch.float32)
    forward = count_flops(lambda: sampler(image, grid))
    assert forward.total == analytic(2, 3, 20, 24, 7, 9, sampler.hparams()) > 0
    assert forward.by_op == {f"interpolators.{name}_forward": forward.total} and not forward.uncounted
    leaves = image.requires_grad_(), grid.requires_grad_()
    both = count_flops(lambda: sampler(*leaves).backward(grad_out))
    assert both.total > forward.total and not both.uncounted
    assert "interpolators.slope_grid_grad" in both.by_op


# ---- the eager path's numbers -------------------------------------------------------------------------------------


class TestLSTNOperator:
    @pytest.mark.parametrize("padding_mode", PADDINGS)
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_matches_eager_with_fixed_offsets(self, padding_mode, align_corners):
        image, grid, grad_out = case()
        pair = both_backends("lstn", image, grid, grad_out, fixed_offsets(8, 2, (7, 9)),
                             padding_mode=padding_mode, align_corners=align_corners)  # fmt: skip
        assert_same(*pair, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("padding_mode", PADDINGS)
    def test_matches_eager_with_drawn_offsets(self, padding_mode):
        image, grid, grad_out = case()
        assert_same(*both_backends("lstn", image, grid, grad_out, generator_seed=5, padding_mode=padding_mode),
                    rtol=1e-10, atol=1e-12)  # fmt: skip

    @pytest.mark.parametrize(
        "batch, channels, size, out, hparams",
        [(1, 3, (20, 24), (7, 9), {}), (2, 3, (20, 24), (7, 9), {"fixed_bias": True}), (2, 1, (5, 6), (3, 17), {"num_samples": 20}),
         (1, 2, (1, 1), (1, 1), {"align_corners": True}), (3, 2, (9, 4), (1, 33), {"padding_mode": "border"})],
        ids=["batch_of_one", "fixed_bias", "K20_odd_width", "one_pixel", "one_row"],
    )  # fmt: skip
    def test_matches_eager_variants(self, batch, channels, size, out, hparams):
        image, grid, grad_out = case(batch=batch, channels=channels, size=size, out=out)
        offsets = fixed_offsets(hparams.get("num_samples", 8), batch, out)
        assert_same(*both_backends("lstn", image, grid, grad_out, offsets, **hparams), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("padding_mode", PADDINGS)
    def test_float32_close_to_eager(self, padding_mode):
        image, grid, grad_out = case(torch.float32)
        assert_same(*both_backends("lstn", image, grid, grad_out, generator_seed=2, padding_mode=padding_mode),
                    rtol=1e-4, atol=1e-4)  # fmt: skip

    @pytest.mark.parametrize("padding_mode", PADDINGS)
    @pytest.mark.parametrize("align_corners", [False, True])
    @pytest.mark.parametrize("dtype", [torch.float32, f64], ids=["float32", "float64"])
    def test_zero_bordered_samples_are_grid_samples(self, padding_mode, align_corners, dtype):
        # with fixed_bias the value is the bilinear sample at the grid point: the kernel's samples from its
        # zero-bordered plane copies against grid_sample, at points far outside, on the border lines and at the clamp
        g = torch.Generator().manual_seed(3)
        image = torch.randn(2, 3, 5, 7, generator=g, dtype=dtype) * 100
        grid = torch.rand(2, 9, 11, 2, generator=g, dtype=dtype) * 8 - 4
        grid[0, 0, :4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]], dtype=dtype)
        value, _ = ops.lstn_forward(image, grid, None, torch.tensor(1), 7, 0.1, 0.1, padding_mode, align_corners, True)
        expected = torch.nn.functional.grid_sample(image, grid, padding_mode=padding_mode, align_corners=align_corners)
        tolerance = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(value, expected, rtol=tolerance, atol=tolerance)

    @pytest.mark.parametrize("dtype", [torch.float32, f64], ids=["float32", "float64"])
    def test_kernel_normals_equal_the_torch_hash(self, dtype):
        key = torch.tensor(0x2468ACE0)
        du, dv = ops.lstn_hash_normals(key, 50_000, dtype)
        expected = hash_normals(key, (50_000,), dtype)
        tolerance = 2e-6 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(du, expected[0], rtol=tolerance, atol=tolerance)
        torch.testing.assert_close(dv, expected[1], rtol=tolerance, atol=tolerance)


class TestESTNOperator:
    @pytest.mark.parametrize("padding_mode", PADDINGS)
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_matches_eager(self, padding_mode, align_corners):
        image, grid, grad_out = case()
        pair = both_backends("estn", image, grid, grad_out, padding_mode=padding_mode, align_corners=align_corners)
        assert_same(*pair, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize(
        "batch, hparams",
        [(2, {"entropy": None}), (2, {"iterations": 0}), (2, {"num_samples": 12, "iterations": 4, "entropy": 0.3}),
         (2, {"num_samples": 4, "kernel_size": 5, "tangent_scale": 1.0}), (2, {"value": "center"}),
         (2, {"ridge": 0.0, "min_radius": 0.0}), (1, {})],
        ids=["no_entropy", "no_iterations", "K12", "K4", "center", "no_ridge", "batch_of_one"],
    )  # fmt: skip
    def test_matches_eager_variants(self, batch, hparams):
        image, grid, grad_out = case(batch=batch)
        assert_same(*both_backends("estn", image, grid, grad_out, **hparams), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("size, out, align_corners", [((5, 6), (1, 17), False), ((9, 4), (33, 1), True),
                                                          ((1, 1), (2, 3), True), ((7, 7), (3, 40), False)])  # fmt: skip
    def test_matches_eager_shapes(self, size, out, align_corners):
        image, grid, grad_out = case(size=size, out=out)
        assert_same(*both_backends("estn", image, grid, grad_out, align_corners=align_corners), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("hparams", [{}, {"entropy": None}, {"padding_mode": "reflection", "value": "center"}])
    def test_float32_close_to_eager(self, hparams):
        image, grid, grad_out = case(torch.float32)
        assert_same(*both_backends("estn", image, grid, grad_out, **hparams), rtol=1e-4, atol=1e-4)

    def test_beta_is_the_eager_intercept_weights_of_samples_one_on(self):
        image, grid, _ = case()
        config = ESTNConfig()
        _, _, beta = ops.estn_forward(image, grid, *config.spiral, 0.5, 0.5, 1.0, 2, 1e-6, "zeros", False, False, True)
        expected = estn_parts(image, grid, config, None).beta[:, 0, 1:]
        torch.testing.assert_close(beta, expected, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("value", ["fit", "center"])
    def test_non_finite_grid_gives_nan_where_eager_does(self, value):
        image, grid, _ = case()
        grid[0, 2, 3, 0] = float("nan")
        grid[1, 4, 1, 1] = float("inf")
        eager = estn_sample(image, grid, ESTNConfig(value=value, backend="eager"))
        operator = estn_sample(image, grid, ESTNConfig(value=value, backend="operator"))
        assert torch.equal(eager.isnan(), operator.isnan()) and eager.isnan().any()
        torch.testing.assert_close(operator.nan_to_num(), eager.nan_to_num(), rtol=1e-10, atol=1e-12)


# ---- what does not change the numbers: threads, memory layout ----------------------------------------------------


@pytest.mark.parametrize("name", ["lstn", "estn"])
@pytest.mark.parametrize("batch", [1, 4])  # fewer work items than threads, and more
def test_same_numbers_with_any_thread_count(name, batch):
    image, grid, grad_out = case(torch.float32, batch=batch)
    sampler = interpolators.create(name, backend="operator")
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            results.append(value_and_grads(sampler, image, grid, grad_out))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert_same(results[0], other, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["lstn", "estn"])
def test_non_contiguous_inputs(name):
    image, grid, grad_out = case()
    sampler = interpolators.create(name, backend="operator")
    wide = torch.stack([image, image], dim=-1).flatten(-2)[..., ::2]  # a strided view of the same values
    grid_t = grid.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    torch.manual_seed(0)
    expected = value_and_grads(sampler, image, grid, grad_out)
    torch.manual_seed(0)
    got = value_and_grads(sampler, wide, grid_t, grad_out.transpose(2, 3).contiguous().transpose(2, 3))
    assert_same(expected, got, rtol=0, atol=0)


# ---- what is kept for backward -----------------------------------------------------------------------------------


class TestSavedForBackward:
    def bytes(self, name, image, grid, **hparams):
        sampler = interpolators.create(name, backend="operator", **hparams)
        return saved_tensor_bytes(lambda: sampler(image, grid))

    def test_lstn_keeps_the_grid_and_two_slopes(self):
        image, grid, _ = case()
        b, c, ho, wo = 2, 3, 7, 9
        image.requires_grad_(), grid.requires_grad_()
        assert self.bytes("lstn", image, grid) == 8 * (b * ho * wo * 2 + 2 * b * c * ho * wo)
        assert self.bytes("lstn", image.detach(), grid) == 8 * 2 * b * c * ho * wo  # no input gradient: no grid
        assert self.bytes("lstn", image, grid.detach()) == 8 * b * ho * wo * 2  # no grid gradient: no slopes
        with torch.no_grad():
            assert self.bytes("lstn", image, grid) == 0

    @pytest.mark.parametrize("value", ["fit", "center"])
    def test_estn_keeps_the_grid_beta_and_slopes(self, value):
        image, grid, _ = case()
        b, c, k, ho, wo = 2, 3, 9, 7, 9
        image.requires_grad_(), grid.requires_grad_()
        beta = b * (k - 1) * ho * wo if value == "fit" else 0
        assert self.bytes("estn", image, grid, value=value) == 8 * (b * ho * wo * 2 + beta + 2 * b * c * ho * wo)
        assert self.bytes("estn", image.detach(), grid, value=value) == 8 * 2 * b * c * ho * wo
        with torch.no_grad():
            assert self.bytes("estn", image, grid, value=value) == 0

    @pytest.mark.parametrize("name, wanted", [("lstn", (True, False)), ("lstn", (False, True)),
                                              ("estn", (True, False)), ("estn", (False, True))])  # fmt: skip
    def test_only_the_requested_gradients(self, name, wanted):
        image, grid, grad_out = case()
        image.requires_grad_(wanted[0]), grid.requires_grad_(wanted[1])
        interpolators.create(name, backend="operator")(image, grid).backward(grad_out)
        assert (image.grad is not None, grid.grad is not None) == wanted


# ---- backend="auto" and "operator" ---------------------------------------------------------------------------------


class TestBackendChoice:
    @pytest.mark.parametrize("name", ["lstn", "estn"])
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_cpu_half_precision_runs_the_operator_in_float32(self, name, dtype):
        image, grid, _ = case(torch.float32)
        sampler = interpolators.create(name)
        torch.manual_seed(0)
        out = sampler(image.to(dtype), grid.to(dtype))
        torch.manual_seed(0)
        expected = sampler(image.to(dtype).float(), grid.to(dtype).float()).to(dtype)
        assert out.dtype == dtype
        torch.testing.assert_close(out, expected, rtol=0, atol=0)

    @pytest.mark.parametrize("name", ["lstn", "estn"])
    def test_operator_refuses_what_it_cannot_run(self, name, monkeypatch):
        monkeypatch.setattr(_extension, "_loaded", False)
        monkeypatch.setattr(_extension, "_why_not", "the C++ operators could not be built (RuntimeError: no ninja)")
        image, grid, _ = case(torch.float32)
        with pytest.raises(RuntimeError, match=rf"{name}: backend='operator': the C\+\+ operators could not be built"):
            interpolators.create(name, backend="operator")(image, grid)

    def test_auto_without_operators_runs_the_eager_path_naming_why(self, monkeypatch):
        monkeypatch.setattr(_extension, "_loaded", False)
        monkeypatch.setattr(_extension, "_why_not", "the C++ operators could not be built (RuntimeError: no ninja)")
        image, grid, grad_out = case()
        with pytest.warns(RuntimeWarning, match=r"backend='auto' runs the eager path: the C\+\+ operators could not be built"):
            auto = value_and_grads(interpolators.create("estn"), image, grid, grad_out)
        monkeypatch.undo()
        assert_same(value_and_grads(interpolators.create("estn", backend="eager"), image, grid, grad_out), auto, 0, 0)

    def test_default_is_the_operator(self):
        image, grid, _ = case(torch.float32)
        for name in ("lstn", "estn"):
            counted = count_flops(lambda: interpolators.create(name)(image, grid))
            assert f"interpolators.{name}_forward" in counted.by_op


# ---- one source for every x86 CPU: an AVX2 build, built by two processes at once -----------------------------------

_PROBE = """
import json, sys, torch
from interpolators import _extension
from interpolators.estn import ESTNConfig, estn_sample
from interpolators.lstn import LSTNConfig, lstn_sample
from backend_checks import value_and_grads
assert _extension.ensure_loaded(), _extension._why_not
results = {}
for dtype in (torch.float32, torch.float64):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 2, 21, 19, generator=g, dtype=dtype)
    grid = torch.rand(3, 11, 13, 2, generator=g, dtype=dtype) * 2.4 - 1.2
    grad = torch.rand(3, 2, 11, 13, generator=g, dtype=dtype)
    fns = {"lstn": lambda i, gr: lstn_sample(i, gr, LSTNConfig(backend="operator"), generator=torch.Generator().manual_seed(1)),
           "estn": lambda i, gr: estn_sample(i, gr, ESTNConfig(backend="operator"))}
    for name, fn in fns.items():
        results[f"{name}-{dtype}"] = [t.double().flatten().tolist() for t in value_and_grads(fn, image, grid, grad)]
json.dump({"march": _extension.march(), "build": str(_extension.build_directory()), "results": results}, sys.stdout)
"""


def _supports_x86_64_v3() -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return False
    return {"avx2", "fma", "bmi2", "f16c", "movbe"} <= flags


@pytest.mark.slow
@pytest.mark.skipif(not _supports_x86_64_v3(), reason="needs an x86-64-v3 (AVX2) CPU")
def test_avx2_build_gives_the_same_numbers_and_concurrent_builds_do_not_collide(tmp_path):
    env = dict(os.environ, STN_BENCH_CACHE=str(tmp_path / "cache"), PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}")

    def probe(march: str | None):
        run_env = dict(env, **({_extension.MARCH_ENV: march} if march else {}))
        if march is None:
            run_env.pop(_extension.MARCH_ENV, None)
            run_env["STN_BENCH_CACHE"] = os.environ.get(_extension.CACHE_ENV, "")  # this machine's own, already built
        return subprocess.Popen([sys.executable, "-c", _PROBE], env=run_env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip

    builders = [probe("x86-64-v3"), probe("x86-64-v3")]  # two processes build the same directory at once
    native = probe(None)
    outputs = []
    for process in [*builders, native]:
        stdout, stderr = process.communicate(timeout=1200)
        assert process.returncode == 0, stderr[-3000:]
        outputs.append(json.loads(stdout))
    v3, v3_again, own = outputs
    assert v3["march"] == "x86-64-v3" and own["march"] == "native" and v3["build"] == v3_again["build"]
    assert len(list(Path(v3["build"]).expanduser().glob("*.so"))) == 1
    for key, expected in own["results"].items():
        tolerance = 1e-6 if "float32" in key else 1e-13
        for name, a, b, c in zip(("value", "input grad", "grid grad"), expected, v3["results"][key], v3_again["results"][key]):
            assert b == c, f"{key} {name}: the two AVX2 builds disagree"
            torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=tolerance, atol=tolerance,
                                       msg=lambda m, key=key, name=name: f"{key} {name}: {m}")  # fmt: skip


def test_a_failed_build_names_the_compiler_and_auto_falls_back(tmp_path):
    script = (
        "import warnings, torch, interpolators\n"
        "from interpolators import _extension\n"
        "assert not _extension.ensure_loaded()\n"
        "print(_extension._why_not)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    interpolators.create('estn')(torch.rand(1, 1, 8, 8), torch.zeros(1, 2, 2, 2))\n"
        "print(caught[0].message)\n"
    )
    env = dict(os.environ, STN_BENCH_CACHE=str(tmp_path), CXX=str(tmp_path / "no-such-compiler"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reason, warning = done.stdout.splitlines()[-2:]
    assert "no C++ compiler found" in reason and "no-such-compiler" in reason
    assert warning.startswith("estn: backend='auto' runs the eager path: the C++ operators could not be built")


def test_build_info_says_how_the_operators_were_built():
    info = _extension.build_info()
    assert info["loaded"] is True and info["why_not"] is None
    assert f"-march={_extension.march()}" in info["flags"] or platform.machine() not in ("x86_64", "AMD64")
    assert Path(info["build"]).name.startswith(f"ops-{_extension.march()}-") and info["compiler"]
    json.dumps(info)
