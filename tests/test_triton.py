"""The Triton kernels behind the operators on CUDA (``interpolators/_triton_sampling.py``, ``lstn/triton.py``,
``estn/triton.py``), tested three ways:

- **Kernels** (``TestSharedKernels``, ``TestLSTNKernels``, ``TestESTNKernels``): every launcher against the eager path
  and the C++ operator (float64 to 1e-10, float32 to 1e-4), and the operators with the Triton kernels behind them
  (value and both gradients through the autograd registration) against the eager path. They run under Triton's
  interpreter on CPU tensors, in the subprocess :func:`test_kernels_under_the_interpreter` starts with
  ``TRITON_INTERPRET=1`` (the variable must be set before the kernels are defined), where the Triton kernels take
  the place of the C++ CPU kernels for a test; on a machine with a CUDA device they run on it instead.
- **Compiled** for a CUDA target without a device (ptxas ships with triton), with the very arguments each launcher
  passes, so what the interpreter does not check (types, an integer argument equal to 1 arriving as a constexpr)
  compiles.
- **Registered**: where a CUDA device exists, loading the operators registers every kernel for CUDA.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

import interpolators  # noqa: E402
from backend_checks import assert_same, both_backends, case, fixed_offsets  # noqa: E402
from interpolators import _extension, _triton_sampling  # noqa: E402
from interpolators.base import PADDING_CODES  # noqa: E402
from interpolators.estn import ESTNConfig  # noqa: E402
from interpolators.estn import triton as estn_triton  # noqa: E402
from interpolators.lstn import triton as lstn_triton  # noqa: E402
from interpolators.lstn.eager import hash_normals  # noqa: E402

if not _extension.ensure_loaded():
    pytest.skip(f"no operators (their schemas come with the C++ library): {_extension._why_not}", allow_module_level=True)

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETING else "cuda" if torch.cuda.is_available() else None
kernels = pytest.mark.skipif(DEVICE is None, reason="runs under TRITON_INTERPRET=1 (test_kernels_under_the_interpreter) or on a CUDA device")  # fmt: skip
not_interpreted = pytest.mark.skipif(INTERPRETING, reason="runs without the interpreter")
ops = torch.ops.interpolators
f32, f64 = torch.float32, torch.float64
PADDINGS = ["zeros", "border", "reflection"]
ROOT = Path(__file__).resolve().parent.parent
#: each operator's Triton launcher
LAUNCHERS = {
    "bilinear_input_grad": _triton_sampling.bilinear_input_grad,
    "slope_grid_grad": _triton_sampling.slope_grid_grad,
    "lstn_forward": lstn_triton.lstn_forward,
    "lstn_hash_normals": lstn_triton.lstn_hash_normals,
    "estn_forward": estn_triton.estn_forward,
    "estn_input_grad": estn_triton.estn_input_grad,
}


def on_cpu(*tensors):
    return [t.cpu() if isinstance(t, torch.Tensor) else t for t in tensors]


@pytest.fixture(autouse=True)
def interpreter_tiles(monkeypatch, request):
    """Under the interpreter, which runs each program in Python, tiles of 4096 values (fewer programs; the shapes
    still span several blocks and partial ones), except where a test asks for the GPU's own (``gpu_tiles``)."""
    if INTERPRETING and "gpu_tiles" not in request.keywords:
        monkeypatch.setattr(_triton_sampling, "TILE", 4096)


gpu_tiles = pytest.mark.gpu_tiles


