"""The notebook API: run suites and load runs as pandas DataFrames; the command line is a layer over it.

``bench.run(suites=..., interpolators=..., **options)`` checks its arguments as
``python -m bench run`` does (a :class:`UsageError` names the argument, what it
expected and what it got, before anything is written), runs the cells into a run
folder and returns a :class:`Run`; ``bench.load(RUN_DIR)`` opens one that exists.
A :class:`Run` has ``.results`` (tidy rows), ``.summary`` (per group: n, mean,
std, 95% t-interval), ``.verdicts`` (per metric and swept value: the best
methods, the difference from the runner-up and its test) as DataFrames, and
``.report()``, which writes ``report.html``.

>>> import tempfile, bench
>>> folder = tempfile.mkdtemp()
>>> run = bench.run(suites="scale", interpolators=["bilinear", "nearest"], profile="quick",
...                 out=f"{folder}/run", scale={"scales": [4.0], "num_images": 1, "trials": 2, "steps": 2})
>>> sorted(run.results["metric"].unique())
['align_corner_error_median', 'align_success', 'psnr', 'ssim']
>>> run.summary.query("metric == 'align_success'")[["interpolator", "n"]].to_dict("records")
[{'interpolator': 'bilinear', 'n': 2}, {'interpolator': 'nearest', 'n': 2}]
>>> run.verdicts.set_index("metric").loc["psnr", "leader"]  # one image: no test, but a leader
'bilinear'
>>> run.report().name
'report.html'
>>> bench.load(f"{folder}/run").summary.equals(run.summary)
True
"""

from __future__ import annotations

import functools
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import interpolators
import suites
from bench.runner import Outcome, Plan, execute, image_inputs, input_changes, make_plan, new_meta, write_outputs
from bench.store import NotARunError, RunStore, out_problem, shorten, summarize
from suites.base import Option, RunConfig

#: the options several suites share, each with its own command-line flag (``--images``, ...)
SHARED_OPTIONS: dict[str, Option] = {
    "images": Option("folder", "a folder of your own images (scale, rotation, gradients)"),
    "data_root": Option("str", "where datasets live (classify)"),
    "download": Option("bool", "let torchvision download a dataset (classify)"),
    "dataset": Option("str", "the dataset (classify)"),
    "backbone": Option("str", "table3 or timm:NAME (classify)"),
    "accuracy_from": Option("run", "a run whose accuracy results the cost suite joins with"),
}
PROFILE_NAMES = ("quick", "default", "full")
#: the most seeds per cell group (``--seeds``): more would only grow the plan, never the evidence per cell
MAX_SEEDS = 1000


class UsageError(ValueError):
    """Bad input to :func:`run` or the command line: it says which argument, what was expected and what came."""


# --- checking arguments ------------------------------------------------------------------------------


def _as_list(value: str | Iterable[str], what: str) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, Iterable):
        raise UsageError(f"{what}: expected names (a list or a comma-separated string), got {value!r}")
    return [str(v).strip() for v in value if str(v).strip()]


def resolve_suites(names: str | Iterable[str], what: str = "suites") -> list[str]:
    """Suite names (``all`` for every one) in run order, checked."""
    valid = suites.available()
    out: list[str] = []
    for part in _as_list(names, what):
        if part == "all":
            out.extend(valid)
        elif part in valid:
            out.append(part)
        else:
            raise UsageError(f"{what}: unknown suite {part!r}; expected one of {valid} or 'all'")
    if not out:
        raise UsageError(f"{what}: no suite given; expected one of {valid} or 'all'")
    return list(dict.fromkeys(out))


def resolve_interpolators(names: str | Iterable[str] | None, what: str = "interpolators") -> list[str]:
    """Registered names for ``names`` (names or wildcards such as ``bi*``; ``None``: all), checked."""
    valid = interpolators.available()
    if names is None:
        return valid
    out: list[str] = []
    for part in _as_list(names, what):
        if any(ch in part for ch in "*?["):
            matched = interpolators.available(part)
            if not matched:
                raise UsageError(f"{what}: {part!r} matches no interpolator; expected names among {valid}")
            out.extend(matched)
        elif part in valid:
            out.append(part)
        else:
            raise UsageError(f"{what}: unknown interpolator {part!r}; expected names among {valid}")
    if not out:
        raise UsageError(f"{what}: no interpolator given; expected names among {valid}")
    return list(dict.fromkeys(out))


