"""The run folder: one JSON file per finished cell, ``meta.json``, ``results.csv`` and ``summary.csv``.

Layout of a run folder::

    RUN/
      meta.json          format version, versions, device, threads, git commit, config, planned cell keys,
                         image hashes, times, sessions
      .lock              the writer's lock (``flock``): held by the process running the run
      .outputs.lock      held while the tables and the report are rebuilt
      cells/<key>.json   one file per finished cell (status "ok" or "failed"), written atomically
      cells/<key>.npz    the arrays a cell returned (pictures, trajectories), if any, written before the .json
      cells/set-aside/   cell files that could not be used (unreadable, foreign, non-finite), with the reason
      results.csv        every row of every OK cell, tidy long format
      summary.csv        n, mean, std and the 95% t-interval of ``value`` per group (units pooled)
      report.html        the self-contained report (:mod:`bench.report`)

The cell files are the source of truth: ``results.csv``, ``summary.csv`` and
``report.html`` are rebuilt from them (``python -m bench report RUN``). Every
file is written to a temporary file in the same folder and moved into place
with ``os.replace``, so a crash leaves either the old file or the new one,
never a partial one. ``meta.json`` is written before anything else of a new
run, so a folder is either a run or (after a kill while it was being made) a
folder holding nothing but a lock file or a temporary file, which a new run
may take (:func:`is_unused`).

One process writes a run at a time: it holds an exclusive ``flock`` on
``RUN/.lock`` (:class:`RunLock`); a second writer gets :class:`RunLockedError`,
naming the holder's pid. Worker processes write only their cell files and take
no lock. Rebuilding the tables and the report holds ``RUN/.outputs.lock``, so
a ``bench report`` run while the run writes cannot overwrite the run's final
report with an older snapshot.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import json
import math
import numbers
import os
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.stats import CONFIDENCE, replicate_columns, t_quantile  # noqa: F401  (t_quantile: re-exported)
from suites.base import Cell, RunConfig

#: the layout version of ``meta.json`` (and of the folder); a run of another version is refused on open
META_FORMAT = 1
META_FILE = "meta.json"
CELLS_DIR = "cells"
#: where unusable cell files go, each beside a ``<name>.reason.txt`` saying why
SET_ASIDE_DIR = "set-aside"
LOCK_FILE = ".lock"
OUTPUTS_LOCK_FILE = ".outputs.lock"
#: bytes kept free under the system's path limit for the run's own files (``cells/<key>.json``, temporary files)
PATH_RESERVE = 256
RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.csv"
REPORT_FILE = "report.html"

#: columns the runner adds to a cell's rows to identify it (``Cell.params`` keys follow ``hparams``)
ID_COLUMNS = ("suite", "interpolator", "hparams")
ROW_COLUMNS = ("seed", "metric", "value", "unit")
SUMMARY_STATS = ("n", "mean", "std", "ci_low", "ci_high")
#: the most bytes of arrays one cell may store (a cell that returns more fails, saying so)
MAX_ARRAY_BYTES = 1 << 20

#: why a cell failed: it raised (``error``); it returned rows that cannot be stored or a NaN
#: (``invalid``); it ran out of memory (``oom``: ``MemoryError``, a CUDA out-of-memory error or the
#: kernel's OOM killer); a signal killed its process (``signal``, e.g. SIGSEGV); it ran past its time
#: limit (``timeout``); its process exited without storing it (``exit``); its job was cancelled
#: (``cancelled``); its job ended without a word about it (``lost``: a node failure, a killed worker)
CAUSES = ("error", "invalid", "oom", "signal", "timeout", "exit", "cancelled", "lost")


class NotARunError(ValueError):
    """The folder is not a run folder (no readable ``meta.json`` with a config, or one of another format)."""


class RunLockedError(RuntimeError):
    """Another process is writing the run (it holds ``RUN/.lock``); the message names its pid."""


class MetaFormatWarning(UserWarning):
    """A ``meta.json`` without a format version (not written by this harness); read as :data:`META_FORMAT`."""


def _json_default(obj: Any) -> Any:
    """Serialise the scalar and array types suites tend to return (numpy, torch, paths)."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalars and arrays, torch tensors
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"expected a JSON-serialisable value, got {obj!r} ({type(obj).__name__})")


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types (lists, dicts, str, int, float, bool, None); raises ``TypeError`` otherwise."""
    return json.loads(json.dumps(obj, default=_json_default, allow_nan=True))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    _atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: a crash midway leaves no partial file."""
    _atomic_write(path, lambda f: json.dump(data, f, indent=1, default=_json_default, allow_nan=True))


