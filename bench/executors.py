"""Executors: where the cells of a run run (``--executor inline|local|slurm``).

- ``inline`` (the default): one cell after another in the head process.
- ``local``: ``--jobs N`` worker processes on this machine through submitit's ``LocalExecutor``.
  The N jobs share the list of cells (each claims the next free one), so a slow cell does
  not hold up the others; each cell runs with ``cpus_per_cell`` torch threads (default: the
  head's thread count divided by N, at least 1).
- ``slurm``: one Slurm job per cell (``cells_per_job`` to group quick ones), submitted as an
  array through submitit's ``SlurmExecutor``, at most ``--jobs N`` at once; each gets
  ``cpus_per_cell`` CPUs (default 1) and, on ``--device cuda``, ``gpus_per_cell`` GPUs (default 1).

The head (:func:`bench.runner.execute`) plans, writes ``meta.json`` and hands the cells not
stored as OK to the executor; workers (:mod:`bench.worker`) write only their cell files. The
executor follows its jobs (the local processes; on Slurm ``squeue``, which works without an
accounting database, then ``scontrol show job`` for how a job ended), shows each cell as it
comes back, stores a cell whose job died with it as failed with the job's cause (cancelled,
time limit, out of memory, lost), replaces jobs that died before taking their cells, and
cancels every job it submitted on Ctrl-C.

Cells of a suite marked ``exclusive`` (cost: timing) never share a node: locally they run
after the others, one at a time, with all the head's threads; on Slurm each gets
``--exclusive`` and every CPU of its node.

Submitit's files (pickled jobs, logs) go to ``RUN/jobs/<session>/``, with ``claims/`` (which
job took which cell) and ``cell-logs/`` (what each cell printed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch

import bench
from bench.environment import host_record
from bench.runner import ExecutorError, Plan, Progress, full_hparams, now, run_one
from bench.store import CellRecord, RunStore
from bench.worker import CellJob, Claims, WorkerTask
from suites.base import Cell, RunConfig

EXECUTORS = ("inline", "local", "slurm")
JOBS_DIR = "jobs"

#: ``--executor-option`` keys: their type and meaning (``sbatch.KEY=VALUE`` passes ``--KEY=VALUE`` to sbatch)
OPTIONS: dict[str, tuple[type, str]] = {
    "cpus_per_cell": (int, "CPUs (torch threads) per cell"),
    "gpus_per_cell": (int, "GPUs per cell (--device cuda; default 1)"),
    "time_min": (float, "a job's time limit in minutes (Slurm --time; locally, the requeue signal's clock)"),
    "max_requeues": (int, "how often a job that reaches its time limit is requeued (default 3)"),
    "signal_delay_s": (int, "seconds before the time limit at which the job checkpoints and requeues "
                             "(default 90, 30 local)"),
    "poll_s": (float, "seconds between the head's looks at its jobs (default 0.2 local, 10 Slurm)"),
    "partition": (str, "Slurm partition"),
    "account": (str, "Slurm account"),
    "qos": (str, "Slurm quality of service"),
    "constraint": (str, "Slurm node features (--constraint)"),
    "mem_gb": (float, "memory per job in GB (Slurm --mem)"),
    "cells_per_job": (int, "cells per Slurm job (default 1)"),
    "setup": (str, "a shell line each Slurm job runs first, e.g. 'source ~/venv/bin/activate'"),
}
LOCAL_OPTIONS = frozenset({"cpus_per_cell", "gpus_per_cell", "time_min", "max_requeues", "signal_delay_s", "poll_s"})
SLURM_OPTIONS = frozenset(OPTIONS)
#: a local job's time limit when none is given: a week (cells have --cell-timeout for their own limit)
LOCAL_TIME_MIN = 7 * 24 * 60.0
#: Slurm job states in which a job is still alive (squeue shows finished ones for a moment as COMPLETING)
ALIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                          "REQUEUE_FED", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "PREEMPTED"})
#: seconds the head waits for cancelled jobs to go
CANCEL_WAIT_S = 20.0
#: a dead job's log lines quoted in its cells' errors
LOG_TAIL_LINES = 20


def parse_executor_options(executor: str, values: list[str]) -> dict[str, Any]:
    """``--executor-option KEY=VALUE`` values as a dict, each value parsed to its type; raises ``ValueError``."""
    valid = LOCAL_OPTIONS if executor == "local" else SLURM_OPTIONS if executor == "slurm" else frozenset()
    options: dict[str, Any] = {}
    for text in values:
        key, sep, raw = text.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ValueError(f"--executor-option {text!r}: expected KEY=VALUE, e.g. partition=gpu")
        if executor == "inline":
            raise ValueError(f"--executor-option {text!r}: the inline executor takes no options; "
                             "use --executor local or slurm")
        if executor == "slurm" and key.startswith("sbatch."):
            if not re.fullmatch(r"sbatch\.[A-Za-z][A-Za-z0-9_-]*", key):
                raise ValueError(f"--executor-option {text!r}: expected sbatch.NAME=VALUE, "
                                 "e.g. sbatch.reservation=mine")
            options.setdefault("sbatch", {})[key.removeprefix("sbatch.")] = raw
            continue
        if key not in valid:
            extra = " and sbatch.NAME" if executor == "slurm" else ""
            raise ValueError(f"--executor-option {text!r}: unknown option {key!r} for --executor {executor}; "
                             f"expected one of {sorted(valid)}{extra}")
        kind = OPTIONS[key][0]
        try:
            value = kind(raw)
        except ValueError:
            what = {int: "an integer", float: "a number"}[kind]
            raise ValueError(f"--executor-option {text!r}: {key} expects {what}, got {raw!r}") from None
        if kind in (int, float) and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"--executor-option {text!r}: {key} expects a positive number, got {raw!r}")
        if kind is str and not value:
            raise ValueError(f"--executor-option {text!r}: {key} expects a value")
        options[key] = value
    return options


def make_executor(name: str, jobs: int | None = None, cell_timeout_s: float | None = None,
                  options: dict[str, Any] | None = None):
    """The executor ``name`` with its settings; raises ``ValueError`` for settings it cannot use."""
    if name not in EXECUTORS:
        raise ValueError(f"--executor: expected one of {list(EXECUTORS)}, got {name!r}")
    if name == "inline":
        if jobs not in (None, 1):
            raise ValueError(f"--jobs {jobs}: the inline executor runs one cell at a time; use --executor local")
        if cell_timeout_s is not None:
            raise ValueError("--cell-timeout: the inline executor runs cells in the head process, which cannot stop "
                             "one; use --executor local or slurm")
        if options:
            raise ValueError("--executor-option: the inline executor takes no options")
        return InlineExecutor()
    if cell_timeout_s is not None and not (cell_timeout_s > 0 and math.isfinite(cell_timeout_s)):
        raise ValueError(f"--cell-timeout: expected a positive number of seconds, got {cell_timeout_s!r}")
    cls = LocalExecutor if name == "local" else SlurmExecutor
    return cls(jobs=jobs, cell_timeout_s=cell_timeout_s, options=dict(options or {}))


class InlineExecutor:
    """Every cell in the head process, one after another, in plan order."""

    name: ClassVar[str] = "inline"
    lost_on_interrupt: ClassVar[str] = "the one in flight is lost"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def run(self, store: RunStore, config: RunConfig, plan: Plan, todo: dict[str, list[Cell]],
            progress: Progress, note: Callable[..., None]) -> None:
        for name, suite in plan.suites.items():
            for cell in todo[name]:
                progress.running(cell)
                record = run_one(suite, cell, config, store.root, host={"executor": self.name})
                store.write_cell(record)
                progress.finished(record)


# --- the parallel executors -----------------------------------------------------------------------


@dataclasses.dataclass
class Submitted:
    """A job the head submitted: the submitit job, the cells it may run, and how it was asked for."""

    job: Any
    keys: list[str]
    exclusive: bool
    threads: int | None


def _code_path() -> str:
    """``PYTHONPATH`` for the workers: the folder holding this ``bench`` first, so that they run the head's code."""
    root = str(Path(bench.__file__).resolve().parent.parent)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    return os.pathsep.join([root, *parts])


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_mtime_ns, info.st_size


