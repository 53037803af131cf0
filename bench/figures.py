"""Draw a suite's report sections (:mod:`suites.sections`) as self-contained HTML.

- A :class:`~suites.sections.Figure` whose panels are all pictures becomes an HTML
  grid of small inline PNGs, one per panel at its native resolution, enlarged by
  the browser without smoothing (``image-rendering: pixelated``): crisp and small.
- Any other figure is drawn with matplotlib (Agg) into one inline PNG.
- Tables are escaped HTML; notes are escaped paragraphs.

Colours of series and points keyed by an interpolator come from the report's palette.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

from suites.sections import Arrows, Figure, Image, Lines, Note, Points, Section, Table  # noqa: E402

#: displayed side of a picture panel, CSS pixels
PICTURE_PX = 128
GOOD, BAD = "#1a9641", "#d7191c"


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML (quotes too)."""
    return html.escape(str(value), quote=True)


def png_base64(fig: plt.Figure, dpi: int = 100) -> str:
    """``fig`` as base64 PNG with a 256-colour palette (plots need no more; a third of the bytes); closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    buffer.seek(0)
    picture = PILImage.open(buffer).convert("RGB").quantize(256, method=PILImage.Quantize.MEDIANCUT)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode("ascii")


def img_tag(fig: plt.Figure, alt: str) -> str:
    """``fig`` as an inline ``<img>`` (the figure is closed)."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{png_base64(fig)}">'


def picture_png(panel: Image) -> str:
    """One picture panel as base64 PNG at its own resolution.

    A ``uint8`` array is a picture (0-255, grey or RGB) as it is; any other array is
    mapped through ``cmap`` from ``vmin`` to ``vmax`` into a 255-colour palette, NaN light grey.
    """
    array = np.asarray(panel.array)
    if array.dtype == np.uint8:
        picture = PILImage.fromarray(np.ascontiguousarray(array), "L" if array.ndim == 2 else "RGB")
    else:
        values = array.astype(np.float64)
        if values.ndim == 3:
            values = values.mean(axis=-1)
        span = (panel.vmax - panel.vmin) or 1.0
        finite = np.isfinite(values)
        index = np.round(np.clip((np.where(finite, values, 0) - panel.vmin) / span, 0, 1) * 254).astype(np.uint8)
        index[~finite] = 255
        colours = plt.get_cmap(panel.cmap)(np.linspace(0, 1, 255))[:, :3]
        palette = np.vstack([colours, [0.85, 0.85, 0.85]])  # 255: outside the interior, light grey
        picture = PILImage.fromarray(index, "P")
        picture.putpalette(np.round(palette * 255).astype(np.uint8).ravel().tolist())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def picture_grid_html(figure: Figure) -> str:
    """A figure of pictures as an HTML table: row labels left, column labels on top, notes under panels."""
    head = ""
    if figure.col_labels:
        corner = "<th></th>" if figure.row_labels else ""
        head = "<tr>" + corner + "".join(f"<th>{esc(c)}</th>" for c in figure.col_labels) + "</tr>"
    body = []
    for i, row in enumerate(figure.panels):
        cells = [f'<th class="text">{esc(figure.row_labels[i])}</th>'] if figure.row_labels else []
        for panel in row:
            if panel is None:
                cells.append("<td></td>")
                continue
            note = f'<div class="pnote">{esc(panel.note)}</div>' if panel.note else ""
            cells.append(
                f'<td><img class="px" width="{PICTURE_PX}" height="{PICTURE_PX}" alt="{esc(figure.alt)}" '
                f'src="data:image/png;base64,{picture_png(panel)}">{note}</td>'
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="pictures">{head}{"".join(body)}</table>'


def _draw_arrows(ax: plt.Axes, panel: Arrows) -> None:
    points = np.asarray(panel.points, dtype=float)
    vectors = np.asarray(panel.vectors, dtype=float)
    good = np.asarray(panel.good, dtype=bool)
    norm = np.linalg.norm(vectors, axis=1)
    unit = np.divide(vectors, norm[:, None], out=np.zeros_like(vectors), where=norm[:, None] > 0)
    spacing = _spacing(points)
    colors = np.where(good, GOOD, BAD)
    moving = norm > 0
    ax.quiver(points[moving, 0], points[moving, 1], unit[moving, 0], unit[moving, 1], color=colors[moving],
              angles="xy", scale_units="xy", scale=1 / (0.8 * spacing), width=0.012)
    if (~moving).any():
        ax.scatter(points[~moving, 0], points[~moving, 1], s=6, color=BAD)
    ax.scatter([0], [0], marker="+", color="black", s=30)
    pad = 0.8 * spacing
    ax.set_xlim(points[:, 0].min() - pad, points[:, 0].max() + pad)
    ax.set_ylim(points[:, 1].max() + pad, points[:, 1].min() - pad)  # y down, as in images
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)
    ax.set_xlabel(panel.xlabel, fontsize=7)
    ax.set_ylabel(panel.ylabel, fontsize=7)
    if panel.note:
        ax.set_title(panel.note, fontsize=7)


