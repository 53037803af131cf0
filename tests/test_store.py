"""The result store: atomic writes, cell records, the tidy results frame and the summary statistics."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.runner import CellError, check_arrays, check_rows
from bench.store import (
    MAX_ARRAY_BYTES,
    META_FORMAT,
    CellRecord,
    MetaFormatWarning,
    NotARunError,
    RunLock,
    RunLockedError,
    RunStore,
    atomic_write_json,
    is_unused,
    out_problem,
    results_frame,
    summarize,
    t_quantile,
    to_jsonable,
)
from suites.base import Cell, RunConfig


def make_record(value=1.0, *, seed=0, status="ok", params=None, rows=None, interpolator="bilinear") -> CellRecord:
    cell = Cell("fake", interpolator, {}, params if params is not None else {"level": 1}, seed)
    return CellRecord(
        cell=cell,
        hparams={"align_corners": False, "padding_mode": "zeros"},
        status=status,
        rows=rows if rows is not None else [{"metric": "m", "value": value, "unit": "px"}],
        error=None if status == "ok" else "RuntimeError: boom",
        started="2024-01-01T00:00:00+00:00",
        finished="2024-01-01T00:00:01+00:00",
        duration_s=1.0,
    )


def make_store(tmp_path, planned=()) -> RunStore:
    config = RunConfig(suites=("fake",), interpolators={"bilinear": {}})
    return RunStore.create(tmp_path / "run", {"config": config.to_json(), "planned": list(planned), "sessions": []})


class TestAtomicWrite:
    def test_smoke(self, tmp_path):
        path = tmp_path / "a.json"
        atomic_write_json(path, {"x": np.float32(1.5), "t": torch.tensor([1, 2]), "nan": float("nan")})
        data = json.loads(path.read_text())
        assert data["x"] == 1.5 and data["t"] == [1, 2] and math.isnan(data["nan"])
        assert [p.name for p in tmp_path.iterdir()] == ["a.json"]

    def test_mode_follows_umask_like_open(self, tmp_path):
        # mkstemp creates 0600 files; results must be as readable as any file the user writes
        previous = os.umask(0o022)
        try:
            atomic_write_json(tmp_path / "a.json", {"x": 1})
            (tmp_path / "b.txt").write_text("x")
        finally:
            os.umask(previous)
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644

    def test_crash_midway_leaves_no_partial_file(self, tmp_path, monkeypatch):
        def dump_half_then_die(obj, fp, **kwargs):
            fp.write('{"rows": [1, 2')
            fp.flush()
            raise OSError("disk died")

        store = make_store(tmp_path)
        monkeypatch.setattr(json, "dump", dump_half_then_die)
        record = make_record()
        with pytest.raises(OSError, match="disk died"):
            store.write_cell(record)
        assert list(store.cells_dir.iterdir()) == []  # neither the cell file nor a temporary one
        monkeypatch.undo()
        assert store.read_cells() == {}

    def test_crash_keeps_the_previous_version(self, tmp_path, monkeypatch):
        path = tmp_path / "a.json"
        atomic_write_json(path, {"version": 1})

        def die(obj, fp, **kwargs):
            fp.write("{")
            raise KeyboardInterrupt

        monkeypatch.setattr(json, "dump", die)
        with pytest.raises(KeyboardInterrupt):
            atomic_write_json(path, {"version": 2})
        monkeypatch.undo()
        assert json.loads(path.read_text()) == {"version": 1}
        assert [p.name for p in tmp_path.iterdir()] == ["a.json"]

    def test_exception_unserialisable(self, tmp_path):
        with pytest.raises(TypeError, match="JSON-serialisable"):
            atomic_write_json(tmp_path / "a.json", {"x": object()})
        assert list(tmp_path.iterdir()) == []


class TestRunStore:
    def test_create_and_open(self, tmp_path):
        store = make_store(tmp_path)
        assert RunStore.is_run(store.root)
        assert RunStore.open(store.root).config() == RunConfig(suites=("fake",), interpolators={"bilinear": {}})

    def test_exception_create_in_non_empty_folder(self, tmp_path):
        (tmp_path / "x").write_text("")
        with pytest.raises(FileExistsError, match="not an empty folder"):
            RunStore.create(tmp_path, {})

    @pytest.mark.parametrize("meta", [None, "not json", '{"no": "config"}', '{"config": {"suites": []}}'])
    def test_exception_not_a_run(self, tmp_path, meta):
        if meta is not None:
            (tmp_path / "meta.json").write_text(meta)
        with pytest.raises(NotARunError, match="not a run folder"):
            RunStore.open(tmp_path)
        assert not RunStore.is_run(tmp_path)

    def test_record_roundtrip_and_order(self, tmp_path):
        records = [make_record(float(i), seed=i) for i in range(3)]
        store = make_store(tmp_path, planned=[records[2].key, records[0].key])
        for record in records:
            store.write_cell(record)
        (store.cells_dir / ".leftover.json.abc.tmp").write_text("{")  # what a killed writer leaves
        read, bad = store.scan_cells()
        # planned cells in plan order; a cell the run does not plan is foreign, not counted
        assert list(read) == [records[2].key, records[0].key]
        assert read[records[0].key] == records[0]
        assert [(b.name, b.reason) for b in bad] == [(f"cells/{records[1].key}.json", "foreign: not a cell this run plans")]

    def test_without_a_plan_every_cell_of_the_runs_suites_counts(self, tmp_path):
        records = [make_record(float(i), seed=i) for i in range(3)]
        store = make_store(tmp_path)
        for record in records:
            store.write_cell(record)
        assert list(store.read_cells()) == sorted(r.key for r in records)

    def test_failed_cell_is_replaced(self, tmp_path):
        store = make_store(tmp_path)
        store.write_cell(make_record(status="failed"))
        store.write_cell(make_record(2.0))
        (record,) = store.read_cells().values()
        assert record.ok and record.rows[0]["value"] == 2.0


class TestResultsFrame:
    def test_columns(self):
        rows = [
            {"metric": "m", "value": 1.0, "unit": "px", "image": "a"},
            {"metric": "m", "value": 2.0, "unit": "px", "image": "b", "seed": 99, "level": "row's own"},
        ]
        frame = results_frame([make_record(rows=rows, params={"level": 2, "size": [4, 4]}, seed=3)])
        assert list(frame.columns) == [
            "suite",
            "interpolator",
            "hparams",
            "level",
            "size",
            "seed",
            "metric",
            "value",
            "unit",
            "image",
        ]
        assert frame["seed"].tolist() == [3, 3]  # the cell's identity wins over a row's column
        assert frame["level"].tolist() == [2, 2]
        assert frame["size"].tolist() == ["[4, 4]", "[4, 4]"]  # lists as JSON text, so they can be grouped on
        assert json.loads(frame["hparams"][0]) == {"align_corners": False, "padding_mode": "zeros"}

    def test_integers_stay_integers_next_to_empty_cells(self):
        records = [make_record(params={"level": 2}), make_record(params={"other": 0.5})]
        frame = results_frame(records)
        assert str(frame["level"].dtype) == "Int64" and frame["level"][0] == 2 and frame["level"].isna()[1]
        assert frame["other"].dtype.kind == "f"
        assert frame.to_csv(index=False).splitlines()[1].split(",")[-6:-4] == ["2", ""]

    def test_failed_cells_left_out(self):
        frame = results_frame([make_record(1.0), make_record(5.0, seed=1, status="failed")])
        assert frame["value"].tolist() == [1.0]

    def test_empty(self):
        frame = results_frame([])
        assert frame.empty and "value" in frame.columns
        assert summarize(frame).empty


class TestSummarize:
    def test_feature_ci_by_hand(self):
        # three seeds 1, 2, 4: mean 7/3, sample std sqrt(7/3), t_{0.975, 2} = 4.302653 (t table)
        frame = results_frame([make_record(v, seed=i) for i, v in enumerate([1.0, 2.0, 4.0])])
        (row,) = summarize(frame).to_dict("records")
        mean, std = 7 / 3, math.sqrt(7 / 3)
        half = 4.302653 * std / math.sqrt(3)
        assert row["n"] == 3
        assert row["mean"] == pytest.approx(mean)
        assert row["std"] == pytest.approx(std)
        assert row["ci_low"] == pytest.approx(mean - half, rel=1e-6)
        assert row["ci_high"] == pytest.approx(mean + half, rel=1e-6)

    def test_groups_and_single_values(self):
        records = [
            make_record(1.0, seed=0, params={"level": 1}),
            make_record(3.0, seed=1, params={"level": 1}),
            make_record(5.0, seed=0, params={"level": 2}),
        ]
        rows = [
            {"metric": "m", "value": 7.0, "unit": "px"},
            {"metric": "other", "value": 1.0, "unit": "s", "image": "x"},
        ]
        records.append(make_record(seed=0, params={"level": 3}, rows=rows))
        summary = summarize(results_frame(records))
        assert list(summary.columns[-5:]) == ["n", "mean", "std", "ci_low", "ci_high"]
        assert "seed" not in summary.columns and "value" not in summary.columns
        assert summary["level"].tolist() == [1, 2, 3, 3]  # a NaN in a group column (image) keeps its group
        first, single = summary.iloc[0], summary.iloc[1]
        assert first["n"] == 2 and first["mean"] == 2.0
        assert first["ci_high"] - first["mean"] == pytest.approx(12.706205 * math.sqrt(2) / math.sqrt(2), rel=1e-6)
        assert single["n"] == 1 and math.isnan(single["std"]) and math.isnan(single["ci_low"])

    @pytest.mark.parametrize(
        ("p", "dof", "expected"), [(0.975, 1, 12.706205), (0.975, 10, 2.228139), (0.975, 1e9, 1.959964)]
    )
    def test_t_quantile_against_table(self, p, dof, expected):
        assert t_quantile(p, dof) == pytest.approx(expected, rel=1e-6)


class TestCheckRows:
    def test_converts_tensors_and_numpy(self):
        rows = check_rows([{"metric": "m", "value": torch.tensor(0.5), "unit": "1", "n": np.int64(3)}])
        assert rows == [{"metric": "m", "value": 0.5, "unit": "1", "n": 3}]
        assert type(to_jsonable(np.float64(2.0))) is float

    @pytest.mark.parametrize(
        ("rows", "match"),
        [
            ({"metric": "m"}, "list of row dicts"),
            ([1.0], "expected a dict"),
            ([{"metric": "m", "value": 1.0}], "missing \\['unit'\\]"),
            ([{"metric": "m", "value": "high", "unit": "1"}], "real number"),
            ([{"metric": "m", "value": float("inf"), "unit": "1"}], "non-finite value"),
            ([{"metric": "m", "value": 1.0, "unit": "1", "x": object()}], "JSON-serialisable"),
        ],
    )
    def test_exception(self, rows, match):
        with pytest.raises(CellError, match=match):
            check_rows(rows)

    def test_nan_keeps_rows(self):
        with pytest.raises(CellError) as info:
            check_rows([{"metric": "m", "value": float("nan"), "unit": "1"}, {"metric": "k", "value": 1, "unit": "1"}])
        assert "m=nan" in str(info.value.args[0]) and len(info.value.args[1]) == 2


def test_summary_matches_pandas_describe():
    # independent check of mean/std on random groups
    rng = np.random.default_rng(0)
    values = rng.normal(size=12)
    records = [make_record(float(v), seed=i % 4, params={"level": i // 4}) for i, v in enumerate(values)]
    summary = summarize(results_frame(records)).set_index("level")
    expected = pd.Series(values).groupby(np.arange(12) // 4).agg(["mean", "std"])
    np.testing.assert_allclose(summary["mean"].to_numpy(), expected["mean"].to_numpy())
    np.testing.assert_allclose(summary["std"].to_numpy(), expected["std"].to_numpy())


class TestArrays:
    def test_roundtrip_beside_the_record(self, tmp_path):
        store = make_store(tmp_path)
        record = make_record()
        picture = np.arange(12, dtype=np.uint8).reshape(3, 4)
        record.arrays, record.array_data = ("picture",), {"picture": picture}
        store.write_cell(record)
        assert json.loads(store.cell_path(record.key).read_text())["arrays"] == ["picture"]
        assert store.arrays_path(record.key).is_file()
        loaded = store.read_arrays(record.key)
        assert list(loaded) == ["picture"] and loaded["picture"].dtype == np.uint8
        np.testing.assert_array_equal(loaded["picture"], picture)
        assert store.read_cells()[record.key].arrays == ("picture",)
        # a re-run that stores none removes the old ones
        store.write_cell(make_record())
        assert not store.arrays_path(record.key).exists() and store.read_arrays(record.key) == {}

    def test_check_arrays(self):
        arrays = check_arrays({"a": torch.ones(2, 2, dtype=torch.float16), "b": np.zeros(3, dtype=bool)})
        assert arrays["a"].dtype == np.float16 and isinstance(arrays["a"], np.ndarray)
        with pytest.raises(CellError, match="identifiers"):
            check_arrays({"not a name": np.zeros(1)})
        with pytest.raises(CellError, match="numeric or bool"):
            check_arrays({"a": np.array(["x"], dtype=object)})
        with pytest.raises(CellError, match="more than the 1048576 a cell may store"):
            check_arrays({"a": np.zeros(MAX_ARRAY_BYTES // 8 + 1)})


# --- unusable cell files --------------------------------------------------------------------------


def _planned_store(tmp_path, n=3):
    records = [make_record(float(i + 1), seed=i) for i in range(n)]
    store = make_store(tmp_path, planned=[r.key for r in records])
    for record in records:
        store.write_cell(record)
    return store, records


def _tamper(store: RunStore, records: list[CellRecord], how: str) -> tuple[str, str]:
    """Spoil the run as ``how`` says; returns the spoilt file's name and the start of the reason expected."""
    first = store.cell_path(records[0].key)
    data = json.loads(first.read_text())
    if how == "truncated":
        first.write_text(first.read_text()[:40])
        return first.name, "unreadable: JSONDecodeError"
    if how == "list":
        first.write_text("[1, 2]")
        return first.name, "unreadable: it holds a JSON list"
    if how == "folder":
        first.unlink()
        first.mkdir()
        return first.name, "unreadable: a folder"
    if how == "not utf-8":
        first.write_bytes(b"\xff\xfe{")
        return first.name, "unreadable: UnicodeDecodeError"
    if how == "not a record":
        first.write_text('{"key": "x"}')
        return first.name, "unreadable: not a cell record"
    if how == "nan":
        data["rows"][0]["value"] = float("nan")
        first.write_text(json.dumps(data))
        return first.name, "non-finite: status ok, but row 0 (m) has value nan"
    if how == "infinite":
        data["rows"][0]["value"] = float("-inf")
        first.write_text(json.dumps(data))
        return first.name, "non-finite"
    if how == "string value":
        data["rows"][0]["value"] = "1.0"
        first.write_text(json.dumps(data))
        return first.name, "malformed: status ok, but row 0"
    if how == "unplanned":  # a cell of another run, copied in: "71 OK of 70"
        other = make_record(9.0, seed=99)
        store.write_cell(other)
        return f"{other.key}.json", "foreign: not a cell this run plans"
    if how == "other suite":
        other = make_record(9.0, seed=7)
        other.cell = Cell("elsewhere", "bilinear", {}, {"level": 1}, 7)
        store.write_cell(other)
        return f"{other.key}.json", "foreign: a cell of suite 'elsewhere'"
    if how == "renamed copy":  # another planned cell's record under this cell's name
        first.write_text(store.cell_path(records[1].key).read_text())
        return first.name, "foreign: the file is named"
    raise AssertionError(how)


