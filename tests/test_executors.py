"""``--executor local`` end to end on the fake suites: real worker processes through submitit's LocalExecutor.

A local run equals an inline run cell for cell; a cell process killed by SIGKILL, one that
segfaults, one past ``--cell-timeout`` and one out of memory are stored as failed with their
cause; a worker killed from outside, a head stopped by Ctrl-C and a head that died are
recovered by ``--resume``; exclusive cells run alone with every thread.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from fake_suite import run_cli
from harness_fixtures import N_QUICK_CELLS, QUICK
from harness_fixtures import wait_for as _wait_for

import suites
from bench.store import RunStore

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local executor forks a process per cell")

LOCAL = ("--executor", "local", "--jobs", "2")
#: bound on every wait for a process or a file in these tests
WAIT_S = 120


def wait_for(predicate, what: str, timeout: float = WAIT_S):
    return _wait_for(predicate, what, timeout)


def cell_key(run: Path, ident: str) -> str:
    """The key of the fake cell ``interpolator:level:seed`` in ``run``."""
    name, level, seed = ident.split(":")
    for record in RunStore(run).read_cells().values():
        cell = record.cell
        if (cell.interpolator, cell.params["level"], cell.seed) == (name, int(level), int(seed)):
            return record.key
    raise KeyError(ident)


def results_without_hosts(run: Path) -> dict[str, tuple]:
    """Per cell: its status and rows (what must not depend on where the cell ran)."""
    return {key: (r.status, r.cell, r.hparams, r.rows) for key, r in RunStore(run).read_cells().items()}


class TestLocal:
    def test_equals_inline_cell_for_cell(self, fake_suites, capsys, monkeypatch, reference_template):
        monkeypatch.setenv("FAKE_SUITE_RENDEZVOUS", str(fake_suites / "rendezvous"))  # both workers get cells
        code, _, err = run_cli(capsys, "run", *QUICK, *LOCAL, "--out", "run")
        assert code == 0, err
        assert results_without_hosts(Path("run")) == results_without_hosts(reference_template)
        assert Path("run/results.csv").read_bytes() == (reference_template / "results.csv").read_bytes()
        assert Path("run/summary.csv").read_bytes() == (reference_template / "summary.csv").read_bytes()

        records = RunStore("run").read_cells().values()
        hosts = [record.host for record in records]
        assert {h["executor"] for h in hosts} == {"local"} and {h["attempt"] for h in hosts} == {1}
        assert {h["threads"] for h in hosts} == {max(1, torch.get_num_threads() // 2)}
        assert len({h["job_id"] for h in hosts}) == 2  # the two workers shared the cells
        # each worker forked one cell process, which ran all its cells (none died)
        assert len({(h["job_id"], h["pid"]) for h in hosts}) == 2 and len({h["pid"] for h in hosts}) == 2
        assert all(h["pid"] not in (os.getpid(), int(h["job_id"])) for h in hosts)
        assert all(r.duration_s < 30 for r in records)  # the rendezvous met: the two workers ran at once

        meta = json.loads(Path("run/meta.json").read_text())
        session = meta["sessions"][0]
        assert session["executor"]["name"] == "local" and session["executor"]["jobs"] == 2
        assert sorted(session["jobs"]) == sorted({h["job_id"] for h in hosts})
        assert (Path("run") / session["jobs_dir"] / "claims").is_dir()

    def test_cpus_per_cell(self, fake_suites, capsys):
        code, _, err = run_cli(capsys, "run", "--suite", "fake", "--interpolators", "nearest", "--quick", "--seeds",
                               "1", "--no-progress", "--executor", "local", "--jobs", "1", "--executor-option",
                               "cpus_per_cell=3", "--out", "run")
        assert code == 0, err
        assert {r.host["threads"] for r in RunStore("run").read_cells().values()} == {3}

    def test_failures_carry_their_cause_and_resume_finishes(self, fake_suites, capsys, monkeypatch, reference_template):
        monkeypatch.setenv("FAKE_SUITE_SIGKILL", "bilinear:1:0")
        monkeypatch.setenv("FAKE_SUITE_SEGFAULT", "nearest:2:1")
        monkeypatch.setenv("FAKE_SUITE_HANG", "bilinear:2:1")
        monkeypatch.setenv("FAKE_SUITE_MEMORY", "nearest:1:0")
        code, _, err = run_cli(capsys, "run", *QUICK, *LOCAL, "--cell-timeout", "5", "--out", "run")
        assert code == 1, err
        records = RunStore("run").read_cells()
        assert len(records) == N_QUICK_CELLS
        failed = {key: r for key, r in records.items() if not r.ok}
        causes = {(r.cell.interpolator, r.cell.params["level"], r.cell.seed): r for r in failed.values()}
        assert set(causes) == {("bilinear", 1, 0), ("nearest", 2, 1), ("bilinear", 2, 1), ("nearest", 1, 0)}

        killed = causes[("bilinear", 1, 0)]
        assert killed.cause == "signal" and "signal SIGKILL" in killed.error
        segfault = causes[("nearest", 2, 1)]
        assert segfault.cause == "signal" and "signal SIGSEGV (Segmentation fault)" in segfault.error
        assert "Fatal Python error: Segmentation fault" in segfault.error and "fake_suite.py" in segfault.error
        hung = causes[("bilinear", 2, 1)]
        assert hung.cause == "timeout" and "--cell-timeout 5 s" in hung.error
        assert 5 <= hung.duration_s < 60
        oom = causes[("nearest", 1, 0)]
        assert oom.cause == "oom" and oom.error.startswith("MemoryError: told to run out of memory")
        assert all(r.host["executor"] == "local" for r in failed.values())
        # each death took its own cell process (the job forked a new one after each)
        assert len({r.host["pid"] for r in (killed, segfault, hung)}) == 3
        assert "FAILED" in err and "SIGSEGV" in err
        html = Path("run/report.html").read_text()
        assert "4 failed" in html and "Segmentation fault" in html

        for variable in ("FAKE_SUITE_SIGKILL", "FAKE_SUITE_SEGFAULT", "FAKE_SUITE_HANG", "FAKE_SUITE_MEMORY"):
            monkeypatch.delenv(variable)
        monkeypatch.setenv("FAKE_SUITE_LOG", str(fake_suites / "log"))
        code, _, err = run_cli(capsys, "run", "--resume", "run", *LOCAL)
        assert code == 0, err
        assert len((fake_suites / "log").read_text().split()) == 4  # the failed cells only
        assert results_without_hosts(Path("run")) == results_without_hosts(reference_template)
        assert Path("run/results.csv").read_bytes() == (reference_template / "results.csv").read_bytes()

    def test_resume_skip_failed(self, fake_suites, capsys, monkeypatch):
        monkeypatch.setenv("FAKE_SUITE_FAIL", "nearest:2:1")
        assert run_cli(capsys, "run", *QUICK, "--out", "run")[0] == 1
        failed_key = cell_key(Path("run"), "nearest:2:1")
        before = RunStore("run").cell_path(failed_key).read_bytes()
        RunStore("run").cell_path(cell_key(Path("run"), "bilinear:1:0")).unlink()  # a cell that never came back
        monkeypatch.delenv("FAKE_SUITE_FAIL")
        monkeypatch.setenv("FAKE_SUITE_LOG", str(fake_suites / "log"))
        code, _, err = run_cli(capsys, "run", "--resume", "run", "--skip-failed", *LOCAL)
        assert code == 1 and "1 cell(s) run, 1 failed" in err
        assert (fake_suites / "log").read_text().split() == ["fake:bilinear:1:0"]
        assert RunStore("run").cell_path(failed_key).read_bytes() == before

    def test_worker_killed_from_outside(self, fake_suites, capsys, monkeypatch, reference_template):
        """SIGKILL to a worker (the job's process, not the cell's): its cell is lost, its cell process dies with it."""
        from bench.cli import build_parser, config_from_args
        from bench.runner import make_plan

        config = config_from_args(build_parser().parse_args(["run", *QUICK]))
        hanging = next(c.key for c in make_plan(config).cells["fake"]
                       if (c.interpolator, c.params["level"], c.seed) == ("nearest", 1, 1))
        monkeypatch.setenv("FAKE_SUITE_HANG", "nearest:1:1")
        victims: list[int] = []

        def kill_the_hanging_worker() -> None:
            claim = wait_for(lambda: next(Path("run/jobs").glob(f"*/claims/{hanging}"), None), "the hanging claim")
            controller = int(wait_for(lambda: claim.read_text().split()[1:2], "the claim's owner")[0])
            worker = wait_for(lambda: _children(controller), "the worker process")[0]
            cell_process = wait_for(lambda: _children(worker), "the hanging cell's process")[0]
            victims.extend([worker, cell_process])
            os.kill(worker, signal.SIGKILL)

        killer = threading.Thread(target=kill_the_hanging_worker, daemon=True)
        killer.start()
        code, _, err = run_cli(capsys, "run", *QUICK, *LOCAL, "--out", "run")
        killer.join(WAIT_S)
        assert len(victims) == 2, "the test did not find the worker to kill"
        assert code == 1, err
        records = RunStore("run").read_cells()
        assert len(records) == N_QUICK_CELLS
        (lost,) = [r for r in records.values() if not r.ok]
        assert lost.key == hanging and lost.cause == "lost"
        assert lost.error.startswith("WorkerLost: local job") and "_log.err" in lost.error
        wait_for(lambda: not _pid_alive(victims[1]), "the orphaned cell process to die", 30)

        monkeypatch.delenv("FAKE_SUITE_HANG")
        assert run_cli(capsys, "run", "--resume", "run", *LOCAL)[0] == 0
        assert Path("run/results.csv").read_bytes() == (reference_template / "results.csv").read_bytes()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class TestHead:
    def _head(self, *argv: str, **env: str) -> subprocess.Popen:
        # output to a file, not a pipe: the workers inherit it, and a pipe would stay open while they run
        self.log = open("head.log", "w+")
        # SIGINT as a terminal gives it: a shell that starts pytest in the background has it ignored, and an
        # ignored SIGINT is inherited (Python then raises no KeyboardInterrupt)
        return subprocess.Popen([sys.executable, "-m", "bench", "run", *argv], env=os.environ | env,
                                stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def _output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def test_ctrl_c_cancels_the_jobs_and_resume_finishes(self, fake_suites, capsys, reference_template):
        head = self._head(*QUICK, *LOCAL, "--out", "run", FAKE_SUITE_SLEEP_S="4", OMP_NUM_THREADS="2")
        try:
            wait_for(lambda: len(list(Path("run/cells").glob("*.json"))) >= 1, "a first cell")
            head.send_signal(signal.SIGINT)
            head.wait(timeout=WAIT_S)
        finally:
            head.kill()
        err = self._output()
        assert head.returncode == 130, err
        assert "interrupted" in err and "cancelling 2 job(s)" in err and "--resume run" in err
        meta = json.loads(Path("run/meta.json").read_text())
        assert meta["finished"] is None and meta["sessions"][0]["interrupted"] is True
        controllers = [int(job) for job in meta["sessions"][0]["jobs"]]
        wait_for(lambda: not any(_pid_alive(pid) for pid in controllers), "the cancelled jobs to end", 30)
        settled = sorted(p.name for p in Path("run/cells").glob("*.json"))
        assert len(settled) < N_QUICK_CELLS
        time.sleep(2)  # nothing is written after the head returned
        assert sorted(p.name for p in Path("run/cells").glob("*.json")) == settled

        code, _, _ = run_cli(capsys, "run", "--resume", "run", *LOCAL)
        assert code == 0
        assert Path("run/results.csv").read_bytes() == (reference_template / "results.csv").read_bytes()

    def test_head_killed_then_resume(self, fake_suites, capsys, reference_template):
        head = self._head(*QUICK, *LOCAL, "--out", "run", FAKE_SUITE_SLEEP_S="4", OMP_NUM_THREADS="2")
        try:
            wait_for(lambda: len(list(Path("run/cells").glob("*.json"))) >= 1, "a first cell")
            head.kill()  # SIGKILL: no chance to cancel anything
            head.wait(timeout=WAIT_S)
        finally:
            head.kill()
        meta = json.loads(Path("run/meta.json").read_text())
        controllers = [int(job) for job in meta["sessions"][0]["jobs"]]
        # the workers notice that their head is gone and stop after the cell in flight
        wait_for(lambda: not any(_pid_alive(pid) for pid in controllers), "the orphaned workers to stop", 60)
        assert len(list(Path("run/cells").glob("*.json"))) < N_QUICK_CELLS
        assert not Path("run/results.csv").exists()
        code, _, err = run_cli(capsys, "run", "--resume", "run", *LOCAL)
        assert code == 0, err
        assert Path("run/results.csv").read_bytes() == (reference_template / "results.csv").read_bytes()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (finished, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class TestSubmissionFailure:
    def test_refused_jobs_end_the_session_with_the_reason(self, fake_suites, capsys, monkeypatch):
        import submitit

        def refuse(self, *args, **kwargs):
            raise submitit.core.utils.FailedSubmissionError("no more jobs for you")

        monkeypatch.setattr(submitit.LocalExecutor, "submit", refuse)
        code, _, err = run_cli(capsys, *["run", *QUICK, *LOCAL, "--out", "run"])
        assert code == 1
        assert "--executor local: submitting 2 job(s) failed: FailedSubmissionError: no more jobs for you" in err
        meta = json.loads(Path("run/meta.json").read_text())
        assert meta["finished"] is None and "no more jobs for you" in meta["sessions"][0]["error"]
        assert Path("run/report.html").is_file() and not list(Path("run/cells").iterdir())


class TestExclusive:
    def test_exclusive_cells_run_alone_with_every_thread(self, fake_suites, capsys):
        code, _, err = run_cli(capsys, "run", "--suite", "fake,fakeexcl", "--interpolators", "bilinear,nearest",
                               "--quick", "--seeds", "1", "--no-progress", *LOCAL, "--out", "run")
        assert code == 0, err
        records = list(RunStore("run").read_cells().values())
        exclusive = [r for r in records if r.cell.suite == "fakeexcl"]
        shared = [r for r in records if r.cell.suite == "fake"]
        assert len(exclusive) == 4 and len(shared) == 4
        budget = torch.get_num_threads()
        assert {r.host["threads"] for r in exclusive} == {budget}
        assert {r.host["threads"] for r in shared} == {max(1, budget // 2)}
        assert len({r.host["job_id"] for r in exclusive}) == 1  # one worker, one cell at a time
        first_exclusive = min(r.started for r in exclusive)
        assert all(r.finished <= first_exclusive for r in shared)


class TestBadInput:
    @pytest.mark.parametrize(
        ("argv", "expected"),
        [
            (["--jobs", "2"], "--jobs 2: the inline executor runs one cell at a time"),
            (["--cell-timeout", "5"], "--cell-timeout: the inline executor"),
            (["--cell-timeout", "0"], "expected a positive number, got '0'"),
            (["--executor", "local", "--executor-option", "partition=gpu"],
             "unknown option 'partition' for --executor local"),
            (["--executor", "local", "--executor-option", "cpus_per_cell=two"], "cpus_per_cell expects an integer, got 'two'"),
            (["--executor", "local", "--executor-option", "cpus_per_cell=0"], "cpus_per_cell expects a positive number"),
            (["--executor", "local", "--executor-option", "noequals"], "expected KEY=VALUE"),
            (["--executor", "slurm", "--executor-option", "sbatch.=x"], "expected sbatch.NAME=VALUE"),
            (["--executor", "inline", "--executor-option", "jobs=2"], "the inline executor takes no options"),
            (["--executor", "mpi"], "invalid choice: 'mpi'"),
            (["--skip-failed"], "--skip-failed: only with --resume"),
        ],
    )
    def test_exits_2_and_writes_nothing(self, fake_suites, capsys, argv, expected):
        code, _, err = run_cli(capsys, "run", "--suite", "fake", *argv)
        assert code == 2
        assert expected in err, err
        assert list(fake_suites.iterdir()) == []

    def test_slurm_without_slurm(self, fake_suites, capsys, monkeypatch):
        monkeypatch.setenv("PATH", str(fake_suites / "nothing"))
        code, _, err = run_cli(capsys, "run", "--suite", "fake", "--executor", "slurm")
        assert code == 2 and "sbatch and squeue are not on PATH" in err
        assert list(fake_suites.iterdir()) == []


class TestSuitePlugins:
    def test_entry_points_register_suites(self, fake_suites):
        assert suites.available()[:5] == ["scale", "rotation", "gradients", "cost", "classify"]
        assert {"fake", "fakebar", "fakeexcl"} <= set(suites.available())
        assert type(suites.get("fake")).__name__ == "FakeSuite" and suites.get("fakeexcl").exclusive

    def test_a_plugin_cannot_take_a_builtin_name(self, fake_suites, tmp_path, monkeypatch):
        from harness_fixtures import write_fake_distribution

        site = write_fake_distribution(tmp_path / "s", {"cost": "fake_suite:FakeSuite", "odd": "no_colon"}, "bad")
        monkeypatch.syspath_prepend(str(site))
        errors = suites.plugin_errors()
        assert "built-in suite" in errors["cost"] and "expected 'module:SuiteClass'" in errors["odd"]
        assert type(suites.get("cost")).__name__ == "CostSuite"
        assert "odd" not in suites.available()

    def test_not_a_suite(self, fake_suites, tmp_path, monkeypatch):
        from harness_fixtures import write_fake_distribution

        site = write_fake_distribution(tmp_path / "s", {"notasuite": "fake_suite:IMAGES"}, "bad2")
        monkeypatch.syspath_prepend(str(site))
        with pytest.raises(TypeError, match="not a suites.Suite subclass"):
            suites.get("notasuite")

    def test_unloaded_plugin_fails_its_cells_not_the_run(self, fake_suites, capsys, tmp_path, monkeypatch):
        """A suite the head finds but a worker cannot import (another environment): its cells fail with why."""
        from harness_fixtures import write_fake_distribution

        head_only = write_fake_distribution(tmp_path / "head", {"headonly": "headonly_suite:HeadOnly"}, "headonly")
        (head_only / "headonly_suite.py").write_text(
            "from fake_suite import FakeSuite\n\nclass HeadOnly(FakeSuite):\n    name = 'headonly'\n"
        )
        monkeypatch.syspath_prepend(str(head_only))  # the head sees it, the workers' PYTHONPATH does not
        code, _, err = run_cli(capsys, "run", "--suite", "headonly", "--interpolators", "nearest", "--quick",
                               "--seeds", "1", "--no-progress", "--executor", "local", "--jobs", "1", "--out", "run")
        assert code == 1, err
        records = list(RunStore("run").read_cells().values())
        assert len(records) == 2 and all(r.cause == "error" for r in records)
        assert "suite 'headonly' could not be loaded in the worker" in records[0].error
