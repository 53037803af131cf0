"""``--executor slurm`` on a real single-node Slurm cluster (the cluster tier).

The cluster is the one ``SLURM_CONF`` names, else the loopback cluster of
``scripts/slurm-loopback.sh`` (Debian's slurmctld, slurmd and munge on localhost, 2 CPUs),
which this module starts when its daemons are installed and stops afterwards. Where no
cluster answers and none can be started, every test here is skipped and says why.

What runs: the fake suite as a Slurm array (one job per cell); one cell is cancelled with
``scancel``, one hangs into the job's real time limit (requeued once, then stored as failed with
cause ``timeout``); ``--resume`` finishes them and the results equal an inline run. A classify
cell gets the time-limit signal after two checkpointed epochs, is requeued, resumes from its
checkpoint and ends with the rows of an uninterrupted run. Slurm holds a requeued job for
two minutes before it may start again; the tests lift that hold (``scontrol update
StartTime=now``) to keep the tier short. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from fake_suite import run_cli
from harness_fixtures import N_QUICK_CELLS, QUICK
from harness_fixtures import wait_for as _wait_for

from bench.store import RunStore

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-loopback.sh"
SLURM = ("--executor", "slurm", "--executor-option", "poll_s=1")
#: bound on every wait in this module (the slowest, a job that meets its 1-minute limit twice, takes ~2.5 min)
WAIT_S = 400


def wait_for(predicate, what: str, timeout: float = WAIT_S):
    return _wait_for(predicate, what, timeout)


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(not hasattr(os, "fork"), reason="workers fork cells")]


def _answers() -> bool:
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in done.stdout.split())


@pytest.fixture(scope="session")
def slurm_cluster():
    """A Slurm cluster that answers: the one of ``SLURM_CONF``, else the loopback one (used as it is when it runs,
    else started here and stopped at the end)."""
    if os.environ.get("SLURM_CONF") and _answers():
        yield os.environ["SLURM_CONF"]
        return
    env = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, timeout=30, check=False)
    running = re.search(r"SLURM_CONF=(\S+)", env.stdout)
    if running and Path(running.group(1)).is_file():  # a loopback cluster someone else started: use, leave it
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SLURM_CONF", running.group(1))
            if _answers():
                yield running.group(1)
                return
    missing = [name for name in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"no Slurm cluster: {', '.join(missing)} not installed (scripts/slurm-loopback.sh install)")
    done = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=180, check=False)
    conf = re.search(r"SLURM_CONF=(\S+)", done.stdout)
    if done.returncode != 0 or conf is None:
        pytest.skip(f"no Slurm cluster: the loopback daemons did not start ({(done.stderr or done.stdout).strip()})")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf.group(1)
    try:
        if not _answers():
            pytest.skip("no Slurm cluster: the loopback daemons started but sinfo shows no usable node")
        yield conf.group(1)
    finally:
        subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, timeout=120, check=False)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


@pytest.fixture
def on_slurm(slurm_cluster, fake_suites):
    """The fake suites, in a folder that the jobs (same machine) can write, with requeue holds lifted."""
    stop = threading.Event()

    def lift_requeue_holds() -> None:
        while not stop.wait(1.0):
            done = subprocess.run(["squeue", "-h", "-r", "-t", "PD", "-o", "%i|%r"], capture_output=True, text=True,
                                  timeout=30, check=False)
            for line in done.stdout.split():
                job, _, reason = line.partition("|")
                if reason == "BeginTime":
                    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True,
                                   timeout=30, check=False)

    lifter = threading.Thread(target=lift_requeue_holds, daemon=True)
    lifter.start()
    yield fake_suites
    stop.set()
    lifter.join(10)


def claim_owner(run: Path, key: str) -> str | None:
    """The Slurm job id that claimed the cell ``key`` in ``run`` (``claims/<key>``'s first line), or ``None``."""
    for claim in run.glob(f"jobs/*/claims/{key}"):
        words = claim.read_text().split()
        if len(words) >= 2:
            return words[1]
    return None


def fake_key(ident: str) -> str:
    from bench.cli import build_parser, config_from_args
    from bench.runner import make_plan

    name, level, seed = ident.split(":")
    config = config_from_args(build_parser().parse_args(["run", *QUICK]))
    return next(c.key for c in make_plan(config).cells["fake"]
                if (c.interpolator, c.params["level"], c.seed) == (name, int(level), int(seed)))


def test_array_with_a_cancelled_and_a_timed_out_cell_then_resume(on_slurm, capsys, monkeypatch, reference_template):
    cancelled, timed_out = fake_key("nearest:1:1"), fake_key("bilinear:2:1")
    monkeypatch.setenv("FAKE_SUITE_HANG", "nearest:1:1,bilinear:2:1")
    run = on_slurm / "run"
    scancelled: list[str] = []

    def cancel_one() -> None:
        job = wait_for(lambda: claim_owner(run, cancelled), "the cell to cancel to start")
        time.sleep(1)
        subprocess.run(["scancel", job], check=True, timeout=60)
        scancelled.append(job)

    # Slurm sends the time-limit signal (USR2, signal_delay_s before the limit) at its next check, which
    # comes every 30 s: with a 1-minute limit and 15 s it arrives 15-45 s after the start, after the
    # worker has set its handler (a signal before that would end the job, which the head replaces)
    canceller = threading.Thread(target=cancel_one, daemon=True)
    canceller.start()
    code, _, err = run_cli(capsys, "run", *QUICK, *SLURM, "--executor-option", "time_min=1",
                           "--executor-option", "max_requeues=1", "--executor-option", "signal_delay_s=15",
                           "--out", str(run))
    canceller.join(WAIT_S)
    assert scancelled, "the test did not cancel its cell"
    assert code == 1, err
    records = RunStore(run).read_cells()
    assert len(records) == N_QUICK_CELLS
    assert {k for k, r in records.items() if not r.ok} == {cancelled, timed_out}

    assert records[cancelled].cause == "cancelled"
    assert records[cancelled].error.startswith(f"JobCancelled: Slurm job {scancelled[0]} was cancelled")
    late = records[timed_out]
    assert late.cause == "timeout" and late.error.startswith("JobTimeout: the job reached its time limit")
    assert late.host["attempt"] == 2  # requeued once at its limit (max_requeues=1), then given up

    oks = [r for r in records.values() if r.ok]
    assert {r.host["executor"] for r in oks} == {"slurm"} and {r.host["threads"] for r in oks} == {1}
    jobs = {r.host["job_id"] for r in oks}
    assert len(jobs) == len(oks) and all(re.fullmatch(r"\d+_\d+", j) for j in jobs)  # one array task per cell
    meta = json.loads((run / "meta.json").read_text())
    # one job per cell, and a replacement for any job that died before taking its cell
    assert meta["sessions"][0]["executor"]["name"] == "slurm" and len(meta["sessions"][0]["jobs"]) >= N_QUICK_CELLS

    monkeypatch.delenv("FAKE_SUITE_HANG")
    code, _, err = run_cli(capsys, "run", "--resume", str(run), *SLURM)
    assert code == 0, err
    assert (run / "results.csv").read_bytes() == (reference_template / "results.csv").read_bytes()
    assert (run / "summary.csv").read_bytes() == (reference_template / "summary.csv").read_bytes()


def test_checkpointed_cell_is_requeued_and_resumes(on_slurm):
    """A classify cell gets the time-limit signal after two epochs, is requeued and resumes from its checkpoint."""
    from bench.executors import make_executor
    from bench.runner import Plan, execute, make_plan, new_meta, run_one
    from suites.base import RunConfig

    config = RunConfig(suites=("classify",), interpolators={"bilinear": {}}, device="cpu", seeds=1, profile="quick",
                       options={"labels": [250], "steps": 160})  # 20 epochs of 8 steps
    plan = make_plan(config)
    (cell,) = [cell for cell in plan.cells["classify"] if cell.interpolator == "bilinear"]
    plan = Plan(plan.suites, {"classify": [cell]})  # not the CNN cell classify also plans
    run = on_slurm / "classify"
    store = RunStore.create(run, new_meta(config, plan, None))
    checkpoint = run / "checkpoints" / f"{cell.key}.pt"
    signalled: list[int] = []

    def time_out_after_two_epochs() -> None:
        def epochs() -> int:
            try:
                return torch.load(checkpoint, map_location="cpu", weights_only=False)["state"]["epoch"]
            except (OSError, EOFError, RuntimeError, KeyError):
                return 0

        reached = wait_for(lambda: epochs() >= 2 and epochs(), "two checkpointed epochs")
        job = claim_owner(run, cell.key)
        # what Slurm sends signal_delay_s before a job's time limit (sbatch --signal=USR2@...), now
        subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=60)
        signalled.append(reached)

    signaller = threading.Thread(target=time_out_after_two_epochs, daemon=True)
    signaller.start()
    executor = make_executor("slurm", options={"poll_s": 1.0, "max_requeues": 2})
    outcome = execute(store, config, plan, progress=False, executor=executor)
    signaller.join(WAIT_S)
    assert signalled, "the test did not signal the job"
    assert outcome.exit_code == 0
    record = store.read_cell(cell.key)
    assert record.ok and record.host["attempt"] == 2 and record.host["threads"] == 1

    log = next(run.glob(f"jobs/*/cell-logs/{cell.key}.log")).read_text()
    resumed = [int(e) for e in re.findall(rf"resuming {cell.key}\.pt at epoch (\d+) of 20", log)]
    assert len(resumed) == 1 and resumed[0] >= signalled[0] >= 2  # at most the epoch in flight was lost

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        uninterrupted = run_one(plan.suites["classify"], cell, config, on_slurm / "inline")
    finally:
        torch.set_num_threads(threads)
    timeless = lambda rows: [r for r in rows if r["metric"] != "train_time_s"]
    assert timeless(record.rows) == timeless(uninterrupted.rows)


def test_a_refused_submission_says_why(on_slurm, capsys):
    code, _, err = run_cli(capsys, "run", *QUICK, *SLURM, "--executor-option", "partition=nowhere", "--out", "run")
    assert code == 1
    assert "--executor slurm: submitting 8 job(s) failed" in err and "nowhere" in err