def _file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask (mkstemp's own is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` to ``path`` atomically (``numpy.savez_compressed``)."""
    _atomic_write(path, lambda f: np.savez_compressed(f, **arrays), binary=True)


def _atomic_write(path: Path, write, binary: bool = False) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


class RunLock:
    """An exclusive ``flock`` on ``RUN/.lock`` (or another lock file of the run): one writer at a time.

    :meth:`acquire` does not wait: when another process holds the lock it raises
    :class:`RunLockedError` with what the holder wrote into the file (its pid, host,
    since when and its command). The kernel releases the lock when its holder exits,
    however it ends (a SIGKILL included), so a stale lock file holds nothing. The file
    descriptor is not inherited by programs the holder starts (``O_CLOEXEC``).
    """

    def __init__(self, root: Path | str, name: str = LOCK_FILE) -> None:
        self.path = Path(root) / name
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: bool = False, command: list[str] | None = None) -> RunLock:
        """Take the lock (``wait``: block until it is free); raises :class:`RunLockedError` if another holds it."""
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise RunLockedError(f"{self.path.parent} is being written by another process ({holder}); "
                                 "wait for it to finish, or stop it, then try again") from None
        except BaseException:
            os.close(fd)
            raise
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(),
                  "command": command if command is not None else sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # so that nobody reads this holder's pid after it let go
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _lock_holder(fd: int) -> str:
    """What the holder of the lock file ``fd`` wrote: ``pid N on HOST since TIME: COMMAND``."""
    for _ in range(20):  # a holder that has just taken the lock writes its record a moment later
        text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
        if text:
            break
        time.sleep(0.025)
    try:
        record = json.loads(text)
        command = " ".join(record.get("command") or [])
        return f"pid {record['pid']} on {record.get('host')} since {record.get('since')}: {command}"
    except (ValueError, KeyError, TypeError):
        return "pid unknown"


def _is_temporary(name: str) -> bool:
    """A temporary file :func:`atomic_write_text` and friends leave behind when killed midway."""
    return name.startswith(".") and name.endswith(".tmp")


def is_unused(root: Path | str) -> bool:
    """Whether ``root`` is a folder a new run may take: empty, or holding nothing but what a run killed while
    it was being made leaves (its lock files, temporary files, an empty ``cells/``) and no ``meta.json``."""
    root = Path(root)
    if not root.is_dir():
        return False
    for entry in root.iterdir():
        if entry.name in (LOCK_FILE, OUTPUTS_LOCK_FILE) or (_is_temporary(entry.name) and not entry.is_dir()):
            continue
        if entry.name == CELLS_DIR and entry.is_dir() and not entry.is_symlink() and not any(entry.iterdir()):
            continue
        return False
    return True


def _clear_unused(root: Path) -> None:
    """Remove what a run killed while it was being made left in ``root`` (not the lock file, which is held)."""
    for entry in root.iterdir():
        if _is_temporary(entry.name):
            entry.unlink()
        elif entry.name == CELLS_DIR:
            entry.rmdir()


