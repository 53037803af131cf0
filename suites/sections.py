"""A suite's report sections as data: notes, tables and figures, which ``bench`` renders.

A suite returns a list of :class:`Section` from ``Suite.report_sections``; each
holds :class:`Note` (plain text), :class:`Table` (a DataFrame) and
:class:`Figure` items. A figure is a grid of panels, each one of
:class:`Image` (a picture or a map), :class:`Arrows` (a vector field),
:class:`Lines` (series against an axis, optional bands) or :class:`Points`
(labelled points). Series and points keyed by an interpolator's name get its
colour from the report's palette. Nothing here draws: ``bench.figures`` does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Union

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True)
class Note:
    """Plain text (no markup); blank lines separate paragraphs."""

    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    """A table: ``frame``'s columns and rows as text (its index too when it is named)."""

    frame: pd.DataFrame
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class Image:
    """A picture ``(H, W)`` or ``(H, W, 3)`` shown pixel for pixel (no smoothing).

    A ``uint8`` array is shown as it is (0-255, grey or RGB: see :func:`to_uint8`); any
    other array is mapped through ``cmap`` from ``vmin`` to ``vmax`` (``NaN`` is drawn as
    the background: outside the interior). ``note`` is written under it.
    """

    array: Any
    cmap: str = "gray"
    vmin: float = 0.0
    vmax: float = 1.0
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Arrows:
    """Arrows of ``vectors (N, 2)`` (only their direction is drawn) at ``points (N, 2)``.

    ``good (N,)`` colours each arrow green (True) or red (False); a zero vector is a red dot.
    ``y`` points down, as in images.
    """

    points: Any
    vectors: Any
    good: Any
    xlabel: str = ""
    ylabel: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Series:
    """One line: ``y`` against ``x``, with an optional band ``low``..``high``; ``key`` picks its colour."""

    label: str
    x: Any
    y: Any
    low: Any = None
    high: Any = None
    key: str | None = None
    alpha: float = 1.0


@dataclasses.dataclass(frozen=True)
class Lines:
    """Series against a common axis; ``hline`` draws a reference level labelled ``hline_label``."""

    series: tuple[Series, ...]
    xlabel: str = ""
    ylabel: str = ""
    xlog: bool = False
    ylog: bool = False
    hline: float | None = None
    hline_label: str = ""
    title: str = ""


@dataclasses.dataclass(frozen=True)
class Points:
    """Labelled points ``(label, x, y)``; a label that names an interpolator takes its colour."""

    points: tuple[tuple[str, float, float], ...]
    xlabel: str = ""
    ylabel: str = ""
    xlog: bool = False
    ylog: bool = False
    title: str = ""


Panel = Union[Image, Arrows, Lines, Points]


@dataclasses.dataclass(frozen=True)
class Figure:
    """A grid of panels (``None`` leaves a cell empty), labelled by row and column.

    ``panel_size`` is each panel's ``(width, height)`` in inches; ``legend`` adds one
    legend of the interpolators the panels' series and points name.
    """

    panels: tuple[tuple[Panel | None, ...], ...]
    row_labels: tuple[str, ...] = ()
    col_labels: tuple[str, ...] = ()
    caption: str = ""
    panel_size: tuple[float, float] = (1.7, 1.7)
    legend: bool = False
    alt: str = ""

    def __post_init__(self) -> None:
        widths = {len(row) for row in self.panels}
        if len(widths) > 1:
            raise ValueError(f"panels: expected rows of equal length, got lengths {sorted(widths)}")


@dataclasses.dataclass(frozen=True)
class Section:
    """A titled part of a suite's report; ``glance`` puts it in the report's opening "At a glance" too."""

    title: str
    items: tuple[Note | Table | Figure, ...]
    glance: bool = False


def to_uint8(picture: Any) -> np.ndarray:
    """A picture with values in ``[0, 1]`` as ``uint8`` (what a screen shows), clipped and rounded.

    Accepts ``(C, H, W)`` (C = 1 or 3) or ``(H, W)``, numpy or torch; returns ``(H, W)`` or ``(H, W, 3)``.

    >>> to_uint8(np.array([[0.0, 0.5, 1.2]])).tolist()
    [[0, 128, 255]]
    """
    array = np.asarray(picture.detach().cpu() if hasattr(picture, "detach") else picture, dtype=np.float64)
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    return np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
