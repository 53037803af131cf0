"""The run report: one self-contained HTML file (plots inline as base64 PNG).

Per suite, in run order:

- the interpolators' full hyperparameters;
- per metric, a seaborn line plot of ``value`` against the suite's ``x_param``
  with one line per interpolator and a 95% confidence band (bootstrap over
  everything the line averages: seeds, images, ...). Parameters other than
  ``x_param`` that take several values (a batch size, a dataset) get a facet
  each rather than being averaged, except the ones listed in
  :data:`AVERAGED_COLUMNS` and ones with more than :data:`MAX_FACET_LEVELS`
  values, which the plot averages over (its caption says so). A suite without
  ``x_param`` gets bar plots per interpolator;
- per metric, a table: rows interpolator (and facet), columns ``x_param``
  values, cells ``mean ± std`` over the same rows the plot averages;
- rows that carry a per-row axis of :data:`SERIES_COLUMNS` (a learning curve's
  ``epoch``) are left out of those plots and tables, which would otherwise
  average over the series: the suite draws such series in its own sections;
- the suite's own sections (``Suite.report_sections``);

then the failed cells with their errors and the run's metadata.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bench.store import REPORT_FILE, RunStore, atomic_write_text

#: columns a plot averages over rather than facets on (the spread over them makes the band)
AVERAGED_COLUMNS = frozenset({"image", "images", "sample", "draw", "trial", "repeat", "template"})
#: a column with more values than this is averaged over rather than faceted on
MAX_FACET_LEVELS = 6
#: per-row axes within one cell (a learning curve's epoch, an optimizer's step): a row that carries one is a
#: point of a series the suite draws itself (``Suite.report_sections``), so the per-``x_param`` plots and
#: tables leave it out rather than average it over the series (``summary.csv`` keeps it, grouped by that axis)
SERIES_COLUMNS = frozenset({"epoch", "step", "iteration"})
#: columns that identify a row rather than describe it
_FIXED_COLUMNS = ("suite", "interpolator", "hparams", "seed", "metric", "value", "unit")
_FACET = "facet"

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #aaa; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; vertical-align: top; }
th { background: #f0f0f0; }
td.text, th.text { text-align: left; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
.caption { color: #555; font-size: 0.9em; }
.bad { color: #b00; }
.ok { color: #070; }
nav ul { columns: 2; }
"""


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML (quotes too)."""
    return html.escape(str(value), quote=True)


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(fig: plt.Figure, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{_png(fig)}">'


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.to_numeric(series, errors="coerce").notna().all())


def series_rows(frame: pd.DataFrame) -> pd.Series:
    """Whether each row of ``frame`` is a point of a series: it has a value in one of :data:`SERIES_COLUMNS`."""
    present = [c for c in frame.columns if c in SERIES_COLUMNS]
    if not present:
        return pd.Series(False, index=frame.index)
    return frame[present].notna().any(axis=1)


def _varying_columns(frame: pd.DataFrame, x_param: str | None) -> tuple[list[str], list[str]]:
    """Columns besides the fixed ones and ``x_param`` with several values per interpolator: ``(facets, averaged)``."""
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


def _with_facet(frame: pd.DataFrame, facets: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    if facets:
        frame[_FACET] = (
            frame[facets].astype(str).agg(lambda r: ", ".join(f"{c}={v}" for c, v in zip(facets, r)), axis=1)
        )
    return frame


def metric_plot(
    frame: pd.DataFrame, metric: str, x_param: str | None, palette: dict[str, Any], facets: list[str]
) -> plt.Figure:
    """One metric's plot: a line per interpolator against ``x_param`` with 95% CI bands, a facet per level.

    ``frame`` holds the metric's rows of one suite; without a usable ``x_param``
    the plot is a bar per interpolator with its 95% CI.
    """
    data = _with_facet(frame, facets)
    units = sorted({str(u) for u in data["unit"].dropna().unique()})
    ylabel = f"{metric} [{', '.join(units)}]" if units and units != [""] else metric
    hue_order = [name for name in palette if name in set(data["interpolator"])]
    levels = list(_sorted_levels(data, facets)[_FACET]) if facets else [None]
    ncols = min(3, len(levels))
    nrows = math.ceil(len(levels) / ncols)
    width = 4.6 * ncols if ncols > 1 else 6.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.2 * nrows), squeeze=False)
    lines = bool(x_param and x_param in data and data[x_param].notna().all())
    ticks: list = []
    if lines and _is_numeric(data[x_param]):
        data[x_param] = pd.to_numeric(data[x_param])
        ticks = sorted(data[x_param].unique())
    for i, (ax, level) in enumerate(zip(axes.flat, levels)):
        sub = data if level is None else data[data[_FACET] == level]
        common = {"data": sub, "y": "value", "hue": "interpolator", "hue_order": hue_order, "palette": palette}
        common |= {"errorbar": ("ci", 95), "seed": 0, "ax": ax}
        if lines:
            sns.lineplot(x=x_param, marker="o", legend=i == 0, **common)
            if ticks and ticks[0] > 0 and ticks[-1] / ticks[0] >= 8:
                ax.set_xscale("log", base=2)  # scale factors, sizes: evenly spaced on a log axis
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            if 0 < len(ticks) <= 12:
                ax.set_xticks(ticks)
                ax.set_xticklabels([f"{v:g}" for v in ticks])
        else:
            sns.barplot(x="interpolator", order=hue_order, legend=False, **common)
            ax.tick_params(axis="x", labelrotation=30 if len(hue_order) > 4 else 0)
        ax.set_ylabel(ylabel)
        ax.set_title("" if level is None else str(level), fontsize="medium")
    for ax in axes.flat[len(levels) :]:
        ax.set_visible(False)
    legend = axes.flat[0].get_legend()
    if legend is not None:  # one legend for all facets, outside on the right
        handles, labels = axes.flat[0].get_legend_handles_labels()
        legend.remove()
        fig.legend(handles, labels, title="interpolator", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(metric)
    fig.tight_layout()
    return fig


def _format_cell(mean: float, std: float) -> str:
    if std is None or not math.isfinite(std):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {std:.2g}"


def metric_table(frame: pd.DataFrame, x_param: str | None, facets: list[str]) -> pd.DataFrame:
    """``mean ± std`` per interpolator (and facet) and ``x_param`` value, over the rows a plot averages."""
    rows = ["interpolator", *facets]
    cols = [x_param] if x_param and x_param in frame and frame[x_param].notna().all() else []
    stats = frame.groupby(rows + cols, dropna=False, sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    stats["text"] = [_format_cell(m, s) for m, s in zip(stats["mean"], stats["std"])]
    if not cols:
        return stats[rows + ["text"]].rename(columns={"text": "mean ± std"})
    table = stats.pivot(index=rows, columns=cols[0], values="text")
    order = _sorted_levels(stats, facets, first="interpolator")  # interpolators in the run's order
    table = table.reindex(pd.MultiIndex.from_frame(order) if len(rows) > 1 else pd.Index(order[rows[0]]))
    if _is_numeric(pd.Series(table.columns)):
        table = table[sorted(table.columns, key=float)]
    table.columns = [f"{x_param}={c}" for c in table.columns]
    return table.reset_index()


def _table_html(table: pd.DataFrame) -> str:
    return table.to_html(escape=True, na_rep="", border=0, index=False)


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


def suite_section(
    name: str, info: dict[str, Any], results: pd.DataFrame, palette: dict[str, Any], run_dir: Path
) -> str:
    """The HTML of one suite: hyperparameters, a plot and a table per metric, the suite's own sections."""
    frame = results[results["suite"] == name].dropna(axis=1, how="all")
    x_param = info.get("x_param")
    parts = [f'<h2 id="suite-{esc(name)}">{esc(name)}</h2>']
    if info.get("summary"):
        parts.append(f'<p class="caption">{esc(info["summary"])}</p>')
    if frame.empty:
        parts.append("<p>No finished cells.</p>")
    else:
        parts.append(_hparams_html(frame))
        series = series_rows(frame)
        if series.any():
            left_out = ", ".join(str(m) for m in frame.loc[series, "metric"].unique())
            axes = ", ".join(c for c in frame.columns if c in SERIES_COLUMNS)
            parts.append(
                f'<p class="caption">Per-{esc(axes)} series ({esc(left_out)}) are left out of the plots and '
                f"tables below, which are per {esc(x_param or 'interpolator')}; the suite's own sections show them."
                "</p>"
            )
        for metric, rows in frame[~series].groupby("metric", sort=False):
            rows = rows.dropna(axis=1, how="all")
            facets, averaged = _varying_columns(rows, x_param)
            n_seeds = rows["seed"].nunique()
            over = ", ".join([f"{n_seeds} seed(s)", *(f"{c} ({rows[c].nunique()})" for c in averaged)])
            parts.append(f"<h3>{esc(metric)}</h3>")
            parts.append(_img(metric_plot(rows, str(metric), x_param, palette, facets), f"{name}: {metric}"))
            parts.append(
                f'<p class="caption">Mean over {esc(over)}; band/bars: 95% bootstrap confidence interval. '
                f"Table: mean ± std over the same.</p>"
            )
            parts.append(_table_html(metric_table(rows, x_param, facets)))
    parts.extend(_suite_extra_sections(name, results, run_dir))
    return "\n".join(parts)


