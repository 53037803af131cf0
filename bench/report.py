"""The run report: one self-contained HTML file (plots and pictures inline as base64 PNG).

It opens with **At a glance**: how to read the numbers (one interval, one test,
stated once), then per suite the verdicts at its headline point (``Suite.headline``,
e.g. the scale suite at s = 4: per metric the best methods, the difference from
the runner-up with its 95% interval and whether it is significant) and the
suite's pictures marked for it. Then per suite, in run order:

- its summary, the swept parameter defined in words (``Suite.x_doc``), the
  verdicts at the headline point and, folded, at every swept value;
- the suite's own sections (``Suite.report_sections``: pictures, trajectories,
  tables, as data that :mod:`bench.figures` draws);
- per metric (its plain-words label, unit and direction from ``Suite.metrics``):
  a plot of the mean against ``x_param``, one line per interpolator with distinct
  markers, small horizontal offsets so equal values stay visible, and 95%
  t-interval error bars; exact matches (``Metric.exact``) as triangles on the top
  edge instead of points that rescale the axis; a log axis where the metric says
  so (latency, FLOPs, bytes) and a base-2 log x axis where x spans 8x or more.
  Parameters other than ``x_param`` that take several values (a batch size, a
  dataset) get a facet each; the unit columns (:data:`bench.stats.REPLICATE_COLUMNS`:
  images, trials, ...) and any column with more than :data:`MAX_FACET_LEVELS`
  values are pooled. A suite without ``x_param`` gets a bar per interpolator.
  Then a table: rows interpolator (and facet), columns ``x_param`` values,
  cells ``mean ± half-width of the 95% t-interval``, the best methods in bold;
- rows that carry a per-row axis of :data:`SERIES_COLUMNS` (a learning curve's
  ``epoch``) are left out of those plots and tables; the suite draws them;
- the interpolators' full hyperparameters;

then the failed cells with their errors and the run's metadata.
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
import matplotlib.transforms

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench import stats  # noqa: E402
from bench.figures import esc, img_tag, log_axes, section_html  # noqa: E402
from bench.stats import REPLICATE_COLUMNS, Verdict  # noqa: E402
from bench.store import REPORT_FILE, RunStore, atomic_write_text  # noqa: E402
from suites.base import Metric, Option, ReportData, RunConfig  # noqa: E402
from suites.sections import Section  # noqa: E402

#: columns a plot pools over rather than facets on (the units of the statistics)
AVERAGED_COLUMNS = REPLICATE_COLUMNS
#: a column with more values than this is pooled rather than faceted on
MAX_FACET_LEVELS = 6
#: per-row axes within one cell (a learning curve's epoch, an optimizer's step): a row that carries one is a
#: point of a series the suite draws itself (``Suite.report_sections``), so the per-``x_param`` plots and
#: tables leave it out rather than average it over the series (``summary.csv`` keeps it, grouped by that axis)
SERIES_COLUMNS = frozenset({"epoch", "step", "iteration"})
#: columns that identify a row rather than describe it
_FIXED_COLUMNS = ("suite", "interpolator", "hparams", "seed", "metric", "value", "unit")
_FACET = "facet"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")

STATISTICS_SHORT = (
    "± and error bars: the 95% Student-t interval of the mean over units (seeds × images × trials). Verdict: the "
    "best against the runner-up, paired t-test over shared units, α = 0.05; ties listed together."
)
STATISTICS_NOTE = (
    "Every ± in the tables and every error bar in the plots is the 95% Student-t "
    "confidence interval of the mean over the units of the measurement (seeds × images, × alignment trials where "
    "a metric has them): mean ± t(0.975, n − 1) · s / √n, the interval summary.csv holds. A verdict compares the "
    "best method with the runner-up by a paired t-test over the units both share (every method sees the same "
    "images, trials and seeds; Welch's t-test where the units do not pair), two-sided at α = 0.05, not corrected "
    "for the number of comparisons; the difference is given with its 95% interval. Methods not significantly "
    "different from the best are listed as tied for best. The images are a fixed set: a verdict is about them. "
    "Exact matches (e.g. PSNR of a bit-exact output) are written 'exact', not as a number."
)

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 1.2em auto; max-width: 1240px;
       padding: 0 1em; color: #222; line-height: 1.35; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; margin: .2em 0 .3em; font-size: 1.6em; }
h2 { border-bottom: 1px solid #aaa; margin-top: 1.6em; }
h3 { margin: 1.2em 0 .4em; }
table { border-collapse: collapse; margin: .4em 0 .8em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: right; vertical-align: top; }
th { background: #f0f0f0; }
td.text, th.text { text-align: left; }
table.verdicts td { text-align: left; }
table.pictures td, table.pictures th { border: none; padding: 2px; text-align: center; font-size: 0.8em; }
table.pictures th.text { text-align: right; vertical-align: middle; }
img.px { image-rendering: pixelated; image-rendering: crisp-edges; display: inline; margin: 0; }
.pnote { font-size: 0.75em; color: #555; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; height: auto; display: block; margin: .4em 0; }
.caption { color: #555; font-size: 0.88em; margin: .2em 0 .6em; }
.bad { color: #b00; }
.ok { color: #070; }
.sig { color: #070; font-weight: bold; }
.nsig { color: #777; }
.glance { background: #fafafa; border: 1px solid #ddd; padding: .3em 1em .6em; }
details > summary { cursor: pointer; color: #335; }
nav ul { columns: 3; margin: .3em 0; }
"""