def check_hparams(hparams: Mapping[str, Mapping[str, Any]] | None, names: list[str],
                  what: str = "hparams") -> dict[str, dict[str, Any]]:
    """``{name: {hparam: value}}`` for the selected ``names``, each value checked against its type and range."""
    overrides: dict[str, dict[str, Any]] = {name: {} for name in names}
    for name, values in (hparams or {}).items():
        if name not in interpolators.available():
            raise UsageError(f"{what}: unknown interpolator {name!r}; expected one of {names}")
        if name not in names:
            raise UsageError(f"{what}: {name!r} is not among the selected interpolators {names}")
        spec = interpolators.hyperparameters(interpolators.get(name))
        for hparam, value in dict(values).items():
            if hparam not in spec:
                raise UsageError(
                    f"{what} {name}.{hparam}: {name} has no hyperparameter {hparam!r}; expected one of {sorted(spec)}"
                )
            try:
                spec[hparam].check(value, name)
            except (TypeError, ValueError) as err:
                raise UsageError(f"{what} {name}.{hparam}={value!r}: {err}") from None
            overrides[name][hparam] = value
    for name, values in overrides.items():
        try:
            interpolators.create(name, **values)
        except (TypeError, ValueError) as err:
            given = ", ".join(f"{name}.{k}={v!r}" for k, v in values.items())
            raise UsageError(f"{what} {given}: {err}") from None
    return overrides


def resolve_device(device: str, what: str = "device") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without CUDA is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"{what}: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"{what} cuda: CUDA is not available on this machine (torch.cuda.is_available() is False); "
            "use --device cpu or auto"
        )
    return device


def check_seeds(seeds: Any, what: str = "seeds") -> int | None:
    """``seeds`` (``None``: each suite's own) checked: an integer from 1 to :data:`MAX_SEEDS`."""
    if seeds is None:
        return None
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"{what}: expected a positive integer, got {shorten(repr(seeds))}")
    if seeds > MAX_SEEDS:
        raise UsageError(f"{what}: expected at most {MAX_SEEDS} seeds, got {shorten(str(seeds))}")
    return seeds


def check_option(option: Option, value: Any, where: str) -> Any:
    """``value`` checked against ``option`` (a ``run`` must be a run folder); raises :class:`UsageError`."""
    try:
        value = option.check(value, where)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if option.kind == "run":
        try:
            RunStore.open(value)
        except NotARunError as err:
            raise UsageError(f"{where}: {err}") from None
    return value


