"""Speed and peak memory of each interpolator, forward and forward + backward, per input size.

``time_*`` and ``peakmem_*`` track absolute numbers; ``track_*_vs_bilinear`` the ratio to
bilinear timed in the same process, which is what the project's speed targets are
stated in (CONTRIBUTING.md) and is far less sensitive to the machine than either time.
"""

from __future__ import annotations

import torch

from ._common import METHODS, THREADS, cost, create, pin_threads, sampling_inputs


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