# --- what a suite declares -----------------------------------------------------------------------------


@dataclasses.dataclass
class SuiteSpec:
    """What the report knows of a suite: from the suite itself when it imports, else from ``meta.json``."""

    name: str
    summary: str = ""
    x_param: str | None = None
    x_symbol: str | None = None
    x_doc: str = ""
    headline: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Metric] = dataclasses.field(default_factory=dict)
    suite: Any = None

    @property
    def x_name(self) -> str:
        return self.x_symbol or self.x_param or ""

    def metric(self, name: str, rows: pd.DataFrame | None = None) -> Metric:
        """The declared :class:`Metric`, or one named after the metric with the rows' unit (no direction)."""
        if name in self.metrics:
            return self.metrics[name]
        units = sorted({str(u) for u in rows["unit"].dropna().unique()}) if rows is not None else []
        return Metric(label=str(name), unit=", ".join(u for u in units if u not in ("", "1")))


def suite_spec(name: str, info: dict[str, Any]) -> SuiteSpec:
    """The :class:`SuiteSpec` of ``name``; ``info`` is its entry in ``meta.json``'s ``suites``."""
    import suites

    try:
        suite = suites.get(name)
    except Exception:  # noqa: BLE001  a suite that does not import here: what the run recorded
        fields = {f.name for f in dataclasses.fields(Metric)}
        metrics = {k: Metric(**{f: x for f, x in v.items() if f in fields}) for k, v in (info.get("metrics") or {}).items()}
        return SuiteSpec(name, info.get("summary", ""), info.get("x_param"), info.get("x_symbol"),
                         info.get("x_doc", ""), dict(info.get("headline") or {}), metrics)
    return SuiteSpec(name, suite.summary, suite.x_param, suite.x_symbol, suite.x_doc, dict(suite.headline),
                     dict(suite.metrics), suite)


# --- the rows of a metric ---------------------------------------------------------------------------------


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.to_numeric(series, errors="coerce").notna().all())


def series_rows(frame: pd.DataFrame) -> pd.Series:
    """Whether each row of ``frame`` is a point of a series: it has a value in one of :data:`SERIES_COLUMNS`."""
    present = [c for c in frame.columns if c in SERIES_COLUMNS]
    if not present:
        return pd.Series(False, index=frame.index)
    return frame[present].notna().any(axis=1)


def _varying_columns(frame: pd.DataFrame, x_param: str | None) -> tuple[list[str], list[str]]:
    """Columns besides the fixed ones and ``x_param`` with several values per interpolator: ``(facets, pooled)``."""
    facets, averaged = [], []
    for column in frame.columns:
        if column in _FIXED_COLUMNS or column == x_param:
            continue
        levels = frame[column].nunique(dropna=False)
        if levels <= 1 or frame.groupby("interpolator")[column].nunique(dropna=False).max() <= 1:
            continue  # constant, or a property of the interpolator (e.g. a list of its ops): no facet
        if column in AVERAGED_COLUMNS or levels > MAX_FACET_LEVELS:
            averaged.append(column)
        else:
            facets.append(column)
    return facets, averaged


def _sorted_levels(frame: pd.DataFrame, columns: list[str], first: str | None = None) -> pd.DataFrame:
    """The distinct combinations of ``columns`` (and ``_FACET``), sorted by value (``first`` kept in run order)."""
    keep = [c for c in ([first] if first else []) + columns + [_FACET] if c in frame]
    levels = frame[keep].drop_duplicates()
    if first:
        rank = {v: i for i, v in enumerate(levels[first].unique())}
        levels = levels.assign(_rank=levels[first].map(rank))
    by = (["_rank"] if first else []) + columns
    try:
        levels = levels.sort_values(by, kind="stable")
    except TypeError:  # mixed types in a column: keep the run's order
        pass
    return levels.drop(columns="_rank", errors="ignore")


def _units(rows: pd.DataFrame, averaged: list[str]) -> list[str]:
    """The unit columns of a metric's rows: seed, the replicate columns and any pooled column."""
    return list(dict.fromkeys([*stats.replicate_columns(rows), *averaged]))


def _x_values(frame: pd.DataFrame, x_param: str | None) -> pd.Series | None:
    if not (x_param and x_param in frame and frame[x_param].notna().all()):
        return None
    values = frame[x_param]
    return pd.to_numeric(values) if _is_numeric(values) else values


