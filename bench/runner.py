"""Run suites' cells into a run folder, resumably: the head of a run.

For each suite of the config, in order: ask it for its cells, skip those the
run folder already holds with status ``"ok"`` (so ``--resume`` re-runs the
failed and the missing ones), and hand the others to an executor
(:mod:`bench.executors`: in this process one after another, or in worker
processes, local or on Slurm), which runs each one after seeding ``torch``,
``numpy`` and ``random`` with ``cell.seed``. A cell that raises, or returns a
row that is malformed or whose value is NaN or infinite, is stored as
``"failed"`` with its error and the run goes on. The head alone writes
``meta.json``. Ctrl-C stops the run after the cells finished so far (the ones in
flight are lost, their jobs cancelled); ``--resume`` finishes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import numbers
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from tqdm.auto import tqdm

import interpolators
import suites
from bench.environment import environment, host_record
from bench.store import (  # noqa: F401  (META_FORMAT: re-exported)
    MAX_ARRAY_BYTES,
    META_FORMAT,
    OUTPUTS_LOCK_FILE,
    REPORT_FILE,
    CellRecord,
    RunLock,
    RunStore,
    to_jsonable,
)
from suites.base import Cell, CellResult, RunConfig, Suite
from suites.images import builtin_image_hashes, folder_image_hashes
#: exit code of a run stopped by Ctrl-C (the shell's convention, 128 + SIGINT)
EXIT_INTERRUPTED = 130


def now() -> str:
    """The local time in ISO 8601 with its UTC offset, to the second."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


@dataclasses.dataclass
class Plan:
    """The suites of a config and the cells each one plans, in run order."""

    suites: dict[str, Suite]
    cells: dict[str, list[Cell]]

    @property
    def keys(self) -> list[str]:
        return [cell.key for cells in self.cells.values() for cell in cells]


def make_plan(config: RunConfig) -> Plan:
    """Ask every suite of ``config`` for its cells; raises ``ValueError`` naming a suite that cannot plan.

    A suite rejects options it cannot use (an unknown dataset, a missing folder,
    ...) by raising ``ValueError`` or ``TypeError`` from ``cells``; this also
    happens when a suite returns something other than cells or a cell twice.
    """
    plan = Plan({}, {})
    seen: dict[str, Cell] = {}
    for name in config.suites:
        suite = suites.get(name)
        try:
            cells = list(suite.cells(config))
        except (ValueError, TypeError, FileNotFoundError) as err:
            raise ValueError(f"suite {name!r}: {err}") from err
        for cell in cells:
            if not isinstance(cell, Cell):
                raise TypeError(f"suite {name!r}: cells() must return Cell objects, got {type(cell).__name__}")
            if cell.suite != name:
                raise ValueError(f"suite {name!r}: planned a cell of suite {cell.suite!r}; a suite's cells carry the "
                                 "name it is registered under (set the class's name to it)")
            if cell.key in seen:
                raise ValueError(f"suite {name!r}: planned the cell {cell.key} twice ({cell.params}, seed {cell.seed})")
            seen[cell.key] = cell
        plan.suites[name] = suite
        plan.cells[name] = cells
    return plan


def full_hparams(cell: Cell) -> dict[str, Any]:
    """The interpolator's full hyperparameters: ``cell.hparams`` merged over its defaults.

    Falls back to ``cell.hparams`` when the interpolator cannot be created here
    (the cell then records its own error when it runs).
    """
    try:
        return to_jsonable(interpolators.create(cell.interpolator, **cell.hparams).hparams())
    except Exception:  # noqa: BLE001
        return to_jsonable(dict(cell.hparams))


class CellError(ValueError):
    """A cell returned rows the runner cannot store (malformed, or a value that is NaN or infinite)."""


def check_rows(rows: Any) -> list[dict[str, Any]]:
    """``rows`` as plain JSON types; raises :class:`CellError` unless each has a finite ``value``.

    Each row must be a dict with a ``metric`` (str), a real ``value`` and a
    ``unit`` (str); NaN and infinite values count as a failure of the cell.
    """
    if not isinstance(rows, (list, tuple)):
        raise CellError(f"run_cell must return a list of row dicts, got {type(rows).__name__}")
    try:
        rows = to_jsonable(list(rows))
    except (TypeError, ValueError) as err:
        raise CellError(f"rows are not JSON-serialisable: {err}") from err
    problems = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CellError(f"row {i}: expected a dict, got {type(row).__name__}")
        missing = [k for k in ("metric", "value", "unit") if k not in row]
        if missing:
            raise CellError(f"row {i}: missing {missing}; a row needs 'metric', 'value' and 'unit', got {sorted(row)}")
        value = row["value"]
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise CellError(f"row {i} ({row['metric']}): value must be a real number, got {value!r}")
        if not math.isfinite(value):
            problems.append(f"{row['metric']}={value}")
    if problems:
        raise CellError(f"non-finite value(s): {', '.join(problems)}", rows)
    return rows