TAMPERING = ["truncated", "list", "folder", "not utf-8", "not a record", "nan", "infinite", "string value",
             "unplanned", "other suite", "renamed copy"]


class TestUnusableCellFiles:
    @pytest.mark.parametrize("how", TAMPERING)
    def test_named_left_out_and_set_aside(self, tmp_path, how):
        store, records = _planned_store(tmp_path)
        name, reason = _tamper(store, records, how)
        read, bad = store.scan_cells()
        assert [(b.name, b.reason[: len(reason)]) for b in bad] == [(f"cells/{name}", reason)]
        assert len(read) <= len(records) and all(r.key in {x.key for x in records} for r in read.values())
        results, summary = store.write_tables()  # the tables do not fail, and hold no NaN
        assert results["value"].notna().all() and np.isfinite(results["value"]).all()
        assert np.isfinite(summary["mean"]).all()
        assert store.read_cell(records[0].key) is None or how in ("unplanned", "other suite")

        (moved,) = store.set_aside(bad)
        assert moved.parent == store.cells_dir / "set-aside" and moved.name == name
        assert reason in (moved.parent / f"{name}.reason.txt").read_text()
        assert store.bad_cells() == []
        # the same name set aside a second time does not overwrite the first
        again = store.cells_dir / name
        again.write_text("[]")
        (second,) = store.set_aside(store.bad_cells())
        assert second.name == f"{Path(name).stem}.1.json" and moved.exists()


