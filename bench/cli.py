"""The command line: ``python -m bench {list,run,report,compare}`` (also installed as ``stn-bench``).

- ``list``: the interpolators (hyperparameters with defaults, stochastic, reference) and the suites.
- ``run``: run suites into a run folder (``runs/<suites>-<YYYYmmdd-HHMMSS>`` by default), or
  finish one with ``--resume RUN``.
- ``report RUN``: rebuild ``results.csv``, ``summary.csv`` and ``report.html`` from the stored cells.
- ``compare RUN_A RUN_B``: per metric, the difference of the summary means.

Bad input (an unknown name, a malformed ``--set``, a folder that is not a run,
``--quick`` with ``--full``, ...) exits with code 2 and a message saying what is
wrong and what is valid, before anything is written. ``run`` exits with 0 when
every cell succeeded, 1 when any failed and 130 when stopped by Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import interpolators
import suites
from bench.executors import EXECUTORS, make_executor, parse_executor_options
from bench.runner import EXIT_INTERRUPTED, execute, make_plan, new_meta, write_outputs
from bench.store import REPORT_FILE, SUMMARY_STATS, NotARunError, RunStore, summarize
from suites.base import RunConfig

DEFAULT_RUNS_DIR = Path("runs")


class UsageError(Exception):
    """Bad command-line input: reported with exit code 2 before anything is written."""


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
        "list", help="list the interpolators and the suites", description="List the interpolators and the suites."
    )

    run = commands.add_parser(
        "run",
        help="run suites into a run folder (or finish one with --resume)",
        description="Run suites into a run folder. Every option but --resume, --out, --no-progress and the execution "
        "options is part of the run's config; with --resume RUN they may be left out or repeated identically.",
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
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto: cuda when available, else cpu")
    run.add_argument("--seeds", type=_positive_int, metavar="N", help="seeds per cell group (default: the suite's)")
    profile = run.add_mutually_exclusive_group()
    profile.add_argument(
        "--quick", dest="profile", action="store_const", const="quick", help="small grids, for a first look"
    )
    profile.add_argument("--full", dest="profile", action="store_const", const="full", help="the full grids")
    run.add_argument("--out", metavar="DIR", help="the run folder (default: runs/<suites>-<YYYYmmdd-HHMMSS>)")
    run.add_argument("--resume", metavar="DIR", help="finish the run in DIR: run its missing and failed cells")
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
        help="difference per metric between two runs",
        description="Join the summary means of two runs on suite, interpolator, hyperparameters, parameters and "
        "metric, and show a, b, b-a and the relative change (b-a)/|a|.",
    )
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    compare.add_argument("--out", metavar="FILE", help="also write the table as CSV")
    compare.add_argument(
        "--ignore-hparams", action="store_true", help="join without the hyperparameters (e.g. to compare --set values)"
    )
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
    for plugin, error in suites.plugin_errors().items():
        print(f"  (suite plugin {plugin} ignored: {error})", file=out)
    return 0


# --- run: argument -> config ----------------------------------------------------------------


def parse_suites(values: list[str]) -> list[str]:
    """``--suite`` values (repeatable, comma-separated, ``all``) as names in run order, checked."""
    valid = suites.available()
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if part == "all":
                names.extend(valid)
            elif part in valid:
                names.append(part)
            else:
                raise UsageError(f"--suite: unknown suite {part!r}; expected one of {valid} or 'all'")
    if not names:
        raise UsageError(f"--suite: no suite given; expected one of {valid} or 'all'")
    return list(dict.fromkeys(names))


def parse_interpolators(value: str) -> list[str]:
    """``--interpolators a,b,c`` (names or wildcards such as ``bi*``) as registered names, checked."""
    valid = interpolators.available()
    names: list[str] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if any(ch in part for ch in "*?["):
            matched = interpolators.available(part)
            if not matched:
                raise UsageError(f"--interpolators: {part!r} matches no interpolator; expected names among {valid}")
            names.extend(matched)
        elif part in valid:
            names.append(part)
        else:
            raise UsageError(f"--interpolators: unknown interpolator {part!r}; expected names among {valid}")
    if not names:
        raise UsageError(f"--interpolators: no interpolator given; expected names among {valid}")
    return list(dict.fromkeys(names))


_SET_PATTERN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", re.DOTALL)


def parse_sets(values: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``--set NAME.HPARAM=VALUE`` values as ``{name: {hparam: value}}``, parsed to each hyperparameter's type.

    Each name must be among the selected ``names``; each interpolator is then
    created with its overrides, so a value out of range is caught here too.
    """
    overrides: dict[str, dict[str, Any]] = {name: {} for name in names}
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
            overrides[name][hparam] = spec[hparam].parse(raw, name)
        except (TypeError, ValueError) as err:
            raise UsageError(f"--set {text!r}: {err}") from None
    for name, values_ in overrides.items():
        try:
            interpolators.create(name, **values_)
        except (TypeError, ValueError) as err:
            given = ", ".join(f"{name}.{k}={v!r}" for k, v in values_.items())
            raise UsageError(f"--set {given}: {err}") from None
    return overrides


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without CUDA is a usage error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda: CUDA is not available on this machine (torch.cuda.is_available() is False); use --device cpu or auto"
        )
    return device