def _spacing(points: np.ndarray) -> float:
    xs = np.unique(np.round(points[:, 0], 9))
    return float(np.min(np.diff(xs))) if len(xs) > 1 else 1.0


def _draw_lines(ax: plt.Axes, panel: Lines, palette: dict[str, Any]) -> None:
    for series in panel.series:
        color = palette.get(series.key) if series.key else None
        x, y = np.asarray(series.x, dtype=float), np.asarray(series.y, dtype=float)
        line, = ax.plot(x, y, color=color, alpha=series.alpha, lw=1.2, label=series.label)
        if series.low is not None and series.high is not None:
            ax.fill_between(x, np.asarray(series.low, float), np.asarray(series.high, float),
                            color=line.get_color(), alpha=0.2, lw=0)
    if panel.hline is not None:
        ax.axhline(panel.hline, color="black", lw=0.8, ls="--")
        if panel.hline_label:
            ax.annotate(panel.hline_label, (0.99, panel.hline), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom", fontsize=7)
    log_axes(ax, panel.xlog, panel.ylog)
    ax.set_xlabel(panel.xlabel, fontsize=8)
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.set_title(panel.title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)


def log_axes(ax: plt.Axes, xlog: bool, ylog: bool) -> None:
    """Log axes with plain tick labels (``0.5``, ``2``, not ``5 x 10^-1``)."""
    for log, axis, scale in ((xlog, ax.xaxis, ax.set_xscale), (ylog, ax.yaxis, ax.set_yscale)):
        if log:
            scale("log")
            axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _draw_points(ax: plt.Axes, panel: Points, palette: dict[str, Any]) -> None:
    for label, x, y in panel.points:
        ax.scatter([x], [y], color=palette.get(label, "C0"), s=30, zorder=3, label=label)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    log_axes(ax, panel.xlog, panel.ylog)
    ax.set_xlabel(panel.xlabel, fontsize=8)
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.set_title(panel.title, fontsize=9)
    ax.grid(True, alpha=0.3)


def draw(figure: Figure, palette: dict[str, Any]) -> plt.Figure:
    """The matplotlib figure of ``figure`` (any panel kinds)."""
    nrows, ncols = len(figure.panels), max(1, len(figure.panels[0]) if figure.panels else 1)
    width, height = figure.panel_size
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for i, row in enumerate(figure.panels):
        for j, panel in enumerate(row):
            ax = axes[i][j]
            if panel is None:
                ax.set_visible(False)
                continue
            if isinstance(panel, Image):
                ax.imshow(np.asarray(panel.array), cmap=panel.cmap, vmin=panel.vmin, vmax=panel.vmax,
                          interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if panel.note:
                    ax.set_xlabel(panel.note, fontsize=7)
            elif isinstance(panel, Arrows):
                _draw_arrows(ax, panel)
            elif isinstance(panel, Lines):
                _draw_lines(ax, panel, palette)
            elif isinstance(panel, Points):
                _draw_points(ax, panel, palette)
            else:
                raise TypeError(f"panel: expected Image, Arrows, Lines or Points, got {type(panel).__name__}")
            if i == 0 and j < len(figure.col_labels):
                ax.set_title(figure.col_labels[j] + (f"\n{ax.get_title()}" if ax.get_title() else ""), fontsize=9)
            if j == 0 and i < len(figure.row_labels):
                ax.set_ylabel(figure.row_labels[i] + (f"\n{ax.get_ylabel()}" if ax.get_ylabel() else ""),
                              fontsize=9)
    if figure.legend:
        handles = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(1.0, 0.5),
                       frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def figure_html(figure: Figure, palette: dict[str, Any]) -> str:
    """The HTML of one figure: a picture grid or one PNG, then its caption."""
    panels = [p for row in figure.panels for p in row if p is not None]
    if panels and all(isinstance(p, Image) for p in panels):
        body = picture_grid_html(figure)
    else:
        body = img_tag(draw(figure, palette), figure.alt or figure.caption[:80])
    caption = f'<p class="caption">{esc(figure.caption)}</p>' if figure.caption else ""
    return body + caption


def table_html(table: Table) -> str:
    frame = table.frame
    show_index = any(name is not None for name in frame.index.names)
    body = frame.to_html(escape=True, na_rep="—", border=0, index=show_index,
                         float_format=lambda v: f"{v:.4g}" if math.isfinite(v) else "—")
    caption = f'<p class="caption">{esc(table.caption)}</p>' if table.caption else ""
    return body + caption


def note_html(note: Note) -> str:
    return "".join(f"<p>{esc(p.strip())}</p>" for p in note.text.split("\n\n") if p.strip())


def section_html(section: Section, palette: dict[str, Any], level: int = 3) -> str:
    """A section's title and items as HTML."""
    parts = [f"<h{level}>{esc(section.title)}</h{level}>"]
    for item in section.items:
        if isinstance(item, Figure):
            parts.append(figure_html(item, palette))
        elif isinstance(item, Table):
            parts.append(table_html(item))
        elif isinstance(item, Note):
            parts.append(note_html(item))
        else:
            raise TypeError(f"section {section.title!r}: expected Note, Table or Figure items, got "
                            f"{type(item).__name__}")
    return "\n".join(parts)

