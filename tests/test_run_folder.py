"""A run folder cannot be corrupted or silently mixed: kills while it is made, two writers, tampered cell files.

End to end on the fake suites, with real processes where the point is a real kill or a
second process: a SIGKILL at the moment between making the folder and writing
``meta.json`` leaves a folder ``--out`` takes; two ``--resume`` of one run cannot both
write it (the second exits 2 naming the first's pid) and no cell runs twice; a
``bench report`` while a run writes reads a consistent snapshot and the run's final
report is the last; unreadable, foreign and non-finite cell files are named, left out
of every count and table, set aside by ``--resume`` and their cells run again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fake_suite import run_cli
from harness_fixtures import N_QUICK_CELLS, QUICK, wait_for

import bench
from bench.store import RunStore

#: bound on every wait for a process or a file
WAIT_S = 120


@pytest.fixture
def reference_run(fake_suites, reference_template) -> Path:
    shutil.copytree(reference_template, fake_suites / "reference")
    return fake_suites / "reference"


def bench_process(*argv: str, prelude: str = "", **env: str) -> subprocess.Popen:
    """``python -m bench ARGV`` in a process of its own (``prelude``: Python run first, e.g. to plant a kill)."""
    code = f"import sys\n{prelude}\nfrom bench.cli import main\nsys.exit(main(sys.argv[1:]))"
    log = open("process.log", "a+")
    return subprocess.Popen([sys.executable, "-c", code, *argv], env=os.environ | {"OMP_NUM_THREADS": "1"} | env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)


def process_log() -> str:
    return Path("process.log").read_text() if Path("process.log").exists() else ""


def ran_cells(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def lock_holder(run: Path) -> int | None:
    """The pid the run's lock file names (``None`` while nobody holds it)."""
    try:
        return json.loads((run / ".lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


#: SIGKILL this process the moment it is about to write something into the new run folder: ``meta.json``
#: itself (before the temporary file is moved into place), or anything else before ``meta.json`` exists
KILL_BEFORE_META = """
import os, signal
import bench.store as store
_replace = os.replace
def _kill_at_meta(src, dst):
    if os.path.basename(dst) == "meta.json" and not os.path.exists(dst):
        os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst)
store.os.replace = _kill_at_meta
"""


class TestKilledWhileMakingTheFolder:
    def test_sigkill_before_meta_leaves_a_folder_out_takes(self, fake_suites, capsys, reference_run):
        head = bench_process("run", *QUICK, "--out", "run", prelude=KILL_BEFORE_META)
        assert head.wait(timeout=WAIT_S) == -signal.SIGKILL, process_log()
        assert not Path("run/meta.json").exists()
        # --resume says what to do instead of "not a run folder" alone
        code, _, err = run_cli(capsys, "run", "--resume", "run")
        assert code == 2 and "start the run again with --out run" in err
        code, _, err = run_cli(capsys, "run", *QUICK, "--out", "run")
        assert code == 0, err
        assert Path("run/results.csv").read_bytes() == (reference_run / "results.csv").read_bytes()
        assert not any(p.name.endswith(".tmp") for p in Path("run").iterdir())

    def test_the_folder_an_older_version_left_is_taken(self, fake_suites, capsys, reference_run):
        Path("run/cells").mkdir(parents=True)  # killed between mkdir cells/ and the first meta.json
        code, _, err = run_cli(capsys, "run", *QUICK, "--out", "run")
        assert code == 0, err
        assert Path("run/results.csv").read_bytes() == (reference_run / "results.csv").read_bytes()

    @pytest.mark.parametrize("moment", ["a first cell", "a fifth cell"])
    def test_sigkill_during_the_run_leaves_a_run_resume_finishes(self, fake_suites, capsys, reference_run, moment):
        head = bench_process("run", *QUICK, "--out", "run", FAKE_SUITE_SLEEP_S="0.2")
        count = 1 if moment == "a first cell" else 5
        try:
            wait_for(lambda: len(list(Path("run/cells").glob("*.json"))) >= count, moment, WAIT_S)
            head.kill()
            head.wait(timeout=WAIT_S)
        finally:
            head.kill()
        assert RunStore.is_run("run") and RunStore("run").bad_cells() == []
        code, _, err = run_cli(capsys, "run", "--resume", "run")
        assert code == 0, err
        assert Path("run/results.csv").read_bytes() == (reference_run / "results.csv").read_bytes()


class TestOneWriter:
    def test_a_second_resume_exits_2_naming_the_first(self, fake_suites, capsys, reference_run, reference_template):
        cells = sorted(Path(reference_run, "cells").glob("*.json"))
        for path in cells[:5]:
            path.unlink()
        log = fake_suites / "log"
        first = bench_process("run", "--resume", str(reference_run), FAKE_SUITE_SLEEP_S="0.5",
                              FAKE_SUITE_LOG=str(log))
        try:
            wait_for(lambda: lock_holder(reference_run) == first.pid and ran_cells(log), "the first resume's cells",
                     WAIT_S)
            code, _, err = run_cli(capsys, "run", "--resume", str(reference_run))
            assert code == 2
            assert f"is being written by another process (pid {first.pid} on " in err and "--resume" in err
            assert first.wait(timeout=WAIT_S) == 0, process_log()
        finally:
            first.kill()
        assert sorted(ran_cells(log)) == sorted(set(ran_cells(log))) and len(ran_cells(log)) == 5  # each ran once
        meta = json.loads((reference_run / "meta.json").read_text())
        assert [s["ran"] for s in meta["sessions"]] == [N_QUICK_CELLS, 5]  # no session record lost
        assert lock_holder(reference_run) is None
        assert (reference_run / "results.csv").read_bytes() == (reference_template / "results.csv").read_bytes()
        code, _, err = run_cli(capsys, "run", "--resume", str(reference_run))  # free again
        assert code == 0 and "0 cell(s) run" in err

    def test_a_killed_writer_leaves_no_lock(self, fake_suites, capsys, reference_run, reference_template):
        for path in sorted(Path(reference_run, "cells").glob("*.json"))[:3]:
            path.unlink()
        first = bench_process("run", "--resume", str(reference_run), FAKE_SUITE_SLEEP_S="30")
        try:
            wait_for(lambda: lock_holder(reference_run) == first.pid, "the lock", WAIT_S)
            first.kill()
            first.wait(timeout=WAIT_S)
        finally:
            first.kill()
        code, _, err = run_cli(capsys, "run", "--resume", str(reference_run))
        assert code == 0, err
        assert (reference_run / "results.csv").read_bytes() == (reference_template / "results.csv").read_bytes()

    def test_a_report_while_the_run_writes(self, fake_suites, capsys, reference_template):
        head = bench_process("run", *QUICK, "--out", "run", FAKE_SUITE_SLEEP_S="0.4")
        try:
            wait_for(lambda: len(list(Path("run/cells").glob("*.json"))) >= 2, "two cells", WAIT_S)
            code, _, err = run_cli(capsys, "report", "run")
            assert code == 0, err
            status = re.search(r"(\d+) OK</span>.* of (\d+) planned cells", Path("run/report.html").read_text())
            ok, planned = int(status.group(1)), int(status.group(2))
            assert 2 <= ok <= planned == N_QUICK_CELLS
            assert len(pd.read_csv("run/results.csv")) == 3 * ok  # the tables and the report of one snapshot
            assert head.wait(timeout=WAIT_S) == 0, process_log()
        finally:
            head.kill()
        assert Path("run/results.csv").read_bytes() == (reference_template / "results.csv").read_bytes()
        assert f"{N_QUICK_CELLS} OK" in Path("run/report.html").read_text()


# --- tampered cell files -------------------------------------------------------------------------------------


def spoil(run: Path, how: str) -> tuple[str, str | None]:
    """Spoil one cell file of ``run``; returns its name and the planned cell it held (``None``: none)."""
    path = sorted((run / "cells").glob("*.json"))[2]
    key = path.stem
    data = json.loads(path.read_text())
    if how == "truncated":
        path.write_text(path.read_text()[:100])
    elif how == "list":
        path.write_text("[]")
    elif how == "folder":
        path.unlink()
        path.mkdir()
    elif how == "nan in an ok cell":
        data["rows"][0]["value"] = float("nan")
        path.write_text(json.dumps(data))
    elif how == "foreign":  # a cell of another run copied in
        data["cell"]["seed"] = 99
        key = None
        from suites.base import Cell

        data["key"] = Cell.from_json(data["cell"]).key
        path = path.with_name(f"{data['key']}.json")
        path.write_text(json.dumps(data))
    else:
        raise AssertionError(how)
    return path.name, key


SPOILS = ["truncated", "list", "folder", "nan in an ok cell", "foreign"]


class TestTamperedCells:
    @pytest.mark.parametrize("how", SPOILS)
    def test_report_names_it_and_counts_only_usable_cells(self, fake_suites, capsys, reference_run, how):
        name, key = spoil(reference_run, how)
        code, _, err = run_cli(capsys, "report", str(reference_run))
        assert code == 0, err
        assert f"warning: cells/{name} is left out: " in err and "--resume" in err
        ok = N_QUICK_CELLS if key is None else N_QUICK_CELLS - 1
        html = (reference_run / "report.html").read_text()
        assert f"{ok} OK</span>" in html and f"of {N_QUICK_CELLS} planned cells" in html  # never "9 OK of 8"
        summary = pd.read_csv(reference_run / "summary.csv")
        assert summary["mean"].notna().all()
        assert len(pd.read_csv(reference_run / "results.csv")) == 3 * ok
        with pytest.warns(UserWarning, match=re.escape(f"cells/{name} is left out")):
            assert len(bench.load(reference_run).cells) == ok

    @pytest.mark.parametrize("how", SPOILS)
    def test_resume_sets_it_aside_and_runs_its_cell_again(self, fake_suites, capsys, reference_run,
                                                          reference_template, how, monkeypatch):
        name, key = spoil(reference_run, how)
        log = fake_suites / "log"
        monkeypatch.setenv("FAKE_SUITE_LOG", str(log))
        code, _, err = run_cli(capsys, "run", "--resume", str(reference_run))
        assert code == 0, err
        assert f"set aside cells/{name} (" in err
        aside = reference_run / "cells" / "set-aside"
        assert os.path.lexists(aside / name) and f"cells/{name}: " in (aside / f"{name}.reason.txt").read_text()
        assert len(ran_cells(log)) == (0 if key is None else 1)
        assert (reference_run / "results.csv").read_bytes() == (reference_template / "results.csv").read_bytes()
        session = json.loads((reference_run / "meta.json").read_text())["sessions"][-1]
        assert session["set_aside"][0]["file"] == f"cells/{name}"


class TestMetaFile:
    @pytest.mark.parametrize("command", ["report", "resume"])
    def test_another_format_exits_2(self, fake_suites, capsys, reference_run, command):
        meta = json.loads((reference_run / "meta.json").read_text())
        meta["format"] = 2
        (reference_run / "meta.json").write_text(json.dumps(meta))
        before = {p: p.read_bytes() for p in reference_run.rglob("*") if p.is_file()}
        argv = ["report", str(reference_run)] if command == "report" else ["run", "--resume", str(reference_run)]
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "meta.json is format 2, and this version of stn-interp-bench reads format 1" in err
        assert {p: p.read_bytes() for p in reference_run.rglob("*") if p.is_file()} == before

    def test_without_sessions(self, fake_suites, capsys, reference_run):
        meta = json.loads((reference_run / "meta.json").read_text())
        del meta["sessions"]
        (reference_run / "meta.json").write_text(json.dumps(meta))
        next((reference_run / "cells").glob("*.json")).unlink()
        assert run_cli(capsys, "report", str(reference_run))[0] == 0
        code, _, err = run_cli(capsys, "run", "--resume", str(reference_run))
        assert code == 0, err
        assert len(json.loads((reference_run / "meta.json").read_text())["sessions"]) == 1