# --- meta.json's format -------------------------------------------------------------------------------


class TestMetaFormat:
    def test_create_writes_the_format(self, tmp_path):
        store = make_store(tmp_path)
        assert store.read_meta()["format"] == META_FORMAT == 1

    @pytest.mark.parametrize("version", [2, 0, "1", None])
    def test_another_format_is_refused(self, tmp_path, version):
        store = make_store(tmp_path)
        meta = store.read_meta()
        meta["format"] = version
        (store.root / "meta.json").write_text(json.dumps(meta))
        if version is None:
            with pytest.warns(MetaFormatWarning, match="no format version; reading it as format 1"):
                RunStore.open(store.root)
            return
        with pytest.raises(NotARunError, match=f"meta.json is format {version!r}, and this version"):
            RunStore.open(store.root)
        if version == 2:
            with pytest.raises(NotARunError, match="written by a newer version"):
                RunStore.open(store.root)

    def test_missing_sessions_and_planned(self, tmp_path):
        store = make_store(tmp_path)
        meta = store.read_meta()
        del meta["sessions"], meta["planned"]
        (store.root / "meta.json").write_text(json.dumps(meta))
        assert RunStore.open(store.root).read_meta()["sessions"] == []

    @pytest.mark.parametrize("meta", ["[1]", '{"format": 1, "config": {"suites": ["fake"], "interpolators": {}}, '
                                              '"sessions": {}}'])
    def test_malformed_meta(self, tmp_path, meta):
        (tmp_path / "meta.json").write_text(meta)
        with pytest.raises(NotARunError, match="expected a JSON object|expected a list"):
            RunStore.open(tmp_path)


