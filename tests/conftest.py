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


# the harness tests' fixture (a fake suite map and a clean working directory)
from harness_fixtures import fake_suites  # noqa: E402,F401
