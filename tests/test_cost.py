"""The cost suite: FLOP formulas against counted scalar references, the flop counter, memory, cells, rows, report.

The FLOP references are scalar re-implementations of ``grid_sample`` on numbers that
count every arithmetic operation they take part in; each reference is checked against
``F.grid_sample`` (and autograd) first, so its count is the count of a correct algorithm.
"""

from __future__ import annotations

import dataclasses
import math
import os
import timeit
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils import flop_counter

import interpolators
from suites.base import ReportData, RunConfig
from suites.sections import Note, Table
from suites.cost import (
    ANALYTIC_FLOPS,
    PROFILES,
    CostSuite,
    count_flops,
    cuda_latency,
    cuda_peak_bytes,
    estn_forward_flops,
    grid_sampler_2d_backward_flops,
    grid_sampler_2d_forward_flops,
    lstn_forward_flops,
    ratios_to_baseline,
    rotation_grid,
    saved_tensor_bytes,
)

# ---------------------------------------------------------------------------------------------------------
# Counted scalar references


class Counter:
    def __init__(self) -> None:
        self.flops = 0


class Num:
    """A float that adds one to its counter per arithmetic operation; comparisons and floor are free."""

    def __init__(self, value: float, counter: Counter) -> None:
        self.v, self.c = float(value), counter

    def _op(self, other, fn):
        self.c.flops += 1
        return Num(fn(self.v, other.v if isinstance(other, Num) else other), self.c)

    def __add__(self, o):
        return self._op(o, lambda a, b: a + b)

    def __radd__(self, o):
        return self._op(o, lambda a, b: b + a)

    def __sub__(self, o):
        return self._op(o, lambda a, b: a - b)

    def __rsub__(self, o):
        return self._op(o, lambda a, b: b - a)

    def __mul__(self, o):
        return self._op(o, lambda a, b: a * b)

    def __rmul__(self, o):
        return self._op(o, lambda a, b: b * a)

    def __truediv__(self, o):
        return self._op(o, lambda a, b: a / b)

    def __floor__(self):
        return math.floor(self.v)

    def __round__(self):
        return round(self.v)


def _unnormalize(g: Num, size: int, align_corners: bool) -> Num:
    return ((g + 1) / 2) * (size - 1) if align_corners else ((g + 1) * size - 1) / 2


def _wrap(t: torch.Tensor, counter: Counter) -> list:
    return [[[[Num(v, counter) for v in row] for row in ch] for ch in b] for b in t.tolist()]


def _read(image, b, c, y, x):
    """Pixel (y, x) of ``image[b][c]``; 0 outside (zeros padding): the read is memory traffic, not a FLOP."""
    h, w = len(image[b][c]), len(image[b][c][0])
    return image[b][c][y][x] if 0 <= y < h and 0 <= x < w else 0.0


def bilinear_reference(input: torch.Tensor, grid: torch.Tensor, grad_output: torch.Tensor | None, align_corners: bool,
                       input_grad: bool = True, grid_grad: bool = True):
    """Forward (or backward when ``grad_output`` is given) of bilinear ``grid_sample`` on counted numbers."""
    counter = Counter()
    image, points = _wrap(input, counter), grid.tolist()
    b_, c_, h, w = input.shape
    ho, wo = grid.shape[1:3]
    gout = _wrap(grad_output, counter) if grad_output is not None else None
    out = torch.zeros(b_, c_, ho, wo, dtype=torch.float64)
    gin = [[[[0.0] * w for _ in range(h)] for _ in range(c_)] for _ in range(b_)]
    ggrid = torch.zeros(b_, ho, wo, 2, dtype=torch.float64)
    for b in range(b_):
        for i in range(ho):
            for j in range(wo):
                ix = _unnormalize(Num(points[b][i][j][0], counter), w, align_corners)
                iy = _unnormalize(Num(points[b][i][j][1], counter), h, align_corners)
                x0, y0 = math.floor(ix), math.floor(iy)
                tx, ty = ix - x0, iy - y0
                ux, uy = 1 - tx, 1 - ty
                nw, ne, sw, se = ux * uy, tx * uy, ux * ty, tx * ty
                gx = gy = 0.0
                for c in range(c_):
                    v_nw, v_ne = _read(image, b, c, y0, x0), _read(image, b, c, y0, x0 + 1)
                    v_sw, v_se = _read(image, b, c, y0 + 1, x0), _read(image, b, c, y0 + 1, x0 + 1)
                    if gout is None:
                        out[b, c, i, j] = (nw * v_nw + ne * v_ne + sw * v_sw + se * v_se).v
                        continue
                    g = gout[b][c][i][j]
                    if input_grad:
                        for (y, x), weight in (((y0, x0), nw), ((y0, x0 + 1), ne), ((y0 + 1, x0), sw),
                                               ((y0 + 1, x0 + 1), se)):
                            if 0 <= y < h and 0 <= x < w:
                                gin[b][c][y][x] = gin[b][c][y][x] + weight * g
                            else:  # torch computes the masked-out corner too
                                _ = 0.0 + weight * g
                    if grid_grad:
                        gx = gx + ((v_ne - v_nw) * uy + (v_se - v_sw) * ty) * g
                        gy = gy + ((v_sw - v_nw) * ux + (v_se - v_ne) * tx) * g
                if gout is not None and grid_grad:
                    sx = (w - 1) / 2 if align_corners else w / 2
                    sy = (h - 1) / 2 if align_corners else h / 2
                    ggrid[b, i, j, 0], ggrid[b, i, j, 1] = (gx * sx).v, (gy * sy).v
    if gout is None:
        return out, counter.flops
    gin_t = torch.tensor([[[[v.v if isinstance(v, Num) else v for v in row] for row in ch] for ch in bb] for bb in gin],
                         dtype=torch.float64)
    return (gin_t, ggrid), counter.flops