# --- making the folder -------------------------------------------------------------------------------


class TestCreate:
    @pytest.mark.parametrize("leftover", ["nothing", "cells", "lock", "temporary meta"])
    def test_what_a_kill_while_making_leaves_is_taken(self, tmp_path, leftover):
        root = tmp_path / "run"
        root.mkdir()
        if leftover == "cells":  # what main's create left: cells/ made, meta.json not yet
            (root / "cells").mkdir()
        elif leftover == "lock":
            (root / ".lock").write_text('{"pid": 1}')
        elif leftover == "temporary meta":
            (root / ".meta.json.k2j3.tmp").write_text('{"conf')
        assert is_unused(root) and out_problem(root) is None
        with pytest.raises(NotARunError, match="start the run again with --out"):
            RunStore.open(root)
        store = make_store(tmp_path)
        assert RunStore.is_run(store.root) and sorted(p.name for p in root.iterdir()) == [".lock", "cells", "meta.json"]

    def test_a_crash_while_writing_meta_leaves_an_unused_folder(self, tmp_path, monkeypatch):
        def crash(path, data):
            raise KeyboardInterrupt

        monkeypatch.setattr("bench.store.atomic_write_json", crash)
        with pytest.raises(KeyboardInterrupt):
            make_store(tmp_path)
        monkeypatch.undo()
        assert is_unused(tmp_path / "run")
        assert RunStore.is_run(make_store(tmp_path).root)

    def test_folder_in_use_is_left_untouched(self, tmp_path):
        (tmp_path / "notes.txt").write_text("mine")
        with pytest.raises(FileExistsError, match="not an empty folder"):
            RunStore.create(tmp_path, {})
        assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # no lock file left in someone's folder
        assert not is_unused(tmp_path) and "not an empty folder" in out_problem(tmp_path)
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "cells").mkdir()
        (tmp_path / "sub" / "cells" / "x.json").write_text("{}")
        assert not is_unused(tmp_path / "sub")  # a cells/ that holds something is a run's


