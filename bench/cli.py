"""The command line: ``python -m bench {list,run,report,compare}`` (also installed as ``stn-bench``).

A thin layer over :mod:`bench.api`: it turns the arguments' text into values and
calls the same checks and the same run function as ``bench.run``.

- ``list``: the interpolators (hyperparameters with defaults, stochastic, reference), the suites and
  their options.
- ``run``: run suites into a run folder (``runs/<suites>-<YYYYmmdd-HHMMSS>`` by default), or
  finish one with ``--resume RUN``; ``--dry-run`` prints the plan and a time estimate and writes nothing.
- ``report RUN``: rebuild ``results.csv``, ``summary.csv`` and ``report.html`` from the stored cells.
- ``compare RUN_A RUN_B``: per metric and group, the difference of the means, tested as the verdicts are.

Bad input (an unknown name, a malformed ``--set`` or ``--option``, a folder that is not a run,
``--quick`` with ``--full``, ...) exits with code 2 and a message saying what is
wrong and what is valid, before anything is written. ``run`` exits with 0 when
every cell succeeded, 1 when any failed and 130 when stopped by Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import interpolators
import suites
from bench import api
from bench.api import SHARED_OPTIONS, UsageError
from bench.executors import EXECUTORS, make_executor, parse_executor_options
from bench.report import suite_spec
from bench.runner import EXIT_INTERRUPTED, write_outputs
from bench.stats import ALPHA, PAIRED, REPLICATE_COLUMNS, WELCH, compare_groups, format_p, unit_values
from bench.store import REPORT_FILE, BadCellFile, RunLockedError, RunStore
from suites.base import RunConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_RUNS_DIR = Path("runs")
#: the flag of each shared option
SHARED_FLAGS = {"images": "--images", "data_root": "--data-root", "download": "--download", "dataset": "--dataset",
                "backbone": "--backbone", "accuracy_from": "--accuracy-from"}
#: the keys a ``--config`` TOML file may hold at its top level (besides the tables ``set`` and ``option``)
CONFIG_KEYS = ("suites", "interpolators", "profile", "seeds", "device", *SHARED_OPTIONS)


# --- parser -------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark differentiable image interpolators (STN samplers)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "list", help="list the interpolators, the suites and their options",
        description="List the interpolators, the suites and their options.",
    )

    run = commands.add_parser(
        "run",
        help="run suites into a run folder (or finish one with --resume)",
        description="Run suites into a run folder. Every option but --resume, --out, --dry-run, --no-progress and the "
        "execution options is part of the run's config; with --resume RUN they may be left out or repeated identically.",
    )
    run.add_argument(
        "--suite", action="append", metavar="NAME", help="a suite, a comma-separated list or 'all' (repeatable)"
    )
    run.add_argument(
        "--interpolators", metavar="A,B,...", help="comma-separated names or wildcards (default: all registered)"
    )
    run.add_argument(
        "--set",
        action="append",
        metavar="NAME.HPARAM=VALUE",
        help="override a hyperparameter, e.g. estn.num_samples=16 (repeatable)",
    )
    run.add_argument(
        "--option",
        action="append",
        metavar="SUITE.KEY=VALUE",
        help="set a suite option, e.g. classify.labels=250,1000 or scale.trials=64 (repeatable; see `list`)",
    )
    run.add_argument("--config", metavar="FILE.toml", help="read the run's config from a TOML file (flags win)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto: cuda when available, else cpu")
    run.add_argument("--seeds", type=_positive_int, metavar="N",
                     help=f"seeds per cell group (default: the suite's; at most {api.MAX_SEEDS})")
    profile = run.add_mutually_exclusive_group()
    profile.add_argument(
        "--quick", dest="profile", action="store_const", const="quick", help="small grids, for a first look"
    )
    profile.add_argument("--full", dest="profile", action="store_const", const="full", help="the full grids")
    run.add_argument("--out", metavar="DIR", help="the run folder (default: runs/<suites>-<YYYYmmdd-HHMMSS>)")
    run.add_argument("--resume", metavar="DIR", help="finish the run in DIR: run its missing and failed cells")
    run.add_argument("--dry-run", action="store_true", help="print the plan and a time estimate; write nothing")
    run.add_argument("--images", metavar="DIR", help="a folder of your own images (scale, rotation, gradients)")
    run.add_argument("--data-root", metavar="DIR", help="where datasets live (classify)")
    run.add_argument(
        "--download", action="store_const", const=True, help="let torchvision download a dataset (classify)"
    )
    run.add_argument("--dataset", metavar="NAME", help="the dataset (classify)")
    run.add_argument(
        "--backbone",
        metavar="timm:NAME",
        help="table3 (the paper's networks, default) or timm:NAME, a timm backbone behind an EST layer (classify)",
    )
    run.add_argument("--accuracy-from", metavar="RUN_DIR", help="a run whose accuracy the cost suite joins with")
    run.add_argument(
        "--no-progress", action="store_true", help="no progress bars (they are off when stderr is not a terminal)"
    )
    execution = run.add_argument_group(
        "execution", "where the cells run; not part of the config, so a resume may run elsewhere (docs/executors.md)"
    )
    execution.add_argument(
        "--executor", choices=EXECUTORS, default="inline",
        help="inline: in this process (default); local: worker processes here; slurm: Slurm jobs through submitit",
    )
    execution.add_argument("--jobs", type=_positive_int, metavar="N", help="at most N cells at once (local, slurm)")
    execution.add_argument(
        "--executor-option", action="append", metavar="KEY=VALUE",
        help="e.g. partition=gpu, time_min=120, cpus_per_cell=4, gpus_per_cell=1, sbatch.reservation=x (repeatable)",
    )
    execution.add_argument(
        "--cell-timeout", type=_positive_float, metavar="SECONDS",
        help="stop a cell that runs longer and store it as failed (cause timeout) (local, slurm)",
    )
    execution.add_argument(
        "--skip-failed", action="store_true", help="with --resume: leave the cells stored as failed as they are"
    )

    report = commands.add_parser(
        "report",
        help="rebuild results.csv, summary.csv and report.html of a run",
        description="Rebuild a run's tables and report from its cells.",
    )
    report.add_argument("run_dir", metavar="RUN_DIR")

    compare = commands.add_parser(
        "compare",
        help="per metric, the difference between two runs, tested",
        description="Join two runs on suite, interpolator, hyperparameters, parameters and metric, pool each "
        "group's units (seeds, images, trials), and show a, b, b-a with its 95%% interval and a paired t-test "
        "(Welch's where the units do not pair); * marks p < 0.05.",
    )
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    compare.add_argument("--out", metavar="FILE", help="also write the full table as CSV")
    compare.add_argument(
        "--ignore-hparams", action="store_true", help="join without the hyperparameters (e.g. to compare --set values)"
    )
    compare.add_argument("--significant-only", action="store_true", help="print only the significant differences")
    return parser


# --- list ---------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    out = sys.stdout
    print("Interpolators (--interpolators, --set NAME.HPARAM=VALUE):", file=out)
    for name in interpolators.available():
        info = interpolators.describe(name)
        flags = " [stochastic]" if info["stochastic"] else ""
        print(f"  {name}{flags}: {info['summary']}", file=out)
        if info["reference"]:
            print(f"      reference: {info['reference']}", file=out)
        for hp, spec in info["hparams"].items():
            print(f"      {hp}: {spec['type']} = {spec['default']!r}", file=out)
    for plugin, error in interpolators.plugin_errors().items():
        print(f"  (plugin {plugin} failed to load: {error})", file=out)
    print("\nSuites (--suite NAME, a comma-separated list, or 'all'):", file=out)
    for name in suites.available():
        try:
            suite = suites.get(name)
        except Exception as err:  # noqa: BLE001  a suite that cannot load must not hide the others
            print(f"  {name}: (not available: {type(err).__name__}: {err})", file=out)
            continue
        x = f" [x: {suite.x_param}]" if suite.x_param else ""
        print(f"  {name}: {suite.summary}{x}", file=out)
        for key, option in suite.options.items():
            print(f"      --option {name}.{key}=...  {option.type_name}: {option.help}", file=out)
    for plugin, error in suites.plugin_errors().items():
        print(f"  (suite plugin {plugin} ignored: {error})", file=out)
    return 0


# --- run: argument -> config ----------------------------------------------------------------


def read_config_file(path: str) -> dict[str, Any]:
    """The TOML file's table, its keys checked and its relative folders resolved against the file's folder."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--config {path}: expected a TOML file, got {'a folder' if file.is_dir() else 'nothing'}")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"--config {path}: not valid TOML ({err})") from None
    unknown = sorted(set(data) - {*CONFIG_KEYS, "set", "option"})
    if unknown:
        raise UsageError(f"--config {path}: unknown key(s) {unknown}; expected {sorted([*CONFIG_KEYS, 'set', 'option'])}")
    for key in ("images", "data_root", "accuracy_from"):
        if isinstance(data.get(key), str) and not Path(data[key]).expanduser().is_absolute():
            data[key] = str(file.parent / data[key])
    for table in ("set", "option"):
        if not isinstance(data.get(table, {}), dict):
            raise UsageError(f"--config {path}: [{table}] must be a table of tables, got {data[table]!r}")
    return data


