"""What every benchmark shares: the method list, pinned threads and the cost suite's inputs.

The method list is fixed (not read from the registry) so that results stay comparable
across commits: a method a commit lacks is skipped by raising ``NotImplementedError``
in ``setup``, which asv reports as skipped rather than failed.
"""

from __future__ import annotations

import os

import torch

import interpolators

try:  # the cost suite's measurement helpers; a commit before it skips every benchmark
    from suites import cost
except ImportError:
    cost = None

#: threads every benchmark runs at (.ci/asv-smoke also exports OMP_NUM_THREADS=2)
THREADS = 2
#: the regression gate (.ci/asv_gate.py) sets this: benchmarks that sweep many configurations run a reduced set
GATE = os.environ.get("STN_BENCH_ASV_GATE") == "1"
#: every method the benchmarks track, built in or not yet
METHODS = ["nearest", "bilinear", "bicubic", "lstn", "estn", "pyramid", "prefiltered"]


def pin_threads() -> None:
    torch.set_num_threads(THREADS)


def create(name: str, **hparams):
    """The interpolator ``name`` (defaults, or ``hparams`` over them); ``NotImplementedError`` (asv: skip) if this
    commit lacks it or the hyperparameter."""
    if cost is None:
        raise NotImplementedError("suites.cost is not in this commit")
    if name not in interpolators.available():
        raise NotImplementedError(f"{name} is not registered at this commit")
    missing = set(hparams) - set(interpolators.describe(name)["hparams"])
    if missing:
        raise NotImplementedError(f"{name} has no {sorted(missing)} at this commit")
    return interpolators.create(name, **hparams)


def sampling_inputs(size: int, batch: int = 1, channels: int = 1):
    """``(input, grid, grad_output)`` as the cost suite builds them: ``n x n`` -> ``n x n`` through a small rotation."""
    generator = torch.Generator().manual_seed(0)
    input = torch.rand(batch, channels, size, size, generator=generator).requires_grad_(True)
    grid = cost.rotation_grid(batch, size).requires_grad_(True)
    grad_output = torch.rand(batch, channels, size, size, generator=generator)
    return input, grid, grad_output
