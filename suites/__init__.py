"""The benchmark suites, looked up by name; each module is imported on first use."""

from __future__ import annotations

import importlib

from suites.base import PROFILES, Cell, RunConfig, Suite

_SUITES = {
    "scale": "suites.scale:ScaleSuite",
    "rotation": "suites.rotation:RotationSuite",
    "gradients": "suites.gradients:GradientsSuite",
    "cost": "suites.cost:CostSuite",
    "classify": "suites.classify:ClassifySuite",
}


def available() -> list[str]:
    """Suite names in their canonical run order."""
    return list(_SUITES)


def get(name: str) -> Suite:
    """An instance of the suite ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    if name not in _SUITES:
        raise ValueError(f"suite: unknown name {name!r}; expected one of {available()} or 'all'")
    module, cls = _SUITES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["PROFILES", "Cell", "RunConfig", "Suite", "available", "get"]
