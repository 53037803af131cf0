"""Speed and peak memory of each interpolator, forward and forward + backward, per input size.

``time_*`` and ``peakmem_*`` track absolute numbers; ``track_*_vs_bilinear`` the ratio to
bilinear timed in the same process, which is what the project's speed targets are
stated in (CONTRIBUTING.md) and is far less sensitive to the machine than either time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._common import GATE, METHODS, THREADS, cost, create, pin_threads, sampling_inputs


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
    """Forward + backward time and saved-for-backward bytes over bilinear's, measured in the same process (time:
    :func:`suites.cost.latency_ratio`, 3 rounds of alternating blocks, so a drift of the machine's load cancels)."""

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
        if not hasattr(cost, "latency_ratio"):
            raise NotImplementedError("suites.cost.latency_ratio is not in this commit")
        ratio, _, _ = cost.latency_ratio(self._forward_backward(self.sampler), self._forward_backward(self.bilinear),
                                         0.1, THREADS, rounds=3)  # fmt: skip
        return ratio

    track_forward_backward_time_vs_bilinear.unit = "ratio"

    def track_saved_bytes_vs_bilinear(self, name: str) -> float:
        method = cost.saved_tensor_bytes(lambda: self.sampler(self.input, self.grid))
        return method / cost.saved_tensor_bytes(lambda: self.bilinear(self.input, self.grid))

    track_saved_bytes_vs_bilinear.unit = "ratio"


class SpeedTargets:
    """Issue 13's table: forward + backward (input and grid) over bilinear's, float32, 2 threads, one process, with
    each method's default backend (``"auto"``: the C++ operators where they build).

    ``config`` is ``B x C x in -> out``: an ``in x in`` input sampled onto ``out x out`` through a 7 degree rotation;
    the last is the classify suite's shape. Targets: L-STN <= 3, ESTN <= 6 in time; L-STN <= 2, ESTN <= 4 in bytes
    saved for backward. The time ratio is :func:`suites.cost.latency_ratio` (alternating blocks of the two). The
    regression gate (``GATE``) runs two of the configurations, with 3 rounds.
    """

    params = (["lstn", "estn"], ["32x1x28->28", "1x3x256->256"] if GATE else
              ["32x1x64->64", "32x3x64->64", "1x3x256->256", "8x3x256->64", "32x1x28->28"])  # fmt: skip
    param_names = ["interpolator", "config"]
    timeout = 600

    def setup(self, name: str, config: str) -> None:
        pin_threads()
        if not hasattr(cost, "latency_ratio"):
            raise NotImplementedError("suites.cost.latency_ratio is not in this commit")
        self.sampler = create(name)
        self.bilinear = create("bilinear")
        shape, out = config.split("->")
        b, c, size = (int(n) for n in shape.split("x"))
        generator = torch.Generator().manual_seed(0)
        self.input = torch.rand(b, c, size, size, generator=generator).requires_grad_(True)
        a = math.radians(7.0)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.01], [math.sin(a), math.cos(a), -0.02]]).expand(b, 2, 3)
        self.grid = F.affine_grid(theta, [b, c, int(out), int(out)], align_corners=False).requires_grad_(True)
        self.grad_output = torch.rand(b, c, int(out), int(out), generator=generator)

    def _forward_backward(self, sampler):
        def run() -> None:
            self.input.grad = self.grid.grad = None
            sampler(self.input, self.grid).backward(self.grad_output)

        return run

    def track_forward_backward_time_vs_bilinear(self, name: str, config: str) -> float:
        ratio, _, _ = cost.latency_ratio(self._forward_backward(self.sampler), self._forward_backward(self.bilinear),
                                         0.1, THREADS, rounds=3 if GATE else 5)  # fmt: skip
        return ratio

    track_forward_backward_time_vs_bilinear.unit = "ratio"

    def track_saved_bytes_vs_bilinear(self, name: str, config: str) -> float:
        method = cost.saved_tensor_bytes(lambda: self.sampler(self.input, self.grid))
        return method / cost.saved_tensor_bytes(lambda: self.bilinear(self.input, self.grid))

    track_saved_bytes_vs_bilinear.unit = "ratio"