def nearest_reference(input: torch.Tensor, grid: torch.Tensor, align_corners: bool):
    counter = Counter()
    image, points = _wrap(input, counter), grid.tolist()
    b_, c_, h, w = input.shape
    ho, wo = grid.shape[1:3]
    out = torch.zeros(b_, c_, ho, wo, dtype=torch.float64)
    for b in range(b_):
        for i in range(ho):
            for j in range(wo):
                x = round(_unnormalize(Num(points[b][i][j][0], counter), w, align_corners))
                y = round(_unnormalize(Num(points[b][i][j][1], counter), h, align_corners))
                for c in range(c_):
                    value = _read(image, b, c, y, x)
                    out[b, c, i, j] = value.v if isinstance(value, Num) else value
    return out, counter.flops


A = -0.75  # Keys' cubic convolution, as grid_sample


def _cubic1(x):
    return ((A + 2) * x - (A + 3)) * x * x + 1


def _cubic2(x):
    return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A


def _cubic_weights(t):
    return [_cubic2(t + 1), _cubic1(t), _cubic1(1 - t), _cubic2(2 - t)]


def bicubic_reference(input: torch.Tensor, grid: torch.Tensor, align_corners: bool):
    counter = Counter()
    image, points = _wrap(input, counter), grid.tolist()
    b_, c_, h, w = input.shape
    ho, wo = grid.shape[1:3]
    out = torch.zeros(b_, c_, ho, wo, dtype=torch.float64)
    for b in range(b_):
        for i in range(ho):
            for j in range(wo):
                ix = _unnormalize(Num(points[b][i][j][0], counter), w, align_corners)
                iy = _unnormalize(Num(points[b][i][j][1], counter), h, align_corners)
                x0, y0 = math.floor(ix), math.floor(iy)
                wx, wy = _cubic_weights(ix - x0), _cubic_weights(iy - y0)
                for c in range(c_):
                    rows = []
                    for r in range(4):
                        taps = [_read(image, b, c, y0 - 1 + r, x0 - 1 + k) for k in range(4)]
                        rows.append(wx[0] * taps[0] + wx[1] * taps[1] + wx[2] * taps[2] + wx[3] * taps[3])
                    out[b, c, i, j] = (wy[0] * rows[0] + wy[1] * rows[1] + wy[2] * rows[2] + wy[3] * rows[3]).v
    return out, counter.flops


def _tiny(b=1, c=1, h=2, w=2, ho=1, wo=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    input = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)
    grid = torch.rand(b, ho, wo, 2, generator=g, dtype=torch.float64) * 1.6 - 0.8
    return input, grid


SHAPES = [(1, 1, 2, 2, 1, 1), (2, 3, 5, 6, 4, 3)]


# ---------------------------------------------------------------------------------------------------------
# Grid sampler formulas


