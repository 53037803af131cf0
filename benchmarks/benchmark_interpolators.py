"""Speed and peak memory of each interpolator, forward and forward + backward, per input size.

``time_*`` and ``peakmem_*`` track absolute numbers; ``track_*_vs_bilinear`` the ratio to
bilinear timed in the same process, which is what the project's speed targets are
stated in (CONTRIBUTING.md) and is far less sensitive to the machine than either time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._common import METHODS, THREADS, compiler_available, cost, create, native_available, pin_threads, sampling_inputs


class Sampler:
    """``n x n`` batch-1 single-channel input sampled onto ``n x n`` through a small rotation."""

    params = (METHODS, [64, 256])
    param_names = ["interpolator", "size"]

    def setup(self, name: str, size: int) -> None:
        pin_threads()
        self.sampler = create(name)
        self.input, self.grid, self.grad_output = sampling_inputs(size)

    def _forward(self):
        with torch.no_grad():
            return self.sampler(self.input, self.grid)

    def _forward_backward(self) -> None:
        self.input.grad = self.grid.grad = None
        self.sampler(self.input, self.grid).backward(self.grad_output)

    def time_forward(self, name: str, size: int) -> None:
        self._forward()

    def time_forward_backward(self, name: str, size: int) -> None:
        self._forward_backward()

    def peakmem_forward(self, name: str, size: int) -> None:
        self._forward()

    def peakmem_forward_backward(self, name: str, size: int) -> None:
        self._forward_backward()


class RelativeToBilinear:
    """Median forward + backward time and saved-for-backward bytes over bilinear's, measured in the same process."""

    params = ([m for m in METHODS if m != "bilinear"],)
    param_names = ["interpolator"]
    size = 128

    def setup(self, name: str) -> None:
        pin_threads()
        self.sampler = create(name)
        self.bilinear = create("bilinear")
        self.input, self.grid, self.grad_output = sampling_inputs(self.size)

    def _forward_backward(self, sampler):
        def run() -> None:
            self.input.grad = self.grid.grad = None
            sampler(self.input, self.grid).backward(self.grad_output)

        return run

    def track_forward_backward_time_vs_bilinear(self, name: str) -> float:
        method, _ = cost.cpu_latency(self._forward_backward(self.sampler), 0.1, THREADS)
        baseline, _ = cost.cpu_latency(self._forward_backward(self.bilinear), 0.1, THREADS)
        return method / baseline

    track_forward_backward_time_vs_bilinear.unit = "ratio"

    def track_saved_bytes_vs_bilinear(self, name: str) -> float:
        method = cost.saved_tensor_bytes(lambda: self.sampler(self.input, self.grid))
        return method / cost.saved_tensor_bytes(lambda: self.bilinear(self.input, self.grid))

    track_saved_bytes_vs_bilinear.unit = "ratio"


class SpeedTargets:
    """Issue 6's table: forward + backward (input and grid) over bilinear's, float32, 2 threads, one process.

    ``config`` is ``B x C x in -> out``: an ``in x in`` input sampled onto ``out x out`` through a
    7 degree rotation. Targets: L-STN <= 4, ESTN <= 10. ``backend="compiled"`` is skipped where
    Inductor has no C++ compiler, ``"native"`` where its kernels do not build (a C++ compiler with
    OpenMP); compilation happens in ``setup``.
    """

    params = (
        ["lstn", "estn"],
        ["eager", "compiled", "native"],
        ["32x1x64->64", "32x3x64->64", "1x3x256->256", "8x3x256->64"],
    )
    param_names = ["interpolator", "backend", "config"]
    timeout = 600

    def setup(self, name: str, backend: str, config: str) -> None:
        pin_threads()
        if backend == "compiled" and not compiler_available():
            raise NotImplementedError("backend='compiled' needs a C++ compiler")
        if backend == "native" and not native_available(name):
            raise NotImplementedError(f"{name} has no backend='native' here (it needs a C++ compiler with OpenMP)")
        self.sampler = create(name, backend=backend)
        self.bilinear = create("bilinear")
        shape, out = config.split("->")
        b, c, size = (int(n) for n in shape.split("x"))
        generator = torch.Generator().manual_seed(0)
        self.input = torch.rand(b, c, size, size, generator=generator).requires_grad_(True)
        a = math.radians(7.0)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.01], [math.sin(a), math.cos(a), -0.02]]).expand(b, 2, 3)
        self.grid = F.affine_grid(theta, [b, c, int(out), int(out)], align_corners=False).requires_grad_(True)
        self.grad_output = torch.rand(b, c, int(out), int(out), generator=generator)
        self._forward_backward(self.sampler)()  # compiles, for backend="compiled"

    def _forward_backward(self, sampler):
        def run() -> None:
            self.input.grad = self.grid.grad = None
            sampler(self.input, self.grid).backward(self.grad_output)

        return run

    def track_forward_backward_time_vs_bilinear(self, name: str, backend: str, config: str) -> float:
        method, _ = cost.cpu_latency(self._forward_backward(self.sampler), 0.2, THREADS)
        baseline, _ = cost.cpu_latency(self._forward_backward(self.bilinear), 0.2, THREADS)
        return method / baseline

    track_forward_backward_time_vs_bilinear.unit = "ratio"

    def track_saved_bytes_vs_bilinear(self, name: str, backend: str, config: str) -> float:
        method = cost.saved_tensor_bytes(lambda: self.sampler(self.input, self.grid))
        return method / cost.saved_tensor_bytes(lambda: self.bilinear(self.input, self.grid))

    track_saved_bytes_vs_bilinear.unit = "ratio"