def check_shared_options(options: Mapping[str, Any], flag: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The shared options that were given (not ``None``), checked; ``flag`` names them in messages."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        where = (flag or {}).get(key, key)
        if key not in SHARED_OPTIONS:
            raise UsageError(f"{where}: unknown option; expected one of {sorted(SHARED_OPTIONS)} or a suite's name")
        if value is None or (key == "download" and value is False):
            continue
        if key == "data_root" and Path(str(value)).is_file():
            raise UsageError(f"{where} {value}: expected a folder, got a file")
        if key == "backbone" and not re.fullmatch(r"table3|timm:[A-Za-z0-9_.\-/]+", str(value)):
            raise UsageError(f"{where} {value!r}: expected table3 (the paper's networks) or timm:NAME, e.g. timm:resnet18")
        if key == "dataset" and not str(value).strip():
            raise UsageError(f"{where}: expected a dataset name, got an empty string")
        value = check_option(SHARED_OPTIONS[key], value, where)
        if key == "data_root":
            value = str(Path(value).expanduser().resolve())
        out[key] = value.strip() if key == "dataset" else value
    return out


def check_suite_options(given: Mapping[str, Mapping[str, Any]], selected: list[str],
                        what: str = "options") -> dict[str, dict[str, Any]]:
    """``{suite: {key: value}}`` checked against each selected suite's declared :attr:`Suite.options`."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in given.items():
        if name not in suites.available():
            raise UsageError(f"{what} {name}: unknown suite {name!r}; expected one of {selected}")
        if name not in selected:
            raise UsageError(f"{what} {name}: the suite {name!r} is not among the selected suites {selected}")
        if not isinstance(values, Mapping):
            raise UsageError(f"{what} {name}: expected a table of KEY = VALUE, got {values!r}")
        declared = suites.get(name).options
        for key, value in values.items():
            if key not in declared:
                raise UsageError(f"{what} {name}.{key}: {name} has no option {key!r}; expected one of {sorted(declared)}")
            out.setdefault(name, {})[key] = check_option(declared[key], value, f"{what} {name}.{key}")
    return out


def make_config(
    suites: str | Iterable[str],
    interpolators: str | Iterable[str] | None = None,
    *,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    device: str = "auto",
    seeds: int | None = None,
    profile: str = "default",
    **options: Any,
) -> RunConfig:
    """A checked :class:`RunConfig` from Python values (the arguments of :func:`run`)."""
    names = resolve_suites(suites)
    chosen = check_hparams(hparams, resolve_interpolators(interpolators))
    if profile not in PROFILE_NAMES:
        raise UsageError(f"profile: expected one of {list(PROFILE_NAMES)}, got {profile!r}")
    seeds = check_seeds(seeds)
    shared = {k: v for k, v in options.items() if k in SHARED_OPTIONS}
    per_suite = {k: v for k, v in options.items() if k not in SHARED_OPTIONS}
    return RunConfig(
        suites=tuple(names), interpolators=chosen, device=resolve_device(device), seeds=seeds, profile=profile,
        options=check_shared_options(shared), suite_options=check_suite_options(per_suite, names, what="option"),
    )


def plan_for(config: RunConfig) -> Plan:
    """Every suite's cells for ``config``; a suite's refusal (an option out of range, ...) is a :class:`UsageError`."""
    try:
        return make_plan(config)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def estimate_seconds(plan: Plan, config: RunConfig) -> dict[str, float | None]:
    """Per suite, the estimated seconds of its cells (``Suite.estimate_seconds``), ``None`` where unknown."""
    out: dict[str, float | None] = {}
    for name, cells in plan.cells.items():
        estimates = [plan.suites[name].estimate_seconds(cell, config) for cell in cells]
        out[name] = None if any(e is None for e in estimates) else float(sum(estimates))
    return out


def describe_plan(plan: Plan, config: RunConfig, done: set[str] = frozenset()) -> str:
    """The plan in words: per suite its cells (and the values they sweep) and the time estimate."""
    lines = []
    estimates = estimate_seconds(plan, config)
    total_cells, total_seconds = 0, 0.0
    for name, cells in plan.cells.items():
        todo = [c for c in cells if c.key not in done]
        counts = {"interpolators": len({c.interpolator for c in todo})}
        for key in dict.fromkeys(k for c in todo for k in c.params):
            counts[key] = len({repr(c.params.get(key)) for c in todo})
        counts["seeds"] = len({c.seed for c in todo})
        grid = " x ".join(f"{n} {k}" for k, n in counts.items() if n > 1) or "1"
        estimate = estimates[name]
        if estimate is not None and cells:
            estimate *= len(todo) / len(cells)
            total_seconds += estimate
        left = f" ({len(cells) - len(todo)} done)" if done else ""
        lines.append(f"  {name:<10} {len(todo):>5} cells{left}  [{grid}]  ~{_duration(estimate)}")
        total_cells += len(todo)
    lines.append(f"  {'total':<10} {total_cells:>5} cells  ~{_duration(total_seconds)} on 2 CPU cores "
                 "(cells only, rough: measured per interpolator at the default profile)")
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "? (no estimate)"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --- runs ------------------------------------------------------------------------------------------------


class Run:
    """A run folder, read through :class:`~bench.store.RunStore`: its config, results, summary, verdicts, report.

    ``outcome`` (cells run, failed, interrupted) is set for a run made by :func:`run` in this process.
    """

    def __init__(self, store: RunStore, outcome: Outcome | None = None) -> None:
        self.store = store
        self.outcome = outcome

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def config(self) -> RunConfig:
        return self.store.config()

    @property
    def meta(self) -> dict[str, Any]:
        return self.store.read_meta()

    @functools.cached_property
    def results(self) -> pd.DataFrame:
        """Every row of every OK cell, tidy (as ``results.csv``)."""
        return self.store.results()

    @functools.cached_property
    def summary(self) -> pd.DataFrame:
        """Per group: n, mean, std and the 95% t-interval (as ``summary.csv``)."""
        return summarize(self.results)

    @functools.cached_property
    def verdicts(self) -> pd.DataFrame:
        """Per suite, metric, swept value and facet: best, leader, runner-up, difference, CI, p, test, verdict."""
        from bench.report import run_verdicts

        return run_verdicts(self.results, self.meta)

    @property
    def cells(self) -> dict[str, Any]:
        """Every stored cell record by key (see :class:`~bench.store.CellRecord`)."""
        return self.store.read_cells()

    @property
    def failed(self) -> int:
        """How many stored cells failed."""
        return sum(1 for r in self.cells.values() if not r.ok)

    def arrays(self, key: str) -> dict[str, Any]:
        """The arrays (pictures, trajectories) cell ``key`` stored."""
        return self.store.read_arrays(key)

    def report(self) -> Path:
        """Rebuild ``results.csv``, ``summary.csv`` and ``report.html`` from the cells; returns the report's path."""
        if not write_outputs(self.store):
            raise RuntimeError(f"the report of {self.root} could not be drawn (the error was printed)")
        self.__dict__.pop("results", None), self.__dict__.pop("summary", None), self.__dict__.pop("verdicts", None)
        return self.root / "report.html"

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r}: {', '.join(self.config.suites)}, {len(self.cells)} cells, {self.failed} failed)"