def _existing_ancestor(path: Path) -> Path:
    """``path`` or the nearest of its parents that exists."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _limits(folder: Path) -> tuple[int, int]:
    """``(NAME_MAX, PATH_MAX)`` of the file system holding ``folder`` (255 and 4096 where it does not say)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def shorten(text: str, width: int = 80) -> str:
    """``text``, or its start and its length when it is longer than ``width`` characters."""
    text = str(text)
    return text if len(text) <= width else f"{text[: width - 30]}... ({len(text)} characters)"


def out_problem(root: Path | str) -> str | None:
    """Why ``root`` cannot become a new run folder (in words), or ``None`` when it can.

    It must be absent or unused (:func:`is_unused`), its path within the file system's
    limits (every name at most ``NAME_MAX`` bytes, the whole at most ``PATH_MAX`` less
    :data:`PATH_RESERVE` for the run's own files), the nearest existing folder above it a
    folder (not a file), writable and not on a read-only file system.
    """
    absolute = Path(os.path.abspath(os.path.expanduser(str(root))))
    ancestor = _existing_ancestor(absolute)
    name_max, path_max = _limits(ancestor if ancestor.is_dir() else ancestor.parent)
    for part in absolute.parts:
        if len(os.fsencode(part)) > name_max:
            return (f"the name {shorten(part, 40)!r} is {len(os.fsencode(part))} bytes long; this file system allows "
                    f"at most {name_max}")
    if len(os.fsencode(str(absolute))) > path_max - PATH_RESERVE:
        return (f"the path is {len(os.fsencode(str(absolute)))} bytes long; a run folder's path may be at most "
                f"{path_max - PATH_RESERVE} bytes (the system's limit is {path_max}, and the run's files go below it)")
    if ancestor == absolute:
        if not absolute.is_dir():
            return "already exists and is a file, not a folder"
        if not is_unused(absolute):
            return "already exists and is not an empty folder"
    elif not ancestor.is_dir():
        return f"{shorten(ancestor)} is a file, so no folder can be made under it"
    try:
        read_only = bool(os.statvfs(ancestor).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return f"{shorten(ancestor)} is on a read-only file system"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot write in {shorten(ancestor)} (permission denied)"
    return None


@dataclasses.dataclass(frozen=True)
class BadCellFile:
    """A file in ``cells/`` that is not a usable record of a planned cell: its path and why."""

    path: Path
    reason: str

    @property
    def name(self) -> str:
        return f"{CELLS_DIR}/{self.path.name}"


class _Unusable(ValueError):
    """Why a cell file cannot be used (the text of :attr:`BadCellFile.reason`)."""


def _check_rows_finite(rows: Any) -> None:
    if not isinstance(rows, list):
        raise _Unusable(f"non-finite or malformed: status ok, but 'rows' is a {type(rows).__name__}, not a list")
    for i, row in enumerate(rows):
        value = row.get("value") if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise _Unusable(f"malformed: status ok, but row {i} has no real 'value' ({shorten(repr(row), 60)})")
        if not math.isfinite(value):
            raise _Unusable(f"non-finite: status ok, but row {i} ({row.get('metric')}) has value {value}")


@dataclasses.dataclass
class CellRecord:
    """What the store keeps of one finished cell.

    Attributes:
        cell: the cell as the suite planned it.
        hparams: the interpolator's full hyperparameters (``create(name, **cell.hparams).hparams()``).
        status: ``"ok"`` or ``"failed"``.
        rows: the rows ``run_cell`` returned (kept for a failed cell when it returned any, e.g. NaNs).
        error: for a failed cell, the error and a traceback summary.
        started, finished: ISO 8601 local times; ``duration_s``: seconds the cell ran.
        arrays: the names of the arrays stored beside the record (``cells/<key>.npz``), and
            ``array_data`` the arrays themselves until the store writes them.
        cause: for a failed cell, why, one of :data:`CAUSES`; ``None`` for an OK one.
        host: where the cell ran (:func:`bench.environment.host_record`: host name, CPU model, torch
            threads, GPU, torch version, and the executor, job id and attempt); ``None`` in files
            written before it was recorded.
    """

    cell: Cell
    hparams: dict[str, Any]
    status: str
    rows: list[dict[str, Any]]
    error: str | None
    started: str
    finished: str
    duration_s: float
    arrays: tuple[str, ...] = ()
    array_data: dict[str, np.ndarray] | None = dataclasses.field(default=None, repr=False, compare=False)
    cause: str | None = None
    host: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return self.cell.key

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "cell": self.cell.to_json(),
            "hparams": self.hparams,
            "status": self.status,
            "error": self.error,
            "started": self.started,
            "finished": self.finished,
            "duration_s": self.duration_s,
            "arrays": list(self.arrays),
            "cause": self.cause,
            "host": self.host,
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellRecord:
        return cls(
            cell=Cell.from_json(data["cell"]),
            hparams=data["hparams"],
            status=data["status"],
            rows=data["rows"],
            error=data.get("error"),
            started=data["started"],
            finished=data["finished"],
            duration_s=data["duration_s"],
            arrays=tuple(data.get("arrays", ())),
            cause=data.get("cause", None if data["status"] == "ok" else "error"),
            host=data.get("host"),
        )


class RunStore:
    """A run folder on disk; see the module docstring for its layout."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.lock = RunLock(self.root)

    # --- creating and opening -------------------------------------------------------------

    @staticmethod
    def is_run(path: Path | str) -> bool:
        """Whether ``path`` is a run folder (it holds a readable ``meta.json`` with a config)."""
        try:
            RunStore.open(path)
        except NotARunError:
            return False
        return True

    @classmethod
    def create(cls, root: Path | str, meta: dict[str, Any]) -> RunStore:
        """Make the run folder ``root`` (absent or unused: :func:`is_unused`) and write ``meta`` first.

        The writer's lock is held while the folder is made (two processes making one folder:
        the second gets :class:`RunLockedError` or ``FileExistsError``) and released after; a
        kill midway leaves a folder that :func:`is_unused` accepts. ``meta`` gets ``format``
        (:data:`META_FORMAT`) when it has none. Raises ``FileExistsError`` for a folder in use
        and ``OSError`` when the folder cannot be made.
        """
        root = Path(root)
        if os.path.lexists(root) and not is_unused(root):
            raise FileExistsError(f"out: {root} already exists and is not an empty folder")
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root)
        with store.lock:
            if not is_unused(root):  # another process made a run here meanwhile
                raise FileExistsError(f"out: {root} already exists and is not an empty folder")
            _clear_unused(root)
            store.write_meta({"format": META_FORMAT, **meta})
            store.cells_dir.mkdir()
        return store

    @classmethod
    def open(cls, root: Path | str) -> RunStore:
        """The existing run folder ``root``; raises :class:`NotARunError` saying what is missing or wrong.

        ``meta.json`` must be a JSON object with a readable ``config``, of format
        :data:`META_FORMAT` (one without ``format`` is read as that, with a
        :class:`MetaFormatWarning`), and ``planned`` and ``sessions``, where present, lists.
        """
        root = Path(root)
        meta_path = root / META_FILE
        if not root.is_dir():
            raise NotARunError(f"{root} is not a folder")
        if not meta_path.is_file():
            if is_unused(root):
                raise NotARunError(f"{root} is not a run folder: it has no {META_FILE} (a run stopped while its "
                                   f"folder was being made leaves such a folder: start the run again with --out {root})")
            raise NotARunError(f"{root} is not a run folder: it has no {META_FILE}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:
            raise NotARunError(f"{root} is not a run folder: {META_FILE} is not readable JSON ({err})") from err
        if not isinstance(meta, dict):
            raise NotARunError(f"{root} is not a run folder: {META_FILE} holds a {type(meta).__name__}, "
                               "expected a JSON object")
        version = meta.get("format")
        if version is not None and version != META_FORMAT:
            newer = isinstance(version, int) and not isinstance(version, bool) and version > META_FORMAT
            raise NotARunError(
                f"{root}: {META_FILE} is format {version!r}, and this version of stn-interp-bench reads format "
                f"{META_FORMAT} only" + ("; it was written by a newer version: use that one" if newer else "")
            )
        try:
            RunConfig.from_json(meta["config"])
        except (ValueError, KeyError, TypeError) as err:
            raise NotARunError(f"{root} is not a run folder: {META_FILE} has no readable config ({err})") from err
        for key in ("planned", "sessions"):
            if key in meta and not isinstance(meta[key], list):
                raise NotARunError(f"{root}: {META_FILE}'s {key!r} is a {type(meta[key]).__name__}, expected a list")
        if version is None:
            warnings.warn(f"{meta_path} has no format version; reading it as format {META_FORMAT}",
                          MetaFormatWarning, stacklevel=2)
        return cls(root)

    # --- meta -----------------------------------------------------------------------------

    @property
    def cells_dir(self) -> Path:
        return self.root / CELLS_DIR

    def read_meta(self) -> dict[str, Any]:
        """``meta.json``, with ``sessions`` and ``planned`` as empty lists where it has none."""
        meta = json.loads((self.root / META_FILE).read_text(encoding="utf-8"))
        meta.setdefault("sessions", [])
        meta.setdefault("planned", [])
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_json(self.root / META_FILE, meta)

    def config(self) -> RunConfig:
        return RunConfig.from_json(self.read_meta()["config"])

    # --- cells ----------------------------------------------------------------------------

    def cell_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def arrays_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.npz"

    def read_cell(self, key: str) -> CellRecord | None:
        """The stored record of the planned cell ``key``, or ``None`` when it has none (yet) or an unusable one."""
        path = self.cell_path(key)
        if not os.path.lexists(path):
            return None
        try:
            return self._usable(path, self._expectations())
        except _Unusable:
            return None

    def write_cell(self, record: CellRecord) -> None:
        """Store one finished cell (replacing an earlier record of the same cell, e.g. a failed one).

        Its arrays (``record.array_data``) go first, to ``cells/<key>.npz``: the record, written
        last, is what marks the cell finished, so a crash between the two leaves a cell to re-run.
        """
        self.cells_dir.mkdir(exist_ok=True)
        if record.array_data:
            atomic_write_arrays(self.arrays_path(record.key), record.array_data)
        elif self.arrays_path(record.key).exists():
            self.arrays_path(record.key).unlink()  # a re-run cell that no longer stores arrays
        atomic_write_json(self.cell_path(record.key), record.to_json())

    def read_arrays(self, key: str) -> dict[str, np.ndarray]:
        """The arrays cell ``key`` stored (``{}`` when it stored none)."""
        path = self.arrays_path(key)
        if not path.is_file():
            return {}
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}

    def _expectations(self) -> tuple[set[str], set[str]]:
        """The planned keys (empty: the run recorded no plan) and the run's suites, which cell files must match."""
        meta = self.read_meta()
        config = meta.get("config") or {}
        return set(meta.get("planned") or []), set(config.get("suites") or [])

    @staticmethod
    def _usable(path: Path, expected: tuple[set[str], set[str]]) -> CellRecord:
        """The record in ``path``; raises :class:`_Unusable` saying why it cannot be used."""
        planned, suite_names = expected
        if path.is_dir():
            raise _Unusable("unreadable: a folder, not a file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise _Unusable(f"unreadable: {type(err).__name__}: {err}") from None
        if not isinstance(data, dict):
            raise _Unusable(f"unreadable: it holds a JSON {type(data).__name__}, expected an object (a cell record)")
        try:
            record = CellRecord.from_json(data)
            key = record.cell.key
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise _Unusable(f"unreadable: not a cell record ({type(err).__name__}: {err})") from None
        if record.status not in ("ok", "failed"):
            raise _Unusable(f"unreadable: status {record.status!r}, expected 'ok' or 'failed'")
        if data.get("key") != key or path.stem != key:
            raise _Unusable(f"foreign: the file is named {path.stem!r} and says key {data.get('key')!r}, but holds "
                            f"the cell {key!r}")
        if suite_names and record.cell.suite not in suite_names:
            raise _Unusable(f"foreign: a cell of suite {record.cell.suite!r}, not among the run's suites "
                            f"{sorted(suite_names)}")
        if planned and record.key not in planned:
            raise _Unusable("foreign: not a cell this run plans")
        if record.ok:
            _check_rows_finite(record.rows)
        return record

    def scan_cells(self) -> tuple[dict[str, CellRecord], list[BadCellFile]]:
        """The usable cell records by key, in plan order, and the cell files that cannot be used.

        A file cannot be used when it is unreadable (not JSON, not an object, not a record, a folder),
        foreign (a key the run does not plan, another suite's cell, a record under another cell's
        name) or an OK record with a value that is not a finite number. Temporary files left by a
        crash (names starting with ``.``) are ignored.
        """
        records: dict[str, CellRecord] = {}
        bad: list[BadCellFile] = []
        if self.cells_dir.is_dir():
            expected = self._expectations()
            for path in sorted(self.cells_dir.glob("*.json")):
                if path.name.startswith("."):
                    continue
                try:
                    record = self._usable(path, expected)
                except _Unusable as err:
                    bad.append(BadCellFile(path, str(err)))
                    continue
                records[record.key] = record
        planned = self.read_meta().get("planned", [])
        order = {key: i for i, key in enumerate(planned)}
        return dict(sorted(records.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))), bad

    def read_cells(self) -> dict[str, CellRecord]:
        """Every usable stored cell by key (:meth:`scan_cells`): the planned ones in plan order."""
        return self.scan_cells()[0]

    def snapshot(self) -> RunStore:
        """This run as it is now: a store whose ``meta.json`` and cells are read once, here, so that what is built
        from it (the tables, the report) agrees with itself while a run goes on writing cells."""
        return _Snapshot(self)

    def bad_cells(self) -> list[BadCellFile]:
        """The cell files that cannot be used (:meth:`scan_cells`), each with the reason."""
        return self.scan_cells()[1]

    def set_aside(self, bad: list[BadCellFile]) -> list[Path]:
        """Move each of ``bad`` (and its ``.npz``) to ``cells/set-aside/``, beside a ``.reason.txt``; returns the
        new paths. Only the run's writer (holding :attr:`lock`) should call this."""
        folder = self.cells_dir / SET_ASIDE_DIR
        if bad:
            folder.mkdir(exist_ok=True)
        moved = []
        for item in bad:
            target = folder / item.path.name
            n = 1
            while os.path.lexists(target) or os.path.lexists(target.with_name(target.name + ".reason.txt")):
                target = folder / f"{item.path.stem}.{n}{item.path.suffix}"
                n += 1
            atomic_write_text(target.with_name(target.name + ".reason.txt"), f"{item.name}: {item.reason}\n")
            os.rename(item.path, target)
            arrays = item.path.with_suffix(".npz")
            if arrays.is_file():
                os.rename(arrays, target.with_suffix(".npz"))
            moved.append(target)
        return moved

    # --- tables ---------------------------------------------------------------------------

    def results(self) -> pd.DataFrame:
        """Every row of every OK cell as a tidy frame (see :func:`results_frame`)."""
        return results_frame(self.read_cells().values())

    def write_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rebuild ``results.csv`` and ``summary.csv`` from the cell files; returns both frames."""
        results = self.results()
        summary = summarize(results)
        atomic_write_text(self.root / RESULTS_FILE, results.to_csv(index=False))
        atomic_write_text(self.root / SUMMARY_FILE, summary.to_csv(index=False))
        return results, summary


class _Snapshot(RunStore):
    """A :class:`RunStore` whose meta and cells were read once (:meth:`RunStore.snapshot`); it writes as the run does."""

    def __init__(self, store: RunStore) -> None:
        super().__init__(store.root)
        self._meta = store.read_meta()
        self._scan = store.scan_cells()

    def read_meta(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._meta))

    def scan_cells(self) -> tuple[dict[str, CellRecord], list[BadCellFile]]:
        return dict(self._scan[0]), list(self._scan[1])


def _cell_value(value: Any) -> Any:
    """A value fit for a table cell: lists and dicts become JSON text so that they can be grouped on."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def results_frame(records) -> pd.DataFrame:
    """The rows of the OK ``records`` in tidy long format.

    Columns: ``suite``, ``interpolator``, ``hparams`` (JSON of the full
    hyperparameters), one column per ``Cell.params`` key (in order of first
    appearance), ``seed``, ``metric``, ``value``, ``unit``, then any extra
    columns the rows carry. The identifying columns win over a row's own
    column of the same name.
    """
    out: list[dict[str, Any]] = []
    param_cols: dict[str, None] = {}
    extra_cols: dict[str, None] = {}
    for record in records:
        if not record.ok:
            continue
        cell = record.cell
        ident = {
            "suite": cell.suite,
            "interpolator": cell.interpolator,
            "hparams": json.dumps(record.hparams, sort_keys=True),
            **{k: _cell_value(v) for k, v in cell.params.items()},
            "seed": cell.seed,
        }
        param_cols.update(dict.fromkeys(cell.params))
        for row in record.rows:
            extra_cols.update(dict.fromkeys(k for k in row if k not in ROW_COLUMNS))
            out.append({k: _cell_value(v) for k, v in row.items()} | ident)
    extras = [c for c in extra_cols if c not in param_cols and c not in ID_COLUMNS]
    columns = [*ID_COLUMNS, *param_cols, *ROW_COLUMNS, *extras]
    frame = pd.DataFrame(out, columns=columns)
    frame["value"] = pd.to_numeric(frame["value"])
    for column in columns:  # integers stay integers where other suites' rows leave the column empty
        if column != "value" and frame[column].dtype.kind == "f" and _all_int(row.get(column) for row in out):
            frame[column] = frame[column].astype("Int64")
    return frame


