"""Name -> interpolator class registry, in the style of timm's model registry.

A class registers itself with ``@register`` (its lower-cased class name) or
``@register("name", tags=(...))``; a duplicate name raises. Third-party packages
add methods through the entry-point group ``bench.interpolators``: each entry
point names a module that registers on import, or an :class:`Interpolator`
subclass that is registered under the entry point's name. Plugins load on the
first lookup; a broken one is reported by name and leaves the others working.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import importlib.metadata
import inspect
import re
import types
import typing
import warnings
from typing import Any, Literal, TypeVar, Union

from interpolators.base import Interpolator

ENTRY_POINT_GROUP = "bench.interpolators"

T = TypeVar("T", bound=type)


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    cls: type[Interpolator]
    tags: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class HParam:
    """One hyperparameter: its name, default and annotated type (``choices`` for a ``Literal``)."""

    name: str
    default: Any
    annotation: Any

    @property
    def choices(self) -> tuple | None:
        args = _literal_args(self.annotation)
        return args or None

    @property
    def type_name(self) -> str:
        return _type_name(self.annotation)

    def check(self, value: Any, owner: str) -> None:
        """Raise ``TypeError``/``ValueError`` naming this hyperparameter unless ``value`` fits its type."""
        if not _fits(value, self.annotation):
            msg = f"{owner}.{self.name}: expected {self.type_name}, got {value!r} ({type(value).__name__})"
            raise (ValueError if self.choices else TypeError)(msg)

    def parse(self, text: str, owner: str) -> Any:
        """Convert a command-line string to this hyperparameter's type (``none`` means ``None``)."""
        return _parse(text, self.annotation, f"{owner}.{self.name}")


_REGISTRY: dict[str, Entry] = {}
_PLUGIN_ERRORS: dict[str, str] = {}
_plugins_loaded = False


def register(obj: T | str | None = None, *, name: str | None = None, tags: tuple[str, ...] = ()) -> Any:
    """Register an :class:`Interpolator` subclass; use bare, or with a name and tags.

    Examples:
        >>> from interpolators import Interpolator, available, register, unregister
        >>> @register("my_sampler_doc", tags=("example",))
        ... class MySampler(Interpolator):
        ...     def sample(self, input, grid, generator):
        ...         return input.new_zeros(input.shape[:2] + grid.shape[1:3])
        >>> available(tag="example")
        ['my_sampler_doc']
        >>> unregister("my_sampler_doc")  # leave the registry as it was
    """
    if isinstance(obj, str):
        name, obj = obj, None

    def decorator(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, Interpolator)):
            raise TypeError(f"register: expected an Interpolator subclass, got {cls!r}")
        key = name or cls.__name__.lower()
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ValueError(f"register: name must match [a-z][a-z0-9_]*, got {key!r}")
        if key in _REGISTRY:
            other = _REGISTRY[key].cls
            raise ValueError(
                f"register: the name {key!r} is already taken by {other.__module__}.{other.__qualname__}"
            )
        hyperparameters(cls)  # fail at registration, not at first use, if the signature is unusable
        _REGISTRY[key] = Entry(key, cls, tuple(tags))
        return cls

    return decorator if obj is None else decorator(obj)


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (for tests and interactive sessions)."""
    _REGISTRY.pop(name, None)


def load_plugins(force: bool = False) -> dict[str, str]:
    """Import the ``bench.interpolators`` entry points once; returns ``{plugin: error}`` for broken ones."""
    global _plugins_loaded
    if _plugins_loaded and not force:
        return dict(_PLUGIN_ERRORS)
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, type) and issubclass(obj, Interpolator):
                if not any(e.cls is obj for e in _REGISTRY.values()):
                    register(obj, name=ep.name)
            elif not isinstance(obj, types.ModuleType):
                raise TypeError(f"expected a module or an Interpolator subclass, got {obj!r}")
        except Exception as err:  # a broken plugin must not break the others
            _PLUGIN_ERRORS[ep.name] = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"interpolator plugin {ep.name!r} ({ep.value}) failed to load: {_PLUGIN_ERRORS[ep.name]}",
                RuntimeWarning,
                stacklevel=2,
            )
    return dict(_PLUGIN_ERRORS)


def plugin_errors() -> dict[str, str]:
    """``{entry point name: error}`` for plugins that failed to load."""
    load_plugins()
    return dict(_PLUGIN_ERRORS)


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text.lower())]


def available(pattern: str = "*", tag: str | None = None) -> list[str]:
    """Registered names matching the wildcard ``pattern`` (and ``tag``), naturally sorted.

    Examples:
        >>> from interpolators import available
        >>> {"bicubic", "bilinear"} <= set(available("bi*")) and "lstn" not in available("bi*")
        True
    """
    load_plugins()
    names = [n for n, e in _REGISTRY.items() if fnmatch.fnmatchcase(n, pattern) and (tag is None or tag in e.tags)]
    return sorted(names, key=_natural_key)


def get(name: str) -> type[Interpolator]:
    """The class registered as ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    load_plugins()
    if not isinstance(name, str) or name not in _REGISTRY:
        hint = ""
        if isinstance(name, str) and name in _PLUGIN_ERRORS:
            hint = f" (its plugin failed to load: {_PLUGIN_ERRORS[name]})"
        raise ValueError(f"interpolator: unknown name {name!r}{hint}; expected one of {available()}")
    return _REGISTRY[name].cls


