"""The command line end to end on the fake suites: run, failures, Ctrl-C, crash + resume, report, compare, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import scipy.stats
import torch
from fake_suite import SimulatedCrash, run_cli
from harness_fixtures import N_QUICK_CELLS, QUICK, write_fake_distribution

import interpolators
from bench.cli import build_parser, config_from_args
from bench.store import RunStore


TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: its mtime and content."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def cell_files(run: Path) -> dict[str, tuple[int, bytes]]:
    """The cell records (``cells/*.json``; their arrays, ``cells/*.npz``, are in :func:`array_files`)."""
    return {k: v for k, v in snapshot(run).items() if k.startswith("cells/") and k.endswith(".json")}


def array_files(run: Path) -> dict[str, tuple[int, bytes]]:
    return {k: v for k, v in snapshot(run).items() if k.startswith("cells/") and k.endswith(".npz")}


def ran_cells(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.fixture
def reference_run(fake_suites, reference_template) -> Path:
    """A copy of the reference run in the test's folder."""
    shutil.copytree(reference_template, fake_suites / "reference")
    return fake_suites / "reference"


class TestList:
    def test_smoke(self, fake_suites, capsys, monkeypatch, tmp_path):
        site = write_fake_distribution(
            tmp_path / "broken_site", {"broken": "no_such_module:Suite", "scale": "fake_suite:FakeSuite"}, "broken"
        )
        monkeypatch.syspath_prepend(str(site))
        code, out, _ = run_cli(capsys, "list")
        assert code == 0
        for name in interpolators.available():
            assert f"  {name}" in out
        assert "padding_mode: one of 'zeros', 'border', 'reflection' = 'zeros'" in out
        assert "fake: a ramp sampled at a few zoom levels (tests only) [x: level]" in out
        assert "broken: (not available: ModuleNotFoundError" in out
        assert "(suite plugin scale ignored: the name 'scale' is a built-in suite" in out


class TestRun:
    def test_run_folder(self, fake_suites, capsys):
        code, _, err = run_cli(capsys, "run", *QUICK, "--set", "bilinear.padding_mode=border")
        assert code == 0, err
        (run,) = (fake_suites / "runs").iterdir()
        assert re.fullmatch(r"fake-\d{8}-\d{6}", run.name)
        assert sorted(p.name for p in run.iterdir()) == [
            ".lock",  # the writer's lock, and the lock of rebuilding the tables and report (bench.store)
            ".outputs.lock",
            "cells",
            "meta.json",
            "report.html",
            "results.csv",
            "summary.csv",
        ]
        meta = json.loads((run / "meta.json").read_text())
        assert meta["config"] == {
            "suites": ["fake"],
            "interpolators": {"bilinear": {"padding_mode": "border"}, "nearest": {}},
            "device": "cpu" if not torch.cuda.is_available() else "cuda",
            "seeds": None,
            "profile": "quick",
            "options": {},
            "suite_options": {},
        }
        assert len(meta["planned"]) == N_QUICK_CELLS
        assert sorted(meta["planned"]) == sorted(p.stem for p in (run / "cells").glob("*.json"))
        env = meta["environment"]
        assert env["versions"]["torch"] is not None and env["versions"]["python"] == ".".join(
            map(str, sys.version_info[:3])
        )
        assert {"python", "torchvision", "kornia", "timm", "numpy", "pandas", "stn-interp-bench"} <= set(
            env["versions"]
        )
        assert env["device"]["cpu"] and env["torch_threads"] == torch.get_num_threads()
        assert env["deterministic_algorithms"] is torch.are_deterministic_algorithms_enabled() is False
        assert env["deterministic_warn_only"] is False
        assert set(env["git"]) == {"commit", "dirty", "changes"}
        assert meta["started"] <= meta["finished"] and meta["suites"]["fake"]["x_param"] == "level"
        assert meta["command"][:4] == ["python", "-m", "bench", "run"]

        record = json.loads(next((run / "cells").glob("*.json")).read_text())
        assert set(record) == {
            "key", "cell", "hparams", "status", "error", "started", "finished", "duration_s", "cause", "host",
            "arrays", "rows",
        }
        assert record["status"] == "ok" and record["error"] is None and record["duration_s"] >= 0
        assert record["cause"] is None and record["host"]["executor"] == "inline"
        assert record["host"]["threads"] == torch.get_num_threads() and record["host"]["torch"] == torch.__version__
        assert {"hostname", "cpu", "gpu"} <= set(record["host"])

        results = pd.read_csv(run / "results.csv")
        assert list(results.columns) == [
            "suite",
            "interpolator",
            "hparams",
            "level",
            "seed",
            "metric",
            "value",
            "unit",
            "image",
        ]
        assert len(results) == N_QUICK_CELLS * 3
        hparams = {name: json.loads(h) for name, h in results[["interpolator", "hparams"]].drop_duplicates().values}
        assert hparams == {  # the full hyperparameters, overrides merged over the defaults
            "bilinear": interpolators.create("bilinear", padding_mode="border").hparams(),
            "nearest": interpolators.create("nearest").hparams(),
        }
        # the fake suite's ramp: exact for bilinear, not for nearest
        errors = results[results.metric == "abs_error"].groupby("interpolator")["value"].max()
        assert errors["bilinear"] < 1e-9 < errors["nearest"]
        # the runner seeds torch with cell.seed before each cell
        noise = results[results.metric == "noise"]
        for seed, value in noise.groupby("seed")["value"].unique().items():
            torch.manual_seed(seed)
            assert value.tolist() == [pytest.approx(torch.rand(()).item())]

        summary = pd.read_csv(run / "summary.csv")
        assert len(summary) == 2 * 2 * 2  # interpolators x levels x metrics; the units (seeds, images) pooled
        assert summary.set_index("metric")["n"].to_dict() == {"abs_error": 2 * 2, "noise": 2}
        assert "image" not in summary.columns and "seed" not in summary.columns
        assert "fake" in (run / "report.html").read_text()

    def test_no_progress_bar_off_a_terminal(self, fake_suites, capsys):
        code, _, err = run_cli(capsys, "run", "--suite", "fake", "--interpolators", "nearest", "--quick", "--out", "r")
        assert code == 0
        assert "\r" not in err and "cell/s" not in err

    def test_two_suites_and_options(self, fake_suites, capsys):
        (fake_suites / "imgs").mkdir()
        code, _, err = run_cli(
            capsys, "run", "--suite", "fake,fakebar", "--suite", "fake", "--interpolators", "bi*", "--seeds", "1",
            "--quick", "--images", "imgs", "--dataset", "ramp", "--backbone", "timm:resnet18", "--no-progress",
        )  # fmt: skip
        assert code == 0, err
        (run,) = (fake_suites / "runs").iterdir()
        assert run.name.startswith("fake+fakebar-")
        config = RunStore.open(run).config()
        assert config.suites == ("fake", "fakebar")
        assert list(config.interpolators) == interpolators.available("bi*")
        assert config.seeds == 1
        assert config.options == {
            "images": str((fake_suites / "imgs").resolve()),
            "dataset": "ramp",
            "backbone": "timm:resnet18",
        }
        results = pd.read_csv(run / "results.csv")
        assert set(results["suite"]) == {"fake", "fakebar"} and set(results["seed"]) == {0}

    def test_default_interpolators_are_all_registered(self, fake_suites):
        args = build_parser().parse_args(["run", "--suite", "fake", "--device", "cpu"])
        config = config_from_args(args)
        assert list(config.interpolators) == interpolators.available()
        assert all(v == {} for v in config.interpolators.values())
        assert config.device == "cpu" and config.profile == "default" and config.options == {}

    def test_device_auto(self, fake_suites, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert config_from_args(build_parser().parse_args(["run", "--suite", "fake"])).device == "cpu"
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert (
            config_from_args(build_parser().parse_args(["run", "--suite", "fake", "--device", "auto"])).device == "cuda"
        )


class TestFailures:
    def test_failing_cell_is_recorded_and_the_run_goes_on(self, fake_suites, capsys, monkeypatch):
        monkeypatch.setenv("FAKE_SUITE_FAIL", "nearest:2:1")
        code, _, err = run_cli(capsys, "run", *QUICK, "--out", "run")
        assert code == 1
        assert "FAILED" in err and "told to fail at nearest:2:1" in err
        records = RunStore("run").read_cells()
        assert len(records) == N_QUICK_CELLS
        (failed,) = [r for r in records.values() if not r.ok]
        assert failed.cell.params == {"level": 2} and failed.cell.seed == 1
        assert failed.error.startswith("RuntimeError: told to fail at nearest:2:1") and failed.cause == "error"
        assert "Traceback" in failed.error and "fake_suite.py" in failed.error
        results = pd.read_csv("run/results.csv")
        assert len(results) == (N_QUICK_CELLS - 1) * 3
        html = Path("run/report.html").read_text()
        assert "told to fail at nearest:2:1" in html and "1 failed" in html

    def test_nan_is_a_failure(self, fake_suites, capsys, monkeypatch):
        monkeypatch.setenv("FAKE_SUITE_NAN", "bilinear:1:0")
        code, _, _ = run_cli(capsys, "run", *QUICK, "--out", "run")
        assert code == 1
        (failed,) = [r for r in RunStore("run").read_cells().values() if not r.ok]
        assert failed.error.startswith("CellError: non-finite value(s): abs_error=nan") and failed.cause == "invalid"
        assert len(failed.rows) == 3  # kept, to show which metric broke
        assert not pd.read_csv("run/results.csv")["value"].isna().any()

    def test_resume_reruns_failed_cells_only(self, fake_suites, capsys, monkeypatch, reference_run):
        monkeypatch.setenv("FAKE_SUITE_FAIL", "nearest:2:1,bilinear:1:0")
        assert run_cli(capsys, "run", *QUICK, "--out", "run")[0] == 1
        before = cell_files(Path("run"))
        monkeypatch.delenv("FAKE_SUITE_FAIL")
        monkeypatch.setenv("FAKE_SUITE_LOG", str(fake_suites / "log"))
        code, _, err = run_cli(capsys, "run", "--resume", "run")
        assert code == 0, err
        assert sorted(ran_cells(fake_suites / "log")) == ["fake:bilinear:1:0", "fake:nearest:2:1"]
        after = cell_files(Path("run"))
        changed = {k for k in after if after[k] != before[k]}
        assert len(changed) == 2
        assert Path("run/results.csv").read_bytes() == (reference_run / "results.csv").read_bytes()
        meta = json.loads(Path("run/meta.json").read_text())
        assert [s["ran"] for s in meta["sessions"]] == [N_QUICK_CELLS, 2]
        assert [s["failed"] for s in meta["sessions"]] == [2, 0]


class TestInterruptAndResume:
    def test_ctrl_c_saves_finished_cells_and_resume_finishes(self, fake_suites, capsys, monkeypatch, reference_run):
        monkeypatch.setenv("FAKE_SUITE_INTERRUPT", "nearest:1:0")  # the 5th cell
        code, _, err = run_cli(capsys, "run", *QUICK, "--out", "run")
        assert code == 130
        assert "interrupted" in err and "--resume run" in err
        before = cell_files(Path("run"))
        assert len(before) == 4
        arrays_before = array_files(Path("run"))
        assert len(arrays_before) == 2  # the seed-0 cells keep arrays
        meta = json.loads(Path("run/meta.json").read_text())
        assert meta["finished"] is None and meta["sessions"][0]["interrupted"] is True
        assert len(pd.read_csv("run/results.csv")) == 4 * 3  # the tables and report cover the finished cells
        assert "4 not run" in Path("run/report.html").read_text()

        monkeypatch.delenv("FAKE_SUITE_INTERRUPT")
        monkeypatch.setenv("FAKE_SUITE_LOG", str(fake_suites / "log"))
        code, _, _ = run_cli(capsys, "run", "--resume", "run")
        assert code == 0
        assert len(ran_cells(fake_suites / "log")) == N_QUICK_CELLS - 4
        after = cell_files(Path("run"))
        assert {k: after[k] for k in before} == before  # finished cells untouched: same mtime, same bytes
        arrays_after = array_files(Path("run"))
        assert {k: arrays_after[k] for k in arrays_before} == arrays_before and len(arrays_after) == 4
        assert Path("run/results.csv").read_bytes() == (reference_run / "results.csv").read_bytes()
        assert Path("run/summary.csv").read_bytes() == (reference_run / "summary.csv").read_bytes()
        assert json.loads(Path("run/meta.json").read_text())["finished"] is not None

    def test_crash_then_resume(self, fake_suites, capsys, monkeypatch, reference_run):
        monkeypatch.setenv("FAKE_SUITE_CRASH", "nearest:2:0")  # the 7th cell: the process "dies" there
        with pytest.raises(SimulatedCrash):
            run_cli(capsys, "run", *QUICK, "--out", "run")
        before = cell_files(Path("run"))
        assert len(before) == 6
        assert not Path("run/results.csv").exists()
        monkeypatch.delenv("FAKE_SUITE_CRASH")
        code, _, _ = run_cli(capsys, "run", "--resume", "run", *QUICK)  # the same options again are fine
        assert code == 0
        after = cell_files(Path("run"))
        assert {k: after[k] for k in before} == before
        assert Path("run/results.csv").read_bytes() == (reference_run / "results.csv").read_bytes()

    def test_killed_process_then_resume(self, fake_suites, capsys, reference_run):
        env = os.environ | {  # the fixture's PYTHONPATH holds the fake suites' distribution
            "FAKE_SUITE_EXIT": "bilinear:2:1",  # the 4th cell: os._exit, as if killed
            "OMP_NUM_THREADS": "1",
        }
        argv = [sys.executable, "-m", "bench", "run", *QUICK, "--out", "run"]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 3, done.stderr
        before = cell_files(Path("run"))
        assert len(before) == 3 and not any(Path("run/cells").glob(".*"))
        assert run_cli(capsys, "run", "--resume", "run")[0] == 0
        after = cell_files(Path("run"))
        assert {k: after[k] for k in before} == before
        assert Path("run/results.csv").read_bytes() == (reference_run / "results.csv").read_bytes()

    def test_resume_of_a_finished_run_runs_nothing(self, fake_suites, capsys, reference_run):
        before = cell_files(reference_run)
        code, _, err = run_cli(
            capsys, "run", "--resume", str(reference_run), "--quick", "--interpolators", "bilinear,nearest"
        )
        assert code == 0 and "0 cell(s) run" in err
        assert cell_files(reference_run) == before


class TestReportAndCompare:
    def test_report_rebuilds_from_cells(self, fake_suites, capsys, reference_run):
        tables = {name: (reference_run / name).read_bytes() for name in ("results.csv", "summary.csv")}
        for name in ("results.csv", "summary.csv", "report.html"):
            (reference_run / name).unlink()
        code, _, err = run_cli(capsys, "report", str(reference_run))
        assert code == 0, err
        assert {name: (reference_run / name).read_bytes() for name in tables} == tables
        assert (reference_run / "report.html").stat().st_size > 1000

    def test_compare(self, fake_suites, capsys, reference_run, monkeypatch):
        monkeypatch.setenv("FAKE_SUITE_NAN", "nearest:2:1")  # b lacks one cell (it failed)
        assert run_cli(capsys, "run", *QUICK, "--seeds", "3", "--out", "b")[0] == 1
        code, out, _ = run_cli(capsys, "compare", str(reference_run), "b", "--out", "cmp/diff.csv")
        assert code == 0
        assert f"a = {reference_run}" in out and "b-a [95% CI]" in out
        table = pd.read_csv("cmp/diff.csv")
        assert list(table.columns) == [
            "suite", "interpolator", "hparams", "level", "metric", "unit",
            "n_a", "n_b", "a", "b", "b-a", "ci_low", "ci_high", "rel_change", "p", "test", "significant",
        ]  # fmt: skip
        assert len(table) == 2 * 2 * 2  # interpolators x levels x metrics: seeds and images are the units
        results_a, results_b = pd.read_csv(reference_run / "results.csv"), pd.read_csv("b/results.csv")
        at = "metric == 'noise' and interpolator == 'bilinear' and level == 1"
        a_values, b_values = results_a.query(at)["value"], results_b.query(at)["value"]
        noise = table.query(at).iloc[0]
        assert noise["a"] == pytest.approx(a_values.mean()) and noise["b"] == pytest.approx(b_values.mean())
        assert noise["b-a"] == pytest.approx(b_values.mean() - a_values.mean())
        assert noise["rel_change"] == pytest.approx(noise["b-a"] / abs(noise["a"]))
        # seeds 0, 1 against 0, 1, 2: not the same units, so Welch's test, as scipy computes it
        assert noise["test"] == "Welch t" and (noise["n_a"], noise["n_b"]) == (2, 3)
        assert noise["p"] == pytest.approx(scipy.stats.ttest_ind(b_values, a_values, equal_var=False).pvalue)
        nearest_2 = table.query("interpolator == 'nearest' and level == 2 and metric == 'abs_error'").iloc[0]
        assert nearest_2["n_b"] == 2 * 2  # seeds 0 and 2 still count, two images each
        # the ramp's error does not depend on the seed: the same in both runs, a tie
        assert nearest_2["test"] == "equal" and not nearest_2["significant"]
        assert all(len(line) <= 80 for line in out.splitlines())

    def test_compare_pairs_the_units_and_flags_differences(self, fake_suites, capsys, reference_run):
        assert run_cli(capsys, "run", *QUICK, "--option", "fake.scale_noise=2", "--out", "b")[0] == 0
        table = _compare(capsys, reference_run, "b")
        noise = table.query("metric == 'noise' and interpolator == 'nearest' and level == 2").iloc[0]
        a_values = pd.read_csv(reference_run / "results.csv").query(
            "metric == 'noise' and interpolator == 'nearest' and level == 2").sort_values("seed")["value"]
        # b = 2 a on the same seeds: a paired test of the differences a
        assert noise["test"] == "paired t" and noise["b-a"] == pytest.approx(a_values.mean())
        assert noise["p"] == pytest.approx(scipy.stats.ttest_rel(2 * a_values, a_values).pvalue)

    def test_compare_warns_when_nothing_is_shared(self, fake_suites, capsys, reference_run):
        assert run_cli(capsys, "run", "--suite", "fakebar", *QUICK[2:], "--out", "b")[0] == 0
        code, out, err = run_cli(capsys, "compare", str(reference_run), "b")
        assert code == 0
        assert "warning: the runs share no group" in err and "['fake']" in err and "['fakebar']" in err

    def test_compare_survives_a_closed_pipe(self, fake_suites, capsys, reference_run):
        assert run_cli(capsys, "run", *QUICK, "--seeds", "3", "--out", "b")[0] == 0
        env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO)]), "OMP_NUM_THREADS": "1"}
        argv = [sys.executable, "-m", "bench", "compare", str(reference_run), "b"]
        with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            process.stdout.close()  # like `| head` that has read what it wanted
            _, err = process.communicate(timeout=120)
        assert process.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err

    def test_compare_ignoring_hparams(self, fake_suites, capsys, reference_run):
        assert run_cli(capsys, "run", *QUICK, "--set", "bilinear.padding_mode=border", "--out", "b")[0] == 0
        table = _compare(capsys, reference_run, "b")
        assert table["b"].isna().sum() == 4 and table["a"].isna().sum() == 4  # bilinear's hparams differ
        table = _compare(capsys, reference_run, "b", "--ignore-hparams")
        assert len(table) == 8 and table[["a", "b"]].notna().all().all()
        assert (table["b-a"].abs() < 1e-12).all()  # padding does not touch the interior


def _compare(capsys, *argv) -> pd.DataFrame:
    code, _, _ = run_cli(capsys, "compare", *map(str, argv), "--out", "t.csv")
    assert code == 0
    return pd.read_csv("t.csv")


BAD_INPUT = {
    "no suite": (["run", "--interpolators", "bilinear"], ["--suite", "'fake'"]),
    "unknown suite": (["run", "--suite", "fake,nope"], ["unknown suite 'nope'", "'fake'", "'all'"]),
    "unknown interpolator": (
        ["run", "--suite", "fake", "--interpolators", "bilinear,nope"],
        ["unknown interpolator 'nope'", "'bilinear'"],
    ),
    "empty interpolators": (["run", "--suite", "fake", "--interpolators", ","], ["no interpolator given"]),
    "wildcard matching nothing": (
        ["run", "--suite", "fake", "--interpolators", "zz*"],
        ["'zz*' matches no interpolator"],
    ),
    "malformed set": (["run", "--suite", "fake", "--set", "bilinear=3"], ["expected NAME.HPARAM=VALUE"]),
    "unknown hparam": (
        ["run", "--suite", "fake", "--set", "bilinear.nope=1"],
        ["no hyperparameter 'nope'", "padding_mode"],
    ),
    "bad choice": (
        ["run", "--suite", "fake", "--set", "bilinear.padding_mode=wrap"],
        ["bilinear.padding_mode", "'zeros'", "'wrap'"],
    ),
    "bad bool": (
        ["run", "--suite", "fake", "--set", "bilinear.align_corners=maybe"],
        ["bilinear.align_corners", "bool", "'maybe'"],
    ),
    "set on unselected": (
        ["run", "--suite", "fake", "--interpolators", "bilinear", "--set", "nearest.align_corners=true"],
        ["'nearest' is not among the selected interpolators"],
    ),
    "set on unknown": (["run", "--suite", "fake", "--set", "nope.x=1"], ["unknown interpolator 'nope'"]),
    "quick and full": (["run", "--suite", "fake", "--quick", "--full"], ["not allowed with argument"]),
    "zero seeds": (["run", "--suite", "fake", "--seeds", "0"], ["positive integer"]),
    "bad device": (["run", "--suite", "fake", "--device", "tpu"], ["invalid choice: 'tpu'", "'cuda'"]),
    "missing images": (["run", "--suite", "fake", "--images", "nowhere"], ["--images", "'nowhere'", "existing folder"]),
    "bad backbone": (["run", "--suite", "fake", "--backbone", "resnet18"], ["timm:NAME"]),
    "accuracy from non-run": (
        ["run", "--suite", "fake", "--accuracy-from", "empty"],
        ["--accuracy-from", "no meta.json"],
    ),
    "suite rejects option": (
        ["run", "--suite", "fake", "--dataset", "mnist"],
        ["suite 'fake'", "dataset: expected 'ramp'"],
    ),
    "out not empty": (
        ["run", "--suite", "fake", "--out", "full"],
        ["--out full", "not an empty folder", "choose another folder"],
    ),
    "out is a run": (
        ["run", "--suite", "fake", "--out", "arun"],
        ["--out arun", "not an empty folder", "finish that run with --resume arun"],
    ),
    "out is a file": (["run", "--suite", "fake", "--out", "full/x.txt"], ["--out full/x.txt", "is a file, not a folder"]),
    "out under a file": (
        ["run", "--suite", "fake", "--out", "full/x.txt/run"],
        ["--out full/x.txt/run", "full/x.txt is a file, so no folder can be made under it"],
    ),
    "out name too long": (["run", "--suite", "fake", "--out", "n" * 300], ["is 300 bytes long", "at most 255"]),
    "out path too long": (
        ["run", "--suite", "fake", "--out", "/".join(["p" * 200] * 25)],
        ["characters)", "bytes long; a run folder's path may be at most"],
    ),
    "too many seeds": (["run", "--suite", "fake", "--seeds", str(10**30)], ["--seeds: expected at most 1000 seeds"]),
    "too many seeds in a config": (["run", "--config", "seeds.toml"], ["seeds: expected at most 1000 seeds"]),
    "resume non-run": (["run", "--resume", "empty"], ["--resume", "not a run folder", "no meta.json"]),
    "resume missing": (["run", "--resume", "nowhere"], ["--resume", "nowhere is not a folder"]),
    "report non-run": (["report", "empty"], ["not a run folder"]),
    "malformed option": (["run", "--suite", "fake", "--option", "levels=3"], ["expected SUITE.KEY=VALUE"]),
    "option of unknown suite": (["run", "--suite", "fake", "--option", "nope.x=1"], ["unknown suite 'nope'"]),
    "option of unselected suite": (
        ["run", "--suite", "fake", "--option", "fakebar.levels=1"],
        ["'fakebar' is not among the selected suites"],
    ),
    "unknown option": (["run", "--suite", "fake", "--option", "fake.nope=1"], ["no option 'nope'", "'levels'"]),
    "option of the wrong type": (
        ["run", "--suite", "fake", "--option", "fake.levels=1,two"],
        ["--option fake.levels", "comma-separated integers", "'two'"],
    ),
    "option below its minimum": (
        ["run", "--suite", "fake", "--option", "fake.scale_noise=-1"],
        ["--option fake.scale_noise", ">= 0", "-1"],
    ),
    "missing config file": (["run", "--config", "nowhere.toml"], ["--config nowhere.toml", "expected a TOML file"]),
    "config with an unknown key": (["run", "--config", "bad-key.toml"], ["unknown key(s) ['suite']"]),
    "config that is not TOML": (["run", "--config", "not.toml"], ["not valid TOML"]),
    "config with a bad hparam": (["run", "--config", "bad-set.toml"], ["no hyperparameter 'nope'"]),
    "dry run of a bad option": (["run", "--suite", "fake", "--option", "fake.levels=0", "--dry-run"], [">= 1"]),
    "compare non-run": (["compare", "empty", "full"], ["RUN_A", "not a run folder"]),
    "unknown command": (["frobnicate"], ["invalid choice: 'frobnicate'"]),
    "no command": ([], ["required: COMMAND"]),
}


@pytest.mark.parametrize(("argv", "expected"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_exits_2_and_writes_nothing(fake_suites, capsys, argv, expected):
    (fake_suites / "empty").mkdir()
    (fake_suites / "full").mkdir()
    (fake_suites / "full" / "x.txt").write_text("x")
    (fake_suites / "bad-key.toml").write_text('suite = "fake"\n')
    (fake_suites / "not.toml").write_text("suites = [fake\n")
    (fake_suites / "bad-set.toml").write_text('suites = "fake"\n[set.bilinear]\nnope = 1\n')
    (fake_suites / "seeds.toml").write_text(f'suites = "fake"\nseeds = {10**30}\n')
    (fake_suites / "arun").mkdir()
    (fake_suites / "arun" / "meta.json").write_text(json.dumps({"format": 1, "config": {"suites": ["fake"],
                                                                                         "interpolators": {}}}))
    before = snapshot(fake_suites) | {"dirs": sorted(str(p) for p in fake_suites.rglob("*"))}
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    for fragment in expected:
        assert fragment in err, (fragment, err)
    assert snapshot(fake_suites) | {"dirs": sorted(str(p) for p in fake_suites.rglob("*"))} == before


@pytest.fixture
def ranged_interpolator():
    """A registered interpolator whose hyperparameter has a range that only ``__init__`` checks."""

    class Ranged(interpolators.Interpolator):
        def __init__(self, width: float = 1.0, padding_mode="zeros", align_corners: bool = False) -> None:
            super().__init__(padding_mode, align_corners)
            if width <= 0:
                raise ValueError(f"width: expected a value > 0, got {width!r}")
            self.width = width

        def sample(self, input, grid, generator):
            return torch.nn.functional.grid_sample(input, grid, align_corners=self.align_corners)

    interpolators.register(Ranged, name="test_ranged_cli")
    yield "test_ranged_cli"
    interpolators.unregister("test_ranged_cli")


def test_value_out_of_range_exits_2(fake_suites, capsys, ranged_interpolator):
    code, _, err = run_cli(
        capsys, "run", "--suite", "fake", "--interpolators", ranged_interpolator, "--set", "test_ranged_cli.width=-1"
    )
    assert code == 2
    assert "--set test_ranged_cli.width=-1.0: width: expected a value > 0, got -1.0" in err
    assert list(fake_suites.iterdir()) == []


def test_cuda_without_cuda_exits_2(fake_suites, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli(capsys, "run", "--suite", "fake", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err and "--device cpu" in err
    assert not (fake_suites / "runs").exists()


class TestOptionsAndConfig:
    @pytest.mark.parametrize("option", ["scale.trials=1000000000", "gradients.grid=100000", "cost.sizes=64,100000",
                                        "classify.epochs=1000000000"])
    def test_options_that_scale_time_or_memory_have_a_maximum(self, tmp_path, capsys, monkeypatch, option):
        monkeypatch.chdir(tmp_path)
        code, _, err = run_cli(capsys, "run", "--suite", option.split(".")[0], "--option", option, "--out", "run")
        assert code == 2 and not (tmp_path / "run").exists()
        assert f"--option {option.split('=')[0]}" in err and "<=" in err, err

    def test_option_reaches_the_suite(self, fake_suites, capsys):
        code, _, err = run_cli(capsys, "run", *QUICK, "--option", "fake.levels=1,4", "--out", "run")
        assert code == 0, err
        config = RunStore.open("run").config()
        assert config.suite_options == {"fake": {"levels": [1, 4]}} and config.options == {}
        assert sorted(pd.read_csv("run/results.csv")["level"].unique()) == [1, 4]

    def test_config_file_and_flags_over_it(self, fake_suites, capsys):
        (fake_suites / "imgs").mkdir()
        Path("run.toml").write_text(
            'suites = ["fake"]\ninterpolators = "bilinear,nearest"\nprofile = "quick"\nseeds = 1\nimages = "imgs"\n'
            "[set.bilinear]\npadding_mode = \"border\"\n[option.fake]\nlevels = [1, 2]\nscale_noise = 0.5\n"
        )
        code, _, err = run_cli(capsys, "run", "--config", "run.toml", "--option", "fake.levels=4", "--seeds", "2",
                               "--out", "run", "--no-progress")
        assert code == 0, err
        config = RunStore.open("run").config()
        assert config.suites == ("fake",) and config.profile == "quick" and config.seeds == 2  # the flag wins
        assert config.interpolators == {"bilinear": {"padding_mode": "border"}, "nearest": {}}
        assert config.suite_options == {"fake": {"levels": [4], "scale_noise": 0.5}}
        assert config.options == {"images": str((fake_suites / "imgs").resolve())}  # relative to the file

    def test_dry_run_prints_the_plan_and_writes_nothing(self, fake_suites, capsys):
        before = snapshot(fake_suites)
        code, out, _ = run_cli(capsys, "run", *QUICK, "--option", "fake.levels=1,2,4", "--dry-run")
        assert code == 0 and snapshot(fake_suites) == before and not (fake_suites / "runs").exists()
        assert "dry run (nothing is written)" in out
        assert "fake" in out and "12 cells" in out and "2 interpolators x 3 level x 2 seeds" in out
        assert "? (no estimate)" in out  # the fake suite has no time estimate

    def test_dry_run_of_the_main_job_estimates_its_time(self, tmp_path, capsys, monkeypatch):
        monkeypatch.chdir(tmp_path)
        code, out, _ = run_cli(capsys, "run", "--suite", "scale,cost", "--interpolators", "bilinear,lstn",
                               "--dry-run", "--device", "cpu")
        assert code == 0 and list(tmp_path.iterdir()) == []
        assert "scale         30 cells" in out and "cost          16 cells" in out
        seconds = [float(m) for m in re.findall(r"~(\d+(?:\.\d+)?) s", out)]
        assert len(seconds) == 3 and seconds[-1] == pytest.approx(seconds[0] + seconds[1], abs=1)

    def test_dry_run_of_a_resume_counts_what_is_left(self, fake_suites, capsys, reference_run):
        (reference_run / "cells" / next(p.name for p in (reference_run / "cells").glob("*.json"))).unlink()
        code, out, _ = run_cli(capsys, "run", "--resume", str(reference_run), "--dry-run")
        assert code == 0 and "resume" in out and "1 cells (7 done)" in out

    def test_list_shows_the_suites_options(self, fake_suites, capsys):
        code, out, _ = run_cli(capsys, "list")
        assert code == 0 and "--option fake.levels=...  comma-separated integers >= 1: the zoom levels" in out


class TestResumeGuards:
    @pytest.mark.parametrize(
        ("extra", "expected"),
        [
            (["--seeds", "3"], "seeds: run has None, this command asks for 3"),
            (["--full"], "profile: run has 'quick'"),
            (["--interpolators", "bilinear"], "interpolators: run has"),
            (["--set", "bilinear.padding_mode=border"], "interpolators: run has"),
            (["--suite", "fakebar"], "suites: run has ['fake']"),
            (["--dataset", "ramp"], "options: run has {}"),
            (["--option", "fake.levels=1"], "suite_options: run has {}"),
            (["--out", "elsewhere"], "stays in its folder"),
        ],
    )
    def test_different_config_is_refused(self, fake_suites, capsys, reference_run, extra, expected):
        before = snapshot(fake_suites)
        code, _, err = run_cli(capsys, "run", "--resume", str(reference_run), *extra)
        assert code == 2
        assert expected in err, err
        assert snapshot(fake_suites) == before

    def test_cuda_run_on_a_machine_without_cuda(self, fake_suites, capsys, reference_run, monkeypatch):
        meta = json.loads((reference_run / "meta.json").read_text())
        meta["config"]["device"] = "cuda"
        (reference_run / "meta.json").write_text(json.dumps(meta))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        code, _, err = run_cli(capsys, "run", "--resume", str(reference_run))
        assert code == 2 and "uses CUDA, which is not available here" in err
