"""Forward+backward time of every interpolator relative to bilinear, measured side by side in one process.

Run: ``python scripts/speed_ratios.py [--threads 2] [--methods lstn,estn] [--backend eager|compiled|native] [--min-run-time 1.0]``

Each configuration ``(B, C, in, out)`` samples an ``in x in`` input at an ``out x out`` grid with a
small rotation (off-lattice), backpropagating a fixed output gradient to both the input and the grid. ``--backend compiled``
or ``native`` builds the methods with that backend (compilation happens in the warm-up, outside the timing).
Timings are
``torch.utils.benchmark`` medians (``blocked_autorange``, warm-up first); the ratio divides each
method's median by bilinear's from the same process and threads.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
import torch.utils.benchmark as benchmark

import interpolators

CONFIGS = [(32, 1, 64, 64), (32, 3, 64, 64), (1, 3, 256, 256), (8, 3, 256, 64)]


def make_inputs(
    b: int, c: int, size: int, out: int, angle_deg: float = 7.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(image, grid, grad_output)``: a random image, a 7 degree rotation grid and a fixed output gradient."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(b, c, size, size, generator=g)
    a = math.radians(angle_deg)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.01], [math.sin(a), math.cos(a), -0.02]]).expand(b, 2, 3)
    grid = F.affine_grid(theta, [b, c, out, out], align_corners=False)
    return image, grid.contiguous(), torch.rand(b, c, out, out, generator=g)


def forward_backward(sampler, image, grid, grad_output):
    image = image.detach().requires_grad_()
    grid = grid.detach().requires_grad_()
    sampler(image, grid).backward(grad_output)


def median_seconds(sampler, image, grid, grad_output, min_run_time: float) -> float:
    for _ in range(3):  # warm-up (and compilation, for the compiled and native backends)
        forward_backward(sampler, image, grid, grad_output)
    timer = benchmark.Timer(
        stmt="forward_backward(sampler, image, grid, grad_output)",
        globals={"forward_backward": forward_backward, "sampler": sampler, "image": image, "grid": grid, "grad_output": grad_output},
        num_threads=torch.get_num_threads(),
    )
    return timer.blocked_autorange(min_run_time=min_run_time).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="lstn,estn")
    parser.add_argument("--backend", choices=["eager", "compiled", "native"], default="eager")
    parser.add_argument("--min-run-time", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, forward+backward, backend={args.backend}")
    print("| config (B, C, in, out) | bilinear ms | " + " | ".join(f"{m} ms | {m} / bilinear" for m in methods) + " |")
    print("|---" * (2 + 2 * len(methods)) + "|")
    for b, c, size, out in CONFIGS:
        image, grid, grad_output = make_inputs(b, c, size, out)
        base = median_seconds(interpolators.create("bilinear"), image, grid, grad_output, args.min_run_time)
        cells = [f"{base * 1e3:.2f}"]
        for name in methods:
            t = median_seconds(interpolators.create(name, backend=args.backend), image, grid, grad_output, args.min_run_time)
            cells += [f"{t * 1e3:.2f}", f"{t / base:.2f}"]
        print(f"| {b}, {c}, {size}, {out} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
