"""Fuzz: no registered sampler crashes the process, and every one follows the policy for grids that are not finite.

Hypothesis draws a sampler (every registered name, L-STN and ESTN on both backends), a padding mode,
``align_corners``, a dtype (half precision included), shapes, a grid magnitude up to 1e30 and a few NaN or
infinite coordinates. Each case runs forward and backward in a child process (one long-lived worker, restarted
when a case kills it), so a segmentation fault fails the test, naming the case, instead of killing pytest. The
policy (:func:`interpolators.base.sample_safely`): a non-finite grid point gives NaN in every channel of its pixel
(and of its four neighbours for methods that difference the grid), every other pixel is finite, and no gradient
is NaN.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import interpolators
from interpolators import _extension

DTYPES = ["float32", "float64", "float16", "bfloat16"]
SPECIALS = [float("nan"), float("inf"), float("-inf")]
CASE_TIMEOUT_S = 120


@dataclass(frozen=True)
class Case:
    name: str
    hparams: tuple[tuple[str, object], ...]
    dtype: str
    shape: tuple[int, int, int, int, int, int]  # B, C, H, W, Ho, Wo
    magnitude: float
    specials: tuple[tuple[int, int, int, int, float], ...]  # (b, y, x, axis, value)
    seed: int


def run_case(case: Case) -> dict:
    """Forward and backward of ``case``: which output pixels are NaN, and whether anything else is not finite."""
    torch.manual_seed(case.seed)
    b, c, h, w, ho, wo = case.shape
    dtype = getattr(torch, case.dtype)
    image = torch.rand(b, c, h, w, dtype=torch.float64).to(dtype).requires_grad_()
    grid = ((torch.rand(b, ho, wo, 2, dtype=torch.float64) * 2 - 1) * case.magnitude).to(dtype)
    for bi, y, x, axis, value in case.specials:
        grid[bi, y, x, axis] = value
    not_finite = (~torch.isfinite(grid).all(-1)).tolist()  # the specials, and magnitudes past the dtype's range
    grid.requires_grad_()
    out = interpolators.create(case.name, **dict(case.hparams))(image, grid)
    out.float().nan_to_num(nan=0.0).sum().backward()
    nan_pixels = out.isnan().all(1)
    return {
        "not_finite": not_finite,
        "nan_pixels": nan_pixels.tolist(),
        "partly_nan": bool((out.isnan().any(1) & ~nan_pixels).any()),
        "other_non_finite": bool((~torch.isfinite(out) & ~out.isnan()).any()),
        "input_grad_finite": bool(torch.isfinite(image.grad).all()),
        "grid_grad_finite": bool(torch.isfinite(grid.grad).all()),
    }


def _serve(requests, replies) -> None:
    torch.set_num_threads(1)
    while True:
        case = requests.get()
        try:
            replies.put(("ok", run_case(case)))
        except Exception as err:  # a clear error is an answer too; the test decides
            replies.put(("error", f"{type(err).__name__}: {err}"))


class Worker:
    """A child process that runs cases one at a time; ``run`` says ``("crash", exitcode)`` if a case kills it."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.process = None

    def start(self) -> None:
        self.requests, self.replies = self.context.Queue(), self.context.Queue()
        self.process = self.context.Process(target=_serve, args=(self.requests, self.replies), daemon=True)
        self.process.start()

    def run(self, case: Case):
        if self.process is None or not self.process.is_alive():
            self.start()
        self.requests.put(case)
        deadline = time.monotonic() + CASE_TIMEOUT_S
        while True:
            try:
                return self.replies.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive():
                    code, self.process = self.process.exitcode, None
                    return ("crash", f"exit code {code}")
                if time.monotonic() > deadline:
                    self.process.kill()
                    self.process = None
                    return ("crash", f"no answer in {CASE_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.stop()


def expected_nan_pixels(name: str, hparams: dict, not_finite: list) -> torch.Tensor:
    """The policy's NaN pixels: the non-finite grid points and, for samplers that difference the grid (as
    configured: prefiltered does with an adaptive sigma only), their four neighbours."""
    bad = torch.tensor(not_finite, dtype=torch.bool)
    if interpolators.create(name, **hparams).reads_grid_neighbours:
        spread = bad.clone()
        spread[:, 1:] |= bad[:, :-1]
        spread[:, :-1] |= bad[:, 1:]
        spread[:, :, 1:] |= bad[:, :, :-1]
        spread[:, :, :-1] |= bad[:, :, 1:]
        bad = spread
    return bad


@st.composite
def cases(draw) -> Case:
    name = draw(st.sampled_from(interpolators.available()))
    hparams = {"padding_mode": draw(st.sampled_from(interpolators.PADDING_MODES)), "align_corners": draw(st.booleans())}
    if "backend" in interpolators.describe(name)["hparams"]:
        backends = ["eager", "operator"] if _extension.ensure_loaded() else ["eager"]
        hparams["backend"] = draw(st.sampled_from(backends))
    b, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    ho, wo = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    points = st.tuples(st.integers(0, b - 1), st.integers(0, ho - 1), st.integers(0, wo - 1), st.integers(0, 1),
                       st.sampled_from(SPECIALS))  # fmt: skip
    return Case(
        name=name,
        hparams=tuple(sorted(hparams.items())),
        dtype=draw(st.sampled_from(DTYPES)),
        shape=(b, c, h, w, ho, wo),
        magnitude=draw(st.sampled_from([1.0, 1.5, 1e3, 1e5, 1e10, 1e30])),
        specials=tuple(draw(st.lists(points, max_size=3))),
        seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=cases())
def test_no_sampler_crashes_and_non_finite_grids_give_nan(worker, case):
    status, result = worker.run(case)
    assert status != "crash", f"the process died ({result}) on {case}"
    assert status == "ok", f"{result} on {case}"  # CPU half precision is sampled in float32: no operator refuses it
    assert torch.equal(torch.tensor(result["nan_pixels"]), expected_nan_pixels(case.name, dict(case.hparams), result["not_finite"])), case
    assert not result["partly_nan"] and not result["other_non_finite"], (result, case)
    assert result["input_grad_finite"] and result["grid_grad_finite"], (result, case)
