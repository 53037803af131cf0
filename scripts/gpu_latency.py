"""GPU forward+backward latency of L-STN and ESTN relative to bilinear (issue 14's table), measured side by side in one
process.

Run: ``python scripts/gpu_latency.py [--methods lstn,estn] [--batches 1,32] [--sizes 28,64,128,256] [--repeats 10]
[--rounds 5] [--graphs] [--dry-run]``. Prints a Markdown table.

Each cell samples an ``n x n`` float32 input ``(B, 1, n, n)`` at the cost suite's rotation grid
(:func:`suites.cost.rotation_grid`) and backpropagates a fixed output gradient to the input and the grid, with each
method's default hyperparameters (``backend="auto"``: the Triton kernels on CUDA). A ratio is the median over
``rounds`` alternating rounds of bilinear then the method, each timed by :func:`suites.cost.cuda_latency` (CUDA
events around blocks of plain calls, synchronized; ``repeats`` blocks, median): Python, dispatch and launch
overhead included, which dominates at batch 1. ``--graphs`` adds the same step captured once in a CUDA graph and
replayed (the kernels' time without the launch overhead), shown beside the plain call. ``--dry-run`` runs each step
once on the CPU at the smallest size, to check the script without a GPU.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch

import interpolators
from suites.cost import cuda_latency, rotation_grid


def make_step(sampler, batch: int, size: int, device: str) -> Callable[[], torch.Tensor]:
    """One forward and backward of ``sampler`` on fresh leaves (their gradients reset), as the cost suite times it."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 1, size, size, generator=g).to(device).requires_grad_()
    grid = rotation_grid(batch, size, device=device).requires_grad_()
    grad_output = torch.rand(batch, 1, size, size, generator=g).to(device)

    def step() -> torch.Tensor:
        image.grad = grid.grad = None
        out = sampler(image, grid)
        out.backward(grad_output)
        return out

    return step


def captured(step: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """``step`` captured in a CUDA graph (after a warm-up on a side stream): a function that replays it."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def ratio(fn: Callable[[], object], baseline: Callable[[], object], repeats: int, rounds: int) -> tuple[float, float, float]:
    """``(median, low, high)`` of ``fn``'s CUDA time over ``baseline``'s, in ``rounds`` alternating rounds."""
    ratios = sorted(cuda_latency(fn, repeats)[0] / cuda_latency(baseline, repeats)[0] for _ in range(rounds))
    return statistics.median(ratios), ratios[0], ratios[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="lstn,estn")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--sizes", default="28,64,128,256")
    parser.add_argument("--repeats", type=int, default=10, help="CUDA timing blocks per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per ratio")
    parser.add_argument("--graphs", action="store_true", help="also time the step replayed from a CUDA graph")
    parser.add_argument("--dry-run", action="store_true", help="run each step once on the CPU, smallest size")
    args = parser.parse_args()
    methods = args.methods.split(",")
    batches, sizes = [int(b) for b in args.batches.split(",")], [int(s) for s in args.sizes.split(",")]
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device (use --dry-run to check the script on the CPU)")
    samplers = {name: interpolators.create(name).to(device) for name in ["bilinear", *methods]}
    if args.dry_run:
        for name, sampler in samplers.items():
            out = make_step(sampler, batches[0], min(sizes), device)()
            print(f"dry run: {name} forward+backward at ({batches[0]}, 1, {min(sizes)}, {min(sizes)}): {tuple(out.shape)}")
        return
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, float32, forward+backward, default backends; "
          f"ratio: median (range) over {args.rounds} alternating rounds, {args.repeats} CUDA-event blocks each")  # fmt: skip
    head = ["B, size", "bilinear ms"] + [f"{m} / bilinear" for m in methods]
    if args.graphs:
        head += ["bilinear ms (graph)"] + [f"{m} / bilinear (graph)" for m in methods]
    print("| " + " | ".join(head) + " |")
    print("|---" * len(head) + "|")
    for batch in batches:
        for size in sizes:
            steps = {name: make_step(sampler, batch, size, device) for name, sampler in samplers.items()}
            cells = [f"{batch}, {size}", f"{cuda_latency(steps['bilinear'], args.repeats)[0] * 1e3:.3f}"]
            for name in methods:
                r, low, high = ratio(steps[name], steps["bilinear"], args.repeats, args.rounds)
                cells.append(f"{r:.2f} ({low:.2f}-{high:.2f})")
            if args.graphs:
                try:
                    replays = {name: captured(step) for name, step in steps.items()}
                except Exception as err:  # a capture that fails is reported, the table goes on
                    cells += [f"capture failed: {type(err).__name__}: {err}"[:120]] + [""] * len(methods)
                else:
                    cells.append(f"{cuda_latency(replays['bilinear'], args.repeats)[0] * 1e3:.3f}")
                    for name in methods:
                        r, low, high = ratio(replays[name], replays["bilinear"], args.repeats, args.rounds)
                        cells.append(f"{r:.2f} ({low:.2f}-{high:.2f})")
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
