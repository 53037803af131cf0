"""The run folder: one JSON file per finished cell, ``meta.json``, ``results.csv`` and ``summary.csv``.

Layout of a run folder::

    RUN/
      meta.json          versions, device, threads, git commit, config, planned cell keys, times
      cells/<key>.json   one file per finished cell (status "ok" or "failed"), written atomically
      cells/<key>.npz    the arrays a cell returned (pictures, trajectories), if any, written before the .json
      results.csv        every row of every OK cell, tidy long format
      summary.csv        n, mean, std and the 95% t-interval of ``value`` per group (units pooled)
      report.html        the self-contained report (:mod:`bench.report`)

The cell files are the source of truth: ``results.csv``, ``summary.csv`` and
``report.html`` are rebuilt from them (``python -m bench report RUN``). Every
file is written to a temporary file in the same folder and moved into place
with ``os.replace``, so a crash leaves either the old file or the new one,
never a partial one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.stats import CONFIDENCE, replicate_columns, t_quantile  # noqa: F401  (t_quantile: re-exported)
from suites.base import Cell, RunConfig

META_FILE = "meta.json"
CELLS_DIR = "cells"
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
    """The folder is not a run folder (no readable ``meta.json`` with a config)."""


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
        """Make the run folder ``root`` (absent or empty) and write ``meta``."""
        root = Path(root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise FileExistsError(f"out: {root} already exists and is not an empty folder")
        (root / CELLS_DIR).mkdir(parents=True, exist_ok=True)
        store = cls(root)
        store.write_meta(meta)
        return store

    @classmethod
    def open(cls, root: Path | str) -> RunStore:
        """The existing run folder ``root``; raises :class:`NotARunError` saying what is missing."""
        root = Path(root)
        meta_path = root / META_FILE
        if not root.is_dir():
            raise NotARunError(f"{root} is not a folder")
        if not meta_path.is_file():
            raise NotARunError(f"{root} is not a run folder: it has no {META_FILE}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            RunConfig.from_json(meta["config"])
        except (ValueError, KeyError, TypeError) as err:
            raise NotARunError(f"{root} is not a run folder: {META_FILE} has no readable config ({err})") from err
        return cls(root)

    # --- meta -----------------------------------------------------------------------------

    @property
    def cells_dir(self) -> Path:
        return self.root / CELLS_DIR

    def read_meta(self) -> dict[str, Any]:
        return json.loads((self.root / META_FILE).read_text(encoding="utf-8"))

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
        """The stored record of the cell ``key``, or ``None`` when it has none (yet)."""
        try:
            return CellRecord.from_json(json.loads(self.cell_path(key).read_text(encoding="utf-8")))
        except FileNotFoundError:
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

    def read_cells(self) -> dict[str, CellRecord]:
        """Every stored cell by key: the planned ones in plan order, then any others by key.

        Temporary files left by a crash (names starting with ``.``) are ignored.
        """
        records: dict[str, CellRecord] = {}
        if self.cells_dir.is_dir():
            for path in sorted(self.cells_dir.glob("*.json")):
                if path.name.startswith("."):
                    continue
                record = CellRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
                records[record.key] = record
        planned = self.read_meta().get("planned", [])
        order = {key: i for i, key in enumerate(planned)}
        return dict(sorted(records.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))

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
