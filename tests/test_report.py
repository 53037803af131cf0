"""The HTML report: self-contained, escaped, well-formed; plots and tables that show the right numbers."""

from __future__ import annotations

import base64
import html.parser
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import suites
from bench.report import (
    AVERAGED_COLUMNS,
    MAX_FACET_LEVELS,
    SERIES_COLUMNS,
    _varying_columns,
    metric_plot,
    metric_table,
    run_verdicts,
    series_rows,
    write_report,
)
from bench.stats import t_quantile
from bench.store import CellRecord, RunStore, summarize
from suites.base import Cell, Metric, RunConfig


VOID_TAGS = {"meta", "img", "br", "hr", "link", "input", "col", "wbr"}
EVIL = "<script>alert('x')</script>"


class WellFormed(html.parser.HTMLParser):
    """Checks that every non-void tag is closed in order; collects the ``src`` and ``href`` attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("src", "href")]
        self.scripts += tag == "script"
        if tag not in VOID_TAGS:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def record(cell: Cell, rows, status="ok", error=None) -> CellRecord:
    return CellRecord(
        cell, {"padding_mode": "zeros"}, status, rows, error, "2024-01-01T00:00:00", "2024-01-01T00:00:01", 1.0
    )


def synthetic_run(tmp_path, suite="fake", x_param="level") -> RunStore:
    """A run folder written by hand: two interpolators, levels 1/2/4, two batches, two images, two seeds."""
    config = RunConfig(suites=(suite,), interpolators={"bilinear": {}, "nearest": {}}, profile="quick")
    store = RunStore.create(
        tmp_path / "run",
        {
            "config": config.to_json(),
            "suites": {suite: {"summary": f"summary with {EVIL}", "x_param": x_param}},
            "planned": [],
            "environment": {
                "versions": {"torch": "2.x", "timm": None},
                "device": {"type": "cpu", "cpu": EVIL},
                "git": {},
            },
            "command": ["python", "-m", "bench", "run", EVIL],
            "started": "2024-01-01T00:00:00",
            "finished": "2024-01-01T00:01:00",
            "sessions": [{"started": "2024-01-01T00:00:00", "finished": "2024-01-01T00:01:00", "ran": 1, "failed": 1}],
        },
    )
    for name, offset in (("bilinear", 0.0), ("nearest", 1.0)):
        for level in (1, 2, 4):
            for batch in (1, 8):
                for seed in (0, 1):
                    rows = [
                        {"metric": "err", "value": offset + level + seed + batch / 10, "unit": "px", "image": image}
                        for image in ("a", "b")
                    ]
                    store.write_cell(record(Cell(suite, name, {}, {"level": level, "batch": batch}, seed), rows))
    bad = Cell(suite, "nearest", {}, {"level": 8, "batch": 1, "note": EVIL}, 0)
    store.write_cell(
        record(bad, [], "failed", f'RuntimeError: {EVIL}\n\nTraceback ...\n  File "x.py"\nRuntimeError: {EVIL}')
    )
    return store


class TestFacets:
    def test_varying_columns(self):
        frame = pd.DataFrame(
            {
                "interpolator": ["a"] * 4 + ["b"] * 4,
                "ops": ["add"] * 4 + ["add mul"] * 4,  # a property of the interpolator: neither
                "level": [1, 2] * 4,
                "batch": [1, 1, 8, 8] * 2,
                "image": list("abcdefgh"),
                "sample_id": range(8),  # many values: averaged
                "device": ["cpu"] * 8,  # one value: neither
                "seed": [0, 1] * 4,
                "value": np.arange(8.0),
            }
        )
        facets, averaged = _varying_columns(frame, "level")
        assert facets == ["batch"]
        assert averaged == ["image", "sample_id"]
        assert "image" in AVERAGED_COLUMNS and MAX_FACET_LEVELS < 8


def _cell(values) -> str:
    """``mean ± half-width of the 95% t-interval``, as the tables write it."""
    values = np.asarray(values, dtype=float)
    half = t_quantile(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return f"{values.mean():.4g} ± {half:.2g}"


class TestMetricTable:
    def test_feature_mean_and_interval(self, tmp_path):
        results = synthetic_run(tmp_path).results()
        table = metric_table(results, "level", ["batch"])
        assert list(table.columns) == ["interpolator", "batch", "level=1", "level=2", "level=4"]
        assert table["interpolator"].tolist() == ["bilinear", "bilinear", "nearest", "nearest"]  # the run's order
        # nearest, level 2, batch 8: values 1 + 2 + seed + 0.8 over seeds 0, 1 and two images (4 units)
        cell = table[(table.interpolator == "nearest") & (table.batch == 8)]["level=2"].item()
        assert cell == _cell([3.8, 3.8, 4.8, 4.8])

    def test_without_x_param(self, tmp_path):
        results = synthetic_run(tmp_path).results()
        table = metric_table(results, None, [])
        assert table.columns.tolist() == ["interpolator", "mean ± 95% CI"] and len(table) == 2

    def test_exact_matches_and_bold_best(self):
        rows = pd.DataFrame({"interpolator": ["a"] * 2 + ["b"] * 2, "level": [1, 1, 1, 1], "seed": [0, 1, 0, 1],
                             "metric": "psnr", "unit": "dB", "value": [120.0, 120.0, 30.0, 32.0]})
        spec = Metric("PSNR", "dB", "higher", exact=120.0)
        table = metric_table(rows, "level", [], spec, best={(1, None): ("a",)})
        assert table.set_index("interpolator")["level=1"].to_dict() == {"a": "**exact**", "b": _cell([30.0, 32.0])}


class TestMetricPlot:
    @staticmethod
    def lines(ax) -> dict[str, tuple]:
        return {line.get_gid(): tuple(line.get_ydata()) for line in ax.get_lines() if line.get_gid()}

    def test_lines_show_group_means(self, tmp_path):
        results = synthetic_run(tmp_path).results()
        palette = {"bilinear": "C0", "nearest": "C1"}
        fig = metric_plot(results, "err", "level", palette, ["batch"])
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title() for ax in axes] == ["batch=1", "batch=8"]
        assert axes[0].get_xscale() == "linear"  # 1..4 spans less than 8x
        expected = results[results.batch == 8].groupby(["interpolator", "level"])["value"].mean()
        assert self.lines(axes[1]) == {name: tuple(expected[name].to_numpy()) for name in palette}
        # equal x values are drawn side by side, not on top of each other
        xs = {line.get_gid(): line.get_xdata() for line in axes[1].get_lines() if line.get_gid()}
        assert (xs["bilinear"] < xs["nearest"]).all() and np.allclose(xs["bilinear"].round(), [1, 2, 4])
        assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == list(palette)
        plt.close(fig)

    def test_log_axis_for_wide_ranges(self, tmp_path):
        results = synthetic_run(tmp_path).results()
        results["level"] = results["level"].map({1: 0.25, 2: 1.0, 4: 4.0})
        fig = metric_plot(results, "err", "level", {"bilinear": "C0", "nearest": "C1"}, [])
        assert fig.axes[0].get_xscale() == "log"
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.25", "1", "4"]
        plt.close(fig)

    def test_declared_log_axis_direction_and_label(self, tmp_path):
        results = synthetic_run(tmp_path).results()
        spec = Metric("corner error", "input px", "lower", log=True)
        fig = metric_plot(results, "err", "level", {"bilinear": "C0", "nearest": "C1"}, [], spec, x_label="s")
        ax = fig.axes[0]
        assert ax.get_yscale() == "log" and ax.get_ylabel() == "corner error (input px)" and ax.get_xlabel() == "s"
        assert "lower is better" in fig._suptitle.get_text()
        plt.close(fig)

    def test_exact_matches_do_not_rescale_the_axis(self):
        rows = pd.DataFrame({"interpolator": ["a"] * 3 + ["b"] * 3, "angle": [0, 45, 90] * 2, "seed": 0,
                             "metric": "psnr", "unit": "dB", "value": [120.0, 30.0, 120.0, 28.0, 29.0, 27.0]})
        spec = Metric("PSNR", "dB", "higher", exact=120.0)
        fig = metric_plot(rows, "psnr", "angle", {"a": "C0", "b": "C1"}, [], spec)
        ax = fig.axes[0]
        assert ax.get_ylim()[1] < 40  # 120 dB is not a point on the axis
        a = self.lines(ax)["a"]
        assert np.isnan(a[0]) and a[1] == 30.0 and np.isnan(a[2])
        marks = [line for line in ax.get_lines() if line.get_gid() == "a:exact"]
        assert len(marks) == 1 and len(marks[0].get_xdata()) == 2  # two exact matches, on the top edge
        plt.close(fig)

    def test_bars_without_x_param(self, tmp_path):
        results = synthetic_run(tmp_path).results()
        fig = metric_plot(results, "err", None, {"bilinear": "C0", "nearest": "C1"}, [])
        heights = [p.get_height() for p in fig.axes[0].patches]
        np.testing.assert_allclose(heights, results.groupby("interpolator", sort=False)["value"].mean().to_numpy())
        plt.close(fig)


class TestReport:
    def test_self_contained_escaped_well_formed(self, tmp_path, fake_suites):
        store = synthetic_run(tmp_path)
        path = write_report(store)
        text = path.read_text()
        parser = WellFormed()
        parser.feed(text)
        parser.close()
        assert parser.stack == []
        assert parser.scripts == 0 and EVIL not in text  # everything from the run is escaped
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
        assert all(link.startswith(("data:image/png;base64,", "#")) for link in parser.links)
        images = [link for link in parser.links if link.startswith("data:")]
        assert len(images) == 1  # one metric
        assert base64.b64decode(images[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        # the suite's own sections are data (a note here), escaped
        assert "<h3>Fake &lt;extra&gt; section</h3>" in text and "<p>48 rows of fake</p>" in text
        assert "24 OK" in text and "1 failed" in text
        assert "not installed" in text  # timm: None
        assert "level=1" in text and "batch" in text

    def test_opens_with_the_verdicts_at_the_headline(self, tmp_path, fake_suites):
        text = write_report(synthetic_run(tmp_path)).read_text()
        glance = text[text.index('id="glance"'):text.index("<nav>")]
        assert "95% Student-t" in glance and "paired t-test" in glance  # the statistics, stated once
        assert "fake at level = 2" in glance  # the fake suite's headline
        # "err" is not declared by the fake suite: no direction, no verdict
        assert "no verdict" in glance

    def test_verdicts_of_a_declared_metric(self, tmp_path, fake_suites):
        store = synthetic_run(tmp_path)
        for name, offset in (("bilinear", 0.0), ("nearest", 0.5)):
            for level in (1, 2, 4):
                for seed in (0, 1, 2):
                    rows = [{"metric": "abs_error", "value": offset + level / 10 + seed / 100 + (image == "b") / 1000,
                             "unit": "px", "image": image} for image in ("a", "b")]
                    store.write_cell(record(Cell("fake", name, {}, {"level": level, "batch": 1}, seed), rows))
        verdicts = run_verdicts(store.results(), store.read_meta())
        at2 = verdicts[(verdicts.metric == "abs_error") & (verdicts.x == 2)].iloc[0]
        # nearest is 0.5 px worse on every unit: a paired difference without spread
        assert at2["best"] == "bilinear" and at2["runner_up"] == "nearest" and bool(at2["significant"])
        assert at2["diff"] == pytest.approx(-0.5) and at2["test"] == "paired t" and at2["n"] == "6"
        text = write_report(store).read_text()
        glance = text[text.index('id="glance"'):text.index("<nav>")]
        assert "mean absolute error against the exact ramp (px) ↓" in glance and "significant" in glance

    def test_broken_suite_sections_do_not_break_the_report(self, tmp_path, monkeypatch, fake_suites):
        store = synthetic_run(tmp_path)

        def explode(self, data):
            raise RuntimeError("no sections today")

        monkeypatch.setattr("fake_suite.FakeSuite.report_sections", explode)
        text = write_report(store).read_text()
        assert "Extra sections of fake unavailable: RuntimeError: no sections today" in text

    def test_sections_must_be_data(self, tmp_path, monkeypatch, fake_suites):
        store = synthetic_run(tmp_path)
        monkeypatch.setattr("fake_suite.FakeSuite.report_sections", lambda self, data: [("t", "<p>html</p>")])
        text = write_report(store).read_text()
        assert "must return suites.sections.Section objects, got tuple" in text and "<p>html</p>" not in text

    def test_run_without_results(self, tmp_path, fake_suites):
        config = RunConfig(suites=("fake",), interpolators={"bilinear": {}})
        store = RunStore.create(tmp_path / "run", {"config": config.to_json(), "planned": ["fake-x"], "sessions": []})
        text = write_report(store).read_text()
        assert "No finished cells." in text and "1 not run" in text
        assert json.loads((store.root / "meta.json").read_text())["planned"] == ["fake-x"]
        assert {"fake", "fakebar"} <= set(suites.available())


class TestSeriesRows:
    """Rows with a per-row axis (a learning curve's ``epoch``) stay out of the per-``x_param`` plots and tables."""

    @staticmethod
    def curve_run(tmp_path) -> RunStore:
        store = synthetic_run(tmp_path)
        for name in ("bilinear", "nearest"):
            for level in (1, 2, 4):
                for seed in (0, 1):
                    cell = Cell("fake", name, {}, {"level": level, "batch": 1}, seed)
                    rows = [{"metric": "err", "value": float(level), "unit": "px", "image": "a"}]
                    # a curve that, averaged over its 10 epochs, would read 100 + epoch mean, far from "err"
                    rows += [{"metric": "loss_curve", "value": 100.0 + epoch + seed, "unit": "nats", "epoch": epoch}
                             for epoch in range(1, 11)]
                    store.write_cell(record(cell, rows))
        return store

    def test_feature_series_rows(self):
        frame = pd.DataFrame({"metric": ["a", "b", "c"], "epoch": [None, 3, None], "step": [None, None, 7]})
        assert series_rows(frame).tolist() == [False, True, True]
        assert not series_rows(frame.drop(columns=["epoch", "step"])).any()
        assert "epoch" in SERIES_COLUMNS

    def test_report_leaves_curves_out(self, tmp_path, fake_suites):
        store = self.curve_run(tmp_path)
        text = write_report(store).read_text()
        parser = WellFormed()
        parser.feed(text)
        assert len([link for link in parser.links if link.startswith("data:")]) == 1  # "err" only, no curve plot
        assert "<code>err</code></h3>" in text and "<code>loss_curve</code>" not in text
        assert "Per-epoch series (loss_curve) are left out" in text
        assert "epoch (" not in text  # the caption of "err" does not claim to average over epochs

    def test_summary_groups_by_epoch(self, tmp_path):
        results = self.curve_run(tmp_path).results()
        summary = summarize(results)
        curve = summary[summary["metric"] == "loss_curve"]
        assert len(curve) == 2 * 3 * 10  # interpolator x level x epoch
        assert (curve["n"] == 2).all()  # the two seeds
        at = curve[(curve["interpolator"] == "nearest") & (curve["level"] == 2) & (curve["epoch"] == 7)]
        assert at["mean"].item() == 100.0 + 7 + 0.5