def parse_options(args: argparse.Namespace) -> dict[str, Any]:
    """The suite-specific options that were given, checked, as ``RunConfig.options`` (folders made absolute)."""
    options: dict[str, Any] = {}
    if args.images is not None:
        path = Path(args.images)
        if not path.is_dir():
            raise UsageError(f"--images {args.images}: expected an existing folder of images")
        options["images"] = str(path.resolve())
    if args.data_root is not None:
        path = Path(args.data_root)
        if path.exists() and not path.is_dir():
            raise UsageError(f"--data-root {args.data_root}: expected a folder, got a file")
        options["data_root"] = str(path.resolve())
    if args.download:
        options["download"] = True
    if args.dataset is not None:
        if not args.dataset.strip():
            raise UsageError("--dataset: expected a dataset name, got an empty string")
        options["dataset"] = args.dataset.strip()
    if args.backbone is not None:
        if not re.fullmatch(r"table3|timm:[A-Za-z0-9_.\-/]+", args.backbone):
            raise UsageError(
                f"--backbone {args.backbone!r}: expected table3 (the paper's networks) or timm:NAME, e.g. timm:resnet18"
            )
        options["backbone"] = args.backbone
    if args.accuracy_from is not None:
        try:
            RunStore.open(args.accuracy_from)
        except NotARunError as err:
            raise UsageError(f"--accuracy-from: {err}") from None
        options["accuracy_from"] = str(Path(args.accuracy_from).resolve())
    return options


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """The run's config from the command line; with ``base`` (a resumed run) what is not given comes from it."""
    if args.suite is not None:
        suite_names = parse_suites(args.suite)
    elif base is not None:
        suite_names = list(base.suites)
    else:
        raise UsageError(f"--suite: required; expected one of {suites.available()} or 'all'")

    if base is not None and args.interpolators is None and args.set is None:
        chosen = base.interpolators
    else:
        if args.interpolators is not None:
            names = parse_interpolators(args.interpolators)
        elif base is not None:
            names = list(base.interpolators)
        else:
            names = interpolators.available()
        chosen = parse_sets(args.set or [], names)

    if args.device is not None:
        device = resolve_device(args.device)
    elif base is not None:
        device = resolve_device(base.device)
    else:
        device = resolve_device("auto")

    options = dict(base.options) if base is not None else {}
    given = parse_options(args)
    options.update(given)
    return RunConfig(
        suites=tuple(suite_names),
        interpolators=chosen,
        device=device,
        seeds=args.seeds if args.seeds is not None else (base.seeds if base is not None else None),
        profile=args.profile or (base.profile if base is not None else "default"),
        options=options,
    )


def _normalised(config: RunConfig) -> dict[str, Any]:
    return json.loads(json.dumps(config.to_json(), sort_keys=True))


def resume_target(args: argparse.Namespace) -> tuple[RunStore, RunConfig]:
    """The run to resume and its stored config; options given alongside must match it."""
    try:
        store = RunStore.open(args.resume)
    except NotARunError as err:
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
    differences = [f"{key}: run has {a[key]!r}, this command asks for {b[key]!r}" for key in a if a[key] != b.get(key)]
    if differences:
        raise UsageError(
            f"--resume {args.resume}: the options differ from the run's config ({'; '.join(differences)}); "
            "resume with --resume alone, or start a new run"
        )
    return store, stored