def check_arrays(arrays: Any) -> dict[str, np.ndarray]:
    """A cell's arrays as numpy arrays; raises :class:`CellError` for bad names, object arrays or too many bytes.

    Names must be identifiers; the total may not exceed ``MAX_ARRAY_BYTES`` (1 MiB).
    """
    if not isinstance(arrays, dict):
        raise CellError(f"CellResult.arrays: expected a dict of name -> array, got {type(arrays).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise CellError(f"CellResult.arrays: names must be identifiers, got {name!r}")
        array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
        if array.dtype.kind not in "biuf":
            raise CellError(f"CellResult.arrays[{name!r}]: expected a numeric or bool array, got dtype {array.dtype}")
        out[name] = array
    total = sum(a.nbytes for a in out.values())
    if total > MAX_ARRAY_BYTES:
        sizes = ", ".join(f"{k} {a.shape} {a.dtype}" for k, a in out.items())
        raise CellError(
            f"CellResult.arrays: {total} bytes, more than the {MAX_ARRAY_BYTES} a cell may store ({sizes}); "
            "crop, downscale or store uint8/float16"
        )
    return out


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and ``random`` with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def failure_cause(err: BaseException) -> str:
    """The :data:`bench.store.CAUSES` entry of a cell that raised ``err``."""
    if isinstance(err, CellError):
        return "invalid"
    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return "oom"
    return "error"


def run_one(
    suite: Suite, cell: Cell, config: RunConfig, run_dir: Path, host: dict[str, Any] | None = None
) -> CellRecord:
    """Run one cell in this process and return its record; ``KeyboardInterrupt`` passes through.

    ``host`` is added to the record's host record (:func:`bench.environment.host_record`),
    e.g. the executor and the job id.
    """
    hparams = full_hparams(cell)
    started, t0 = now(), time.perf_counter()
    rows: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    error = cause = None
    try:
        seed_everything(cell.seed)
        output = suite.run_cell(cell, config, run_dir)
        if isinstance(output, CellResult):
            arrays = check_arrays(output.arrays)
            output = output.rows
        rows = check_rows(output)
    except Exception as err:  # noqa: BLE001  any error of a cell is recorded, and the run goes on
        if isinstance(err, CellError) and len(err.args) > 1:
            rows = err.args[1]  # keep the rows of a NaN cell: they show which metric broke
        summary = traceback.format_exception(type(err), err, err.__traceback__, limit=-8)
        error = f"{type(err).__name__}: {err.args[0] if isinstance(err, CellError) else err}\n\n" + "".join(summary)
        cause = failure_cause(err)
    return CellRecord(
        cell=cell,
        hparams=hparams,
        status="ok" if error is None else "failed",
        rows=rows,
        error=error,
        started=started,
        finished=now(),
        duration_s=round(time.perf_counter() - t0, 6),
        arrays=tuple(arrays) if error is None else (),
        array_data=arrays if error is None else None,
        cause=cause,
        host=host_record(config.device, **(host or {})),
    )


def image_inputs(config: RunConfig, plan: Plan) -> dict[str, Any]:
    """The images the plan's suites read, by content hash (sha256), for ``meta.json``'s ``inputs``.

    A suite that declares an ``images`` option reads the folder it names (``--images``):
    ``images`` maps that folder to ``{file name: sha256 of the file}``; without one it reads
    the built-in images: ``builtin_images`` maps each name to the sha256 of its decoded pixels
    (:func:`suites.images.builtin_image_hashes`).
    """
    folders: set[str] = set()
    builtin = False
    for name, suite in plan.suites.items():
        if "images" not in suite.options:
            continue
        folder = config.options_for(name).get("images")
        if folder is None:
            builtin = True
        else:
            folders.add(str(folder))
    return {
        "images": {folder: folder_image_hashes(folder) for folder in sorted(folders)},
        "builtin_images": builtin_image_hashes() if builtin else {},
    }


def input_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two :func:`image_inputs` records, one phrase per image (changed, added, removed)."""
    changes = []
    for folder in sorted(set(recorded.get("images", {})) | set(current.get("images", {}))):
        before, after = recorded.get("images", {}).get(folder), current.get("images", {}).get(folder)
        if before is None or after is None:
            changes.append(f"the folder {folder} is {'new to' if before is None else 'no longer read by'} the run")
            continue
        for file in sorted(set(before) | set(after)):
            path = str(Path(folder) / file)
            if file not in after:
                changes.append(f"{path} was removed")
            elif file not in before:
                changes.append(f"{path} was added")
            elif before[file] != after[file]:
                changes.append(f"{path} changed (sha256 {before[file][:12]}... then, {after[file][:12]}... now)")
    before, after = recorded.get("builtin_images", {}), current.get("builtin_images", {})
    for name in sorted(set(before) | set(after)) if before and after else ():
        if before.get(name) != after.get(name):
            changes.append(f"the built-in image {name!r} changed (another scikit-image?)")
    if bool(before) != bool(after):
        changes.append(f"the built-in images are {'no longer' if before else 'now'} read")
    return changes


def new_meta(config: RunConfig, plan: Plan, command: list[str] | None) -> dict[str, Any]:
    """The ``meta.json`` of a new run: config, suites, planned cells, input hashes, environment and times."""
    started = now()
    return {
        "format": META_FORMAT,
        "config": config.to_json(),
        "suites": {
            name: {
                "summary": suite.summary,
                "x_param": suite.x_param,
                "x_symbol": suite.x_symbol,
                "x_doc": suite.x_doc,
                "headline": suite.headline,
                "metrics": {metric: spec.to_json() for metric, spec in suite.metrics.items()},
                "class": f"{type(suite).__module__}.{type(suite).__qualname__}",
            }
            for name, suite in plan.suites.items()
        },
        "planned": plan.keys,
        "inputs": image_inputs(config, plan),
        "environment": environment(config.device),
        "command": command,
        "started": started,
        "finished": None,
        "sessions": [],
    }


class ExecutorError(RuntimeError):
    """An executor could not run the cells (e.g. ``sbatch`` refused the jobs); the cells stored so far are kept."""


@dataclasses.dataclass
class Outcome:
    """How a session ended: cells run now, planned cells failed in the store, Ctrl-C, the report, an executor error."""

    ran: int
    failed: int
    interrupted: bool
    report_written: bool = True
    error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 1 if self.failed or not self.report_written or self.error else 0


class Progress:
    """The head's view of a session: one tqdm bar per suite on ``log``, cells finished, failures announced."""

    def __init__(self, plan: Plan, todo: dict[str, list[Cell]], enabled: bool, log: TextIO) -> None:
        self.log = log
        self.ran = 0
        self._suite_of = {cell.key: name for name, cells in todo.items() for cell in cells}
        self._bars = {
            name: tqdm(
                total=len(plan.cells[name]),
                initial=len(plan.cells[name]) - len(todo[name]),
                desc=name,
                unit="cell",
                file=log,
                disable=not enabled,
                dynamic_ncols=True,
                position=i,
                leave=True,
            )
            for i, name in enumerate(plan.suites)
        }

    def running(self, cell: Cell, note: str = "") -> None:
        """Show ``cell`` as the one in flight in its suite's bar (``note``: e.g. how many run at once)."""
        text = f"{cell.interpolator} {cell.params} seed={cell.seed}"
        self._bars[cell.suite].set_postfix_str(f"{text} {note}".strip(), refresh=False)

    def finished(self, record: CellRecord) -> None:
        """Count a cell whose record is now in the store; announce it on ``log`` when it failed."""
        self.ran += 1
        if not record.ok:
            first_line = (record.error or "").splitlines()[0] if record.error else record.cause
            cell = record.cell
            tqdm.write(f"FAILED {cell.key} ({cell.interpolator}, {cell.params}): {first_line}", file=self.log)
        self._bars[self._suite_of.get(record.key, record.cell.suite)].update(1)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def execute(
    store: RunStore,
    config: RunConfig,
    plan: Plan,
    *,
    progress: bool = True,
    command: list[str] | None = None,
    log: TextIO | None = None,
    executor: Any = None,
    skip_failed: bool = False,
) -> Outcome:
    """Run the cells of ``plan`` that ``store`` does not hold as OK, then write the tables and the report.

    ``executor`` (:mod:`bench.executors`; default: inline, one cell after another in this
    process) runs them; with ``skip_failed`` the cells stored as failed are left as they are.
    The session holds the run's lock (:class:`bench.store.RunLock`) from start to end: a second
    writer gets :class:`bench.store.RunLockedError` before anything is written. Cell files that
    cannot be used (:meth:`RunStore.scan_cells`) are set aside first, named on ``log``, and their
    cells run again.
    """
    store.lock.acquire(command=command)
    try:
        return _execute(store, config, plan, progress=progress, command=command, log=log or sys.stderr,
                        executor=executor, skip_failed=skip_failed)
    finally:
        store.lock.release()


def _execute(store: RunStore, config: RunConfig, plan: Plan, *, progress: bool, command: list[str] | None,
             log: TextIO, executor: Any, skip_failed: bool) -> Outcome:
    from bench.executors import InlineExecutor

    executor = executor or InlineExecutor()
    meta = store.read_meta()
    meta["planned"] = plan.keys  # what counts as foreign: this session's plan
    store.write_meta(meta)
    bad = store.bad_cells()
    set_aside = []
    for item, moved in zip(bad, store.set_aside(bad)):
        where = str(moved.relative_to(store.root))
        print(f"set aside {item.name} ({item.reason}) as {where}: it is not counted, and a planned cell it held "
              "runs again", file=log)
        set_aside.append({"file": item.name, "reason": item.reason, "moved_to": where})
    records = store.read_cells()
    done = {key for key, record in records.items() if record.ok or skip_failed}
    session: dict[str, Any] = {
        "started": now(),
        "command": command,
        "environment": environment(config.device),
        "executor": executor.describe(),
    }
    if set_aside:
        session["set_aside"] = set_aside
    meta = store.read_meta()
    meta["sessions"].append(session)
    store.write_meta(meta)

    def note(**fields: Any) -> None:
        """Record ``fields`` (e.g. the jobs submitted) in this session's entry of ``meta.json``."""
        session.update(fields)
        meta = store.read_meta()
        meta["sessions"][-1] = session
        store.write_meta(meta)

    todo = {name: [cell for cell in cells if cell.key not in done] for name, cells in plan.cells.items()}
    bars = Progress(plan, todo, progress, log)
    interrupted, error = False, None
    try:
        executor.run(store, config, plan, todo, bars, note)
    except ExecutorError as err:
        error = str(err)
        print(f"\n{error}\nthe cells finished so far are saved in {store.root}; finish with: "
              f"python -m bench run --resume {store.root}", file=log)
    except KeyboardInterrupt:
        interrupted = True
        print(
            f"\ninterrupted: {bars.ran} cell(s) finished in this session are saved in {store.root}; "
            f"{executor.lost_on_interrupt}. Finish with: python -m bench run --resume {store.root}",
            file=log,
        )
    finally:
        bars.close()

    records = store.read_cells()
    planned = set(plan.keys)
    failed = sum(1 for key, record in records.items() if key in planned and not record.ok)
    session |= {"finished": now(), "ran": bars.ran, "failed": failed, "interrupted": interrupted, "error": error}
    meta = store.read_meta()
    meta["sessions"][-1] = session
    meta["finished"] = None if interrupted or error else session["finished"]
    store.write_meta(meta)
    written = write_outputs(store, log=log)
    return Outcome(ran=bars.ran, failed=failed, interrupted=interrupted, report_written=written, error=error)


def write_outputs(store: RunStore, log: TextIO | None = None) -> bool:
    """Rebuild ``results.csv``, ``summary.csv`` and ``report.html``; returns whether the report was written.

    The tables come first, so a report that cannot be drawn does not cost them;
    its error is printed to ``log`` instead. Both are built from one reading of the cells
    (:meth:`RunStore.snapshot`), and the whole rebuild, from that reading to the last
    write, holds ``RUN/.outputs.lock`` (waiting for it): of two rebuilds,
    the one that finishes last has read the cells last, so a ``bench report`` started
    while a run writes cannot leave an older report behind the run's final one.
    """
    from bench.report import write_report

    log = log or sys.stderr
    with RunLock(store.root, OUTPUTS_LOCK_FILE).acquire(wait=True):
        store = store.snapshot()  # the tables and the report of one and the same set of cells
        results, _ = store.write_tables()
        try:
            write_report(store, results)
        except Exception as err:  # noqa: BLE001  the cells and tables are safe; say what broke
            print(f"report: could not write {store.root / REPORT_FILE}: {type(err).__name__}: {err}", file=log)
            traceback.print_exc(file=log)
            return False
    return True
