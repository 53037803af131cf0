"""What a suite is: a grid of independent cells, each returning tidy rows, and what it declares.

The runner (``bench.runner``) asks a :class:`Suite` for its :class:`Cell` s,
runs each one in isolation (seeding torch with ``cell.seed`` first), stores the
rows it returns, and adds the columns that identify the cell: ``suite``,
``interpolator``, ``hparams`` (JSON of the interpolator's full hyperparameters),
one column per entry of ``cell.params`` and ``seed``. A cell's own rows carry
``metric``, ``value``, ``unit`` and any extra columns it wants (e.g. ``image``).
A cell may also return small arrays (pictures, trajectories) in a
:class:`CellResult`; the store keeps them beside the cell's record.

A suite declares data, and ``bench`` renders it: each metric's plain-words
label, unit and direction (:class:`Metric`), the swept parameter's definition
(``x_doc``), the point of the sweep the report leads with (``headline``), the
options a user may set (:class:`Option`), and its report sections as tables,
figures and notes (:mod:`suites.sections`), never HTML. No module of
``suites`` imports ``bench``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # only for annotations: suites.sections imports nothing from here
    from suites.sections import Section

PROFILES = ("quick", "default", "full")


@dataclasses.dataclass(frozen=True)
class Metric:
    """What a metric means, for the report: a plain-words label, the unit shown, which way is better.

    Attributes:
        label: plain words, short, e.g. ``"median corner error"``.
        unit: the unit as shown, e.g. ``"input px"`` (the rows' ``unit`` stays what they say).
        doc: what it measures, one sentence for the captions (e.g. the success threshold).
        better: ``"higher"``, ``"lower"``, or ``None`` for a descriptive number (no verdict).
        exact: a value that stands for an exact match (PSNR's ceiling for ``inf``, SSIM's 1): the
            report writes "exact" and plots such points as markers on the axis' edge, not as values.
        log: plot on a logarithmic axis (latency, FLOPs, bytes).
        deterministic: the same for every seed and image (a FLOP count): a difference needs no test.
    """

    label: str
    unit: str = ""
    better: Literal["higher", "lower"] | None = None
    exact: float | None = None
    log: bool = False
    deterministic: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower", None):
            raise ValueError(f"better: expected 'higher', 'lower' or None, got {self.better!r}")

    def is_exact(self, value: float) -> bool:
        """Whether ``value`` is an exact match (at or beyond ``exact`` on the better side)."""
        if self.exact is None:
            return False
        return value >= self.exact if self.better != "lower" else value <= self.exact

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: the kinds of value an :class:`Option` takes; ``folder`` must exist, ``run`` must be a run folder
OPTION_KINDS = ("int", "float", "bool", "str", "ints", "floats", "strs", "folder", "run")
_SCALAR = {"ints": "int", "floats": "float", "strs": "str"}


@dataclasses.dataclass(frozen=True)
class Option:
    """A suite option a user may set (``--option SUITE.KEY=VALUE``, a TOML file, ``bench.run(SUITE={...})``).

    Attributes:
        kind: one of :data:`OPTION_KINDS`; ``ints``/``floats``/``strs`` are lists (comma-separated on the
            command line); ``folder`` an existing folder and ``run`` a run folder (both stored absolute).
        help: one line for ``bench list`` and the docs.
        minimum: the smallest value allowed (numbers, and each number of a list).
        maximum: the largest (for options whose time or memory grows with the value).
        choices: the values allowed (``str``).

    The suite checks what depends on other settings when it plans its cells.

    >>> Option("ints", "label budgets", minimum=1).parse("250, 1000", "classify.labels")
    [250, 1000]
    """

    kind: str
    help: str = ""
    minimum: float | None = None
    choices: tuple[str, ...] | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in OPTION_KINDS:
            raise ValueError(f"kind: expected one of {OPTION_KINDS}, got {self.kind!r}")

    @property
    def type_name(self) -> str:
        names = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                 "ints": "comma-separated integers", "floats": "comma-separated numbers",
                 "strs": "comma-separated strings", "folder": "an existing folder", "run": "a run folder"}
        text = names[self.kind]
        if self.choices:
            text += f" among {list(self.choices)}"
        if self.minimum is not None:
            text += f" >= {self.minimum:g}"
        if self.maximum is not None:
            text += f" <= {self.maximum:g}"
        return text

    def parse(self, text: str, where: str) -> Any:
        """A command-line string as this option's value, checked (see :meth:`check`)."""
        raw = text.strip()
        if self.kind in _SCALAR:
            parts = [p.strip() for p in raw.strip("[]").split(",") if p.strip()]
            return self.check([_parse_scalar(p, _SCALAR[self.kind], where, self.type_name) for p in parts], where)
        if self.kind in ("folder", "run"):
            return self.check(raw, where)
        return self.check(_parse_scalar(raw, self.kind, where, self.type_name), where)

    def check(self, value: Any, where: str) -> Any:
        """``value`` (as Python or TOML gives it) checked against the kind; returns it in JSON form."""
        if self.kind in _SCALAR:
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                value = [value]
            values = [self._check_scalar(v, _SCALAR[self.kind], where) for v in value]
            if not values:
                raise ValueError(f"{where}: expected {self.type_name}, got an empty list")
            return values
        if self.kind in ("folder", "run"):
            if not isinstance(value, (str, Path)) or not str(value).strip():
                raise ValueError(f"{where}: expected {self.type_name}, got {value!r}")
            path = Path(value).expanduser()
            if not path.is_dir():
                raise ValueError(f"{where}: expected {self.type_name}, got {str(value)!r}, which is not a folder")
            return str(path.resolve())
        return self._check_scalar(value, self.kind, where)

    def _check_scalar(self, value: Any, kind: str, where: str) -> Any:
        ok = {
            "int": isinstance(value, (int, np.integer)) and not isinstance(value, bool),
            "float": isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
        }[kind]
        if not ok or (kind == "float" and not math.isfinite(float(value))):
            raise ValueError(f"{where}: expected {self.type_name}, got {value!r} ({type(value).__name__})")
        if kind in ("int", "float"):
            value = int(value) if kind == "int" else float(value)
            low = self.minimum is not None and value < self.minimum
            if low or (self.maximum is not None and value > self.maximum):
                raise ValueError(f"{where}: expected {self.type_name}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{where}: expected {self.type_name}, got {value!r}")
        return value


def _parse_scalar(text: str, kind: str, where: str, expected: str) -> Any:
    if kind == "bool":
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
    elif kind == "int" and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    elif kind == "float":
        try:
            return float(text)
        except ValueError:
            pass
    elif kind == "str":
        return text
    raise ValueError(f"{where}: expected {expected}, got {text!r}")


@dataclasses.dataclass
class CellResult:
    """What a cell may return instead of a plain list of rows: the rows and small arrays to keep.

    ``arrays`` maps names to numpy arrays or tensors (pictures, trajectories); the store writes
    them beside the cell's record (``cells/<key>.npz``), so ``bench report`` can draw them again.
    Keep them small: downscale, crop, ``uint8`` for pictures, ``float16`` for maps.
    """

    rows: list[dict[str, Any]]
    arrays: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ReportData:
    """What ``bench`` hands a suite to build its report sections from.

    Attributes:
        results: every row of every OK cell of the run (all suites), tidy.
        config: the run's config.
        cells: the OK cells by key, in run order.
        arrays: the keys of the OK cells that stored arrays; :meth:`load` reads them.
        loader: ``key -> {name: array}`` (bench's store).
        linked: the results of the runs named by options of kind ``run`` (e.g. the cost
            suite's ``accuracy_from``), read by bench through its store, by option name.
    """

    results: pd.DataFrame
    config: RunConfig
    cells: dict[str, Cell] = dataclasses.field(default_factory=dict)
    arrays: frozenset[str] = frozenset()
    loader: Callable[[str], dict[str, np.ndarray]] | None = None
    linked: Mapping[str, pd.DataFrame] = dataclasses.field(default_factory=dict)

    def load(self, key: str) -> dict[str, np.ndarray]:
        """The arrays of cell ``key`` (``{}`` when it stored none)."""
        if key not in self.arrays or self.loader is None:
            return {}
        return self.loader(key)

    def with_arrays(self, suite: str) -> Iterator[tuple[Cell, dict[str, np.ndarray]]]:
        """``(cell, arrays)`` for each OK cell of ``suite`` that stored arrays, in run order."""
        for key, cell in self.cells.items():
            if cell.suite == suite and key in self.arrays:
                yield cell, self.load(key)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's cells; stored in ``meta.json`` and checked on ``--resume``.

    Attributes:
        suites: suite names, in run order.
        interpolators: interpolator name -> hyperparameter overrides (from ``--set``).
        device: ``"cpu"`` or ``"cuda"`` (already resolved from ``auto``).
        seeds: number of seeds per cell group, or ``None`` for the suite's default.
        profile: ``"quick"``, ``"default"`` or ``"full"`` (``--quick`` / ``--full``).
        options: options shared by suites, from their own flags: ``images`` (a folder),
            ``data_root``, ``download``, ``dataset``, ``backbone``, ``accuracy_from`` (a run folder).
        suite_options: per suite, the options of :attr:`Suite.options` set for it
            (``--option SUITE.KEY=VALUE``, ``--config``): ``{suite: {key: value}}``.
    """

    suites: tuple[str, ...]
    interpolators: dict[str, dict[str, Any]]
    device: str = "cpu"
    seeds: int | None = None
    profile: str = "default"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    suite_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def options_for(self, suite: str) -> dict[str, Any]:
        """The options ``suite`` sees: the shared ones, overridden by its own."""
        return dict(self.options or {}) | dict((self.suite_options or {}).get(suite, {}))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"suites": list(self.suites)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunConfig":
        return cls(**(data | {"suites": tuple(data["suites"])}))


@dataclasses.dataclass(frozen=True)
class Cell:
    """One independent unit of work: an interpolator at one point of a suite's grid.

    ``params`` holds the swept parameters and anything else that identifies the
    cell (image, dataset, label budget, ...); its values must be JSON-serialisable.
    """

    suite: str
    interpolator: str
    hparams: dict[str, Any]
    params: dict[str, Any]
    seed: int = 0

    @property
    def key(self) -> str:
        """A stable file-name-safe id: the same cell always gets the same key."""
        payload = json.dumps([self.suite, self.interpolator, self.hparams, self.params, self.seed], sort_keys=True)
        digest = hashlib.sha1(payload.encode()).hexdigest()[:12]
        return f"{self.suite}-{self.interpolator}-{digest}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Cell":
        return cls(**data)


class Suite:
    """Base class for suites. Subclasses set the class attributes and implement :meth:`cells` and :meth:`run_cell`."""

    #: the name used on the command line
    name: ClassVar[str]
    #: one line for ``python -m bench list``
    summary: ClassVar[str] = ""
    #: the swept parameter the report plots every metric against (a key of ``Cell.params``)
    x_param: ClassVar[str | None] = None
    #: the swept parameter's symbol in the report (``s`` for ``scale``); default ``x_param``
    x_symbol: ClassVar[str | None] = None
    #: the swept parameter defined in words, shown under every plot
    x_doc: ClassVar[str] = ""
    #: the point of the sweep the report leads with: ``{x_param: value, facet column: value}``
    #: (a value the run lacks falls back to the largest ``x_param`` value and each facet's first level)
    headline: ClassVar[dict[str, Any]] = {}
    #: what each metric means (label, unit, direction); a metric not listed is shown by its name, no verdict
    metrics: ClassVar[dict[str, Metric]] = {}
    #: the options a user may set for this suite, by key (read with ``config.options_for(name)``)
    options: ClassVar[dict[str, Option]] = {}
    #: whether a cell must have its machine to itself (timing): the parallel executors run such cells
    #: alone on their node, with every CPU the node gives them
    exclusive: ClassVar[bool] = False

    def cells(self, config: RunConfig) -> list[Cell]:
        """The cells of this suite for ``config`` (its interpolators, seeds, profile and options)."""
        raise NotImplementedError

    def run_cell(self, cell: Cell, config: RunConfig, run_dir: Path) -> list[dict[str, Any]]:
        """Run one cell; returns rows with at least ``metric``, ``value`` and ``unit``.

        ``run_dir`` is the run folder, for artifacts a cell keeps (checkpoints, ...).
        Raise on failure: the runner records the error and goes on.
        """
        raise NotImplementedError

    def report_sections(self, data: ReportData) -> list[Section]:
        """The suite's own report sections (tables, figures, notes as data), beyond bench's per-metric plots.

        ``data.results`` holds every row of the run (all suites), so a suite can join
        with another suite's results; ``data.with_arrays(name)`` gives the cells' arrays.
        """
        return []

    def estimate_seconds(self, cell: Cell, config: RunConfig) -> float | None:
        """A rough estimate of the seconds ``cell`` takes on a 2-core CPU (``bench run --dry-run``); ``None``: unknown."""
        return None
