"""A cheap, deterministic suite for the harness tests (registered only by the tests).

Each cell samples a linear ramp ``f(x, y) = x + 2y`` (in pixels) with the
interpolator on a grid zoomed by ``level`` and shifted off the lattice, and
reports the mean absolute error against the exact ramp on the interior (zero
for bilinear and bicubic on a ramp, not for nearest), plus a ``noise`` metric
drawn from torch's global generator, which shows whether the runner seeded it.

Environment variables make a chosen cell misbehave; each holds a comma-separated
list of ``interpolator:level:seed`` ids:

- ``FAKE_SUITE_FAIL``: raise ``RuntimeError``;
- ``FAKE_SUITE_NAN``: report NaN for ``abs_error``;
- ``FAKE_SUITE_INTERRUPT``: raise ``KeyboardInterrupt`` (Ctrl-C);
- ``FAKE_SUITE_CRASH``: raise :class:`SimulatedCrash`, a ``BaseException`` the runner does not catch
  (like a killed process, nothing after it runs); ``FAKE_SUITE_EXIT``: ``os._exit(3)``;
- ``FAKE_SUITE_SIGKILL``: the cell's process kills itself with SIGKILL; ``FAKE_SUITE_SEGFAULT``: it reads
  address 0 (a real segmentation fault); ``FAKE_SUITE_HANG``: it sleeps for an hour;
  ``FAKE_SUITE_MEMORY``: raise ``MemoryError``.

``FAKE_SUITE_LOG`` names a file to which each cell run appends its id; ``FAKE_SUITE_SLEEP_S``
makes every cell sleep that many seconds first (to keep workers busy); ``FAKE_SUITE_RENDEZVOUS``
names a folder where each cell leaves its worker's pid and waits (60 s at most) until two workers
have, so that two workers surely run cells at the same time whatever their start-up times.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import interpolators
from suites.base import Cell, CellResult, Metric, Option, ReportData, RunConfig, Suite
from suites.sections import Figure, Image, Note, Section

LEVELS = {"quick": [1, 2], "default": [1, 2, 4], "full": [1, 2, 4, 8]}
IMAGES = ("ramp", "ramp_t")


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an ``Exception``, so the runner does not record it."""


def _ids(variable: str) -> set[str]:
    return {part.strip() for part in os.environ.get(variable, "").split(",") if part.strip()}


def ramp_error(name: str, hparams: dict[str, Any], level: float, transpose: bool) -> float:
    """Mean |sampled - exact| of the ramp ``x + 2y`` (or ``2x + y``) sampled at a zoom by ``level``."""
    sampled, exact = ramp_samples(name, hparams, level, transpose)
    return float((sampled - exact).abs().mean())


