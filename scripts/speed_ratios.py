"""Forward+backward time of L-STN and ESTN relative to bilinear, measured side by side in one process.

Run: ``python scripts/speed_ratios.py [--threads 2] [--methods lstn,estn] [--backend auto|operator|eager]
[--min-run-time 0.2] [--rounds 5]``; ``STN_BENCH_MARCH=x86-64-v3`` times the operators built for AVX2.

Each configuration ``(B, C, in, out)`` samples an ``in x in`` input at an ``out x out`` grid with a small
rotation (off-lattice), backpropagating a fixed output gradient to both the input and the grid, with each
method's default hyperparameters (``backend="auto"`` unless ``--backend``). The ratio is
:func:`suites.cost.latency_ratio`: ``rounds`` alternating blocks of bilinear and the method
(``torch.utils.benchmark`` medians after a warm-up), the median ratio with its range; ``saved`` is the
bytes autograd keeps for backward over bilinear's (:func:`suites.cost.saved_tensor_bytes`).
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

import interpolators
from interpolators import _extension
from suites.cost import latency_ratio, saved_tensor_bytes

#: (B, C, in, out); the last is the classify suite's shape
CONFIGS = [(32, 1, 64, 64), (32, 3, 64, 64), (1, 3, 256, 256), (8, 3, 256, 64), (32, 1, 28, 28)]


def make_inputs(b: int, c: int, size: int, out: int, angle_deg: float = 7.0) -> tuple[torch.Tensor, ...]:
    """``(image, grid, grad_output)``: a random image, a 7 degree rotation grid and a fixed output gradient."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(b, c, size, size, generator=g)
    a = math.radians(angle_deg)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.01], [math.sin(a), math.cos(a), -0.02]]).expand(b, 2, 3)
    grid = F.affine_grid(theta, [b, c, out, out], align_corners=False)
    return image, grid.contiguous(), torch.rand(b, c, out, out, generator=g)


def forward_backward(sampler, image, grid, grad_output):
    """A closure: one forward through ``sampler`` and one backward of ``grad_output`` to a fresh image and grid."""

    def run() -> None:
        sampler(image.detach().requires_grad_(), grid.detach().requires_grad_()).backward(grad_output)

    return run


def saved_ratio(sampler, bilinear, image, grid) -> float:
    leaves = image.detach().requires_grad_(), grid.detach().requires_grad_()
    return saved_tensor_bytes(lambda: sampler(*leaves)) / saved_tensor_bytes(lambda: bilinear(*leaves))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="lstn,estn")
    parser.add_argument("--backend", choices=_extension.BACKENDS, default=None, help="default: each method's own (auto)")
    parser.add_argument("--min-run-time", type=float, default=0.2, help="seconds per timing block")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    hparams = {} if args.backend is None else {"backend": args.backend}
    samplers = {name: interpolators.create(name, **hparams) for name in methods}
    bilinear = interpolators.create("bilinear")
    build = f"operators built for -march={_extension.march()}" if _extension.ensure_loaded() else "no operators"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, forward+backward, "
          f"backend={args.backend or 'default'}, {build}")  # fmt: skip
    print("| config (B, C, in, out) | " + " | ".join(f"{m} / bilinear (range) | {m} saved" for m in methods) + " |")
    print("|---" * (1 + 2 * len(methods)) + "|")
    for b, c, size, out in CONFIGS:
        image, grid, grad_output = make_inputs(b, c, size, out)
        base = forward_backward(bilinear, image, grid, grad_output)
        cells = []
        for name, sampler in samplers.items():
            ratio, low, high = latency_ratio(forward_backward(sampler, image, grid, grad_output), base,
                                             args.min_run_time, args.threads, args.rounds)  # fmt: skip
            cells += [f"{ratio:.2f} ({low:.2f}-{high:.2f})", f"{saved_ratio(sampler, bilinear, image, grid):.2f}"]
        print(f"| {b}, {c}, {size}, {out} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
