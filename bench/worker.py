"""The worker side of ``--executor local|slurm``: a submitit job that runs cells, each in its own process.

A job (:class:`CellJob`, called with a :class:`WorkerTask`) walks its list of
cells; for each one it first *claims* it (``claims/<key>`` in the session's
folder, created exclusively, so that several local workers can share one list
and each cell runs once), then forks a process that runs the cell
(:func:`bench.runner.run_one`) and writes its cell file atomically. The job
waits for that process with the cell's time limit and, when it dies or runs
too long, writes the cell file itself: failed, with the cause (``signal``
with the signal's name, ``oom`` when the kernel's OOM killer sent that SIGKILL,
``timeout``, ``exit``) and the last lines the cell printed. Only cell files are
written into the run folder; ``meta.json`` is the head's.

The job is submitit-``Checkpointable``: when Slurm (or the local executor) is
about to stop it, at its time limit or on preemption, submitit calls
:meth:`CellJob.checkpoint`, which stops the cell in flight and requeues the
job. The requeued job skips the cells it finished and runs the stopped one
again; a suite that checkpoints (classify, every epoch) continues from its
last checkpoint, so a requeue loses at most one epoch. After
``max_requeues`` time-outs submitit gives up, and the cell in flight is stored
as failed with cause ``timeout``.

Cells run in forked processes so that a crash (a segfault in a native
kernel), a kill or a hang costs that cell alone, and the job, which has
imported torch and the suites once, goes on with the next cell without paying
the start-up again. The job's own process never runs a torch op or touches
CUDA, so forking it is safe; the cell process sets its thread count from the
CPUs the job was given.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import select
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import submitit
import torch

import suites
from bench.environment import host_record
from bench.runner import EXIT_INTERRUPTED, full_hparams, now, run_one
from bench.store import CellRecord, RunStore
from suites.base import Cell, RunConfig

#: exit code of a cell process that stored its cell
EXIT_STORED = 0
#: lines of a dead cell's output kept in its error
TAIL_LINES = 30
#: folders of a session (``RUN/jobs/<session>/``): who took which cell, and what each cell printed
CLAIMS_DIR = "claims"
LOGS_DIR = "cell-logs"

#: pid of the cell process in flight in this job (module state: the job object itself is pickled)
_child_pid: int | None = None


@dataclasses.dataclass
class WorkerTask:
    """What one job is told: the run, the session's folder, the cells it may run and its limits.

    ``cells`` are ``Cell.to_json()`` dicts in the order to run them; ``threads`` is the torch
    thread count of each cell (``None``: the CPUs Slurm gave the job, every CPU of the node for an
    ``exclusive`` one); ``cell_timeout_s`` stops a cell that runs longer; ``head_pid`` (local jobs)
    makes the job stop taking cells once the head process is gone.
    """

    run_dir: str
    session_dir: str
    config: dict[str, Any]
    cells: list[dict[str, Any]]
    executor: str
    threads: int | None = None
    cell_timeout_s: float | None = None
    head_pid: int | None = None
    exclusive: bool = False


# --- claims ------------------------------------------------------------------------------------


class Claims:
    """``SESSION/claims/<key>``: which job took which cell, how often it started it, and whether it finished.

    A claim file is created exclusively by the first job that takes the cell; its lines are
    ``start JOB TIME`` per start (a requeued job starts its cell again) and ``done`` at the end.
    """

    def __init__(self, session_dir: Path | str) -> None:
        self.dir = Path(session_dir) / CLAIMS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)

    def _lines(self, key: str) -> list[str]:
        try:
            return (self.dir / key).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def owner(self, key: str) -> str | None:
        """The job that claimed ``key``, or ``None``."""
        lines = self._lines(key)
        return lines[0].split()[1] if lines and lines[0].startswith("start ") else None

    def is_done(self, key: str) -> bool:
        return self._lines(key)[-1:] == ["done"]

    def claim(self, key: str, job_id: str) -> int | None:
        """Take ``key`` for ``job_id``: the attempt number (1, then 2, ... after requeues), or ``None`` if not ours."""
        path = self.dir / key
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND, 0o644)
        except FileExistsError:
            if self.owner(key) != job_id or self.is_done(key):
                return None
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, f"start {job_id} {now()}\n".encode())
        finally:
            os.close(fd)
        return sum(line.startswith("start ") for line in self._lines(key))

    def finish(self, key: str) -> None:
        with open(self.dir / key, "a", encoding="utf-8") as f:
            f.write("done\n")


# --- where the job runs --------------------------------------------------------------------------


def job_id() -> str:
    """This job's id as submitit's ``Job.job_id`` spells it (``123``, ``123_4`` for an array task), or the pid."""
    try:
        return str(submitit.JobEnvironment().job_id)
    except (RuntimeError, KeyError):
        return str(os.getpid())


def allotted_cpus(whole_node: bool = False) -> int | None:
    """The CPUs Slurm gave this job's task (``SLURM_CPUS_PER_TASK``, else ``SLURM_CPUS_ON_NODE``), or ``None``.

    With ``whole_node`` (an exclusive job) every CPU of the node: ``SLURM_CPUS_ON_NODE`` first.
    """
    order = ("SLURM_CPUS_ON_NODE", "SLURM_CPUS_PER_TASK") if whole_node else ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE")
    for variable in order:
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def oom_kill_count() -> int | None:
    """How many processes the kernel's OOM killer has killed in this process's memory cgroup, or ``None``.

    cgroup v2: ``memory.events``'s ``oom_kill``; v1: ``memory.oom_control``'s ``oom_kill``.
    """
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        path = path.lstrip("/")
        if controllers == "":
            candidates += [Path("/sys/fs/cgroup", path, "memory.events"),
                           Path("/sys/fs/cgroup/unified", path, "memory.events")]
        elif "memory" in controllers.split(","):
            candidates.append(Path("/sys/fs/cgroup/memory", path, "memory.oom_control"))
    for candidate in candidates:
        try:
            for entry in candidate.read_text().splitlines():
                name, _, value = entry.partition(" ")
                if name == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def _head_alive(pid: int | None) -> bool:
    """Whether the process ``pid`` still runs (a zombie, dead but not yet reaped, does not); ``None``: no head to watch."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# --- one cell in its own process -----------------------------------------------------------------


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _cell_process(suite, cell: Cell, config: RunConfig, store: RunStore, threads: int,
                  host: dict[str, Any], log_path: Path) -> None:
    """The forked cell process: run the cell, store its record, exit (never returns)."""
    code = 1
    try:
        # the job handles submitit's signals (requeue, preemption) and stops this process itself
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _die_with_parent()
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # every attempt's output
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        faulthandler.enable(file=sys.stderr, all_threads=True)  # a segfault leaves the Python stack in the log
        torch.set_num_threads(threads)
        store.write_cell(run_one(suite, cell, config, store.root, host))
        code = EXIT_STORED
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except BaseException:  # noqa: BLE001  SystemExit or worse from inside the cell: the job records it
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when the job's process dies (no orphaned cell keeps running)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _wait(pid: int, timeout_s: float | None) -> tuple[int, bool]:
    """``(wait status, timed out)`` of the process ``pid``, killed with SIGKILL after ``timeout_s`` seconds."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):
        handle = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status, False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                os.kill(pid, signal.SIGKILL)
                return os.waitpid(pid, 0)[1], True
            if handle is not None:
                select.select([handle], [], [], remaining)
            else:
                time.sleep(0.02 if remaining is None else min(0.02, remaining))
    finally:
        if handle is not None:
            os.close(handle)


def death_cause(status: int, timed_out: bool, timeout_s: float | None, oom_killed: bool) -> tuple[str, str]:
    """``(cause, message)`` for a cell process that ended with wait ``status`` without storing its cell.

    >>> death_cause(signal.SIGSEGV, False, None, False)
    ('signal', 'Killed: the cell process was killed by signal SIGSEGV (Segmentation fault)')
    >>> death_cause(signal.SIGKILL, False, None, True)[0]
    'oom'
    """
    if timed_out:
        return "timeout", f"CellTimeout: the cell ran past its time limit (--cell-timeout {timeout_s:g} s) and was stopped"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name
        if sig == signal.SIGKILL and oom_killed:
            return "oom", "OutOfMemory: the kernel's OOM killer stopped the cell process (SIGKILL)"
        return "signal", f"Killed: the cell process was killed by signal {name} ({signal.strsignal(sig)})"
    return "exit", f"Exited: the cell process exited with code {os.waitstatus_to_exitcode(status)} without storing the cell"


def run_isolated(
    suite, cell: Cell, config: RunConfig, store: RunStore, *, threads: int, timeout_s: float | None,
    host: dict[str, Any], log_dir: Path,
) -> CellRecord:
    """Run ``cell`` in a forked process and return its stored record (written by that process, or here when it died)."""
    global _child_pid
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{cell.key}.log"
    oom_before = oom_kill_count()
    started, t0 = now(), time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _cell_process(suite, cell, config, store, threads, host, log_path)
    _child_pid = pid
    try:
        status, timed_out = _wait(pid, timeout_s)
    except BaseException:
        _kill(pid)  # the job is being stopped (requeue, Ctrl-C): the cell goes with it
        raise
    finally:
        _child_pid = None
    output = _tail(log_path)
    if output:
        print(f"--- cell {cell.key} ---\n{output}", file=sys.stderr, flush=True)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_STORED:
        record = store.read_cell(cell.key)
        if record is not None:
            return record
    oom_after = oom_kill_count()
    oom_killed = oom_before is not None and oom_after is not None and oom_after > oom_before
    cause, message = death_cause(status, timed_out, timeout_s, oom_killed)
    if output:
        message += f"\n\nlast lines the cell printed ({log_path}):\n{output}"
    record = CellRecord(
        cell=cell, hparams=full_hparams(cell), status="failed", rows=[], error=message, started=started,
        finished=now(), duration_s=round(time.perf_counter() - t0, 6), cause=cause,
        host=host_record(config.device, threads=threads, **host),
    )
    store.write_cell(record)
    return record


def _failed_here(cell: Cell, config: RunConfig, store: RunStore, cause: str, message: str,
                 host: dict[str, Any]) -> None:
    """Store ``cell`` as failed by this job (the cell process never ran or was stopped for good)."""
    stamp = now()
    store.write_cell(CellRecord(
        cell=cell, hparams=full_hparams(cell), status="failed", rows=[], error=message, started=stamp,
        finished=stamp, duration_s=0.0, cause=cause, host=host_record(config.device, **host),
    ))


# --- the job -------------------------------------------------------------------------------------


class CellJob(submitit.helpers.Checkpointable):
    """A submitit job that runs the cells of a :class:`WorkerTask` it can claim, each in its own process."""

    def __call__(self, task: WorkerTask) -> dict[str, Any]:
        me = job_id()
        store = RunStore(task.run_dir)
        config = RunConfig.from_json(task.config)
        claims = Claims(task.session_dir)
        threads = task.threads or allotted_cpus(task.exclusive) or torch.get_num_threads()
        loaded: dict[str, Any] = {}
        ran = 0
        for data in task.cells:
            if not _head_alive(task.head_pid):
                print(f"bench worker {me}: the head process {task.head_pid} is gone; stopping", file=sys.stderr)
                break
            cell = Cell.from_json(data)
            attempt = claims.claim(cell.key, me)
            if attempt is None:
                continue
            host = {"executor": task.executor, "job_id": me, "attempt": attempt}
            print(f"bench worker {me}: cell {cell.key} (attempt {attempt}, {threads} thread(s))",
                  file=sys.stderr, flush=True)
            try:
                if cell.suite not in loaded:
                    loaded[cell.suite] = suites.get(cell.suite)
            except Exception as err:  # noqa: BLE001  a suite that cannot load here fails its cells, not the job
                _failed_here(cell, config, store, "error", f"{type(err).__name__}: suite {cell.suite!r} could not "
                             f"be loaded in the worker: {err}", host)
                claims.finish(cell.key)
                continue
            try:
                run_isolated(loaded[cell.suite], cell, config, store, threads=threads,
                             timeout_s=task.cell_timeout_s, host=host,
                             log_dir=Path(task.session_dir) / LOGS_DIR)
            except submitit.core.utils.UncompletedJobError as err:  # submitit's last time-out: no more requeues
                _failed_here(cell, config, store, "timeout", f"JobTimeout: the job reached its time limit and was "
                             f"not requeued again ({err})", host)
                claims.finish(cell.key)
                raise
            claims.finish(cell.key)
            ran += 1
        return {"job_id": me, "ran": ran}

    def checkpoint(self, task: WorkerTask) -> submitit.helpers.DelayedSubmission:
        """Stop the cell in flight (it starts again, from its own checkpoint if it has one) and requeue the job."""
        if _child_pid is not None:
            print(f"bench worker: stopping cell process {_child_pid} for a requeue", file=sys.stderr, flush=True)
            _kill(_child_pid)
        return submitit.helpers.DelayedSubmission(CellJob(), task)