def hyperparameters(cls: type[Interpolator]) -> dict[str, HParam]:
    """The keyword hyperparameters of ``cls.__init__`` with their defaults and annotations."""
    return dict(_hyperparameters(cls))  # a copy: callers may not alter the cached spec


@functools.cache
def _hyperparameters(cls: type[Interpolator]) -> dict[str, HParam]:
    config = getattr(cls, "Config", None)
    if dataclasses.is_dataclass(config):  # the method's validated config: its fields, defaults and annotations
        hints = typing.get_type_hints(config)
        return {f.name: HParam(f.name, f.default, hints[f.name]) for f in dataclasses.fields(config)}
    sig = inspect.signature(cls.__init__)
    hints = typing.get_type_hints(cls.__init__)
    out: dict[str, HParam] = {}
    for p in list(sig.parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise TypeError(f"{cls.__name__}: hyperparameter {p.name!r} needs a default value")
        out[p.name] = HParam(p.name, p.default, hints.get(p.name, type(p.default)))
    return out


def create(name: str, **hparams: Any) -> Interpolator:
    """Create the interpolator ``name`` with ``hparams`` merged over its defaults.

    An unknown name, an unknown hyperparameter or a value of the wrong type or
    range raises an error that names it and says what is valid.

    Examples:
        >>> import torch, interpolators
        >>> sampler = interpolators.create("bilinear", padding_mode="border")
        >>> sampler(torch.rand(2, 3, 8, 8), torch.zeros(2, 4, 5, 2)).shape
        torch.Size([2, 3, 4, 5])
    """
    cls = get(name)
    spec = hyperparameters(cls)
    unknown = sorted(set(hparams) - set(spec))
    if unknown:
        raise TypeError(f"{name}: unknown hyperparameter(s) {unknown}; expected any of {sorted(spec)}")
    for key, value in hparams.items():
        spec[key].check(value, name)
    return cls(**hparams)


def describe(name: str) -> dict[str, Any]:
    """What ``name`` is: its hyperparameters (default, type, choices), stochasticity, reference and tags."""
    cls = get(name)
    return {
        "name": name,
        "summary": cls.summary,
        "stochastic": cls.stochastic,
        "reference": cls.reference,
        "tags": list(_REGISTRY[name].tags),
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "hparams": {
            h.name: {"default": h.default, "type": h.type_name, "choices": list(h.choices) if h.choices else None}
            for h in hyperparameters(cls).values()
        },
    }


# --- annotation helpers -------------------------------------------------------------------


def _union_args(annotation: Any) -> tuple:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _literal_args(annotation: Any) -> tuple:
    return tuple(
        v for a in _union_args(annotation) if typing.get_origin(a) is Literal for v in typing.get_args(a)
    )


def _type_name(annotation: Any) -> str:
    parts = []
    for a in _union_args(annotation):
        if a is type(None):
            parts.append("None")
        elif typing.get_origin(a) is Literal:
            parts.append("one of " + ", ".join(repr(v) for v in typing.get_args(a)))
        else:
            parts.append(getattr(a, "__name__", str(a)))
    return " or ".join(parts)


def _fits(value: Any, annotation: Any) -> bool:
    for a in _union_args(annotation):
        if a is Any:
            return True
        if a is type(None) and value is None:
            return True
        if typing.get_origin(a) is Literal and any(value == v and type(value) is type(v) for v in typing.get_args(a)):
            return True
        if a is bool and isinstance(value, bool):
            return True
        if a is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if a is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if a is str and isinstance(value, str):
            return True
    return False


def _parse(text: str, annotation: Any, where: str) -> Any:
    options = _union_args(annotation)
    if text.strip().lower() == "none" and type(None) in options:
        return None
    for a in options:
        if typing.get_origin(a) is Literal:
            for v in typing.get_args(a):
                if str(v) == text:
                    return v
        elif a is bool and text.lower() in ("true", "false", "1", "0", "yes", "no"):
            return text.lower() in ("true", "1", "yes")
        elif a is int:
            try:
                return int(text)
            except ValueError:
                pass
        elif a is float:
            try:
                return float(text)
            except ValueError:
                pass
        elif a is str:
            return text
    raise ValueError(f"{where}: expected {_type_name(annotation)}, got {text!r}")
