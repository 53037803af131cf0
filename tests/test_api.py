"""The notebook API end to end on the fake suite: bench.run, bench.load, the Run's frames and report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fake_suite import run_cli

import bench
from bench.stats import half_width


def test_run_and_load(fake_suites):
    run = bench.run(suites="fake", interpolators=["bilinear", "nearest"], profile="quick", out="run",
                    hparams={"bilinear": {"padding_mode": "border"}}, fake={"levels": [1, 4]})
    assert run.outcome.exit_code == 0 and run.failed == 0 and len(run.cells) == 2 * 2 * 2
    config = run.config
    assert config.suite_options == {"fake": {"levels": [1, 4]}}
    assert config.interpolators == {"bilinear": {"padding_mode": "border"}, "nearest": {}}
    # the frames are what the run folder holds
    assert run.results.equals(bench.load("run").results)
    pd.testing.assert_frame_equal(run.results, pd.read_csv("run/results.csv"), check_dtype=False)
    assert sorted(run.results["level"].unique()) == [1, 4]
    summary = run.summary.set_index(["interpolator", "level", "metric"])
    errors = run.results.query("interpolator == 'nearest' and level == 4 and metric == 'abs_error'")["value"]
    row = summary.loc[("nearest", 4, "abs_error")]
    assert row["n"] == 4 and row["mean"] == pytest.approx(errors.mean())  # 2 seeds x 2 images
    assert row["ci_high"] - row["mean"] == pytest.approx(half_width(errors))
    # the fake suite declares abs_error lower-is-better: bilinear is exact on a ramp, nearest is not
    verdict = run.verdicts.query("metric == 'abs_error' and x == 4").iloc[0]
    assert verdict["best"] == "bilinear" and verdict["runner_up"] == "nearest" and bool(verdict["significant"])
    # the seed-0 cells stored their sampled ramp; the report draws it from there
    key = next(k for k, r in run.cells.items() if r.cell.seed == 0 and r.cell.interpolator == "bilinear")
    sampled = run.arrays(key)["sampled"]
    assert sampled.shape == (6, 6) and sampled.dtype == np.float16
    (tmp := run.root / "report.html").unlink()
    assert run.report() == tmp and "Sampled ramps" in tmp.read_text()
    assert "Run('run': fake, 8 cells, 0 failed)" == repr(bench.load("run"))


def test_the_cli_is_the_same_run(fake_suites, capsys):
    bench.run(suites="fake", interpolators="bilinear,nearest", profile="quick", out="api", fake={"levels": [2]})
    code, _, _ = run_cli(capsys, "run", "--suite", "fake", "--interpolators", "bilinear,nearest", "--quick",
                         "--option", "fake.levels=2", "--out", "cli", "--no-progress")
    assert code == 0
    api, cli = bench.load("api"), bench.load("cli")
    assert api.config == cli.config
    assert sorted(api.cells) == sorted(cli.cells)
    assert (fake_suites / "api/results.csv").read_bytes() == (fake_suites / "cli/results.csv").read_bytes()
    assert json.loads((fake_suites / "api/meta.json").read_text())["command"][0] == "bench.run"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"suites": "nope"}, "suites: unknown suite 'nope'"),
        ({"suites": "fake", "interpolators": ["zz*"]}, "'zz*' matches no interpolator"),
        ({"suites": "fake", "hparams": {"bilinear": {"padding_mode": "wrap"}}}, "padding_mode"),
        ({"suites": "fake", "profile": "huge"}, "profile: expected one of"),
        ({"suites": "fake", "seeds": 0}, "seeds: expected a positive integer"),
        ({"suites": "fake", "fake": {"nope": 1}}, "fake has no option 'nope'"),
        ({"suites": "fake", "fake": {"levels": [0]}}, "option fake.levels: expected comma-separated integers >= 1"),
        ({"suites": "fake", "fakebar": {"levels": [1]}}, "'fakebar' is not among the selected suites"),
        ({"suites": "fake", "images": "nowhere"}, "images: expected an existing folder"),
        ({"suites": "fake", "dataset": "mnist"}, "suite 'fake': dataset: expected 'ramp'"),
    ],
)
def test_bad_arguments_raise_and_write_nothing(fake_suites, kwargs, message):
    with pytest.raises(bench.UsageError, match=message.replace("(", r"\(").replace("*", r"\*")):
        bench.run(out="run", **kwargs)
    assert list(fake_suites.iterdir()) == []


def test_load_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(bench.UsageError, match="no meta.json"):
        bench.load(tmp_path)
