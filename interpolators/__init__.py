"""Differentiable image samplers behind one registry with ``grid_sample``'s contract.

>>> import torch, interpolators
>>> {"nearest", "bilinear", "bicubic", "lstn", "estn", "pyramid", "prefiltered"} <= set(interpolators.available())  # plugins add more
True
>>> sampler = interpolators.create("lstn", num_samples=8)
>>> image, grid = torch.rand(1, 3, 32, 32), torch.rand(1, 16, 16, 2) * 2 - 1
>>> sampler(image, grid).shape
torch.Size([1, 3, 16, 16])
"""

from interpolators._registry import (
    ENTRY_POINT_GROUP,
    HParam,
    available,
    create,
    describe,
    get,
    hyperparameters,
    load_plugins,
    plugin_errors,
    register,
    unregister,
)
from interpolators.base import PADDING_MODES, ConfiguredInterpolator, Interpolator, check_sampling_inputs

# Importing the built-in methods registers them.
from interpolators import baselines  # noqa: E402,F401  isort: skip
from interpolators import lstn  # noqa: E402,F401  isort: skip
from interpolators import estn  # noqa: E402,F401  isort: skip
from interpolators import pyramid, prefiltered  # noqa: E402,F401  isort: skip

__all__ = [
    "ENTRY_POINT_GROUP",
    "HParam",
    "ConfiguredInterpolator",
    "Interpolator",
    "PADDING_MODES",
    "available",
    "check_sampling_inputs",
    "create",
    "describe",
    "get",
    "hyperparameters",
    "load_plugins",
    "plugin_errors",
    "register",
    "unregister",
]