_SET_PATTERN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", re.DOTALL)


def parse_sets(values: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``--set NAME.HPARAM=VALUE`` values as ``{name: {hparam: value}}``, each parsed to its hyperparameter's type."""
    overrides: dict[str, dict[str, Any]] = {}
    for text in values:
        match = _SET_PATTERN.fullmatch(text)
        if not match:
            raise UsageError(f"--set {text!r}: expected NAME.HPARAM=VALUE, e.g. estn.num_samples=16")
        name, hparam, raw = match.group(1), match.group(2), match.group(3).strip()
        if name not in interpolators.available():
            raise UsageError(f"--set {text!r}: unknown interpolator {name!r}; expected one of {names}")
        if name not in names:
            raise UsageError(f"--set {text!r}: {name!r} is not among the selected interpolators {names}")
        spec = interpolators.hyperparameters(interpolators.get(name))
        if hparam not in spec:
            raise UsageError(f"--set {text!r}: {name} has no hyperparameter {hparam!r}; expected one of {sorted(spec)}")
        try:
            overrides.setdefault(name, {})[hparam] = spec[hparam].parse(raw, name)
        except (TypeError, ValueError) as err:
            raise UsageError(f"--set {text!r}: {err}") from None
    return overrides


def parse_suite_options(values: list[str], selected: list[str]) -> dict[str, dict[str, Any]]:
    """``--option SUITE.KEY=VALUE`` values as ``{suite: {key: value}}``, parsed by each option's declared kind."""
    out: dict[str, dict[str, Any]] = {}
    for text in values:
        match = _SET_PATTERN.fullmatch(text)
        if not match:
            raise UsageError(f"--option {text!r}: expected SUITE.KEY=VALUE, e.g. classify.labels=250,1000")
        name, key, raw = match.group(1), match.group(2), match.group(3).strip()
        if name not in suites.available():
            raise UsageError(f"--option {text!r}: unknown suite {name!r}; expected one of {selected}")
        if name not in selected:
            raise UsageError(f"--option {text!r}: the suite {name!r} is not among the selected suites {selected}")
        declared = suites.get(name).options
        if key not in declared:
            raise UsageError(f"--option {text!r}: {name} has no option {key!r}; expected one of {sorted(declared)}")
        where = f"--option {name}.{key}"
        try:
            value = declared[key].parse(raw, where)
        except ValueError as err:
            raise UsageError(str(err)) from None
        out.setdefault(name, {})[key] = api.check_option(declared[key], value, where)
    return out


def _merge(low: dict[str, dict[str, Any]], high: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {name: dict(values) for name, values in low.items()}
    for name, values in high.items():
        out.setdefault(name, {}).update(values)
    return out


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """The run's config from the command line (and ``--config``, which flags override); with ``base`` (a
    resumed run) what is not given comes from it."""
    file = read_config_file(args.config) if args.config else {}
    where = f"--config {args.config}:" if args.config else ""
    if args.suite is not None:
        suite_names = api.resolve_suites(",".join(args.suite), what="--suite")
    elif "suites" in file:
        suite_names = api.resolve_suites(file["suites"], what=f"{where} suites")
    elif base is not None:
        suite_names = list(base.suites)
    else:
        raise UsageError(f"--suite: required; expected one of {suites.available()} or 'all'")

    given_names = args.interpolators is not None or "interpolators" in file
    if base is not None and not given_names and args.set is None and "set" not in file:
        chosen = base.interpolators
    else:
        if args.interpolators is not None:
            names = api.resolve_interpolators(args.interpolators, what="--interpolators")
        elif "interpolators" in file:
            names = api.resolve_interpolators(file["interpolators"], what=f"{where} interpolators")
        elif base is not None:
            names = list(base.interpolators)
        else:
            names = interpolators.available()
        sets = _merge(api.check_hparams(file.get("set"), names, what=f"{where} set") if file.get("set") else {},
                      parse_sets(args.set or [], names))
        chosen = api.check_hparams(sets, names, what="--set")

    device = args.device or file.get("device") or (base.device if base is not None else "auto")
    device = api.resolve_device(device, what="--device")
    profile = args.profile or file.get("profile") or (base.profile if base is not None else "default")
    if profile not in api.PROFILE_NAMES:
        raise UsageError(f"{where} profile: expected one of {list(api.PROFILE_NAMES)}, got {profile!r}")
    seeds = args.seeds if args.seeds is not None else file.get("seeds", base.seeds if base is not None else None)
    api.check_seeds(seeds, what="--seeds" if args.seeds is not None else f"{where} seeds".strip())

    flags = {key: getattr(args, key) for key in SHARED_OPTIONS}
    options = dict(base.options) if base is not None else {}
    options.update(api.check_shared_options({k: v for k, v in file.items() if k in SHARED_OPTIONS},
                                            flag={k: f"{where} {k}" for k in SHARED_OPTIONS}))
    options.update(api.check_shared_options(flags, flag=SHARED_FLAGS))
    suite_options = dict(base.suite_options) if base is not None else {}
    suite_options = _merge(suite_options, api.check_suite_options(file.get("option", {}), suite_names,
                                                                  what=f"{where} option"))
    suite_options = _merge(suite_options, parse_suite_options(args.option or [], suite_names))
    return RunConfig(
        suites=tuple(suite_names),
        interpolators=chosen,
        device=device,
        seeds=seeds,
        profile=profile,
        options=options,
        suite_options=suite_options,
    )


def _normalised(config: RunConfig) -> dict[str, Any]:
    return json.loads(json.dumps(config.to_json(), sort_keys=True))


def resume_target(args: argparse.Namespace) -> tuple[RunStore, RunConfig]:
    """The run to resume and its stored config; options given alongside must match it."""
    try:
        store = RunStore.open(args.resume)
    except ValueError as err:
        raise UsageError(f"--resume: {err}") from None
    if args.out is not None and Path(args.out).resolve() != store.root.resolve():
        raise UsageError(f"--out {args.out}: a resumed run stays in its folder {args.resume}; leave --out out")
    stored = store.config()
    try:
        asked = config_from_args(args, base=stored)
    except UsageError:
        if args.device is None and stored.device == "cuda":
            raise UsageError(f"--resume: the run in {args.resume} uses CUDA, which is not available here") from None
        raise
    a, b = _normalised(stored), _normalised(asked)
    differences = [f"{key}: run has {a.get(key)!r}, this command asks for {b[key]!r}"
                   for key in b if a.get(key, {} if key == "suite_options" else None) != b[key]]
    if differences:
        raise UsageError(
            f"--resume {args.resume}: the options differ from the run's config ({'; '.join(differences)}); "
            "resume with --resume alone, or start a new run"
        )
    return store, stored


def default_out(args: argparse.Namespace, config: RunConfig) -> Path:
    """``runs/<suites>-<YYYYmmdd-HHMMSS>`` in the current folder (``all`` when all suites were asked for)."""
    asked_all = any(part.strip() == "all" for value in args.suite or [] for part in value.split(","))
    return api.default_out(config, "all" if asked_all else None, DEFAULT_RUNS_DIR)


def executor_from_args(args: argparse.Namespace):
    """The executor of ``--executor``, ``--jobs``, ``--executor-option`` and ``--cell-timeout``, checked."""
    if args.skip_failed and args.resume is None:
        raise UsageError("--skip-failed: only with --resume RUN (a new run has no failed cells)")
    try:
        options = parse_executor_options(args.executor, args.executor_option or [])
        return make_executor(args.executor, args.jobs, args.cell_timeout, options)
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    executor = executor_from_args(args)
    store = None
    if args.resume is not None:
        store, config = resume_target(args)
        out = store.root
    else:
        config = config_from_args(args)
        out = api.check_out(args.out if args.out is not None else default_out(args, config), "--out")
    plan = api.plan_for(config)
    if store is not None:
        api.check_inputs(store, config, plan, what="--resume")
    if args.dry_run:
        if store is not None:
            records, bad = store.scan_cells()
            _say_unusable(bad, "the run sets it aside and runs its cell again")
        done = {k for k, r in records.items() if r.ok} if store is not None else set()
        print(f"dry run (nothing is written): {'resume' if store else 'new run'} in {out}")
        print(api.describe_plan(plan, config, done))
        return 0
    progress = not args.no_progress and sys.stderr.isatty()
    run = api.execute_config(config, out, plan=plan, progress=progress, command=["python", "-m", "bench", *argv],
                             store=store, executor=executor, skip_failed=args.skip_failed, what="--out")
    outcome = run.outcome
    print(
        f"{outcome.ran} cell(s) run, {outcome.failed} failed; report: {run.root / REPORT_FILE}",
        file=sys.stderr,
    )
    return outcome.exit_code


# --- report and compare ----------------------------------------------------------------------


def _open_run(path: str, what: str) -> RunStore:
    try:
        return RunStore.open(path)
    except ValueError as err:
        raise UsageError(f"{what}: {err}") from None


def _say_unusable(bad: list[BadCellFile], then: str) -> None:
    for item in bad:
        print(f"warning: {item.name} is left out: {item.reason}; {then}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    store = _open_run(args.run_dir, "RUN_DIR")
    ok = write_outputs(store)
    _say_unusable(store.bad_cells(), f"python -m bench run --resume {store.root} sets it aside and runs its cell again")
    print(f"report: {store.root / REPORT_FILE}", file=sys.stderr)
    return 0 if ok else 1


#: the columns of :func:`compare_runs` after the group's key columns
COMPARE_STATS = ("n_a", "n_b", "a", "b", "b-a", "ci_low", "ci_high", "rel_change", "p", "test", "significant")


def compare_runs(a: RunStore, b: RunStore, ignore_hparams: bool = False) -> pd.DataFrame:
    """Per group, the two runs' means and their difference ``b - a``, tested as the verdicts are.

    A group is every column both runs' results share but ``value`` and the unit columns
    (seed, image, trial, ...: :data:`bench.stats.REPLICATE_COLUMNS`), which are pooled;
    ``--ignore-hparams`` leaves ``hparams`` out. The test pairs the units both runs
    hold (:func:`bench.stats.compare_groups`); ``rel_change`` is ``(b - a) / |a|`` (NaN
    where ``a`` is 0). A group in one run only has NaN on the other side.
    """
    ra, rb = a.results(), b.results()
    units = ["seed", *sorted(c for c in REPLICATE_COLUMNS if c in ra.columns or c in rb.columns)]
    keys = [c for c in ra.columns if c in rb.columns and c not in units and c != "value"]
    if ignore_hparams and "hparams" in keys:
        keys.remove("hparams")
    metas = (a.read_meta().get("suites", {}), b.read_meta().get("suites", {}))
    groups_a = {k: g for k, g in ra.groupby(keys, dropna=False, sort=False)} if not ra.empty else {}
    groups_b = {k: g for k, g in rb.groupby(keys, dropna=False, sort=False)} if not rb.empty else {}
    rows = []
    for key in [*groups_a, *(k for k in groups_b if k not in groups_a)]:
        key_tuple = key if isinstance(key, tuple) else (key,)
        where = dict(zip(keys, key_tuple))
        spec = suite_spec(where["suite"], metas[0].get(where["suite"]) or metas[1].get(where["suite"], {}))
        metric = spec.metric(str(where["metric"]))
        ga, gb = groups_a.get(key), groups_b.get(key)
        row = dict(where)
        row |= {"n_a": 0 if ga is None else len(ga), "n_b": 0 if gb is None else len(gb)}
        row["a"] = math.nan if ga is None else float(ga["value"].mean())
        row["b"] = math.nan if gb is None else float(gb["value"].mean())
        if ga is not None and gb is not None:
            group_units = [c for c in units if c in ga.columns and c in gb.columns
                           and (ga[c].notna().any() or gb[c].notna().any())]
            d = compare_groups(unit_values(ga, group_units), unit_values(gb, group_units), metric)
            row |= {"b-a": d.diff, "ci_low": d.low, "ci_high": d.high, "p": d.p, "test": d.test,
                    "significant": d.significant}
        else:
            row |= {"b-a": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "test": "",
                    "significant": False}
        row["rel_change"] = row["b-a"] / abs(row["a"]) if row["a"] not in (0, 0.0) and math.isfinite(row["a"]) \
            else math.nan
        rows.append(row)
    table = pd.DataFrame(rows, columns=[*keys, *COMPARE_STATS])
    keep = [c for c in table.columns if c in COMPARE_STATS or table[c].notna().any()]
    return table[keep].reset_index(drop=True)


def _fit(value: float, width: int, sign: bool = False) -> str:
    """``value`` in at most ``width`` characters (fewer digits until it fits)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "exact" if not sign else ("+exact" if value > 0 else "-exact")
    for digits in (3, 2, 1) if sign else (4, 3, 2, 1):
        text = f"{value:+.{digits}g}" if sign else f"{value:.{digits}g}"
        if len(text) <= width:
            return text
    return text


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def compare_lines(table: pd.DataFrame, significant_only: bool = False) -> list[str]:
    """The comparison as text lines of at most 80 characters: a header per suite and metric, a line per group."""
    lines = []
    fixed = {"suite", "interpolator", "hparams", "metric", "unit", *COMPARE_STATS}
    params = [c for c in table.columns if c not in fixed]
    shown = table[table["significant"]] if significant_only else table
    for (suite, metric, unit), group in shown.groupby(["suite", "metric", "unit"], sort=False, dropna=False):
        unit_text = f" [{unit}]" if isinstance(unit, str) and unit not in ("", "1") else ""
        lines.append(_clip(f"{suite}: {metric}{unit_text}", 80))
        for row in group.itertuples(index=False):
            r = dict(zip(group.columns, row))
            at = ",".join(f"{c}={_short(r[c])}" for c in params if _present(r[c]))
            diff = _fit(r["b-a"], 8, sign=True)
            if math.isfinite(r["ci_low"]) and r["ci_low"] != r["ci_high"]:
                ci = f" [{_fit(r['ci_low'], 6)},{_fit(r['ci_high'], 6)}]"
                diff = diff + ci if len(diff + ci) <= 25 else diff
            tested = r["test"] in (PAIRED, WELCH) and math.isfinite(r["p"])
            p = format_p(r["p"]).replace(" ", "") if tested else _clip(str(r["test"] or "-"), 8)
            flag = "*" if r["significant"] else " "
            line = (f"  {_clip(str(r['interpolator']), 9):<9} {_clip(at, 12):<12} {_fit(r['a'], 8):>8} "
                    f"{_fit(r['b'], 8):>8} {diff:<25} {_clip(p, 8):<8}{flag}")
            lines.append(line.rstrip())
    return lines


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def cmd_compare(args: argparse.Namespace) -> int:
    a = _open_run(args.run_a, "RUN_A")
    b = _open_run(args.run_b, "RUN_B")
    if args.out is not None and Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: expected a file name for the CSV, got a folder")
    table = compare_runs(a, b, ignore_hparams=args.ignore_hparams)
    if args.out is not None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"written: {args.out}", file=sys.stderr)
    both = table[(table["n_a"] > 0) & (table["n_b"] > 0)] if not table.empty else table
    print(f"a = {a.root}\nb = {b.root}")
    if table.empty:
        print("(no results in either run)")
        return 0
    if both.empty:
        suites_a = sorted(set(a.results()["suite"])) if not a.results().empty else []
        suites_b = sorted(set(b.results()["suite"])) if not b.results().empty else []
        print(f"warning: the runs share no group (a: suites {suites_a}, b: suites {suites_b}, "
              f"{len(table)} groups in one run only): nothing to compare", file=sys.stderr)
        return 0
    only = len(table) - len(both)
    significant = int(both["significant"].sum())
    print(f"{len(both)} groups in both runs, {significant} significant{f', {only} in one run only' if only else ''}.")
    print(f"* p < {ALPHA:g}: paired t-test over the units both share (seeds, images,\n  trials), else Welch's.")
    print(f"  {'interp':<9} {'at':<12} {'a':>8} {'b':>8} {'b-a [95% CI]':<25} p")
    for line in compare_lines(table, significant_only=args.significant_only):
        print(line)
    return 0


# --- entry point ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse reports bad usage with code 2 (and --help with 0)
        return int(exit_.code or 0)
    try:
        commands = {"list": cmd_list, "report": cmd_report, "compare": cmd_compare}
        code = cmd_run(args, argv) if args.command == "run" else commands[args.command](args)
        sys.stdout.flush()  # inside the try: a reader gone away is handled below, not at exit
        return code
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not fail again
        return 0
    except (UsageError, RunLockedError) as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside a cell (planning, writing the report): stored cells are safe
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