def load(run_dir: str | Path) -> Run:
    """The run in ``run_dir``; raises :class:`UsageError` if it is not a run folder.

    Cell files that cannot be used (unreadable, foreign, non-finite: :meth:`RunStore.scan_cells`)
    are left out of every table, each named in a ``UserWarning``.
    """
    try:
        store = RunStore.open(run_dir)
    except NotARunError as err:
        raise UsageError(f"run_dir: {err}") from None
    for item in store.bad_cells():
        warnings.warn(f"{store.root}: {item.name} is left out: {item.reason}", UserWarning, stacklevel=2)
    return Run(store)


def default_out(config: RunConfig, label: str | None = None, runs_dir: Path = Path("runs")) -> Path:
    """``runs/<suites>-<YYYYmmdd-HHMMSS>`` under the current folder (a counter added if it exists)."""
    import datetime as dt

    label = label or "+".join(config.suites)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = runs_dir / f"{label}-{stamp}"
    counter = 2
    while path.exists():
        path = runs_dir / f"{label}-{stamp}-{counter}"
        counter += 1
    return path


def check_out(out: str | Path, what: str = "out") -> Path:
    """``out`` as a new run folder's path, checked (:func:`bench.store.out_problem`); raises :class:`UsageError`.

    It may be absent or an empty folder (or one a run killed while it was being made left:
    :func:`bench.store.is_unused`); under a file, on a read-only file system, unwritable or too
    long a path is refused, naming the problem.
    """
    path = Path(out).expanduser()
    problem = out_problem(path)
    if problem is None:
        return path
    hint = ""
    if problem.startswith("already exists"):
        hint = (f"; finish that run with --resume {out} or choose another folder" if RunStore.is_run(path)
                else "; choose another folder")
    raise UsageError(f"{what} {shorten(str(out))}: {problem}{hint}")