def _log_tail(job: Any, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` of a job's stderr log (empty when it has none)."""
    try:
        text = Path(job.paths.stderr).read_text(encoding="utf-8", errors="replace")
    except (OSError, AttributeError):
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _SubmititExecutor:
    """What the local and the Slurm executor share: submitting, following, failing, replacing, cancelling."""

    name: ClassVar[str]
    lost_on_interrupt: ClassVar[str] = "the cells in flight are lost (their jobs were cancelled)"
    default_poll_s: ClassVar[float]

    def __init__(self, jobs: int | None, cell_timeout_s: float | None, options: dict[str, Any]) -> None:
        self.jobs = jobs
        self.cell_timeout_s = cell_timeout_s
        self.options = options
        self.poll_s = float(options.get("poll_s", self.default_poll_s))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "jobs": self.jobs, "cell_timeout_s": self.cell_timeout_s,
                "options": dict(self.options)}

    # to implement: how jobs are made, whether they are alive, and why one ended
    def phases(self, plan: Plan, cells: list[Cell]) -> list[list[tuple[list[Cell], bool]]]:
        """Groups of ``(cells of one job, exclusive)``; each group is submitted once the previous one is done."""
        raise NotImplementedError

    def submit(self, groups: list[tuple[list[Cell], bool]]) -> list[Submitted]:
        raise NotImplementedError

    def alive(self, submitted: list[Submitted]) -> set[str]:
        """The ids of the jobs among ``submitted`` that are still pending or running."""
        raise NotImplementedError

    def end_cause(self, item: Submitted) -> tuple[str, str]:
        """``(cause, message)`` for a cell whose job ``item`` ended without storing it."""
        raise NotImplementedError

    def cancel(self, submitted: list[Submitted]) -> None:
        raise NotImplementedError

    def replacement_groups(self, keys: list[str], ended: list[Submitted]) -> list[tuple[list[Cell], bool]]:
        """Jobs to take over ``keys``, cells nobody took whose jobs ``ended``."""
        return [([self._cells[k] for k in keys if k in set(item.keys)], item.exclusive) for item in ended
                if any(k in set(item.keys) for k in keys)]

    # --- the head's loop ---------------------------------------------------------------------

    def run(self, store: RunStore, config: RunConfig, plan: Plan, todo: dict[str, list[Cell]],
            progress: Progress, note: Callable[..., None]) -> None:
        cells = [cell for name in plan.suites for cell in todo[name]]
        if not cells:
            return
        session = f"{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
        self.store, self.config, self.progress, self.note = store, config, progress, note
        self.session_dir = store.root / JOBS_DIR / session
        self.session_dir.mkdir(parents=True, exist_ok=True)
        self.claims = Claims(self.session_dir)
        self._cells = {cell.key: cell for cell in cells}
        self._job_ids: list[str] = []
        self._active: list[Submitted] = []
        note(jobs_dir=str(self.session_dir.relative_to(store.root)), jobs=self._job_ids)
        self.before_submitting()
        try:
            for groups in self.phases(plan, cells):
                self._follow(groups)
        except BaseException:
            self._cancel_active()
            raise

    def before_submitting(self) -> None:
        """Hook: e.g. cancel jobs an earlier session left running."""

    def task(self, cells: list[Cell], exclusive: bool, threads: int | None) -> WorkerTask:
        return WorkerTask(
            run_dir=str(self.store.root.resolve()), session_dir=str(self.session_dir.resolve()),
            config=self.config.to_json(), cells=[cell.to_json() for cell in cells], executor=self.name,
            threads=threads, cell_timeout_s=self.cell_timeout_s,
            head_pid=os.getpid() if self.name == "local" else None, exclusive=exclusive,
        )

    def _submit(self, groups: list[tuple[list[Cell], bool]]) -> list[Submitted]:
        try:
            with _environment(PYTHONPATH=_code_path()):
                submitted = self.submit(groups)
        except Exception as err:  # noqa: BLE001  sbatch refused the jobs (a partition, an account, a limit)
            raise ExecutorError(f"--executor {self.name}: submitting {len(groups)} job(s) failed: "
                                f"{type(err).__name__}: {err}") from err
        self._active.extend(submitted)
        self._job_ids.extend(str(item.job.job_id) for item in submitted)
        self.note(jobs=self._job_ids)
        return submitted

    def _follow(self, groups: list[tuple[list[Cell], bool]]) -> None:
        """Submit ``groups`` and wait until every one of their cells has a record from this session."""
        keys = list(dict.fromkeys(cell.key for group, _ in groups for cell in group))
        stamps = {key: _file_stamp(self.store.cell_path(key)) for key in keys}
        pending = dict.fromkeys(keys)
        self._submit(groups)
        replacements_left = max(2, len(groups))
        while pending:
            alive = self.alive(self._active)
            ended = [item for item in self._active if str(item.job.job_id) not in alive]
            self._collect(pending, stamps)
            for item in ended:
                self._active.remove(item)
                self._fail_in_flight(item, pending, stamps)
            if not pending:
                break
            in_lists = {key for item in self._active for key in item.keys}
            orphans = [key for key in pending if key not in in_lists and self.claims.owner(key) is None]
            if orphans:
                if replacements_left > 0:
                    replacements_left -= 1
                    self._submit(self.replacement_groups(orphans, ended) or [([self._cells[k] for k in orphans],
                                                                               False)])
                else:
                    logs = "\n".join(f"{item.job.job_id}: {item.job.paths.stderr}" for item in ended)
                    for key in orphans:
                        self._store_failure(self._cells[key], "lost", "NotRun: no worker took this cell; the "
                                            f"jobs given it ended first (logs:\n{logs})", pending)
            if self._active and pending:
                cell = next((self._cells[k] for k in pending if self.claims.owner(k) is not None), None)
                if cell is not None:
                    self.progress.running(cell, f"[{len(self._active)} job(s)]")
            time.sleep(self.poll_s)

    def _collect(self, pending: dict[str, None], stamps: dict[str, Any]) -> None:
        """Report the cells whose files the workers (re)wrote since this phase began."""
        for key in list(pending):
            if _file_stamp(self.store.cell_path(key)) != stamps[key]:
                record = self.store.read_cell(key)
                if record is not None:
                    del pending[key]
                    self.progress.finished(record)

    def _fail_in_flight(self, item: Submitted, pending: dict[str, None], stamps: dict[str, Any]) -> None:
        """Store the cells that the ended job ``item`` took but did not finish as failed with its cause."""
        me = str(item.job.job_id)
        for key in item.keys:
            if key not in pending or self.claims.owner(key) != me:
                continue
            if self.claims.is_done(key):  # finished, the file just not seen yet (a slow shared file system)
                record = self.store.read_cell(key)
                if record is not None:
                    del pending[key]
                    self.progress.finished(record)
                    continue
            cause, message = self.end_cause(item)
            self._store_failure(self._cells[key], cause, message, pending)

    def _store_failure(self, cell: Cell, cause: str, message: str, pending: dict[str, None]) -> None:
        stamp = now()
        record = CellRecord(
            cell=cell, hparams=full_hparams(cell), status="failed", rows=[], error=message, started=stamp,
            finished=stamp, duration_s=0.0, cause=cause,
            host=host_record(self.config.device, executor=self.name, recorded_by="head"),
        )
        self.store.write_cell(record)
        pending.pop(cell.key, None)
        self.progress.finished(record)

    def _cancel_active(self) -> None:
        if not self._active:
            return
        active, self._active = self._active, []
        print(f"cancelling {len(active)} job(s) of this session", file=sys.stderr)
        self.cancel(active)


class _environment:
    """Set environment variables for the duration of a ``with`` block (submitit copies ``os.environ`` at submission)."""

    def __init__(self, **values: str) -> None:
        self.values = values
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for key, value in self.values.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class LocalExecutor(_SubmititExecutor):
    """``--jobs N`` worker processes on this machine (submitit's ``LocalExecutor``) sharing the list of cells."""

    name = "local"
    default_poll_s = 0.2

    def __init__(self, jobs: int | None, cell_timeout_s: float | None, options: dict[str, Any]) -> None:
        super().__init__(jobs, cell_timeout_s, options)
        self.budget = torch.get_num_threads()
        self.jobs = jobs or self.budget
        self.threads = int(options.get("cpus_per_cell", max(1, self.budget // self.jobs)))

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"threads_per_cell": self.threads, "threads_exclusive": self.budget}

    def phases(self, plan: Plan, cells: list[Cell]) -> list[list[tuple[list[Cell], bool]]]:
        shared = [cell for cell in cells if not plan.suites[cell.suite].exclusive]
        exclusive = [cell for cell in cells if plan.suites[cell.suite].exclusive]
        phases = []
        if shared:  # N workers, each given every cell: they claim them one by one
            phases.append([(shared, False)] * min(self.jobs, len(shared)))
        if exclusive:  # then one worker with the whole machine
            phases.append([(exclusive, True)])
        return phases

    def replacement_groups(self, keys: list[str], ended: list[Submitted]) -> list[tuple[list[Cell], bool]]:
        exclusive = any(item.exclusive for item in ended)
        cells = [self._cells[k] for k in keys]
        return [(cells, exclusive)] * (1 if exclusive else min(self.jobs, len(cells)))

    def submit(self, groups: list[tuple[list[Cell], bool]]) -> list[Submitted]:
        import submitit

        executor = submitit.LocalExecutor(folder=self.session_dir,
                                          max_num_timeout=int(self.options.get("max_requeues", 3)))
        gpus = int(self.options.get("gpus_per_cell", 1)) if self.config.device == "cuda" else 0
        count = torch.cuda.device_count() if gpus else 0
        submitted = []
        for i, (cells, exclusive) in enumerate(groups):
            threads = self.budget if exclusive else self.threads
            visible = tuple((i * gpus + k) % count for k in range(gpus)) if gpus and count else ()
            executor.update_parameters(
                timeout_min=float(self.options.get("time_min", LOCAL_TIME_MIN)),
                signal_delay_s=int(self.options.get("signal_delay_s", 30)),
                gpus_per_node=len(visible), visible_gpus=visible,
            )
            job = executor.submit(CellJob(), self.task(cells, exclusive, threads))
            submitted.append(Submitted(job, [cell.key for cell in cells], exclusive, threads))
        return submitted

    def alive(self, submitted: list[Submitted]) -> set[str]:
        return {str(item.job.job_id) for item in submitted if not item.job.done()}

    def end_cause(self, item: Submitted) -> tuple[str, str]:
        tail = _log_tail(item.job)
        return "lost", (f"WorkerLost: local job {item.job.job_id} ended without storing this cell (its worker "
                        f"process was killed or crashed outside the cell); log {item.job.paths.stderr}"
                        + (f":\n{tail}" if tail else ""))

    def cancel(self, submitted: list[Submitted]) -> None:
        for item in submitted:
            item.job.cancel(check=False)  # SIGINT to the job's controller, which stops the worker
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline and any(not item.job.done() for item in submitted):
            time.sleep(0.1)
        for item in submitted:  # a worker that ignored the interrupt
            process = getattr(item.job, "_process", None)
            if process is not None and process.poll() is None:
                process.kill()


class SlurmExecutor(_SubmititExecutor):
    """One Slurm job per cell (or ``cells_per_job``), submitted as arrays through submitit's ``SlurmExecutor``."""

    name = "slurm"
    default_poll_s = 10.0

    def __init__(self, jobs: int | None, cell_timeout_s: float | None, options: dict[str, Any]) -> None:
        super().__init__(jobs, cell_timeout_s, options)
        if shutil.which("sbatch") is None or shutil.which("squeue") is None:
            raise ValueError("--executor slurm: sbatch and squeue are not on PATH; run on a Slurm login node")
        self.cpus = int(options.get("cpus_per_cell", 1))
        self.per_job = int(options.get("cells_per_job", 1))
        self._warned = False

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"threads_per_cell": self.cpus}

    def time_min(self, cells: int) -> int:
        """A job's time limit in whole minutes: ``time_min``, else what ``--cell-timeout`` needs, else an hour."""
        if "time_min" in self.options:
            return max(1, math.ceil(self.options["time_min"]))
        if self.cell_timeout_s is not None:
            return max(1, math.ceil(cells * self.cell_timeout_s / 60) + 2)
        return 60

    def phases(self, plan: Plan, cells: list[Cell]) -> list[list[tuple[list[Cell], bool]]]:
        shared = [cell for cell in cells if not plan.suites[cell.suite].exclusive]
        groups = [(shared[i : i + self.per_job], False) for i in range(0, len(shared), self.per_job)]
        groups += [([cell], True) for cell in cells if plan.suites[cell.suite].exclusive]
        return [groups]  # Slurm keeps exclusive jobs off shared nodes itself

    def _executor(self, exclusive: bool, cells: int):
        import submitit

        options = self.options
        executor = submitit.SlurmExecutor(folder=self.session_dir / "%j",
                                          max_num_timeout=int(options.get("max_requeues", 3)))
        gpus = int(options.get("gpus_per_cell", 1)) if self.config.device == "cuda" else 0
        params: dict[str, Any] = {
            "job_name": "bench",
            "time": self.time_min(cells),
            "cpus_per_task": self.cpus,
            "signal_delay_s": int(options.get("signal_delay_s", 90)),
            "array_parallelism": self.jobs or 1024,
        }
        if gpus:
            params["gpus_per_node"] = gpus
        if exclusive:
            params["exclusive"] = True
        for key, target in (("partition", "partition"), ("account", "account"), ("qos", "qos"),
                            ("constraint", "constraint")):
            if key in options:
                params[target] = options[key]
        if "mem_gb" in options:
            params["mem"] = f"{int(options['mem_gb'] * 1024)}MB"
        if "setup" in options:
            params["setup"] = [options["setup"]]
        if options.get("sbatch"):
            params["additional_parameters"] = dict(options["sbatch"])
        executor.update_parameters(**params)
        return executor

    def submit(self, groups: list[tuple[list[Cell], bool]]) -> list[Submitted]:
        submitted = []
        for exclusive in (False, True):
            chosen = [cells for cells, excl in groups if excl == exclusive]
            if not chosen:
                continue
            executor = self._executor(exclusive, max(len(cells) for cells in chosen))
            threads = None if exclusive else self.cpus
            with executor.batch():
                jobs = [executor.submit(CellJob(), self.task(cells, exclusive, threads)) for cells in chosen]
            submitted += [Submitted(job, [c.key for c in cells], exclusive, threads)
                          for job, cells in zip(jobs, chosen)]
        return submitted

    def alive(self, submitted: list[Submitted]) -> set[str]:
        if not submitted:
            return set()
        ids = sorted({str(item.job.job_id).split("_")[0] for item in submitted})
        try:
            done = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(ids)], capture_output=True,
                                  text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as err:
            return self._squeue_failed(submitted, str(err))
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:  # every one of them has left the queue
                return set()
            return self._squeue_failed(submitted, done.stderr.strip())
        alive = set()
        for line in done.stdout.splitlines():
            job, _, state = line.strip().partition("|")
            if state in ALIVE_STATES:
                alive.add(job)
        return alive

    def _squeue_failed(self, submitted: list[Submitted], why: str) -> set[str]:
        if not self._warned:
            print(f"squeue failed ({why}); assuming the jobs still run and trying again", file=sys.stderr)
            self._warned = True
        return {str(item.job.job_id) for item in submitted}

    def end_cause(self, item: Submitted) -> tuple[str, str]:
        info = job_info(str(item.job.job_id))
        state = info.get("JobState", "UNKNOWN")
        tail = _log_tail(item.job)
        where = f"; log {item.job.paths.stderr}" + (f":\n{tail}" if tail else "")
        reason = info.get("Reason", "")
        if state == "CANCELLED":
            return "cancelled", f"JobCancelled: Slurm job {item.job.job_id} was cancelled{where}"
        if state == "TIMEOUT" or reason == "TimeLimit" or state == "DEADLINE":
            return "timeout", (f"JobTimeout: Slurm job {item.job.job_id} reached its time limit "
                               f"({info.get('TimeLimit', '?')}) and was not requeued{where}")
        if state == "OUT_OF_MEMORY":
            return "oom", f"OutOfMemory: Slurm job {item.job.job_id} ran out of memory{where}"
        return "lost", (f"JobLost: Slurm job {item.job.job_id} ended ({state}, reason {reason or 'none'}, exit "
                        f"{info.get('ExitCode', '?')}) without storing this cell{where}")

    def cancel(self, submitted: list[Submitted]) -> None:
        ids = [str(item.job.job_id) for item in submitted]
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60, check=False)

    def before_submitting(self) -> None:
        """Cancel jobs of earlier sessions of this run still in the queue (a head that died left them)."""
        earlier = [job for session in self.store.read_meta()["sessions"][:-1]
                   if (session.get("executor") or {}).get("name") == "slurm" for job in session.get("jobs") or []]
        if not earlier:
            return
        stale = [Submitted(_JobRef(job), [], False, None) for job in earlier]
        alive = self.alive(stale)
        if alive:
            print(f"cancelling {len(alive)} job(s) an earlier session of this run left in the queue: "
                  f"{', '.join(sorted(alive))}", file=sys.stderr)
            subprocess.run(["scancel", *sorted(alive)], capture_output=True, timeout=60, check=False)


@dataclasses.dataclass
class _JobRef:
    job_id: str


def job_info(job_id: str) -> dict[str, str]:
    """``scontrol show job``'s fields for ``job_id`` (``JobState``, ``Reason``, ``ExitCode``, ...), else ``sacct``'s."""
    try:
        done = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=60,
                              check=False)
        if done.returncode == 0 and "JobState=" in done.stdout:
            line = done.stdout.splitlines()[0]
            return dict(re.findall(r"(\w+)=(\S*)", line))
        done = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode,Reason"],
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode == 0 and done.stdout.strip():
            state, exit_code, reason = (done.stdout.strip().splitlines()[-1].split("|") + ["", "", ""])[:3]
            return {"JobState": state.split()[0], "ExitCode": exit_code, "Reason": reason}
    except (OSError, subprocess.SubprocessError):
        pass
    return {}
