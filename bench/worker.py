"""The worker side of ``--executor local|slurm``: a submitit job that runs cells, each in its own process.

A job (:class:`CellJob`, called with a :class:`WorkerTask`) forks a *cell
process*, which walks the job's list of cells: it *claims* each one
(``claims/<key>`` in the session's folder, created exclusively, so that
several local workers can share one list and each cell runs once), runs it
(:func:`bench.runner.run_one`) and writes its cell file atomically, telling the
job on a pipe when it starts and ends each cell. The job follows it with the
cell's time limit and, when it dies or runs a cell too long, writes that cell's
file itself: failed, with the cause (``signal`` with the signal's name, ``oom``
when the kernel's OOM killer sent that SIGKILL, ``timeout``, ``exit``) and the
last lines the cell printed; then it forks a new cell process for the rest.
Only cell files are written into the run folder; ``meta.json`` is the head's.

The job is submitit-``Checkpointable``: when Slurm (or the local executor) is
about to stop it, at its time limit or on preemption, submitit calls
:meth:`CellJob.checkpoint`, which stops the cell in flight and requeues the
job. The requeued job skips the cells it finished and runs the stopped one
again; a suite that checkpoints (classify, every epoch) continues from its
last checkpoint, so a requeue loses at most one epoch. After
``max_requeues`` time-outs submitit gives up, and the cell in flight is stored
as failed with cause ``timeout``.

Cells run in a forked process so that a crash (a segfault in a native
kernel), a kill or a hang costs that cell alone, and the job, which has
imported torch and the suites once, forks the next process without paying the
start-up again; while nothing goes wrong one process runs all of a job's
cells, keeping its warm-up and caches, as an inline run does. The job's own
process never runs a torch op or touches CUDA, so forking it is safe; the cell
process sets its thread count from the CPUs the job was given.
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
    order = ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE")
    if whole_node:
        order = order[::-1]
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
    """Whether the process ``pid`` runs (a zombie, dead but not reaped yet, does not); ``None``: no head to watch."""
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


# --- the cell process: cells one after another, until the list is done or one of them kills it ---------


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when the job's process dies (no orphaned cell keeps running)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _output_to(path: Path) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to the end of ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # every attempt's output
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _cell_process(task: WorkerTask, me: str, threads: int, pipe: int) -> None:
    """The forked cell process: claim, run and store cells, saying ``start``/``done`` on ``pipe``; never returns."""
    code = 1
    try:
        # the job handles submitit's signals (requeue, preemption) and stops this process itself
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _die_with_parent()
        faulthandler.enable(file=sys.stderr, all_threads=True)  # a segfault leaves the Python stack in the log
        torch.set_num_threads(threads)
        store, config, claims = RunStore(task.run_dir), RunConfig.from_json(task.config), Claims(task.session_dir)
        logs = Path(task.session_dir) / LOGS_DIR
        loaded: dict[str, Any] = {}
        for data in task.cells:
            if not _head_alive(task.head_pid):
                os.write(pipe, b"headless\n")
                break
            cell = Cell.from_json(data)
            attempt = claims.claim(cell.key, me)
            if attempt is None:
                continue
            host = {"executor": task.executor, "job_id": me, "attempt": attempt}
            _output_to(logs / f"{cell.key}.log")
            os.write(pipe, f"start {cell.key} {attempt}\n".encode())
            try:
                suite = loaded[cell.suite] = loaded.get(cell.suite) or suites.get(cell.suite)
            except Exception as err:  # noqa: BLE001  a suite that cannot load here fails its cells, not the job
                _store_failed(cell, config, store, "error", f"{type(err).__name__}: suite {cell.suite!r} could not be "
                              f"loaded in the worker: {err}", host)
            else:
                store.write_cell(run_one(suite, cell, config, store.root, host))
            claims.finish(cell.key)
            os.write(pipe, f"done {cell.key}\n".encode())
        code = 0
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except BaseException:  # noqa: BLE001  SystemExit or worse from inside a cell: the job records it
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def death_cause(status: int, timed_out: bool, timeout_s: float | None, oom_killed: bool) -> tuple[str, str]:
    """``(cause, message)`` for a cell process that ended with wait ``status`` without storing its cell.

    >>> death_cause(signal.SIGSEGV, False, None, False)
    ('signal', 'Killed: the cell process was killed by signal SIGSEGV (Segmentation fault)')
    >>> death_cause(signal.SIGKILL, False, None, True)[0]
    'oom'
    """
    if timed_out:
        return "timeout", (f"CellTimeout: the cell ran past its time limit (--cell-timeout {timeout_s:g} s) "
                           "and was stopped")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name
        if sig == signal.SIGKILL and oom_killed:
            return "oom", "OutOfMemory: the kernel's OOM killer stopped the cell process (SIGKILL)"
        return "signal", f"Killed: the cell process was killed by signal {name} ({signal.strsignal(sig)})"
    code = os.waitstatus_to_exitcode(status)
    return "exit", f"Exited: the cell process exited with code {code} without storing the cell"


def _store_failed(cell: Cell, config: RunConfig, store: RunStore, cause: str, message: str, host: dict[str, Any],
                  started: str | None = None, duration_s: float = 0.0) -> None:
    stamp = now()
    store.write_cell(CellRecord(
        cell=cell, hparams=full_hparams(cell), status="failed", rows=[], error=message, started=started or stamp,
        finished=stamp, duration_s=round(duration_s, 6), cause=cause, host=host_record(config.device, **host),
    ))


@dataclasses.dataclass
class _InFlight:
    """The cell a cell process said it started: the cell, its attempt, and when (wall clock and monotonic)."""

    cell: Cell
    attempt: int
    started: str
    t0: float
    oom_kills: int | None


class CellProcesses:
    """Run a task's cells in forked cell processes, one at a time; a new process after one dies.

    A cell process runs the cells it can claim one after another (so it imports, warms up and
    fills its caches once, as an inline run does) and tells this process on a pipe when it starts
    and finishes each one. When it dies, is killed or runs a cell past ``cell_timeout_s``, this
    process stores the cell in flight as failed with the cause and forks another one for the rest.
    """

    #: cell processes that may die in a row before taking a cell, before the job gives up
    MAX_IDLE_DEATHS = 3

    def __init__(self, task: WorkerTask, me: str, threads: int) -> None:
        self.task, self.me, self.threads = task, me, threads
        self.store, self.config = RunStore(task.run_dir), RunConfig.from_json(task.config)
        self.claims = Claims(task.session_dir)
        self.logs = Path(task.session_dir) / LOGS_DIR
        self.cells = {cell.key: cell for cell in map(Cell.from_json, task.cells)}
        self.in_flight: _InFlight | None = None
        self.pid: int | None = None  # of the cell process
        self.ran = 0

    def run(self) -> int:
        """Run every cell this job can claim; returns how many it ran."""
        self.logs.mkdir(parents=True, exist_ok=True)
        idle_deaths = 0
        while True:
            status, timed_out, headless = self._one_process()
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_INTERRUPTED:
                raise KeyboardInterrupt
            if self.in_flight is None:
                if (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0) or headless:
                    return self.ran
                idle_deaths += 1
                if idle_deaths >= self.MAX_IDLE_DEATHS:
                    raise RuntimeError(f"the cell process died {idle_deaths} times before taking a cell "
                                       f"({death_cause(status, False, None, False)[1]})")
                continue
            idle_deaths = 0
            oom_after = oom_kill_count()
            before = self.in_flight.oom_kills
            oom_killed = before is not None and oom_after is not None and oom_after > before
            cause, message = death_cause(status, timed_out, self.task.cell_timeout_s, oom_killed)
            self.fail_in_flight(cause, message)

    def fail_in_flight(self, cause: str, message: str) -> None:
        """Store the cell in flight as failed (``cause``, ``message`` and what it printed) and finish its claim."""
        flight, self.in_flight = self.in_flight, None
        if flight is None:
            return
        log = self.logs / f"{flight.cell.key}.log"
        output = _tail(log)
        if output:
            message += f"\n\nlast lines the cell printed ({log}):\n{output}"
        host = {"executor": self.task.executor, "job_id": self.me, "attempt": flight.attempt, "threads": self.threads,
                "pid": self.pid}
        _store_failed(flight.cell, self.config, self.store, cause, message, host, flight.started,
                      time.perf_counter() - flight.t0)
        self.claims.finish(flight.cell.key)
        print(f"bench worker {self.me}: cell {flight.cell.key} failed ({cause})", file=sys.stderr, flush=True)

    def _one_process(self) -> tuple[int, bool, bool]:
        """Fork a cell process and follow it to its end: ``(wait status, timed out, stopped for a gone head)``."""
        global _child_pid
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _cell_process(self.task, self.me, self.threads, write_end)
        os.close(write_end)
        _child_pid = self.pid = pid
        try:
            return self._follow(pid, read_end)
        except BaseException:
            _kill(pid)  # the job is being stopped (requeue, Ctrl-C): the cell goes with it
            raise
        finally:
            _child_pid = None
            os.close(read_end)

    def _follow(self, pid: int, pipe: int) -> tuple[int, bool, bool]:
        try:
            exited = os.pidfd_open(pid)  # readable once the process has exited (a grandchild may hold the pipe)
        except (AttributeError, OSError):
            exited = None
        buffer, headless, timed_out, status = b"", False, False, None
        try:
            while True:
                timeout = 0.05 if exited is None else None
                if self.in_flight is not None and self.task.cell_timeout_s is not None:
                    left = max(0.0, self.in_flight.t0 + self.task.cell_timeout_s - time.perf_counter())
                    timeout = left if timeout is None else min(timeout, left)
                ready, _, _ = select.select([pipe] + ([exited] if exited is not None else []), [], [], timeout)
                if pipe in ready:
                    chunk = os.read(pipe, 65536)
                    buffer, headless = self._messages(buffer + chunk, headless)
                    if chunk:
                        continue
                    break  # end of file: the process is gone
                if exited is None:
                    done, polled = os.waitpid(pid, os.WNOHANG)
                    status = polled if done else None
                if exited is not None and exited in ready or status is not None:
                    os.set_blocking(pipe, False)
                    try:
                        while chunk := os.read(pipe, 65536):
                            buffer, headless = self._messages(buffer + chunk, headless)
                    except BlockingIOError:
                        pass
                    break
                if (self.in_flight is not None and self.task.cell_timeout_s is not None
                        and time.perf_counter() - self.in_flight.t0 >= self.task.cell_timeout_s):
                    os.kill(pid, signal.SIGKILL)
                    timed_out = True
                    break
            return (os.waitpid(pid, 0)[1] if status is None else status), timed_out, headless
        finally:
            if exited is not None:
                os.close(exited)

    def _messages(self, buffer: bytes, headless: bool) -> tuple[bytes, bool]:
        """Act on the whole lines of ``buffer`` (``start KEY ATTEMPT``, ``done KEY``, ``headless``); returns the rest."""
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            word, *args = line.decode().split()
            if word == "start":
                key, attempt = args[0], int(args[1])
                self.in_flight = _InFlight(self.cells[key], attempt, now(), time.perf_counter(), oom_kill_count())
                print(f"bench worker {self.me}: cell {key} (attempt {attempt}, {self.threads} thread(s))",
                      file=sys.stderr, flush=True)
            elif word == "done":
                self.in_flight = None
                self.ran += 1
            elif word == "headless":
                headless = True
                print(f"bench worker {self.me}: the head process {self.task.head_pid} is gone; stopping",
                      file=sys.stderr, flush=True)
        return rest, headless


# --- the job -------------------------------------------------------------------------------------


class CellJob(submitit.helpers.Checkpointable):
    """A submitit job that runs the cells of a :class:`WorkerTask` it can claim, in forked cell processes."""

    def __call__(self, task: WorkerTask) -> dict[str, Any]:
        me = job_id()
        threads = task.threads or allotted_cpus(task.exclusive) or torch.get_num_threads()
        processes = CellProcesses(task, me, threads)
        try:
            ran = processes.run()
        except submitit.core.utils.UncompletedJobError as err:  # submitit's last time-out: no more requeues
            processes.fail_in_flight("timeout", f"JobTimeout: the job reached its time limit and was not requeued "
                                     f"again ({err})")
            raise
        return {"job_id": me, "ran": ran}

    def checkpoint(self, task: WorkerTask) -> submitit.helpers.DelayedSubmission:
        """Stop the cell in flight (it starts again, from its own checkpoint if it has one) and requeue the job."""
        if _child_pid is not None:
            print(f"bench worker: stopping cell process {_child_pid} for a requeue", file=sys.stderr, flush=True)
            _kill(_child_pid)
        return submitit.helpers.DelayedSubmission(CellJob(), task)