def check_inputs(store: RunStore, config: RunConfig, plan: Plan, what: str = "resume") -> None:
    """Refuse to resume ``store`` when an image it read changed, was added or was removed since it began.

    Compares the hashes ``meta.json`` recorded (:func:`bench.runner.image_inputs`) with the files now;
    a run that recorded none (made before they were) is resumed with a warning on stderr.
    """
    recorded = store.read_meta().get("inputs")
    try:
        current = image_inputs(config, plan)
    except (OSError, ValueError) as err:
        raise UsageError(f"{what} {store.root}: cannot read the run's images again: {err}") from None
    if recorded is None:
        if current["images"] or current["builtin_images"]:
            print(f"warning: {store.root}/meta.json records no image hashes (an older run): its images cannot be "
                  "checked against the ones it was begun with", file=sys.stderr)
        return
    changes = input_changes(recorded, current)
    if changes:
        listed = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
        raise UsageError(f"{what} {store.root}: the images differ from the ones the run began with: {listed}. "
                         "Its cells would mix two sets of images: put the images back, or start a new run")


def execute_config(config: RunConfig, out: str | Path, *, plan: Plan | None = None, progress: bool = False,
                   command: list[str] | None = None, store: RunStore | None = None, executor: Any = None,
                   skip_failed: bool = False, what: str = "out") -> Run:
    """Run ``config``'s cells into ``out`` (a new run, or ``store`` to resume); the one path of the API and the CLI.

    ``executor`` and ``skip_failed`` are :func:`bench.runner.execute`'s (default: inline, every cell not stored OK);
    ``what`` names ``out`` in messages. Raises :class:`bench.store.RunLockedError` when another process writes the run.
    """
    plan = plan or plan_for(config)
    if store is None:
        path = check_out(out, what)
        try:
            store = RunStore.create(path, new_meta(config, plan, command))
        except OSError as err:  # a folder made meanwhile, a disk that filled up, a file system gone read-only
            raise UsageError(f"{what} {shorten(str(out))}: cannot make the run folder: {err}") from None
    print(f"run folder: {store.root}", file=sys.stderr)
    outcome = execute(store, config, plan, progress=progress, command=command, executor=executor,
                      skip_failed=skip_failed)
    return Run(store, outcome)


def run(
    suites: str | Iterable[str],
    interpolators: str | Iterable[str] | None = None,
    *,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    device: str = "auto",
    seeds: int | None = None,
    profile: str = "default",
    out: str | Path | None = None,
    progress: bool = False,
    **options: Any,
) -> Run:
    """Run ``suites`` on ``interpolators`` into a new run folder; returns the :class:`Run`.

    Args:
        suites: names, a comma-separated string, or ``"all"``.
        interpolators: names or wildcards (``"bi*"``); default every registered one.
        hparams: ``{name: {hparam: value}}`` overrides (``--set``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seeds: seeds per cell group (default: each suite's).
        profile: ``"quick"``, ``"default"`` or ``"full"``.
        out: the run folder (absent or empty); default ``runs/<suites>-<time>``.
        progress: tqdm bars on stderr.
        **options: the shared options by name (``images=``, ``data_root=``, ``download=``,
            ``dataset=``, ``backbone=``, ``accuracy_from=``) and, under a suite's name, a dict
            of that suite's options (``classify={"labels": [250], "steps": 100}``; ``bench list``
            shows them).

    Raises :class:`UsageError` before anything is written when an argument is bad.
    """
    config = make_config(suites, interpolators, hparams=hparams, device=device, seeds=seeds, profile=profile,
                         **options)
    plan = plan_for(config)
    target = check_out(out) if out is not None else default_out(config)
    return execute_config(config, target, plan=plan, progress=progress,
                          command=["bench.run", *(f"{k}={v!r}" for k, v in _call_args(locals()).items())])


def _call_args(local: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a :func:`run` call, for ``meta.json``'s ``command``."""
    keep = ("suites", "interpolators", "hparams", "device", "seeds", "profile", "out")
    return {k: local[k] for k in keep if local.get(k) is not None} | dict(local.get("options") or {})