def ramp_samples(name: str, hparams: dict[str, Any], level: float, transpose: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampled ramp ``(6, 6)`` and its exact values at the same points."""
    size = 12
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    a, b = (2.0, 1.0) if transpose else (1.0, 2.0)
    image = (a * x + b * y)[None, None]
    # output pixel centres in input pixels: around the centre, spaced 1/level, shifted by 0.3 px
    out = 6
    coords = (torch.arange(out, dtype=torch.float64) - (out - 1) / 2) / level + (size - 1) / 2 + 0.3
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    grid = torch.stack([(2 * px + 1) / size - 1, (2 * py + 1) / size - 1], dim=-1)[None]  # align_corners=False
    sampler = interpolators.create(name, **hparams)
    return sampler(image, grid)[0, 0], a * px + b * py


class FakeSuite(Suite):
    name = "fake"
    summary = "a ramp sampled at a few zoom levels (tests only)"
    x_param = "level"
    x_doc = "the zoom: output pixels per input pixel"
    headline = {"level": 2}
    metrics = {"abs_error": Metric("mean absolute error against the exact ramp", "px", "lower")}
    options = {"scale_noise": Option("float", "a factor on the noise metric", minimum=0),
               "levels": Option("ints", "the zoom levels", minimum=1)}

    def cells(self, config: RunConfig) -> list[Cell]:
        dataset = config.options.get("dataset")
        if dataset not in (None, "ramp"):
            raise ValueError(f"dataset: expected 'ramp', got {dataset!r}")
        seeds = config.seeds or 2
        levels = config.options_for(self.name).get("levels", LEVELS[config.profile])
        return [
            Cell(self.name, name, dict(hparams), {"level": level}, seed)
            for name, hparams in config.interpolators.items()
            for level in levels
            for seed in range(seeds)
        ]

    def run_cell(self, cell: Cell, config: RunConfig, run_dir: Path) -> list[dict[str, Any]]:
        ident = f"{cell.interpolator}:{cell.params['level']}:{cell.seed}"
        if os.environ.get("FAKE_SUITE_LOG"):
            with open(os.environ["FAKE_SUITE_LOG"], "a") as log:
                log.write(f"{self.name}:{ident}\n")
        if ident in _ids("FAKE_SUITE_FAIL"):
            raise RuntimeError(f"told to fail at {ident}")
        if ident in _ids("FAKE_SUITE_INTERRUPT"):
            raise KeyboardInterrupt
        if ident in _ids("FAKE_SUITE_CRASH"):
            raise SimulatedCrash(ident)
        if ident in _ids("FAKE_SUITE_EXIT"):
            os._exit(3)
        if ident in _ids("FAKE_SUITE_SIGKILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        if ident in _ids("FAKE_SUITE_SEGFAULT"):
            ctypes.string_at(0)
        if ident in _ids("FAKE_SUITE_HANG"):
            time.sleep(3600)
        if ident in _ids("FAKE_SUITE_MEMORY"):
            raise MemoryError(f"told to run out of memory at {ident}")
        if os.environ.get("FAKE_SUITE_RENDEZVOUS"):
            folder = Path(os.environ["FAKE_SUITE_RENDEZVOUS"])
            folder.mkdir(parents=True, exist_ok=True)
            (folder / str(os.getppid())).touch()
            deadline = time.monotonic() + 60
            while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        if os.environ.get("FAKE_SUITE_SLEEP_S"):
            time.sleep(float(os.environ["FAKE_SUITE_SLEEP_S"]))
        # from the global generator the runner seeds with cell.seed
        noise = torch.rand(()).item() * config.options_for(self.name).get("scale_noise", 1.0)
        rows = []
        for image in IMAGES:
            error = ramp_error(cell.interpolator, cell.hparams, cell.params["level"], image == "ramp_t")
            if ident in _ids("FAKE_SUITE_NAN"):
                error = float("nan")
            rows.append({"metric": "abs_error", "value": error, "unit": "px", "image": image})
        rows.append({"metric": "noise", "value": torch.tensor(noise), "unit": "1"})  # a tensor: the store converts it
        if cell.seed != 0:
            return rows
        sampled, _ = ramp_samples(cell.interpolator, cell.hparams, cell.params["level"], False)
        return CellResult(rows, {"sampled": sampled.to(torch.float16)})  # kept beside the cell, for the report

    def report_sections(self, data: ReportData) -> list[Section]:
        n = int((data.results["suite"] == self.name).sum())
        pictures = {(c.interpolator, c.params["level"]): a["sampled"] for c, a in data.with_arrays(self.name)}
        sections = [Section("Fake <extra> section", (Note(f"{n} rows of fake"),))]
        if pictures:
            names = list(dict.fromkeys(name for name, _ in pictures))
            levels = sorted({level for _, level in pictures})
            panels = tuple(tuple(Image(np.asarray(pictures[(n_, lv)], dtype=float) / 36.0, cmap="viridis")
                                 for lv in levels) for n_ in names)
            sections.insert(0, Section("Sampled ramps", (Figure(panels, tuple(names), tuple(map(str, levels)),
                                                                 caption="the sampled ramp"),), glance=True))
        return sections


class FakeSuiteNoX(FakeSuite):
    """The same cells under another name and without ``x_param`` (bar plots in the report)."""

    name = "fakebar"
    summary = "the fake suite without a swept parameter (tests only)"
    x_param = None


class FakeSuiteExclusive(FakeSuite):
    """The same cells under another name, marked ``exclusive`` (like the cost suite: alone on their node)."""

    name = "fakeexcl"
    summary = "the fake suite, each cell alone on its node (tests only)"
    exclusive = True


#: the fake suites by name, as ``bench.suites`` entry points (``harness_fixtures`` installs them)
SUITES = {
    "fake": "fake_suite:FakeSuite",
    "fakebar": "fake_suite:FakeSuiteNoX",
    "fakeexcl": "fake_suite:FakeSuiteExclusive",
}

#: the environment variables above, cleared by the ``fake_suites`` fixture
ENV_VARS = (
    "FAKE_SUITE_FAIL",
    "FAKE_SUITE_NAN",
    "FAKE_SUITE_INTERRUPT",
    "FAKE_SUITE_CRASH",
    "FAKE_SUITE_EXIT",
    "FAKE_SUITE_SIGKILL",
    "FAKE_SUITE_SEGFAULT",
    "FAKE_SUITE_HANG",
    "FAKE_SUITE_MEMORY",
    "FAKE_SUITE_SLEEP_S",
    "FAKE_SUITE_RENDEZVOUS",
    "FAKE_SUITE_LOG",
)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``bench.cli.main(argv)``: its exit code, stdout and stderr."""
    from bench.cli import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