@pytest.fixture
def triton_operators():
    """The operators run the Triton kernels on ``DEVICE``: on CUDA they are registered; under the interpreter they
    take the C++ CPU kernels' place for the test."""
    if DEVICE == "cuda":
        yield
        return
    library = torch.library.Library("interpolators", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
        for name, launcher in LAUNCHERS.items():
            library.impl(name, launcher, "CPU")
    try:
        yield
    finally:
        library._destroy()


# ---- the shared backward kernels ----------------------------------------------------------------------------------


@kernels
class TestSharedKernels:
    @pytest.mark.parametrize("padding_mode", PADDINGS)
    @pytest.mark.parametrize("align_corners", [False, True])
    @pytest.mark.parametrize("dtype", [f32, f64], ids=["float32", "float64"])
    def test_bilinear_input_grad_is_grid_samples(self, padding_mode, align_corners, dtype):
        image, grid, grad = case(dtype, size=(9, 11), out=(5, 7), device=DEVICE)
        got = _triton_sampling.bilinear_input_grad(grad, grid, 9, 11, padding_mode, align_corners)
        eager = torch.ops.aten.grid_sampler_2d_backward(
            grad, image, grid, 0, PADDING_CODES[padding_mode], align_corners, (True, False)
        )[0]
        cpp = ops.bilinear_input_grad(*on_cpu(grad, grid), 9, 11, padding_mode, align_corners)
        tolerance = 1e-5 if dtype == f32 else 1e-12
        torch.testing.assert_close(got, eager, rtol=tolerance, atol=tolerance)
        torch.testing.assert_close(got.cpu(), cpp, rtol=tolerance, atol=tolerance)

    @pytest.mark.parametrize("dtype", [f32, f64], ids=["float32", "float64"])
    def test_slope_grid_grad_contracts_channels(self, dtype):
        _, _, grad = case(dtype, device=DEVICE)
        slopes = torch.rand(2, *grad.shape, dtype=dtype, generator=torch.Generator().manual_seed(1)).to(DEVICE)
        got = _triton_sampling.slope_grid_grad(grad, slopes)
        expected = torch.stack([(grad * slopes[0]).sum(1), (grad * slopes[1]).sum(1)], dim=-1)
        torch.testing.assert_close(got, expected, rtol=1e-6 if dtype == f32 else 1e-13, atol=1e-6)
        torch.testing.assert_close(got.cpu(), ops.slope_grid_grad(*on_cpu(grad, slopes)), rtol=1e-6, atol=1e-6)

    def test_bilinear_input_grad_many_blocks_and_channels(self):
        image, grid, grad = case(f64, batch=3, channels=5, size=(6, 40), out=(13, 29), device=DEVICE)
        got = _triton_sampling.bilinear_input_grad(grad, grid, 6, 40, "zeros", False)
        eager = torch.ops.aten.grid_sampler_2d_backward(grad, image, grid, 0, 0, False, (True, False))[0]
        torch.testing.assert_close(got, eager, rtol=1e-12, atol=1e-12)


# ---- L-STN ----------------------------------------------------------------------------------------------------------


@kernels
class TestLSTNKernels:
    @pytest.mark.parametrize("dtype", [f32, f64], ids=["float32", "float64"])
    def test_normals_are_the_torch_hash_and_the_cpp_kernels(self, dtype):
        key = torch.tensor(0x2468ACE0)
        du, dv = lstn_triton.lstn_hash_normals(key.to(DEVICE), 20_000, dtype).cpu()
        expected = hash_normals(key, (20_000,), dtype)
        cpp = ops.lstn_hash_normals(key, 20_000, dtype)
        tolerance = 2e-6 if dtype == f32 else 1e-12
        for got, torch_hash, kernel in ((du, expected[0], cpp[0]), (dv, expected[1], cpp[1])):
            torch.testing.assert_close(got, torch_hash, rtol=tolerance, atol=tolerance)
            torch.testing.assert_close(got, kernel, rtol=tolerance, atol=tolerance)

    @pytest.mark.parametrize("hashed", [False, True], ids=["offsets", "hashed"])
    @pytest.mark.parametrize("fixed_bias", [False, True])
    @pytest.mark.parametrize("dtype", [f32, f64], ids=["float32", "float64"])
    def test_forward_is_the_cpp_kernels(self, hashed, fixed_bias, dtype):
        image, grid, _ = case(dtype, size=(9, 11), out=(5, 7), device=DEVICE)
        offsets = None if hashed else torch.randn(2, 2, 7, 5, 7, dtype=dtype, generator=torch.Generator().manual_seed(3))
        key = torch.tensor(99) if hashed else None
        common = (7, 0.05, 0.06, "reflection", True, fixed_bias)
        got = lstn_triton.lstn_forward(image, grid, *(None if t is None else t.to(DEVICE) for t in (offsets, key)), *common)
        expected = ops.lstn_forward(*on_cpu(image, grid), offsets, key, *common)
        tolerance = 1e-4 if dtype == f32 else 1e-10
        for name, a, b in zip(("value", "slopes"), got, expected):
            torch.testing.assert_close(a.cpu(), b, rtol=tolerance, atol=tolerance, msg=lambda m, name=name: f"{name}: {m}")

    @pytest.mark.parametrize("padding_mode", PADDINGS)
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_operator_matches_eager_with_fixed_offsets(self, triton_operators, padding_mode, align_corners):
        image, grid, grad_out = case(device=DEVICE)
        pair = both_backends("lstn", image, grid, grad_out, fixed_offsets(8, 2, (7, 9), device=DEVICE),
                             padding_mode=padding_mode, align_corners=align_corners)  # fmt: skip
        assert_same(*pair, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize(
        "batch, channels, size, out, hparams",
        [(1, 3, (20, 24), (7, 9), {}), (2, 3, (20, 24), (7, 9), {"fixed_bias": True}), (2, 1, (5, 6), (3, 17), {"num_samples": 20}),
         (1, 2, (1, 1), (1, 1), {"align_corners": True}), (3, 2, (9, 4), (1, 33), {"padding_mode": "border"}),
         (2, 2, (12, 10), (11, 13), {})],
        ids=["batch_of_one", "fixed_bias", "K20_odd_width", "one_pixel", "one_row", "two_blocks"],
    )  # fmt: skip
    def test_operator_matches_eager_variants(self, triton_operators, batch, channels, size, out, hparams):
        image, grid, grad_out = case(batch=batch, channels=channels, size=size, out=out, device=DEVICE)
        offsets = fixed_offsets(hparams.get("num_samples", 8), batch, out, device=DEVICE)
        assert_same(*both_backends("lstn", image, grid, grad_out, offsets, **hparams), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("dtype", [f32, f64], ids=["float32", "float64"])
    def test_operator_draws_the_eager_offsets(self, triton_operators, dtype):
        image, grid, grad_out = case(dtype, device=DEVICE)
        tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == f32 else {"rtol": 1e-10, "atol": 1e-12}
        assert_same(*both_backends("lstn", image, grid, grad_out, generator_seed=5), **tolerance)

    @pytest.mark.parametrize("padding_mode", PADDINGS)
    def test_float32_close_to_eager(self, triton_operators, padding_mode):
        image, grid, grad_out = case(f32, device=DEVICE)
        pair = both_backends("lstn", image, grid, grad_out, fixed_offsets(8, 2, (7, 9), f32, device=DEVICE),
                             padding_mode=padding_mode)  # fmt: skip
        assert_same(*pair, rtol=1e-4, atol=1e-4)


# ---- ESTN -----------------------------------------------------------------------------------------------------------


def estn_arguments(config: ESTNConfig, keep_beta: bool = True):
    return (*config.spiral, config.tangent_scale, config.min_radius, config.entropy, config.iterations, config.ridge,
            config.padding_mode, config.align_corners, config.value == "center", keep_beta)  # fmt: skip


@kernels
class TestESTNKernels:
    @pytest.mark.parametrize(
        "hparams", [{}, {"entropy": None}, {"padding_mode": "border", "align_corners": True, "num_samples": 12}]
    )
    @pytest.mark.parametrize("dtype", [f32, f64], ids=["float32", "float64"])
    def test_forward_is_the_cpp_kernels(self, hparams, dtype):
        image, grid, _ = case(dtype, size=(9, 11), out=(5, 7), device=DEVICE)
        args = estn_arguments(ESTNConfig(**hparams))
        got = estn_triton.estn_forward(image, grid, *args)
        expected = ops.estn_forward(*on_cpu(image, grid), *args)
        tolerance = 1e-4 if dtype == f32 else 1e-10
        for name, a, b in zip(("value", "slopes", "beta"), got, expected):
            torch.testing.assert_close(a.cpu(), b, rtol=tolerance, atol=tolerance, msg=lambda m, name=name: f"{name}: {m}")

    @pytest.mark.parametrize("padding_mode", PADDINGS)
    def test_input_grad_is_the_cpp_kernels(self, padding_mode):
        _, grid, grad = case(size=(9, 11), out=(5, 7), device=DEVICE)
        z_x, z_y, _ = ESTNConfig().spiral
        beta = torch.rand(2, 8, 5, 7, dtype=f64, generator=torch.Generator().manual_seed(2)).to(DEVICE) / 8
        common = (9, 11, 0.5, 0.5, padding_mode, False)
        got = estn_triton.estn_input_grad(grad, grid, z_x, z_y, beta, *common)
        expected = ops.estn_input_grad(*on_cpu(grad, grid), z_x, z_y, beta.cpu(), *common)
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("padding_mode", PADDINGS)
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_operator_matches_eager(self, triton_operators, padding_mode, align_corners):
        image, grid, grad_out = case(device=DEVICE)
        pair = both_backends("estn", image, grid, grad_out, padding_mode=padding_mode, align_corners=align_corners)
        assert_same(*pair, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize(
        "batch, channels, hparams",
        [(2, 3, {"entropy": None}), (2, 3, {"iterations": 0}), (2, 3, {"num_samples": 12, "iterations": 4, "entropy": 0.3}),
         (2, 3, {"num_samples": 4, "kernel_size": 5, "tangent_scale": 1.0}), (2, 3, {"value": "center"}),
         (2, 3, {"ridge": 0.0, "min_radius": 0.0}), (1, 3, {}), (2, 5, {}), (2, 1, {"num_samples": 20})],
        ids=["no_entropy", "no_iterations", "K12", "K4", "center", "no_ridge", "batch_of_one", "five_channels", "one_channel_K20"],
    )  # fmt: skip
    def test_operator_matches_eager_variants(self, triton_operators, batch, channels, hparams):
        image, grid, grad_out = case(batch=batch, channels=channels, device=DEVICE)
        assert_same(*both_backends("estn", image, grid, grad_out, **hparams), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("size, out, align_corners", [((5, 6), (1, 17), False), ((9, 4), (33, 1), True),
                                                          ((1, 1), (2, 3), True), ((7, 7), (9, 21), False)])  # fmt: skip
    def test_operator_matches_eager_shapes(self, triton_operators, size, out, align_corners):
        image, grid, grad_out = case(size=size, out=out, device=DEVICE)
        assert_same(*both_backends("estn", image, grid, grad_out, align_corners=align_corners), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("hparams", [{}, {"entropy": None}, {"padding_mode": "reflection", "value": "center"}])
    def test_float32_close_to_eager(self, triton_operators, hparams):
        image, grid, grad_out = case(f32, device=DEVICE)
        assert_same(*both_backends("estn", image, grid, grad_out, **hparams), rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize("value", ["fit", "center"])
    def test_non_finite_grid_gives_nan_where_the_cpp_kernel_does(self, value):
        """The samplers blank non-finite grid points before any kernel (``sample_safely``); the kernels on their own
        still give NaN where the C++ kernel does (the probe added to every output)."""
        image, grid, _ = case(device=DEVICE)
        grid[0, 2, 3, 0] = float("nan")
        grid[1, 4, 1, 1] = float("inf")
        args = estn_arguments(ESTNConfig(value=value), keep_beta=value == "fit")
        got = estn_triton.estn_forward(image, grid, *args)
        expected = ops.estn_forward(*on_cpu(image, grid), *args)
        for a, b in zip(got, expected):
            a = a.cpu()
            assert torch.equal(a.isnan(), b.isnan()) and (b.numel() == 0 or b.isnan().any())
            torch.testing.assert_close(a.nan_to_num(), b.nan_to_num(), rtol=1e-10, atol=1e-12)


@kernels
@gpu_tiles
@pytest.mark.parametrize("name, dtype", [("lstn", f32), ("estn", f32), ("estn", f64)], ids=["lstn-float32", "estn-float32", "estn-float64"])
def test_operators_match_eager_at_the_gpus_tiles(triton_operators, name, dtype):
    image, grid, grad_out = case(dtype, channels=2, size=(9, 11), out=(5, 7), device=DEVICE)
    offsets = fixed_offsets(8, 2, (5, 7), dtype, device=DEVICE) if name == "lstn" else None
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == f32 else {"rtol": 1e-10, "atol": 1e-12}
    assert_same(*both_backends(name, image, grid, grad_out, offsets), **tolerance)


# ---- the interpreter tier, compiled for CUDA, registered ------------------------------------------------------------


@not_interpreted
@pytest.mark.skipif(torch.cuda.is_available(), reason="the kernels ran on the CUDA device in this run")
def test_kernels_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    # (numpy's overflow warnings: the masked lanes of partial blocks, and the non-finite grid test)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-W",
               "ignore::RuntimeWarning:triton.runtime.interpreter", str(Path(__file__).relative_to(ROOT))]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed >= 60 and "failed" not in summary and "error" not in summary, summary
    print(f"interpreter tier: {summary}")


def _compile_for_cuda(kernel, args, kwargs, target) -> None:
    """Compile ``kernel`` for ``target`` as its launch with ``args``, ``kwargs`` would: the same binder, so the same
    specialization (an int equal to 1 becomes a constexpr, pointers' alignment, floats by their annotation)."""
    from triton.compiler import ASTSource, compile, make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(target)
    kwargs = dict(kwargs, debug=False)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__)


def _launches(monkeypatch, fn, *args) -> list:
    """The ``(kernel, args, kwargs)`` of every Triton launch ``fn(*args)`` makes on CPU tensors, recorded, not run."""
    from triton.runtime.jit import JITFunction

    calls = []
    monkeypatch.setattr(JITFunction, "run", lambda self, *a, grid, warmup, **kw: calls.append((self, a, kw)))
    fn(*args)
    monkeypatch.undo()
    return calls


def _compile_cases():
    one = case(f32, batch=1, channels=1, size=(1, 1), out=(1, 1))  # every size 1: each becomes a constexpr
    cases = []
    for dtype in (f32, f64):
        image, grid, grad = case(dtype, size=(9, 11), out=(5, 7))
        key, offsets = torch.tensor(7), torch.rand(2, 2, 7, 5, 7, dtype=dtype)
        spiral = ESTNConfig().spiral
        beta = torch.rand(2, 8, 5, 7, dtype=dtype)
        cases += [
            (f"bilinear_input_grad-{dtype}", "bilinear_input_grad", (grad, grid, 9, 11, "reflection", True)),
            (f"slope_grid_grad-{dtype}", "slope_grid_grad", (grad, torch.rand(2, *grad.shape, dtype=dtype))),
            (f"lstn_hash_normals-{dtype}", "lstn_hash_normals", (key, 100, dtype)),
            (f"lstn_forward-hashed-{dtype}", "lstn_forward", (image, grid, None, key, 7, 0.1, 0.1, "zeros", False, False)),
            (f"lstn_forward-offsets-{dtype}", "lstn_forward", (image, grid, offsets, None, 7, 0.1, 0.1, "border", True, True)),
            (f"estn_forward-{dtype}", "estn_forward", (image, grid, *estn_arguments(ESTNConfig()))),
            (f"estn_forward-center-{dtype}", "estn_forward", (image, grid, *estn_arguments(ESTNConfig(value="center", entropy=None), False))),
            (f"estn_input_grad-{dtype}", "estn_input_grad", (grad, grid, *spiral[:2], beta, 9, 11, 0.5, 0.5, "zeros", False)),
        ]  # fmt: skip
    cases += [
        ("lstn_forward-ones", "lstn_forward", (one[0], one[1], None, torch.tensor(1), 1, 0.1, 0.1, "reflection", True, True)),
        ("estn_forward-ones", "estn_forward", (one[0], one[1], *estn_arguments(ESTNConfig(iterations=1)))),
        ("estn_input_grad-ones", "estn_input_grad", (one[2], one[1], *ESTNConfig().spiral[:2], torch.rand(1, 8, 1, 1), 1, 1, 0.5, 0.5, "reflection", True)),
        ("bilinear_input_grad-ones", "bilinear_input_grad", (one[2], one[1], 1, 1, "reflection", True)),
    ]  # fmt: skip
    return cases


@not_interpreted
@pytest.mark.parametrize("name, operator, args", _compile_cases(), ids=[c[0] for c in _compile_cases()])
def test_kernels_compile_for_cuda(monkeypatch, name, operator, args):
    from triton.backends.compiler import GPUTarget

    launches = _launches(monkeypatch, LAUNCHERS[operator], *args)
    assert launches, f"{operator} launched no kernel"
    for kernel, a, kw in launches:
        try:
            _compile_for_cuda(kernel, a, kw, GPUTarget("cuda", 90, 32))
        except (FileNotFoundError, RuntimeError) as err:
            if "ptxas" in str(err) and "not found" in str(err).lower():
                pytest.skip(f"no ptxas to compile for CUDA: {err}")
            raise


@not_interpreted
def test_loading_registers_every_kernel_for_cuda(monkeypatch):
    has_cuda_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
    if not torch.cuda.is_available():  # do what ensure_loaded does on a machine with a CUDA device
        assert _extension._cuda_why_not == "no CUDA device"
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(_extension, "_cuda_why_not", "not registered yet")
        if not all(has_cuda_kernel(f"interpolators::{name}", "CUDA") for name in LAUNCHERS):  # (not done yet here)
            _extension._register_cuda_kernels()
        else:
            monkeypatch.setattr(_extension, "_cuda_why_not", "")
    assert _extension._cuda_why_not == ""
    assert all(has_cuda_kernel(f"interpolators::{name}", "CUDA") for name in LAUNCHERS)
    cuda32 = types.SimpleNamespace(device=torch.device("cuda"), dtype=f32)  # what unsupported() reads of a tensor
    assert _extension.unsupported(cuda32) is None
    assert "float16" in _extension.unsupported(types.SimpleNamespace(device=torch.device("cuda"), dtype=torch.float16))
    monkeypatch.setattr(_extension, "_cuda_why_not", "the Triton kernels could not be registered (ImportError: x)")
    assert _extension.unsupported(cuda32) == "no CUDA kernels: the Triton kernels could not be registered (ImportError: x)"


@not_interpreted
def test_without_the_cpp_library_cuda_names_the_failed_build(monkeypatch):
    monkeypatch.setattr(_extension, "_loaded", False)
    monkeypatch.setattr(_extension, "_why_not", "the C++ operators could not be built (RuntimeError: no compiler)")
    cuda32 = types.SimpleNamespace(device=torch.device("cuda"), dtype=f32)
    assert _extension.unsupported(cuda32) == (
        "the C++ operators could not be built (RuntimeError: no compiler), and the CUDA kernels register under their schemas"
    )


def test_samplers_default_to_the_operator_on_cuda_where_registered():
    """The CUDA tier's precondition on a GPU machine: ``backend="auto"`` resolves to the operator for CUDA float32."""
    if DEVICE != "cuda":
        pytest.skip("needs a CUDA device")
    image, grid, _ = case(f32, device="cuda")
    for name in ("lstn", "estn"):
        assert _extension.choose_backend("auto", image, name) == "operator"
        interpolators.create(name)(image, grid)