def _suite_extra_sections(name: str, results: pd.DataFrame, run_dir: Path) -> list[str]:
    import suites

    try:
        sections = suites.get(name).report_sections(results, run_dir)
    except Exception as err:  # noqa: BLE001  the report stays useful without a suite's extras
        return [f'<p class="bad">Extra sections of {esc(name)} unavailable: {esc(type(err).__name__)}: {esc(err)}</p>']
    # A suite's section html is its own markup, included as is; its title is text.
    return [f"<h3>{esc(title)}</h3>\n{body}" for title, body in sections]


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
            _table_html(sessions) if not sessions.empty else "<p>None.</p>",
            "<h3>Configuration</h3>",
            f"<pre>{esc(json.dumps(meta.get('config'), indent=2, sort_keys=True))}</pre>",
            "<h3>Device</h3>",
            f"<pre>{esc(json.dumps(device, indent=2, sort_keys=True))}</pre>",
        ]
    )


def render_report(store: RunStore, results: pd.DataFrame) -> str:
    """The report of the run in ``store`` as one HTML document; ``results`` is its results frame."""
    meta = store.read_meta()
    records = store.read_cells()
    planned = meta.get("planned", [])
    failed = [r for r in records.values() if not r.ok]
    n_ok = sum(1 for r in records.values() if r.ok)
    missing = sum(1 for key in planned if key not in records)
    config = meta.get("config", {})
    suite_info: dict[str, dict[str, Any]] = meta.get("suites", {})
    suite_names = list(dict.fromkeys([*config.get("suites", []), *results["suite"].unique()]))
    names = list(dict.fromkeys([*config.get("interpolators", {}), *results["interpolator"].unique()]))
    colors = sns.color_palette("tab10", max(len(names), 1))
    palette = {name: colors[i % len(colors)] for i, name in enumerate(names)}

    title = f"Benchmark report: {store.root.name}"
    status = (
        f'<span class="ok">{n_ok} OK</span>, <span class="{"bad" if failed else "ok"}">{len(failed)} failed</span>'
        + (f', <span class="bad">{missing} not run</span>' if missing else "")
        + f" of {len(planned)} planned cells"
    )
    nav = "".join(f'<li><a href="#suite-{esc(n)}">{esc(n)}</a></li>' for n in suite_names)
    sections = [suite_section(n, suite_info.get(n, {}), results, palette, store.root) for n in suite_names]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p>Suites: {esc(", ".join(suite_names))}. Profile: {esc(config.get("profile"))}. Device: {esc(config.get("device"))}.
Cells: {status}. Started {esc(meta.get("started"))}, finished {esc(meta.get("finished") or "(not finished)")}.</p>
<nav><ul>{nav}<li><a href="#failed">Failed cells</a></li><li><a href="#meta">Run metadata</a></li></ul></nav>
{"".join(sections)}
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
