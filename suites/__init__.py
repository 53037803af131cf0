"""The benchmark suites, looked up by name; each module is imported on first use.

The built-in suites are listed below; a third-party package adds one through the
entry-point group ``bench.suites`` (``name = "package.module:SuiteClass"``), which
is what lets a worker process of ``--executor local|slurm`` find it by name too.
A plugin whose name is taken by a built-in suite is ignored and reported by
:func:`plugin_errors`; a plugin that fails to import is reported when it is looked up.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

from suites.base import PROFILES, Cell, RunConfig, Suite

ENTRY_POINT_GROUP = "bench.suites"

_SUITES = {
    "scale": "suites.scale:ScaleSuite",
    "rotation": "suites.rotation:RotationSuite",
    "gradients": "suites.gradients:GradientsSuite",
    "cost": "suites.cost:CostSuite",
    "classify": "suites.classify:ClassifySuite",
}

#: ``(tuple(sys.path), {name: "module:Class"}, {name: error})`` of the last entry-point scan
_plugin_cache: tuple[tuple[str, ...], dict[str, str], dict[str, str]] | None = None


def _plugins() -> tuple[dict[str, str], dict[str, str]]:
    """The ``bench.suites`` entry points as ``{name: "module:Class"}`` and ``{name: error}``.

    Scanned again whenever ``sys.path`` has changed since the last scan.
    """
    global _plugin_cache
    key = tuple(sys.path)
    if _plugin_cache is None or _plugin_cache[0] != key:
        found: dict[str, str] = {}
        errors: dict[str, str] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in _SUITES:
                errors[ep.name] = f"the name {ep.name!r} is a built-in suite; the plugin {ep.value!r} is ignored"
            elif ":" not in ep.value:
                errors[ep.name] = f"expected 'module:SuiteClass', got {ep.value!r}"
            else:
                found.setdefault(ep.name, ep.value)
        _plugin_cache = (key, dict(sorted(found.items())), errors)
    return _plugin_cache[1], _plugin_cache[2]


def _table() -> dict[str, str]:
    return _SUITES | _plugins()[0]


def available() -> list[str]:
    """Suite names: the built-in ones in their canonical run order, then the plugins by name."""
    return list(_table())


def plugin_errors() -> dict[str, str]:
    """``{entry point name: problem}`` for ``bench.suites`` entry points that cannot be used."""
    return dict(_plugins()[1])


def get(name: str) -> Suite:
    """An instance of the suite ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    table = _table()
    if name not in table:
        raise ValueError(f"suite: unknown name {name!r}; expected one of {list(table)} or 'all'")
    module, attribute = table[name].split(":")
    cls = getattr(importlib.import_module(module), attribute)
    if not (isinstance(cls, type) and issubclass(cls, Suite)):
        raise TypeError(f"suite {name!r}: {table[name]} is not a suites.Suite subclass, got {cls!r}")
    return cls()


__all__ = ["ENTRY_POINT_GROUP", "PROFILES", "Cell", "RunConfig", "Suite", "available", "get", "plugin_errors"]