class TestOutProblems:
    def test_under_a_file(self, tmp_path):
        (tmp_path / "f").write_text("")
        assert out_problem(tmp_path / "f") == "already exists and is a file, not a folder"
        assert out_problem(tmp_path / "f" / "a" / "run").endswith("is a file, so no folder can be made under it")

    def test_too_long(self, tmp_path):
        assert "bytes long; this file system allows at most" in out_problem(tmp_path / ("x" * 300))
        deep = tmp_path.joinpath(*["y" * 200] * 25)  # 5,000 characters
        assert "bytes long; a run folder's path may be at most" in out_problem(deep)

    def test_read_only_file_system(self, tmp_path, monkeypatch):
        real = os.statvfs

        class ReadOnly:
            def __init__(self, path):
                self.f_flag = real(path).f_flag | os.ST_RDONLY

        monkeypatch.setattr(os, "statvfs", ReadOnly)
        assert out_problem(tmp_path / "run") == f"{tmp_path} is on a read-only file system"


# --- the writer's lock -------------------------------------------------------------------------------------


class TestRunLock:
    def test_second_writer_is_refused_naming_the_holder(self, tmp_path):
        store = make_store(tmp_path)
        first = RunLock(store.root).acquire(command=["first", "writer"])
        with pytest.raises(RunLockedError, match=rf"being written by another process \(pid {os.getpid()} on .*: "
                                                 r"first writer\)"):
            RunLock(store.root).acquire()
        first.release()
        RunLock(store.root).acquire().release()  # free again
        assert (store.root / ".lock").read_text() == ""  # a released lock names nobody

    def test_a_killed_holder_holds_nothing(self, tmp_path):
        store = make_store(tmp_path)
        holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from bench.store import RunLock; "
                                   "lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
                                   str(store.root)], stdout=subprocess.PIPE, text=True,
                                  env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        try:
            assert holder.stdout.readline() == "held\n"
            with pytest.raises(RunLockedError, match=f"pid {holder.pid} "):
                RunLock(store.root).acquire()
            holder.kill()  # SIGKILL: no chance to release anything
            holder.wait(timeout=30)
        finally:
            holder.kill()
            holder.stdout.close()
        RunLock(store.root).acquire().release()

    def test_a_late_report_cannot_overwrite_the_final_one(self, tmp_path, monkeypatch):
        """A rebuild (``bench report``) that read the cells before the run's last one and writes after the
        run's final rebuild would leave a stale report; the outputs lock orders the two."""
        import bench.report
        from bench.runner import write_outputs

        store, records = _planned_store(tmp_path)
        last = store.cell_path(records[-1].key)
        saved = last.read_bytes()
        last.unlink()  # the run has not finished its last cell yet
        rendered, release = threading.Event(), threading.Event()
        real_write = bench.report.atomic_write_text

        def slow_write(path, text):
            if threading.current_thread().name == "late report":
                rendered.set()  # it has read the cells and rendered the report: only the write is left
                assert release.wait(30)
            return real_write(path, text)

        monkeypatch.setattr(bench.report, "atomic_write_text", slow_write)
        late = threading.Thread(target=write_outputs, args=(RunStore(store.root),), name="late report")
        late.start()
        assert rendered.wait(30)
        last.write_bytes(saved)  # the run stores its last cell and rebuilds its outputs
        final = threading.Thread(target=write_outputs, args=(RunStore(store.root),), name="the run")
        final.start()
        final.join(1.0)  # without the lock it has long finished here
        release.set()
        late.join(30)
        final.join(30)
        assert len(pd.read_csv(store.root / "results.csv")) == len(records)
        assert f"{len(records)} OK" in (store.root / "report.html").read_text()  # the final rebuild came last