class TestGridSamplerFormulas:
    def test_hand_counts_smallest_shape(self):
        # bilinear forward, B = C = Ho = Wo = 1: unnormalize 2 x 4, fractions 2, 1 - t 2, weights 4; 4 products + 3 sums
        assert grid_sampler_2d_forward_flops(1, 1, 1, 1, "bilinear", "zeros", False) == 8 + 2 + 2 + 4 + 7
        # nearest: only the unnormalization; bicubic: 8 + 2 fractions + 2 x 25 weights, 4 x 7 + 7 per channel
        assert grid_sampler_2d_forward_flops(1, 1, 1, 1, "nearest", "zeros", False) == 8
        assert grid_sampler_2d_forward_flops(1, 1, 1, 1, "bicubic", "zeros", False) == 60 + 35
        # bilinear backward: the 16 forward point FLOPs + 2 chain rule; per channel 8 (input) + 14 (grid)
        assert grid_sampler_2d_backward_flops(1, 1, 1, 1, "bilinear", "zeros", False) == 16 + 2 + 8 + 14
        # bicubic backward: 60 + 2 + 2 x 18 weight derivatives; per channel 4 + 32 (input), 4 x 14 + 14 + 2 (grid)
        assert grid_sampler_2d_backward_flops(1, 1, 1, 1, "bicubic", "zeros", False) == 98 + 36 + 72
        # nearest backward: recompute 8, add gOut to one pixel per channel, no grid gradient
        assert grid_sampler_2d_backward_flops(1, 1, 1, 1, "nearest", "zeros", False) == 8 + 1

    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize("align_corners", [False, True])
    def test_bilinear_forward_matches_counted_reference(self, shape, align_corners):
        b, c, h, w, ho, wo = shape
        input, grid = _tiny(*shape)
        out, flops = bilinear_reference(input, grid, None, align_corners)
        torch.testing.assert_close(out, F.grid_sample(input, grid, "bilinear", "zeros", align_corners))
        assert flops == grid_sampler_2d_forward_flops(b, c, ho, wo, "bilinear", "zeros", align_corners)

    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize("mask", [(True, True), (True, False), (False, True)])
    def test_bilinear_backward_matches_counted_reference(self, shape, mask):
        b, c, h, w, ho, wo = shape
        input, grid = _tiny(*shape)
        grad_output = torch.rand(b, c, ho, wo, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        (gin, ggrid), flops = bilinear_reference(input, grid, grad_output, False, *mask)
        x, g = input.clone().requires_grad_(mask[0]), grid.clone().requires_grad_(mask[1])
        grads = torch.autograd.grad(F.grid_sample(x, g, align_corners=False), [t for t in (x, g) if t.requires_grad],
                                    grad_output)
        expected = dict(zip([n for n, m in zip(("input", "grid"), mask) if m], grads))
        if mask[0]:
            torch.testing.assert_close(gin, expected["input"])
        if mask[1]:
            torch.testing.assert_close(ggrid, expected["grid"])
        assert flops == grid_sampler_2d_backward_flops(b, c, ho, wo, "bilinear", "zeros", False, *mask)

    @pytest.mark.parametrize("shape", SHAPES)
    def test_nearest_and_bicubic_forward_match_counted_references(self, shape):
        b, c, h, w, ho, wo = shape
        input, grid = _tiny(*shape)
        out, flops = nearest_reference(input, grid, False)
        torch.testing.assert_close(out, F.grid_sample(input, grid, "nearest", "zeros", False))
        assert flops == grid_sampler_2d_forward_flops(b, c, ho, wo, "nearest", "zeros", False)
        out, flops = bicubic_reference(input, grid, False)
        torch.testing.assert_close(out, F.grid_sample(input, grid, "bicubic", "zeros", False))
        assert flops == grid_sampler_2d_forward_flops(b, c, ho, wo, "bicubic", "zeros", False)

    def test_reflection_adds_the_folds(self):
        base = grid_sampler_2d_forward_flops(1, 1, 1, 1, "bilinear", "zeros", False)
        assert grid_sampler_2d_forward_flops(1, 1, 1, 1, "bilinear", "border", False) == base
        assert grid_sampler_2d_forward_flops(1, 1, 1, 1, "bilinear", "reflection", False) == base + 2 * 5
        bicubic = grid_sampler_2d_forward_flops(1, 1, 1, 1, "bicubic", "zeros", False)
        assert grid_sampler_2d_forward_flops(1, 1, 1, 1, "bicubic", "reflection", False) == bicubic + 32 * 5

    def test_unknown_mode_raises(self):
        with pytest.raises(ValueError, match="mode"):
            grid_sampler_2d_forward_flops(1, 1, 1, 1, "area", "zeros", False)


# ---------------------------------------------------------------------------------------------------------
# The flop counter with the formulas


class TestCountFlops:
    def _inputs(self):
        x = torch.rand(2, 3, 5, 6, requires_grad=True)
        g = (torch.rand(2, 4, 3, 2) * 2 - 1).requires_grad_(True)
        return x, g

    def test_torch_alone_counts_grid_sample_as_zero(self):
        x, g = self._inputs()
        with flop_counter.FlopCounterMode(display=False) as counter:
            F.grid_sample(x, g, align_corners=False)
        assert counter.get_total_flops() == 0

    @pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
    def test_forward_and_backward_use_the_formulas(self, mode):
        x, g = self._inputs()
        forward = count_flops(lambda: F.grid_sample(x, g, mode, align_corners=False))
        expected = grid_sampler_2d_forward_flops(2, 3, 4, 3, mode, "zeros", False)
        assert forward.total == expected
        assert forward.by_op == {"aten.grid_sampler_2d": expected}
        both = count_flops(lambda: F.grid_sample(x, g, mode, align_corners=False).backward(torch.ones(2, 3, 4, 3)))
        assert both.total == expected + grid_sampler_2d_backward_flops(2, 3, 4, 3, mode, "zeros", False)

    def test_input_only_backward_skips_the_grid_gradient(self):
        x, g = self._inputs()
        g = g.detach()
        both = count_flops(lambda: F.grid_sample(x, g, align_corners=False).sum().backward())
        assert both.by_op["aten.grid_sampler_2d_backward"] == grid_sampler_2d_backward_flops(
            2, 3, 4, 3, "bilinear", "zeros", False, input_grad=True, grid_grad=False
        )

    def test_global_registry_is_left_alone(self):
        count_flops(lambda: F.grid_sample(*self._inputs(), align_corners=False))
        assert torch.ops.aten.grid_sampler_2d not in flop_counter.flop_registry
        assert torch.ops.aten.grid_sampler_2d_backward not in flop_counter.flop_registry

    def test_lists_arithmetic_ops_without_a_formula(self):
        a, b = torch.rand(3, 4), torch.rand(4, 5)
        result = count_flops(lambda: (a @ b).exp().view(15) + 1)
        assert result.total == 2 * 3 * 4 * 5
        assert "exp" in result.uncounted and "add" in result.uncounted
        assert "mm" not in result.uncounted and "view" not in result.uncounted


# ---------------------------------------------------------------------------------------------------------
# Memory


class TestSavedTensorBytes:
    def test_product_saves_both_factors(self):
        x = torch.rand(3, 4, requires_grad=True)
        w = torch.rand(3, 4, requires_grad=True)
        assert saved_tensor_bytes(lambda: x * w) == 2 * 3 * 4 * 4

    def test_one_storage_counts_once(self):
        x = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
        assert saved_tensor_bytes(lambda: x * x) == 3 * 4 * 8

    def test_grid_sample_saves_input_and_grid(self):
        x = torch.rand(1, 2, 4, 4, requires_grad=True)
        g = torch.rand(1, 3, 5, 2, requires_grad=True)
        assert saved_tensor_bytes(lambda: F.grid_sample(x, g, align_corners=False)) == (2 * 16 + 3 * 5 * 2) * 4

    def test_nothing_saved_without_grad(self):
        x = torch.rand(3, 4, requires_grad=True)
        with torch.no_grad():
            assert saved_tensor_bytes(lambda: x * x) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
class TestCuda:
    def test_latency_and_peak(self):
        x = torch.rand(1, 1, 64, 64, device="cuda")
        g = torch.rand(1, 64, 64, 2, device="cuda") * 2 - 1
        median, iqr = cuda_latency(lambda: F.grid_sample(x, g, align_corners=False), repeats=5)
        assert median > 0 and iqr >= 0
        peak = cuda_peak_bytes(lambda: torch.empty(1 << 20, device="cuda"), torch.device("cuda"))
        assert peak >= 4 * (1 << 20)


# ---------------------------------------------------------------------------------------------------------
# Analytic counts


class TestAnalytic:
    @pytest.mark.parametrize("name", ["nearest", "bilinear", "bicubic"])
    def test_baselines_equal_the_counter(self, name):
        x, g = torch.rand(2, 3, 5, 6), torch.rand(2, 4, 3, 2) * 2 - 1
        sampler = interpolators.create(name)
        counted = count_flops(lambda: sampler(x, g)).total
        assert ANALYTIC_FLOPS[name](2, 3, 5, 6, 4, 3, sampler.hparams()) == counted

    def test_lstn_hand_count(self):
        hp = {"num_samples": 8, "push_away": True, "fixed_bias": False, "padding_mode": "zeros", "align_corners": False}
        # offsets 4 x 7, samples 7 x (16 + 7), normal matrix 8 x 7 + 24; channel: 5 x 7 + 20
        one = 28 + 161 + 80 + 55
        assert lstn_forward_flops(1, 1, 2, 2, 1, 1, hp) == one
        assert lstn_forward_flops(2, 1, 9, 9, 3, 5, hp) == 30 * one
        assert lstn_forward_flops(1, 3, 2, 2, 1, 1, hp) == one + 2 * (7 * 7 + 55)
        # fixed_bias samples the centre too (8 x 23); push_away changes nothing (one draw per axis)
        assert lstn_forward_flops(1, 1, 2, 2, 1, 1, hp | {"fixed_bias": True, "push_away": False}) == one + 23

    def test_estn_hand_count(self):
        hp = {"num_samples": 9, "sampling": "spiral", "entropy": 1.0, "iterations": 2,
              "padding_mode": "zeros", "align_corners": False}
        # frame 44 + 8 x 10, samples 9 x 23, fit 21 x 9 + 13 + 6 x 9 + 15, reweight 97 + 1 + 27 + 17
        frame, samples, fit, reweight = 124, 207, 271, 142
        assert estn_forward_flops(1, 1, 2, 2, 1, 1, hp) == frame + samples + 3 * fit + 2 * reweight
        assert estn_forward_flops(1, 1, 2, 2, 1, 1, hp | {"entropy": None}) == frame + samples + fit + 5
        assert estn_forward_flops(1, 1, 2, 2, 1, 1, hp | {"sampling": "random"}) == (
            frame + samples + 3 * fit + 2 * reweight + 7 * 8
        )


# ---------------------------------------------------------------------------------------------------------
# Cells, rows and the report


def _config(profile="quick", names=("bilinear", "nearest")):
    return RunConfig(suites=("cost",), interpolators={n: {} for n in names}, profile=profile)


class TestCells:
    @pytest.mark.parametrize("profile, per_method", [("quick", 2), ("default", 8), ("full", 16)])
    def test_cardinality(self, profile, per_method):
        cells = CostSuite().cells(_config(profile))
        assert len(cells) == 2 * per_method
        p = PROFILES[profile]
        assert {(c.params["size"], c.params["batch"], c.params["channels"]) for c in cells} == {
            (s, b, ch) for s in p.sizes for b in p.batches for ch in p.channels
        }
        assert all(c.params["device"] == "cpu" and c.hparams["padding_mode"] == "zeros" for c in cells)

    def test_unknown_profile_raises(self):
        with pytest.raises(ValueError, match="profile"):
            CostSuite().cells(_config("huge"))

    def test_rotation_grid_is_off_lattice(self):
        grid = rotation_grid(2, 8)
        px = ((grid + 1) * 8 - 1) / 2
        assert grid.shape == (2, 8, 8, 2)
        assert (px - px.round()).abs().max() > 0.1


class TestRunCell:
    def test_rows(self, tmp_path):
        suite, config = CostSuite(), _config()
        cell = next(c for c in suite.cells(config) if c.interpolator == "bilinear" and c.params["size"] == 28)
        rows = suite.run_cell(cell, config, tmp_path)
        values = {r["metric"]: r["value"] for r in rows}
        assert set(values) == {
            "flops_forward", "flops_forward_backward", "analytic_flops_forward", "uncounted_ops",
            "saved_for_backward_bytes", "latency_forward_ms", "latency_forward_iqr_ms",
            "latency_forward_backward_ms", "latency_forward_backward_iqr_ms",
            "latency_forward_vs_bilinear", "latency_forward_backward_vs_bilinear", "latency_warnings", "load_average",
        } | ({"other_processes_cpus"} if Path("/proc/self/stat").exists() else set())
        assert all(math.isfinite(r["value"]) and r["unit"] and r["threads"] == torch.get_num_threads() for r in rows)
        assert values["flops_forward"] == values["analytic_flops_forward"] == 28 * 28 * 23
        assert values["flops_forward_backward"] == 28 * 28 * (23 + 40)
        assert values["uncounted_ops"] == 0
        # input (1, 1, 28, 28) and grid (1, 28, 28, 2), float32
        assert values["saved_for_backward_bytes"] == (28 * 28 + 28 * 28 * 2) * 4
        assert values["latency_forward_ms"] > 0 and values["latency_forward_backward_ms"] > 0
        timing = {r["timing"] for r in rows if r["metric"].startswith("latency_f")}
        assert len(timing) == 1 and "CPU wall clock" in timing.pop()
        (warned,) = [r for r in rows if r["metric"] == "latency_warnings"]
        assert warned["value"] == len(warned["warning"].split("; ")) if warned["warning"] else warned["value"] == 0

    def test_loaded_machine_warns_in_the_rows(self, tmp_path, monkeypatch):
        """A load average far above the CPUs (faked) gives the cell a warning that says so, whatever the timing."""
        from suites import cost

        monkeypatch.setattr(cost.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
        suite, config = CostSuite(), _config()
        cell = next(c for c in suite.cells(config) if c.interpolator == "bilinear" and c.params["size"] == 28)
        rows = {r["metric"]: r for r in suite.run_cell(cell, config, tmp_path)}
        assert rows["load_average"]["value"] == 64.0 and rows["load_average"]["cpus"] == cost.usable_cpus()
        assert rows["latency_warnings"]["value"] >= 1
        assert f"load average 64.00 on {cost.usable_cpus()} CPUs" in rows["latency_warnings"]["warning"]


class TestTimers:
    def test_cpu_latency_never_synchronizes_cuda(self, monkeypatch):
        """torch's Timer synchronizes CUDA inside the timed region wherever a GPU is present; CPU cells must not."""
        from suites import cost

        synchronized, timers = [], []
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: synchronized.append(args))
        real = cost.benchmark.Timer

        def recording(*args, **kwargs):
            timers.append(kwargs.get("timer"))
            return real(*args, **kwargs)

        monkeypatch.setattr(cost.benchmark, "Timer", recording)
        median, iqr = cost.cpu_latency(lambda: torch.ones(8).sum(), min_run_time=0.01, threads=1)
        assert median > 0 and iqr >= 0
        assert timers == [timeit.default_timer] and not synchronized

    def test_timing_notes_say_what_was_timed(self):
        from suites.cost import MIN_BLOCKS, WARMUP_CALLS, timing_note

        profile = PROFILES["default"]
        cuda = timing_note(torch.device("cuda"), profile, 2)
        assert "CUDA events" in cuda and "no CUDA graph" in cuda and f"{profile.cuda_repeats} blocks" in cuda
        cpu = timing_note(torch.device("cpu"), profile, 3)
        assert "no CUDA synchronization" in cpu and "blocked_autorange" in cpu and "3 threads" in cpu
        assert f"at least {MIN_BLOCKS} blocks" in cpu and f"{WARMUP_CALLS} warm-up calls" in cpu


class FakeClock:
    """A clock that only the fake callable moves: each call of it takes the next of ``durations`` (cycled)."""

    def __init__(self, *durations: float) -> None:
        self.now, self.durations, self.calls = 0.0, durations, 0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.now += self.durations[self.calls % len(self.durations)]
        self.calls += 1


class TestTimingTruth:
    """Repeated blocks with their real spread, and warnings for a noisy measurement or a loaded machine (faked)."""

    def test_a_slow_call_still_gets_several_blocks_and_its_spread(self, monkeypatch):
        from suites import cost

        clock = FakeClock(0.1, 0.3)  # 100 or 300 ms a call: one block would fill min_run_time
        monkeypatch.setattr(cost, "CLOCK", clock)
        latency = cost.cpu_measurement(clock.work, min_run_time=0.05, threads=1)
        assert latency.blocks == cost.MIN_BLOCKS and latency.number == 1
        assert min(abs(latency.median - 0.1), abs(latency.median - 0.3)) < 1e-9 and latency.iqr == pytest.approx(0.2)
        assert latency.spread > cost.SPREAD_THRESHOLD
        (warning,) = cost.latency_warnings({"latency_forward": latency}, _load(cost))
        assert warning.startswith("latency_forward: IQR/median") and f"{cost.MIN_BLOCKS} blocks" in warning

    def test_a_steady_call_has_no_spread_and_no_warning(self, monkeypatch):
        from suites import cost

        clock = FakeClock(0.001)
        monkeypatch.setattr(cost, "CLOCK", clock)
        latency = cost.cpu_measurement(clock.work, min_run_time=0.05, threads=1)
        assert latency.blocks >= cost.MIN_BLOCKS and latency.median == pytest.approx(0.001) and latency.iqr == 0
        assert cost.latency_warnings({"latency_forward": latency}, _load(cost)) == []

    def test_load_average_above_the_cpus_warns(self, monkeypatch):
        from suites import cost

        monkeypatch.setattr(cost, "usable_cpus", lambda: 2)
        monkeypatch.setattr(cost, "_process_cpu_ticks", dict)  # no /proc: the load average alone decides
        for load, warns in ((1.9, False), (2.0 + cost.LOAD_MARGIN + 0.1, True)):
            monkeypatch.setattr(cost.os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
            found = cost.LoadWatch.start().stop(threads=2)
            assert found.others_cpus is None and found.load_average == load
            assert bool(found.warnings()) == warns
        assert "1-minute load average 2.60 on 2 CPUs" in found.warnings()[0]

    def test_other_busy_processes_are_named(self, monkeypatch):
        from suites import cost

        clock = FakeClock(10.0)
        tick = os.sysconf("SC_CLK_TCK")
        snapshots = iter([{7: ("spinner", 0), 8: ("idle", 5)},
                          {7: ("spinner", int(1.8 * 10 * tick)), 8: ("idle", 5), 9: ("newcomer", 0)}])
        monkeypatch.setattr(cost, "CLOCK", clock)
        monkeypatch.setattr(cost, "usable_cpus", lambda: 2)
        monkeypatch.setattr(cost.os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # the load average alone: quiet
        monkeypatch.setattr(cost, "_process_cpu_ticks", lambda: next(snapshots))
        watch = cost.LoadWatch.start()
        clock.work()  # the cell times for 10 s while "spinner" uses 1.8 CPUs of the 1 its single thread left free
        found = watch.stop(threads=1)
        assert found.others_cpus == pytest.approx(1.8) and found.busy == ("spinner (7, 1.8 CPUs)",)
        (warning,) = found.warnings()
        assert warning == "other processes used 1.8 of 2 CPUs while 1 threads timed: spinner (7, 1.8 CPUs)"
        assert dataclasses.replace(found, threads=0).warnings() == []  # 1.8 of the 2 left free: not above

    def test_the_real_proc_sees_other_processes(self):
        from suites import cost

        if not Path("/proc/self/stat").exists():
            pytest.skip("no /proc on this platform: other_processes_cpus is not recorded")
        ticks = cost._process_cpu_ticks()
        assert os.getpid() not in ticks and ticks and all(n >= 0 for _, n in ticks.values())
        assert os.getppid() in ticks  # pytest's parent (a shell, a runner) is another process


def _load(cost, **changes):
    """A quiet machine's :class:`suites.cost.MachineLoad` (2 CPUs, 1 thread), with ``changes``."""
    return dataclasses.replace(cost.MachineLoad(load_average=0.5, cpus=2, threads=1, others_cpus=0.0), **changes)


def _cost_frame():
    rows = []
    for name, scale in (("bilinear", 1.0), ("lstn", 3.0)):
        for metric, value in (("latency_forward_ms", 2.0), ("latency_forward_backward_ms", 5.0),
                              ("flops_forward", 100.0), ("uncounted_ops", 1.0)):
            rows.append({"suite": "cost", "interpolator": name, "size": 28, "batch": 1, "channels": 1,
                         "device": "cpu", "seed": 0, "metric": metric, "value": value * scale, "unit": "x",
                         "ops": "add" if metric == "uncounted_ops" else None})
    return pd.DataFrame(rows)


class TestReport:
    def test_ratios(self):
        ratios = ratios_to_baseline(_cost_frame())
        assert (ratios["bilinear"] == 1).all() and (ratios["lstn"] == 3).all()
        assert list(ratios.index.get_level_values("metric")) == [
            "latency_forward_ms", "latency_forward_backward_ms", "flops_forward"
        ]

    def test_latency_ratios_are_the_cells_own(self):
        """Where cells timed their ratio beside bilinear, the table shows it, not the ratio of two cells' medians."""
        frame = _cost_frame()
        timed = [{"suite": "cost", "interpolator": name, "size": 28, "batch": 1, "channels": 1, "device": "cpu",
                  "seed": 0, "metric": metric, "value": value, "unit": "x"}
                 for name, value in (("bilinear", 1.02), ("lstn", 2.5))
                 for metric in ("latency_forward_vs_bilinear", "latency_forward_backward_vs_bilinear")]
        ratios = ratios_to_baseline(pd.concat([frame, pd.DataFrame(timed)], ignore_index=True))
        latency = ratios.xs("latency_forward_ms", level="metric")
        assert latency["lstn"].item() == 2.5 and latency["bilinear"].item() == 1.02
        assert ratios.xs("flops_forward", level="metric")["lstn"].item() == 3  # counts: across cells
        assert list(ratios.index.get_level_values("metric")) == [
            "latency_forward_ms", "latency_forward_backward_ms", "flops_forward"
        ]

    def test_ratios_need_the_baseline(self):
        frame = _cost_frame()
        with pytest.raises(ValueError, match="bilinear"):
            ratios_to_baseline(frame[frame["interpolator"] != "bilinear"])

    def test_sections_without_accuracy_say_so(self):
        sections = _sections(_cost_frame())
        ratio = sections["Cost relative to bilinear"]
        assert any(isinstance(item, Table) and (item.frame["lstn"] == 3).all() for item in ratio.items)
        (note,) = sections["Latency vs accuracy (Fig. 5c)"].items
        assert isinstance(note, Note) and "No accuracy results" in note.text

    def test_chart_joins_this_run(self):
        accuracy = pd.DataFrame([{"suite": "scale", "interpolator": n, "metric": "align_success", "value": v}
                                 for n, v in (("bilinear", 0.2), ("lstn", 0.9))])
        (figure,) = _sections(pd.concat([_cost_frame(), accuracy]))["Latency vs accuracy (Fig. 5c)"].items
        assert "align_success" in figure.caption and "this run" in figure.caption
        inference, training = figure.panels[0]
        # latency (batch 1, largest size) against the accuracy, per interpolator
        assert sorted(inference.points) == [("bilinear", 2.0, 0.2), ("lstn", 6.0, 0.9)]
        assert sorted(training.points) == [("bilinear", 5.0, 0.2), ("lstn", 15.0, 0.9)]

    def test_chart_joins_a_linked_run(self):
        previous = pd.DataFrame([{"suite": "scale", "interpolator": n, "metric": "psnr", "value": v}
                                 for n, v in (("bilinear", 25.0), ("lstn", 27.0))])
        (figure,) = _sections(_cost_frame(), linked={"accuracy_from": previous})["Latency vs accuracy (Fig. 5c)"].items
        assert "psnr" in figure.caption and "accuracy_from" in figure.caption
        assert sorted(figure.panels[0][0].points) == [("bilinear", 2.0, 25.0), ("lstn", 6.0, 27.0)]

    def test_timing_section_says_how_and_lists_the_cells_that_warned(self):
        frame = _cost_frame().assign(timing="CPU wall clock (blocked_autorange), 2 threads")
        warned = [{"suite": "cost", "interpolator": name, "size": 28, "batch": 1, "channels": 1, "device": "cpu",
                   "seed": 0, "metric": "latency_warnings", "value": float(bool(text)), "unit": "warnings",
                   "warning": text}
                  for name, text in (("bilinear", ""), ("lstn", "loaded machine: 1-minute load average 5.00 on 2 CPUs"))]
        items = _sections(pd.concat([frame, pd.DataFrame(warned)]))["Timing"].items
        notes = " ".join(item.text for item in items if isinstance(item, Note))
        assert "Latency timing: CPU wall clock (blocked_autorange), 2 threads." in notes
        assert "1 of the 2 cells warned" in notes
        (table,) = [item for item in items if isinstance(item, Table)]
        assert table.frame["interpolator"].tolist() == ["lstn"] and "load average 5.00" in table.frame["warning"][0]

    def test_timing_section_without_warnings(self):
        frame = _cost_frame()
        quiet = frame[frame["metric"] == "flops_forward"].assign(metric="latency_warnings", value=0.0, warning="")
        items = _sections(pd.concat([frame, quiet]))["Timing"].items
        assert not any(isinstance(item, Table) for item in items)
        assert "No cell of the 2 warned" in items[-1].text
        (old,) = [i for i in _sections(frame)["Timing"].items if "predate" in i.text]  # a run from before them

    def test_options_change_the_grid(self):
        config = _config().__class__(suites=("cost",), interpolators={"bilinear": {}}, profile="quick",
                                     suite_options={"cost": {"sizes": [16], "batches": [1, 4]}})
        cells = CostSuite().cells(config)
        assert sorted((c.params["size"], c.params["batch"]) for c in cells) == [(16, 1), (16, 4)]


def _sections(results: pd.DataFrame, linked=None) -> dict:
    data = ReportData(results, RunConfig(suites=("cost",), interpolators={}), linked=linked or {})
    return {section.title: section for section in CostSuite().report_sections(data)}
