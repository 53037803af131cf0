"""Helpers for the tests that compare the operators with the eager path (tests/test_operators.py, the Triton kernels'
tests/test_triton.py and tests/test_cuda_operators.py, and the AVX2 build probe)."""

from __future__ import annotations

import torch

from interpolators.estn import ESTNConfig, estn_sample
from interpolators.lstn import LSTNConfig, lstn_sample

f64 = torch.float64


def case(dtype=f64, batch: int = 2, channels: int = 3, size=(20, 24), out=(7, 9), seed: int = 0, device="cpu"):
    """An image ``(B, C, H, W)``, an off-lattice grid reaching past the borders and an output gradient."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, channels, *size, generator=g, dtype=dtype)
    grid = torch.rand(batch, *out, 2, generator=g, dtype=dtype) * 2.4 - 1.2
    grad_out = torch.rand(batch, channels, *out, generator=g, dtype=dtype)
    return image.to(device), grid.to(device), grad_out.to(device)


def fixed_offsets(k: int, batch: int, out, dtype=f64, seed: int = 1, device="cpu") -> torch.Tensor:
    """L-STN offsets ``(K - 1, B, Ho, Wo, 2)`` in normalized units."""
    offsets = torch.randn(k - 1, batch, *out, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 0.05
    return offsets.to(device)


def both_backends(method: str, image, grid, grad_out, offsets=None, generator_seed=None, backends=("eager", "operator"),
                  **hparams):  # fmt: skip
    """``value_and_grads`` of ``method`` on each of ``backends``, with the same offsets or the same seed (drawn on the
    input's device)."""
    results = []
    for backend in backends:
        extra = {}
        if generator_seed is not None:
            extra["generator"] = torch.Generator(device=image.device).manual_seed(generator_seed)
        if method == "lstn":
            config = LSTNConfig(backend=backend, **hparams)
            fn = lambda i, g: lstn_sample(i, g, config, offsets=offsets, **extra)  # noqa: E731
        else:
            config = ESTNConfig(backend=backend, **hparams)
            fn = lambda i, g: estn_sample(i, g, config)  # noqa: E731
        results.append(value_and_grads(fn, image, grid, grad_out))
    return results


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


class GraphRecorder:
    """A ``torch.compile`` backend that records the operators of the forward and backward graphs AOTAutograd makes."""

    def __init__(self) -> None:
        self.graphs: dict[str, set[str]] = {}

    def __call__(self, gm, example_inputs):
        from functorch.compile import make_boxed_func
        from torch._functorch.aot_autograd import aot_module_simplified

        def record(name):
            def compiler(graph, inputs):
                self.graphs[name] = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
                return make_boxed_func(graph.forward)

            return compiler

        return aot_module_simplified(gm, example_inputs, fw_compiler=record("forward"), bw_compiler=record("backward"))

    def operators(self) -> dict[str, set[str]]:
        """The project's operators in each recorded graph, e.g. ``{"forward": {"lstn_forward"}, ...}``."""
        return {graph: {t.removeprefix("interpolators.").removesuffix(".default") for t in targets
                        if t.startswith("interpolators.")} for graph, targets in self.graphs.items()}  # fmt: skip
