"""The operators on CUDA (the Triton kernels registered under the C++ schemas): a machine with a CUDA device runs these.

``opcheck`` on the contract test's cases, the CPU operator's numbers (float64 to 1e-10, float32 to 1e-4, the same
hashed offsets for the same key), ``backend="auto"`` choosing the operator, ``torch.compile(fullgraph=True)`` and
``FlopCounterMode`` seeing one operator, CUDA graph capture, and ``torch.use_deterministic_algorithms`` refusing the
atomic scatters as it refuses ``grid_sample``'s CUDA backward. The kernels themselves against the eager path:
``tests/test_triton.py`` (which runs them on the device where there is one).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import interpolators
import test_operators
from backend_checks import GraphRecorder, assert_same, case, fixed_offsets, value_and_grads
from interpolators import _extension
from interpolators.estn import ESTNConfig, estn_sample
from interpolators.lstn import LSTNConfig, lstn_sample
from suites.cost import count_flops

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(not _extension.ensure_loaded(), reason=f"no operators: {_extension._why_not}"),
]
ops = torch.ops.interpolators
f32, f64 = torch.float32, torch.float64


class TestOpcheckCUDA(test_operators.TestOpcheck):
    device = "cuda"


def on(device, *tensors):
    return [t.to(device) for t in tensors]


@pytest.mark.parametrize("name", ["lstn", "estn"])
@pytest.mark.parametrize("dtype", [f32, f64], ids=["float32", "float64"])
@pytest.mark.parametrize("hparams", [{}, {"padding_mode": "reflection", "align_corners": True}, {"padding_mode": "border"}])
def test_cuda_operator_equals_cpu_operator(name, dtype, hparams):
    image, grid, grad_out = case(dtype)
    offsets = fixed_offsets(8, 2, (7, 9), dtype)
    results = []
    for device in ("cpu", "cuda"):
        if name == "lstn":
            lstn = LSTNConfig(backend="operator", **hparams)
            fn = lambda i, g, o=offsets.to(device): lstn_sample(i, g, lstn, offsets=o)  # noqa: E731
        else:
            estn = ESTNConfig(backend="operator", **hparams)
            fn = lambda i, g: estn_sample(i, g, estn)  # noqa: E731
        results.append([t.cpu() for t in value_and_grads(fn, *on(device, image, grid, grad_out))])
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == f32 else {"rtol": 1e-10, "atol": 1e-12}
    assert_same(*results, **tolerance)


@pytest.mark.parametrize("dtype", [f32, f64], ids=["float32", "float64"])
def test_same_key_same_offsets_on_both_devices(dtype):
    image, grid, _ = case(dtype)
    key = torch.tensor(0x13579BDF)
    args = (8 - 1, 0.04, 0.05, "zeros", False, False)
    cpu = ops.lstn_forward(image, grid, None, key, *args)
    cuda = ops.lstn_forward(*on("cuda", image, grid), None, key.cuda(), *args)
    tolerance = 1e-4 if dtype == f32 else 1e-10
    for a, b in zip(cpu, cuda):
        torch.testing.assert_close(b.cpu(), a, rtol=tolerance, atol=tolerance)
    normals = ops.lstn_hash_normals(key.cuda(), 10_000, dtype).cpu()
    torch.testing.assert_close(normals, ops.lstn_hash_normals(key, 10_000, dtype), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name", ["lstn", "estn"])
def test_auto_runs_the_operator_on_cuda_without_a_warning(name):
    image, grid, grad_out = case(f32, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        counted = count_flops(lambda: interpolators.create(name)(image, grid))
    assert counted.by_op == {f"interpolators.{name}_forward": counted.total} and not counted.uncounted


@pytest.mark.parametrize(
    "name, forward, backward",
    [("lstn", {"lstn_forward"}, {"bilinear_input_grad", "slope_grid_grad"}),
     ("estn", {"estn_forward"}, {"estn_input_grad", "slope_grid_grad"})],
)  # fmt: skip
def test_compile_fullgraph_calls_the_operators_on_cuda(name, forward, backward):
    sampler = interpolators.create(name)
    recorder = GraphRecorder()
    image, grid, grad_out = case(f32, device="cuda")
    torch.manual_seed(3)
    got = value_and_grads(torch.compile(sampler, fullgraph=True, backend=recorder), image, grid, grad_out)
    torch.manual_seed(3)
    expected = value_and_grads(sampler, image, grid, grad_out)
    assert_same(expected, got, rtol=1e-6, atol=1e-6)  # the input gradient's atomic adds may sum in another order
    assert recorder.operators() == {"forward": forward, "backward": backward}
    torch.manual_seed(3)
    inductor = value_and_grads(torch.compile(sampler, fullgraph=True), image, grid, grad_out)
    assert_same(expected, inductor, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["lstn", "estn"])
def test_forward_and_backward_capture_in_a_cuda_graph(name):
    sampler = interpolators.create(name)
    image, grid, grad_out = case(f32, device="cuda")
    image.requires_grad_(), grid.requires_grad_()

    def step():
        image.grad = grid.grad = None
        out = sampler(image, grid)
        out.backward(grad_out)
        return out

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up: compiles the kernels, caches the constants
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.isfinite(out).all() and image.grad is not None and grid.grad is not None


@pytest.mark.parametrize("name", ["lstn", "estn"])
def test_deterministic_mode_refuses_the_atomic_input_gradient(name):
    image, grid, grad_out = case(f32, device="cuda")
    sampler = interpolators.create(name)
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        out = sampler(image, grid.requires_grad_())  # forward and grid gradient: no atomics
        out.backward(grad_out)
        with pytest.raises(RuntimeError, match="does not have a deterministic implementation"):
            sampler(image.clone().requires_grad_(), grid).backward(grad_out)
        torch.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match="does not have a deterministic implementation"):
            sampler(image.clone().requires_grad_(), grid).backward(grad_out)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.mark.parametrize("name", ["lstn", "estn"])
def test_forward_and_grid_gradient_are_bit_reproducible(name):
    image, grid, grad_out = case(f32, device="cuda")
    sampler = interpolators.create(name)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        g = grid.clone().requires_grad_()
        out = sampler(image, g)
        out.backward(grad_out)
        runs.append((out.detach(), g.grad))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