def group_table(rows: pd.DataFrame, spec: Metric, x_param: str | None, facets: list[str]) -> pd.DataFrame:
    """Per interpolator, facet level and ``x_param`` value: the :class:`~bench.stats.GroupStats` of its units.

    Columns: ``interpolator``, the ``facets``, ``x_param`` (when usable), ``facet`` (the
    facet level as text, ``c=v, ...``, or None) and ``stats``.
    """
    data = rows.copy()
    by = ["interpolator", *facets]
    x = _x_values(data, x_param)
    if x is not None:
        data[x_param] = x
        by.append(x_param)
    out = []
    for key, group in data.groupby(by, sort=False, dropna=False):
        where = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        facet = ", ".join(f"{c}={where[c]}" for c in facets) or None
        out.append(where | {_FACET: facet, "stats": stats.group_stats(group["value"], spec)})
    return pd.DataFrame(out, columns=[*by, _FACET, "stats"])


# --- plots -------------------------------------------------------------------------------------------------


def metric_plot(
    rows: pd.DataFrame,
    metric: str,
    x_param: str | None,
    palette: dict[str, Any],
    facets: list[str],
    spec: Metric | None = None,
    x_label: str | None = None,
) -> plt.Figure:
    """One metric's plot: a line per interpolator (mean, 95% t-interval bars) against ``x_param``, a facet per level.

    Lines carry ``gid = interpolator``. Without a usable ``x_param`` the plot is a
    bar per interpolator with its interval.
    """
    spec = spec or Metric(label=metric)
    table = group_table(rows, spec, x_param, facets)
    names = [name for name in palette if name in set(table["interpolator"])]
    levels = list(_sorted_levels(table, facets)[_FACET].drop_duplicates()) if facets else [None]
    ncols = min(3, len(levels))
    nrows = math.ceil(len(levels) / ncols)
    width = 4.6 * ncols if ncols > 1 else 6.4
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.3 * nrows), squeeze=False)
    lines = x_param in table.columns
    ticks = sorted(table[x_param].unique()) if lines and _is_numeric(table[x_param]) else []
    log_x = bool(ticks) and ticks[0] > 0 and ticks[-1] / ticks[0] >= 8
    means = [s.mean for s in table["stats"] if not s.all_exact]
    log_y = spec.log and bool(means) and min(means) > 0
    unit = f" ({spec.unit})" if spec.unit else ""
    for ax, level in zip(axes.flat, levels):
        sub = table if level is None else table[table[_FACET] == level]
        if lines:
            _lines(ax, sub, names, x_param, palette, ticks, log_x)
        else:
            _bars(ax, sub, names, palette)
        log_axes(ax, False, log_y)
        ax.set_ylabel(textwrap.fill(spec.label + unit, 34), fontsize="small")
        ax.set_xlabel(x_label or x_param or "", fontsize="small")
        ax.set_title("" if level is None else str(level), fontsize="medium")
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[len(levels):]:
        ax.set_visible(False)
    if lines:
        handles = [
            matplotlib.lines.Line2D([], [], color=palette[n], marker=_MARKERS[i % len(_MARKERS)], label=n)
            for i, n in enumerate(names)
        ]
        fig.legend(handles=handles, title="interpolator", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    arrow = {"higher": "  (higher is better ↑)", "lower": "  (lower is better ↓)"}.get(spec.better or "", "")
    fig.suptitle(textwrap.fill(spec.label + unit + arrow, 70))
    fig.tight_layout()
    return fig


def _dodge(k: int, count: int, ticks: list[float], log_x: bool) -> Any:
    """A small x offset for line ``k`` of ``count``, so that equal values stay visible side by side."""
    if count < 2 or len(ticks) < 1:
        return lambda x: x
    space = np.log2(ticks) if log_x else np.asarray(ticks, dtype=float)
    gap = float(np.min(np.diff(space))) if len(space) > 1 else 1.0
    shift = (k - (count - 1) / 2) * min(0.06, 0.3 / count) * gap
    return (lambda x: np.asarray(x, float) * 2.0**shift) if log_x else (lambda x: np.asarray(x, float) + shift)


def _lines(ax, sub: pd.DataFrame, names: list[str], x_param: str, palette, ticks: list[float], log_x: bool) -> None:
    numeric = bool(ticks)
    edge = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
    labelled_exact = False
    for k, name in enumerate(names):
        own = sub[sub["interpolator"] == name]
        if own.empty:
            continue
        if numeric:
            own = own.sort_values(x_param)
            shift = _dodge(k, len(names), ticks, log_x)
            x = shift(own[x_param].to_numpy(float))
        else:
            x = np.arange(len(own)) + (k - (len(names) - 1) / 2) * 0.05
        group = list(own["stats"])
        exact = np.array([s.all_exact for s in group])
        y = np.array([math.nan if s.all_exact else s.mean for s in group])
        err = np.array([0.0 if not math.isfinite(s.half) else s.half for s in group])
        color, marker = palette[name], _MARKERS[k % len(_MARKERS)]
        bars = ax.errorbar(x, y, yerr=np.where(np.isnan(y), 0, err), color=color, marker=marker, ms=5, lw=1.4,
                           alpha=0.85, capsize=2.5, elinewidth=0.9)
        bars.lines[0].set_gid(name)  # the line of means (the caps and bars are other artists)
        if exact.any():
            ax.plot(x[exact], np.full(exact.sum(), 0.97), ls="none", marker="^", ms=7, color=color,
                    transform=edge, clip_on=False, gid=f"{name}:exact")
            if not labelled_exact:
                ax.text(0.005, 0.975, "▲ exact match", transform=ax.transAxes, fontsize="x-small", va="top")
                labelled_exact = True
    if numeric:
        if log_x:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if 0 < len(ticks) <= 12:
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{v:g}" for v in ticks])
    else:
        labels = list(dict.fromkeys(sub[x_param]))
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([str(v) for v in labels])


def _bars(ax, sub: pd.DataFrame, names: list[str], palette) -> None:
    group = {row.interpolator: row.stats for row in sub.itertuples()}
    present = [n for n in names if n in group]
    heights = [0.0 if group[n].all_exact else group[n].mean for n in present]
    errors = [0.0 if not math.isfinite(group[n].half) else group[n].half for n in present]
    ax.bar(range(len(present)), heights, yerr=errors, color=[palette[n] for n in present], capsize=3)
    ax.set_xticks(range(len(present)))
    ax.set_xticklabels(present, rotation=30 if len(present) > 4 else 0)
    for i, n in enumerate(present):
        if group[n].all_exact:
            ax.text(i, 0, "exact", ha="center", va="bottom")


# --- tables ------------------------------------------------------------------------------------------------


def metric_table(
    rows: pd.DataFrame, x_param: str | None, facets: list[str], spec: Metric | None = None,
    best: dict[tuple[Any, str | None], tuple[str, ...]] | None = None,
) -> pd.DataFrame:
    """``mean ± half-width`` per interpolator (and facet) and ``x_param`` value; ``exact`` for exact matches.

    With ``best`` (``(x, facet) -> best interpolators``, from the verdicts) the best
    cells are wrapped in ``**...**``, which :func:`table_html` renders bold.
    """
    spec = spec or Metric(label="")
    table = group_table(rows, spec, x_param, facets)
    best = best or {}
    index = ["interpolator", *facets]
    x = x_param if x_param in table.columns else None
    table["text"] = [
        _mark(r["stats"].text(), r["interpolator"] in best.get((r[x] if x else None, r[_FACET]), ()))
        for _, r in table.iterrows()
    ]
    if x is None:
        return table[index + ["text"]].rename(columns={"text": "mean ± 95% CI"}).reset_index(drop=True)
    wide = table.pivot(index=index, columns=x, values="text")
    order = _sorted_levels(table, facets, first="interpolator")[index].drop_duplicates()
    wide = wide.reindex(pd.MultiIndex.from_frame(order) if len(index) > 1 else pd.Index(order["interpolator"]))
    if _is_numeric(pd.Series(wide.columns)):
        wide = wide[sorted(wide.columns, key=float)]
    wide.columns = [f"{x}={c:g}" if isinstance(c, float) else f"{x}={c}" for c in wide.columns]
    return wide.reset_index()


def _mark(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


def table_html(table: pd.DataFrame) -> str:
    """``table`` as escaped HTML, cells written ``**...**`` in bold."""
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = []
    for row in table.itertuples(index=False):
        cells = []
        for value in row:
            text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
            if text.startswith("**") and text.endswith("**") and len(text) > 4:
                cells.append(f"<td><b>{esc(text[2:-2])}</b></td>")
            else:
                cells.append(f'<td class="text">{esc(text)}</td>' if not _is_number(text) else f"<td>{esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _is_number(text: str) -> bool:
    try:
        float(text.split(" ")[0])
    except ValueError:
        return False
    return True


# --- verdicts ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class MetricView:
    """One metric of one suite, ready to draw: its rows, facets, pooled columns, spec and verdicts."""

    metric: str
    rows: pd.DataFrame
    facets: list[str]
    averaged: list[str]
    spec: Metric
    verdicts: list[Verdict]

    @property
    def units(self) -> list[str]:
        return _units(self.rows, self.averaged)


def metric_views(frame: pd.DataFrame, spec: SuiteSpec) -> list[MetricView]:
    """Per metric of one suite's rows (series rows left out): facets, pooled columns and verdicts."""
    views = []
    for metric, rows in frame[~series_rows(frame)].groupby("metric", sort=False):
        rows = rows.dropna(axis=1, how="all")
        facets, averaged = _varying_columns(rows, spec.x_param)
        declared = spec.metric(str(metric), rows)
        data = rows.copy()
        x = _x_values(data, spec.x_param)
        x_param = spec.x_param if x is not None else None
        if x is not None:
            data[spec.x_param] = x
        found = stats.verdicts(data, str(metric), declared, x_param, facets, units=_units(rows, averaged))
        views.append(MetricView(str(metric), rows, facets, averaged, declared, found))
    return views


def run_verdicts(results: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """Every verdict of a run as a table: suite, metric, the swept value, facet, best, leader, runner-up, test."""
    out = []
    for name in dict.fromkeys(results["suite"]) if not results.empty else []:
        spec = suite_spec(name, meta.get("suites", {}).get(name, {}))
        frame = results[results["suite"] == name].dropna(axis=1, how="all")
        for view in metric_views(frame, spec):
            for v in view.verdicts:
                d = v.versus
                out.append({
                    "suite": name, "metric": view.metric, "label": view.spec.label, "unit": view.spec.unit,
                    "better": view.spec.better, "x_param": spec.x_param, "x": v.x, "facet": v.facet,
                    "best": ", ".join(v.best), "leader": v.leader, "leader_mean": v.stats[v.leader].mean,
                    "runner_up": v.runner_up,
                    "runner_up_mean": v.stats[v.runner_up].mean if v.runner_up else math.nan,
                    "diff": d.diff if d else math.nan, "ci_low": d.low if d else math.nan,
                    "ci_high": d.high if d else math.nan, "p": d.p if d else math.nan,
                    "test": d.test if d else "", "n": d.n if d else "", "significant": v.significant,
                    "verdict": v.text(view.spec.unit),
                })
    return pd.DataFrame(out)


def _headline(spec: SuiteSpec, views: list[MetricView]) -> tuple[Any, dict[str, Any]]:
    """The swept value and facet levels of the headline point, as present in the run."""
    xs = sorted({x for view in views if (x_ := _x_values(view.rows, spec.x_param)) is not None for x in x_},
                key=_sort_key)
    wanted = spec.headline.get(spec.x_param) if spec.x_param else None
    x = next((v for v in xs if _same(v, wanted)), xs[-1] if xs else None)
    facets = {k: v for k, v in spec.headline.items() if k != spec.x_param}
    return x, facets


def _sort_key(value: Any) -> tuple:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _facet_matches(facet: str | None, wanted: dict[str, Any]) -> bool:
    if not facet:
        return True
    levels = dict(part.split("=", 1) for part in facet.split(", "))
    return all(_same(levels[k], v) for k, v in wanted.items() if k in levels)


def _headline_verdicts(spec: SuiteSpec, views: list[MetricView]) -> tuple[Any, list[tuple[MetricView, Verdict]]]:
    x, facets = _headline(spec, views)
    chosen = []
    for view in views:
        at_x = [v for v in view.verdicts if v.x is None or _same(v.x, x)]
        matching = [v for v in at_x if _facet_matches(v.facet, facets)] or at_x
        if matching:
            chosen.append((view, matching[0]))
    return x, chosen


def _fmt_x(spec: SuiteSpec, x: Any) -> str:
    if x is None:
        return ""
    text = f"{x:g}" if isinstance(x, float) else str(x)
    return f"{spec.x_name} = {text}"


def verdict_table_html(spec: SuiteSpec, pairs: list[tuple[MetricView, Verdict]], show_x: bool = False) -> str:
    """The verdicts as an HTML table: measure, (where), best, runner-up, difference with CI, test."""
    if not pairs:
        return '<p class="caption">No metric of this suite declares a direction, so there is no verdict.</p>'
    head = ["measure", *(["at"] if show_x else []), "best", "runner-up", "difference (95% CI)", "test"]
    rows = []
    for view, v in pairs:
        s = view.spec
        arrow = {"higher": " ↑", "lower": " ↓"}.get(s.better or "", "")
        unit = f" ({s.unit})" if s.unit else ""
        measure = f"{s.label}{unit}{arrow}"
        where = ", ".join(p for p in (_fmt_x(spec, v.x), v.facet or "") if p)
        best = ", ".join(v.best)
        lead = f"<b>{esc(best)}</b> {esc(v.stats[v.leader].text())}"
        if v.runner_up is None:
            runner, diff, test = "—", "—", "one method only"
        else:
            d = v.versus
            runner = f"{esc(v.runner_up)} {esc(v.stats[v.runner_up].text())}"
            if math.isinf(d.diff):
                diff = "exact vs not exact"
            else:
                diff = f"{d.diff:+.3g}" + (f" [{d.low:.3g}, {d.high:.3g}]" if math.isfinite(d.low) and d.low != d.high
                                           else "") + (f" {s.unit}" if s.unit else "")
                if math.isfinite(v.stats[v.runner_up].mean) and v.stats[v.runner_up].mean != 0 \
                        and not v.stats[v.runner_up].all_exact:
                    diff += f" ({d.diff / abs(v.stats[v.runner_up].mean):+.0%})"
            test = _test_html(d)
        cells = [f'<span title="{esc(s.doc)}">{esc(measure)}</span>', *([esc(where)] if show_x else []), lead, runner,
                 esc(diff), test]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        '<table class="verdicts"><tr>' + "".join(f'<th class="text">{h}</th>' for h in head) + "</tr>"
        + "".join(rows) + "</table>"
    )


def _test_html(d: stats.Difference) -> str:
    """The test cell of a verdict: significant or not, and by which test (or why none)."""
    if d.test in (stats.PAIRED, stats.WELCH):
        word = '<span class="sig">significant</span>' if d.significant else '<span class="nsig">not significant</span>'
        return f"{word}: {esc(stats.format_p(d.p))}, {esc(d.test)}, n = {esc(d.n)}"
    if d.significant:  # deterministic, or an exact match against inexact values
        return f'<span class="sig">certain</span>: {esc(d.test)}'
    if d.test in ("equal", "both exact"):
        return f'<span class="nsig">tie</span>: {esc("equal values" if d.test == "equal" else d.test)}'
    return f'<span class="nsig">no test</span>: {esc(d.test)} (n = {esc(d.n)})'


# --- sections ----------------------------------------------------------------------------------------------


def _hparams_html(frame: pd.DataFrame) -> str:
    pairs = frame[["interpolator", "hparams"]].drop_duplicates()
    body = "".join(
        f'<tr><td class="text">{esc(name)}</td><td class="text"><code>{esc(_compact(hp))}</code></td></tr>'
        for name, hp in pairs.itertuples(index=False)
    )
    return f'<table><tr><th class="text">interpolator</th><th class="text">hyperparameters</th></tr>{body}</table>'


def _compact(hparams_json: str) -> str:
    try:
        return ", ".join(f"{k}={v!r}" for k, v in json.loads(hparams_json).items())
    except (TypeError, ValueError):
        return str(hparams_json)


def _units_caption(view: MetricView) -> str:
    rows = view.rows
    parts = []
    for column in view.units:
        count = rows[column].nunique()
        parts.append(f"{count} {column}{'s' if count != 1 and not column.endswith('s') else ''}")
    return " × ".join(parts) if parts else "1 unit"


def suite_sections(spec: SuiteSpec, data: ReportData) -> tuple[list[Section], str | None]:
    """The suite's own sections, or the error that stopped them."""
    if spec.suite is None:
        return [], None
    try:
        sections = list(spec.suite.report_sections(data))
    except Exception as err:  # noqa: BLE001  the report stays useful without a suite's extras
        return [], f"{type(err).__name__}: {err}"
    wrong = [type(s).__name__ for s in sections if not isinstance(s, Section)]
    if wrong:
        return [], f"report_sections must return suites.sections.Section objects, got {', '.join(wrong)}"
    return sections, None


def suite_section(spec: SuiteSpec, frame: pd.DataFrame, views: list[MetricView], sections: list[Section],
                  error: str | None, palette: dict[str, Any]) -> str:
    """The HTML of one suite: summary, x definition, verdicts, its own sections, a plot and table per metric."""
    name = spec.name
    parts = [f'<h2 id="suite-{esc(name)}">{esc(name)}</h2>']
    if spec.summary:
        parts.append(f'<p class="caption">{esc(spec.summary)}</p>')
    if spec.x_doc:
        parts.append(f"<p><b>{esc(spec.x_name)}</b>: {esc(spec.x_doc)}</p>")
    if frame.empty:
        parts.append("<p>No finished cells.</p>")
    else:
        x, pairs = _headline_verdicts(spec, views)
        parts.append(f"<h3>Verdicts at {esc(_fmt_x(spec, x) or 'a glance')}</h3>")
        parts.append(verdict_table_html(spec, pairs))
        every = [(view, v) for view in views for v in view.verdicts]
        if len(every) > len(pairs):
            parts.append(f"<details><summary>Verdicts at every {esc(spec.x_name or 'point')} "
                         f"({len(every)})</summary>{verdict_table_html(spec, every, show_x=True)}</details>")
    if error:
        parts.append(f'<p class="bad">Extra sections of {esc(name)} unavailable: {esc(error)}</p>')
    parts.extend(section_html(s, palette) for s in sections if not s.glance)
    if not frame.empty:
        series = series_rows(frame)
        if series.any():
            left_out = ", ".join(str(m) for m in frame.loc[series, "metric"].unique())
            axes = ", ".join(c for c in frame.columns if c in SERIES_COLUMNS)
            parts.append(
                f'<p class="caption">Per-{esc(axes)} series ({esc(left_out)}) are left out of the plots and '
                f"tables below, which are per {esc(spec.x_param or 'interpolator')}; the suite's own sections "
                "show them.</p>"
            )
        for view in views:
            best = {(v.x, v.facet): v.best for v in view.verdicts}
            label = view.spec.label + (f" ({view.spec.unit})" if view.spec.unit else "")
            parts.append(f'<h3 id="{esc(name)}-{esc(view.metric)}">{esc(label)} <code>{esc(view.metric)}</code></h3>')
            figure = metric_plot(view.rows, view.metric, spec.x_param, palette, view.facets, view.spec,
                                 x_label=spec.x_name)
            parts.append(img_tag(figure, f"{name}: {view.metric}"))
            define = f" {spec.x_name}: {spec.x_doc}" if spec.x_doc else ""
            bold = " Bold: the best, and those not significantly different from it." if view.verdicts else ""
            doc = f"{view.spec.label[:1].upper()}{view.spec.label[1:]}: {view.spec.doc}. " if view.spec.doc else ""
            parts.append(
                f'<p class="caption">{esc(doc)}Mean over {esc(_units_caption(view))}; ± and error bars: 95% '
                f"t-interval.{esc(bold)}{esc(define)}</p>"
            )
            parts.append(table_html(metric_table(view.rows, spec.x_param, view.facets, view.spec, best)))
        parts.append("<h3>Hyperparameters</h3>")
        parts.append(_hparams_html(frame))
    return "\n".join(parts)


def glance_html(specs: list[SuiteSpec], views: dict[str, list[MetricView]], sections: dict[str, list[Section]],
                palette: dict[str, Any]) -> str:
    """The opening: how to read the numbers, then per suite the headline verdicts and its glance pictures."""
    parts = ['<div class="glance" id="glance"><h2 style="margin-top:.3em">At a glance</h2>',
             f'<details class="caption"><summary>{esc(STATISTICS_SHORT)}</summary><p>{esc(STATISTICS_NOTE)}</p>'
             "</details>"]
    for spec in specs:
        if not views.get(spec.name):
            continue
        x, pairs = _headline_verdicts(spec, views[spec.name])
        where = _fmt_x(spec, x)
        parts.append(f'<h3>{esc(spec.name)}{" at " + esc(where) if where else ""}</h3>')
        if spec.x_doc:
            parts.append(f'<p class="caption"><b>{esc(spec.x_name)}</b>: {esc(spec.x_doc)}</p>')
        parts.append(verdict_table_html(spec, pairs))
        parts.extend(section_html(s, palette, level=4) for s in sections.get(spec.name, []) if s.glance)
    parts.append("</div>")
    return "\n".join(parts)


def _failed_html(failed: list) -> str:
    if not failed:
        return '<p class="ok">No failed cells.</p>'
    rows = []
    for record in failed:
        cell = record.cell
        error = record.error or ""
        first = error.splitlines()[0] if error else ""
        rows.append(
            f'<tr><td class="text"><code>{esc(cell.key)}</code></td><td class="text">{esc(cell.suite)}</td>'
            f'<td class="text">{esc(cell.interpolator)}</td>'
            f'<td class="text"><code>{esc(json.dumps(cell.params, sort_keys=True))}</code></td><td>{esc(cell.seed)}</td>'
            f'<td class="text"><details><summary>{esc(first)}</summary><pre>{esc(error)}</pre></details></td></tr>'
        )
    head = "".join(f'<th class="text">{h}</th>' for h in ("cell", "suite", "interpolator", "params", "seed", "error"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _kv_table(items: dict[str, Any]) -> str:
    body = "".join(
        f'<tr><th class="text">{esc(k)}</th><td class="text">{esc("" if v is None else v)}</td></tr>'
        for k, v in items.items()
    )
    return f"<table>{body}</table>"


def _native_summary(native: dict[str, Any] | None) -> str | None:
    """One line of ``meta.json``'s native operators record: compiler, flags, the CPU's vector extensions, state."""
    if not native:
        return None
    flags = " ".join(native.get("flags") or [])
    vector = " ".join(native.get("cpu_vector_flags") or [])
    return f"{native.get('compiler')}; {flags}; CPU: {vector}; {native.get('state')}"


def _meta_html(meta: dict[str, Any]) -> str:
    env = meta.get("environment", {})
    git = env.get("git", {})
    device = env.get("device", {})
    overview = {
        "started": meta.get("started"),
        "finished": meta.get("finished") or "(not finished)",
        "sessions": len(meta.get("sessions", [])),
        "device": device.get("cuda_device") or device.get("type"),
        "cpu": device.get("cpu"),
        "torch threads": env.get("torch_threads"),
        "git commit": (git.get("commit") or "unknown") + (" (dirty)" if git.get("dirty") else ""),
        "uncommitted changes": " ".join(git.get("changes") or []) or None,
        "native operators": _native_summary(env.get("native_operators")),
        "command": " ".join(meta.get("command") or []),
    }
    versions = {k: v if v is not None else "not installed" for k, v in env.get("versions", {}).items()}
    sessions = pd.DataFrame(
        [
            {k: s.get(k) for k in ("started", "finished", "ran", "failed", "interrupted")}
            for s in meta.get("sessions", [])
        ]
    )
    return "\n".join(
        [
            _kv_table(overview),
            "<h3>Versions</h3>",
            _kv_table(versions),
            "<h3>Sessions</h3>",
            sessions.to_html(escape=True, na_rep="", border=0, index=False) if not sessions.empty else "<p>None.</p>",
            "<h3>Configuration</h3>",
            f"<pre>{esc(json.dumps(meta.get('config'), indent=2, sort_keys=True))}</pre>",
            "<h3>Device</h3>",
            f"<pre>{esc(json.dumps(device, indent=2, sort_keys=True))}</pre>",
        ]
    )


def report_data(store: RunStore, results: pd.DataFrame) -> ReportData:
    """What the suites build their sections from: results, OK cells, their arrays, linked runs' results."""
    records = store.read_cells()
    config = store.config()
    ok = {key: r.cell for key, r in records.items() if r.ok}
    with_arrays = frozenset(key for key, r in records.items() if r.ok and r.arrays)
    return ReportData(results, config, ok, with_arrays, store.read_arrays, linked_results(config))


def linked_results(config: RunConfig) -> dict[str, pd.DataFrame]:
    """The results of every run an option of kind ``run`` names (by option key), read through :class:`RunStore`."""
    import suites

    keys: set[str] = set()
    for name in config.suites:
        try:
            declared: dict[str, Option] = suites.get(name).options
        except Exception:  # noqa: BLE001
            continue
        keys |= {k for k, o in declared.items() if o.kind == "run"}
    out = {}
    for key in sorted(keys):
        paths = {config.options.get(key), *((config.suite_options or {}).get(s, {}).get(key) for s in config.suites)}
        for path in paths - {None}:
            try:
                out[key] = RunStore.open(path).results()
            except (ValueError, OSError):  # a linked run that moved: the suite says there is nothing to join
                continue
    return out


def render_report(store: RunStore, results: pd.DataFrame) -> str:
    """The report of the run in ``store`` as one HTML document; ``results`` is its results frame."""
    meta = store.read_meta()
    records = store.read_cells()
    planned = meta.get("planned", [])
    failed = [r for r in records.values() if not r.ok]
    n_ok = sum(1 for r in records.values() if r.ok)
    missing = sum(1 for key in planned if key not in records)
    config = meta.get("config", {})
    suite_names = list(dict.fromkeys([*config.get("suites", []), *results["suite"].unique()]))
    names = list(dict.fromkeys([*config.get("interpolators", {}), *results["interpolator"].unique()]))
    colors = sns.color_palette("tab10", max(len(names), 1))
    palette = {name: colors[i % len(colors)] for i, name in enumerate(names)}

    data = report_data(store, results)
    specs = [suite_spec(n, meta.get("suites", {}).get(n, {})) for n in suite_names]
    frames = {s.name: results[results["suite"] == s.name].dropna(axis=1, how="all") for s in specs}
    views = {s.name: metric_views(frames[s.name], s) if not frames[s.name].empty else [] for s in specs}
    own = {s.name: suite_sections(s, data) for s in specs}
    sections = {name: found for name, (found, _) in own.items()}

    title = f"Benchmark report: {store.root.name}"
    status = (
        f'<span class="ok">{n_ok} OK</span>, <span class="{"bad" if failed else "ok"}">{len(failed)} failed</span>'
        + (f', <span class="bad">{missing} not run</span>' if missing else "")
        + f" of {len(planned)} planned cells"
    )
    nav = "".join(f'<li><a href="#suite-{esc(n)}">{esc(n)}</a></li>' for n in suite_names)
    body = [suite_section(s, frames[s.name], views[s.name], sections[s.name], own[s.name][1], palette) for s in specs]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p class="caption">Suites: {esc(", ".join(suite_names))}. Profile: {esc(config.get("profile"))}. Device: {esc(config.get("device"))}.
Cells: {status}. Started {esc(meta.get("started"))}, finished {esc(meta.get("finished") or "(not finished)")}.</p>
{glance_html(specs, views, sections, palette)}
<nav><ul>{nav}<li><a href="#failed">Failed cells</a></li><li><a href="#meta">Run metadata</a></li></ul></nav>
{"".join(body)}
<h2 id="failed">Failed cells</h2>
{_failed_html(failed)}
<h2 id="meta">Run metadata</h2>
{_meta_html(meta)}
</body>
</html>
"""


def write_report(store: RunStore, results: pd.DataFrame | None = None) -> Path:
    """Render the report of ``store`` and write it atomically to ``RUN/report.html``; returns its path."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        text = render_report(store, store.results() if results is None else results)
    path = store.root / REPORT_FILE
    atomic_write_text(path, text)
    return path
