"""Per-step times of the classify suite's networks, and what the ``--full`` grid costs from them.

For each cell variant of ``--suite classify --full`` (every interpolator, and the two ESTN
ablations), build the cell's network (Table 3, image size and batch of the full protocol),
time ``--steps`` optimizer steps on random inputs of the dataset's shape after a warm-up, and
one validation pass (the 150 held-out images); then, with the protocol's epochs and label
budgets, the training time of every cell of the grid::

    python scripts/classify_step_times.py --device cpu --threads 1
    python scripts/classify_step_times.py --device cuda --out step_times_cuda.json

The cell time is ``epochs * (ceil(labels / batch) * step + validation)``; test evaluation and
data preparation (seconds) are left out. docs/executors.md lays the grid out on Slurm from
these numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suites import datasets as ds
from suites.base import RunConfig
from suites.classify import ClassifySuite, error_rate, protocol_for, train_step
from suites.models import build_model

VALIDATION_IMAGES = 150
#: (channels, classes) of each dataset's images at the suite's size
SHAPES = {"digits": (1, 10), "mnist": (1, 10), "fashion_mnist": (1, 10), "svhn": (3, 10),
          "celeba": (3, len(ds.CELEBA_HAIR))}


def variants(config: RunConfig) -> list[tuple[str, dict, str]]:
    """``(interpolator, hparams, ablation)`` of every distinct network of the grid."""
    seen = {}
    for cell in ClassifySuite().cells(config):
        seen.setdefault((cell.interpolator, cell.params["ablation"]), cell.hparams)
    return [(name, hparams, ablation) for (name, ablation), hparams in seen.items()]


def time_steps(model, x, y, steps: int, device: torch.device) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(steps + 3):  # three warm-up steps
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        train_step(model, optimizer, x, y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per network")
    parser.add_argument("--dataset", default="fashion_mnist", choices=sorted(SHAPES),
                        help="the full grid's dataset (only its image shape matters here)")
    parser.add_argument("--out", help="also write the table as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    interpolators = {name: {} for name in ("nearest", "bilinear", "bicubic", "lstn", "estn")}
    config = RunConfig(suites=("classify",), interpolators=interpolators, profile="full",
                       options={"dataset": args.dataset})
    protocol = protocol_for(config)
    channels, classes = SHAPES[args.dataset]
    size, batch = protocol.image_size, protocol.batch_size
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, channels, size, size, generator=generator) * 2 - 1).to(device)
    y = torch.randint(0, classes, (batch,), generator=generator).to(device)
    x_val = (torch.rand(VALIDATION_IMAGES, channels, size, size, generator=generator) * 2 - 1).to(device)
    y_val = torch.randint(0, classes, (VALIDATION_IMAGES,), generator=generator).to(device)

    rows = []
    for name, hparams, ablation in variants(config):
        torch.manual_seed(0)
        model = build_model(args.dataset, channels, classes, name, hparams,
                            norm_preserving=name == "estn" and ablation != "wo_norm").to(device)
        step = statistics.median(time_steps(model, x, y, args.steps, device))
        t0 = time.perf_counter()
        error_rate(model, x_val, y_val)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        validation = time.perf_counter() - t0
        cells = {}
        for budget in protocol.labels:
            epochs = protocol.num_epochs(budget)
            batches = math.ceil(budget / batch)
            cells[budget] = {"epochs": epochs, "steps": epochs * batches,
                             "hours": epochs * (batches * step + validation) / 3600,
                             "epoch_s": batches * step + validation}
        rows.append({"interpolator": name, "ablation": ablation, "step_ms": 1e3 * step,
                     "validation_ms": 1e3 * validation, "cells": cells})
        print(f"{name:9s} {ablation:8s} step {1e3 * step:8.2f} ms  validation {1e3 * validation:7.1f} ms  "
              + "  ".join(f"{b}: {c['hours']:7.1f} h" for b, c in cells.items()), flush=True)

    seeds = protocol.seeds
    total = seeds * sum(c["hours"] for r in rows for c in r["cells"].values())
    longest = max(c["hours"] for r in rows for c in r["cells"].values())
    print(f"{len(rows) * len(protocol.labels) * seeds} cells, {total:.0f} cell-hours in all, longest cell "
          f"{longest:.1f} h ({args.device}, {torch.get_num_threads()} thread(s), batch {batch}, {size}x{size})")
    if args.out:
        info = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "dataset": args.dataset, "batch": batch, "image_size": size, "seeds": seeds, "rows": rows}
        Path(args.out).write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