def default_out(args: argparse.Namespace, config: RunConfig) -> Path:
    """``runs/<suites>-<YYYYmmdd-HHMMSS>`` in the current folder (``all`` when all suites were asked for)."""
    asked_all = any(part.strip() == "all" for value in args.suite or [] for part in value.split(","))
    label = "all" if asked_all else "+".join(config.suites)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = DEFAULT_RUNS_DIR / f"{label}-{stamp}"
    counter = 2
    while path.exists():
        path = DEFAULT_RUNS_DIR / f"{label}-{stamp}-{counter}"
        counter += 1
    return path


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
    if args.resume is not None:
        store, config = resume_target(args)
        out = store.root
    else:
        config = config_from_args(args)
        if args.out is not None:
            out = Path(args.out)
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise UsageError(
                    f"--out {args.out}: already exists and is not an empty folder; "
                    f"finish that run with --resume {args.out} or choose another folder"
                )
        else:
            out = default_out(args, config)
        store = None
    try:
        plan = make_plan(config)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    command = ["python", "-m", "bench", *argv]
    if store is None:
        store = RunStore.create(out, new_meta(config, plan, command))
    print(f"run folder: {store.root}", file=sys.stderr)
    progress = not args.no_progress and sys.stderr.isatty()
    outcome = execute(
        store, config, plan, progress=progress, command=command, executor=executor, skip_failed=args.skip_failed
    )
    print(
        f"{outcome.ran} cell(s) run, {outcome.failed} failed; report: {store.root / REPORT_FILE}",
        file=sys.stderr,
    )
    return outcome.exit_code


# --- report and compare ----------------------------------------------------------------------


def _open_run(path: str, what: str) -> RunStore:
    try:
        return RunStore.open(path)
    except NotARunError as err:
        raise UsageError(f"{what}: {err}") from None


def cmd_report(args: argparse.Namespace) -> int:
    store = _open_run(args.run_dir, "RUN_DIR")
    ok = write_outputs(store)
    print(f"report: {store.root / REPORT_FILE}", file=sys.stderr)
    return 0 if ok else 1


def compare_runs(a: RunStore, b: RunStore, ignore_hparams: bool = False) -> pd.DataFrame:
    """The summary means of two runs side by side: the key columns, ``a``, ``b``, ``b-a`` and ``rel_change``.

    Groups are joined on every key column the two summaries share (suite,
    interpolator, hparams, the parameters, metric, unit, extra columns), an
    outer join, so a group present in one run only has NaN on the other side.
    ``rel_change`` is ``(b - a) / |a|`` (NaN where ``a`` is 0).
    """
    sa, sb = summarize(a.results()), summarize(b.results())
    keys = [c for c in sa.columns if c in sb.columns and c not in SUMMARY_STATS]
    if ignore_hparams:
        keys.remove("hparams")
        sa, sb = sa.drop(columns="hparams"), sb.drop(columns="hparams")
    merged = pd.merge(sa[[*keys, "mean"]], sb[[*keys, "mean"]], on=keys, how="outer", suffixes=("_a", "_b"), sort=False)
    merged = merged.rename(columns={"mean_a": "a", "mean_b": "b"})
    merged["b-a"] = merged["b"] - merged["a"]
    merged["rel_change"] = merged["b-a"] / merged["a"].abs().where(merged["a"] != 0)
    return merged.dropna(axis=1, how="all").reset_index(drop=True)


def cmd_compare(args: argparse.Namespace) -> int:
    a = _open_run(args.run_a, "RUN_A")
    b = _open_run(args.run_b, "RUN_B")
    if args.out is not None and Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: expected a file name for the CSV, got a folder")
    table = compare_runs(a, b, ignore_hparams=args.ignore_hparams)
    print(f"a = {a.root}\nb = {b.root}")
    with pd.option_context(
        "display.max_rows", None, "display.max_columns", None, "display.width", 200, "display.max_colwidth", 60
    ):
        print(table.to_string(index=False) if not table.empty else "(no results in either run)")
    if args.out is not None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"written: {args.out}", file=sys.stderr)
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
        if args.command == "list":
            return cmd_list(args)
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "report":
            return cmd_report(args)
        return cmd_compare(args)
    except UsageError as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside a cell (planning, writing the report): stored cells are safe
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