def _all_int(values) -> bool:
    """Whether every value that is not ``None`` is an ``int`` (not a ``bool``)."""
    return all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values)


def summary_keys(frame: pd.DataFrame) -> list[str]:
    """The group columns of a results frame: every column but ``value`` and the units' (:mod:`bench.stats`)."""
    units = set(replicate_columns(frame))
    return [c for c in frame.columns if c != "value" and c not in units]


def summarize(results: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per group (every column but ``value``, ``seed`` and the other unit columns such as ``image``):
    n, mean, std and the t-interval of the mean.

    With ``n`` values of mean ``m`` and sample standard deviation ``s``
    (``ddof=1``) the interval is ``m -+ t_{(1+confidence)/2, n-1} * s / sqrt(n)``;
    ``std`` and the interval are NaN for a single value.
    """
    keys = summary_keys(results)
    if results.empty:
        return pd.DataFrame(columns=[*keys, *SUMMARY_STATS])
    grouped = results.groupby(keys, dropna=False, sort=False)["value"]
    summary = grouped.agg(n="count", mean="mean", std="std").reset_index()
    half = [
        t_quantile((1 + confidence) / 2, n - 1) * s / math.sqrt(n) if n > 1 else math.nan
        for n, s in zip(summary["n"], summary["std"])
    ]
    summary["ci_low"] = summary["mean"] - half
    summary["ci_high"] = summary["mean"] + half
    return summary
