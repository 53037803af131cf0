"""Shared fixtures: the devices and dtypes tests run on (CUDA joins when available)."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param


# the harness tests' fixtures (the fake suites as a plugin, a clean working directory, a reference run)
from harness_fixtures import fake_site, fake_suites, reference_template  # noqa: E402,F401


@pytest.fixture(params=["eager", "operator"])
def backend(request) -> str:
    """The fused methods' two implementations: plain torch code and the C++ operator (skipped where it cannot build)."""
    from interpolators import _extension

    if request.param == "operator" and not _extension.ensure_loaded():
        pytest.skip(f"backend='operator': {_extension.unsupported(torch.zeros(1))}")
    return request.param
