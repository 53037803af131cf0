"""Accuracy and gradient numbers per interpolator: a change that makes a method less accurate regresses here.

Both use the gradients suite's scene: a built-in image area-downsampled by 4 is the input,
and a 5-degree rotation whose output pixels each span 4 input pixels is the warp (``s = 4``).
asv reads every increase as a regression, so both numbers are errors (lower is better):
the RMSE behind the PSNR, and how far the gradient norm ratio is from 1.
"""

from __future__ import annotations

import math

import torch

from suites.images import builtin_image

from ._common import METHODS, create, pin_threads

try:  # suites that older commits lack: their benchmarks are skipped there
    from suites.alignment import fidelity, source_and_input
    from suites.gradients import downsampling_warp, input_gradient, norm_ratio
except ImportError as err:
    _MISSING: str | None = str(err)
else:
    _MISSING = None

IMAGE = "camera"
CROP = 256  # source pixels
DOWNSAMPLE = 4  # source -> input (64 x 64)
FACTOR = 4  # the warp's downsampling factor s


class Accuracy:
    params = (METHODS,)
    param_names = ["interpolator"]

    def setup(self, name: str) -> None:
        if _MISSING:
            raise NotImplementedError(_MISSING)
        pin_threads()
        self.sampler = create(name).double()
        image = builtin_image(IMAGE)
        top, left = (image.shape[-2] - CROP) // 2, (image.shape[-1] - CROP) // 2
        self.source, self.input = source_and_input(image[..., top : top + CROP, left : left + CROP], DOWNSAMPLE)
        self.theta, self.out_size = downsampling_warp(FACTOR, self.input.shape[-1])
        self.output_grad = torch.randn(1, 1, *self.out_size, generator=torch.Generator().manual_seed(0),
                                       dtype=torch.float64)

    def track_rmse_4x_downsample(self, name: str) -> float:
        """RMSE of the warp against the ground-truth render on the interior: ``10 ** (-PSNR / 20)`` (range 1)."""
        torch.manual_seed(0)  # stochastic methods draw from the global generator
        psnr = fidelity(self.sampler, self.source, self.input, self.theta, self.out_size)["psnr"]
        return 10 ** (-psnr / 20)

    track_rmse_4x_downsample.unit = "1"

    def track_grad_norm_ratio_deviation(self, name: str) -> float:
        """``|log2(|dL/dU| / |dL/dV|)|`` for a fixed random output gradient: 0 when the norm is preserved."""
        torch.manual_seed(0)
        grad = input_gradient(self.sampler, self.input, self.theta, self.out_size, self.output_grad)
        return abs(math.log2(norm_ratio(grad, self.output_grad)))

    track_grad_norm_ratio_deviation.unit = "log2"
