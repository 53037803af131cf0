"""What a suite is: a grid of independent cells, each returning tidy rows.

The runner (``bench.runner``) asks a :class:`Suite` for its :class:`Cell` s,
runs each one in isolation (seeding torch with ``cell.seed`` first), stores the
rows it returns, and adds the columns that identify the cell: ``suite``,
``interpolator``, ``hparams`` (JSON of the interpolator's full hyperparameters),
one column per entry of ``cell.params`` and ``seed``. A cell's own rows carry
``metric``, ``value``, ``unit`` and any extra columns it wants (e.g. ``image``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

PROFILES = ("quick", "default", "full")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's cells; stored in ``meta.json`` and checked on ``--resume``.

    Attributes:
        suites: suite names, in run order.
        interpolators: interpolator name -> hyperparameter overrides (from ``--set``).
        device: ``"cpu"`` or ``"cuda"`` (already resolved from ``auto``).
        seeds: number of seeds per cell group, or ``None`` for the suite's default.
        profile: ``"quick"``, ``"default"`` or ``"full"`` (``--quick`` / ``--full``).
        options: suite-specific options: ``images`` (a folder), ``data_root``,
            ``download``, ``dataset``, ``backbone``, ``accuracy_from`` (a run folder).
    """

    suites: tuple[str, ...]
    interpolators: dict[str, dict[str, Any]]
    device: str = "cpu"
    seeds: int | None = None
    profile: str = "default"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

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

    def report_sections(self, results: pd.DataFrame, run_dir: Path) -> list[tuple[str, str]]:
        """Extra ``(title, html)`` sections for the report beyond the default line plots.

        ``results`` holds every row of the run (all suites), so a suite can join
        with another suite's results.
        """
        return []
