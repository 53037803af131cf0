"""asv regression gate: the ``track_*`` benchmarks on HEAD and on its parent, in this environment; fails on accuracy.

Usage: ``python .ci/asv_gate.py [BASE]`` (BASE defaults to ``HEAD^``), from anywhere inside the checkout, with the
project installed (``pip install -e .[dev]``). See docs/regression.md for how to read what it prints.

1. BASE's tree is exported with ``git archive`` into a temporary folder; HEAD is the checkout itself.
2. ``asv run --environment existing --set-commit-hash`` runs HEAD's ``benchmarks/`` (the same benchmark code for
   both sides) once with the checkout on the path and once with BASE's tree on the path (``ASV_PYTHONPATH``: asv
   drops ``PYTHONPATH``), at the gate's reduced parameter set (``STN_BENCH_ASV_GATE=1``, see
   ``benchmarks/_common.py``), into a temporary results folder under the machine name ``ci-gate``.
3. ``asv compare`` prints asv's table of the two; then the gate's own verdict: every accuracy benchmark (``Accuracy``:
   errors, lower is better, deterministic) whose value rose by more than :data:`RELATIVE_TOLERANCE` (relative) and
   :data:`ABSOLUTE_TOLERANCE`, or that failed on HEAD but not on BASE, is a regression: exit 1. Ratio benchmarks
   (``*_vs_bilinear``: timing and memory ratios) are printed when they changed by more than
   :data:`RATIO_FACTOR` and never fail the gate (timing is noisy).

A checkout without BASE (a first commit, a shallow clone) skips with a message (exit 0).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: an accuracy value may rise by this fraction before the gate fails (the values are float64 and seeded: the same
#: code gives the same number; a reordered sum moves it by ~1e-12)
RELATIVE_TOLERANCE = float(os.environ.get("ASV_GATE_TOLERANCE", "1e-3"))
#: ... and by this much in absolute terms (for values near 0, such as a gradient-norm deviation)
ABSOLUTE_TOLERANCE = 1e-9
#: ratio changes beyond this factor (either way) are listed
RATIO_FACTOR = 1.1
#: the benchmarks the gate runs: accuracy (fails) and ratios to bilinear (printed)
BENCHMARKS = r"track_"
ACCURACY_CLASS = "Accuracy."
MACHINE = "ci-gate"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def write_config(root: Path, work: Path) -> Path:
    """A copy of ``asv.conf.json`` whose results and HTML go to ``work`` (the user's ``.asv/`` stays untouched)."""
    from asv.util import load_json, write_json

    conf = load_json(str(root / "asv.conf.json"), js_comments=True)
    conf |= {"repo": str(root), "benchmark_dir": str(root / "benchmarks"), "results_dir": str(work / "results"),
             "html_dir": str(work / "html"), "env_dir": str(work / "env")}  # fmt: skip
    path = work / "asv.conf.json"
    write_json(str(path), conf)
    return path


def run_side(config: Path, commit: str, tree: Path) -> None:
    """The track benchmarks with ``tree``'s packages on the path, recorded as ``commit``."""
    env = dict(os.environ, ASV_PYTHONPATH=str(tree), STN_BENCH_ASV_GATE="1", OMP_NUM_THREADS="2",
               MKL_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")  # fmt: skip
    where = subprocess.run([sys.executable, "-c", "import interpolators, suites; print(interpolators.__file__)"],
                           env=dict(env, PYTHONPATH=str(tree)), capture_output=True, text=True, cwd=tempfile.gettempdir())  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    print(f"asv-gate: {commit[:10]}: interpolators from {where.stdout.strip() or where.stderr.strip()[-300:]}; "
          f"load average {load:.2f} on {os.cpu_count()} CPUs (time ratios on a loaded machine are noise)", flush=True)  # fmt: skip
    subprocess.run(
        ["asv", "run", "--config", str(config), "--machine", MACHINE, "--environment", f"existing:{sys.executable}",
         "--set-commit-hash", commit, "--bench", BENCHMARKS, "--quick", "--show-stderr"],
        env=env, check=False,
    )  # fmt: skip


def load(config: Path, commit: str) -> dict[str, float | None]:
    """``{"benchmark(params)": value}`` of ``commit``'s results (``None``: failed; NaN: skipped, n/a)."""
    from asv.config import Config
    from asv.results import iter_results_for_machine_and_hash

    conf = Config.load(str(config))
    values: dict[str, float | None] = {}
    for results in iter_results_for_machine_and_hash(conf.results_dir, MACHINE, commit):
        for key in results.get_result_keys(conf_benchmarks(conf)):
            params = results.get_result_params(key)
            combos = _param_combinations(params)
            for combo, value in zip(combos, results.get_result_value(key, params)):
                values[f"{key}({', '.join(combo)})" if combo else key] = value
    return values


def conf_benchmarks(conf):
    from asv.benchmarks import Benchmarks

    return Benchmarks.load(conf)


def _param_combinations(params: list[list[str]]) -> list[tuple[str, ...]]:
    import itertools

    return [tuple(c) for c in itertools.product(*params)] if params else [()]


def _fmt(value: float | None) -> str:
    if value is None:
        return "failed"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.6g}"


def verdict(before: dict[str, float | None], after: dict[str, float | None]) -> tuple[list[str], list[str]]:
    """``(accuracy regressions, ratio changes)`` as printable lines."""
    regressions, ratios = [], []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name, math.nan), after.get(name, math.nan)
        line = f"  {name}: {_fmt(a)} -> {_fmt(b)}"
        if f".{ACCURACY_CLASS}" in f".{name}":
            if b is None and a is not None:
                regressions.append(f"{line} (fails on HEAD)")
            elif _number(a) and _number(b) and b > a * (1 + RELATIVE_TOLERANCE) + ABSOLUTE_TOLERANCE:
                regressions.append(f"{line} (+{(b - a) / a:.3%})" if a else f"{line} (from 0)")
        elif _number(a) and _number(b) and a > 0 and not (1 / RATIO_FACTOR <= b / a <= RATIO_FACTOR):
            ratios.append(f"{line} (x{b / a:.2f})")
        elif (a is None) != (b is None):
            ratios.append(f"{line} (failure {'introduced' if b is None else 'fixed'})")
    return regressions, ratios


def _number(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def main(argv: list[str]) -> int:
    base_name = argv[1] if len(argv) > 1 else "HEAD^"
    root = Path(git("rev-parse", "--show-toplevel", cwd=Path.cwd()))
    head = git("rev-parse", "HEAD", cwd=root)
    try:
        base = git("rev-parse", "--verify", "--quiet", f"{base_name}^{{commit}}", cwd=root)
    except subprocess.CalledProcessError:
        shallow = git("rev-parse", "--is-shallow-repository", cwd=root) == "true"
        why = "this is a shallow clone" if shallow else "HEAD is the first commit"
        print(f"asv-gate: skipped: {base_name} is not in this checkout ({why}); nothing to compare against. "
              "Fetch more history (git fetch --deepen=1) to run the gate.")  # fmt: skip
        return 0
    work = Path(tempfile.mkdtemp(prefix="asv-gate-"))
    try:
        tree = work / "base"
        tree.mkdir()
        archive = subprocess.run(["git", "archive", base], cwd=root, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        config = write_config(root, work)
        subprocess.run(["asv", "machine", "--config", str(config), "--machine", MACHINE, "--yes"], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        print(f"asv-gate: BASE {base[:10]} ({base_name}) against HEAD {head[:10]}, benchmarks /{BENCHMARKS}/ "
              "of HEAD's benchmarks/, reduced parameters (STN_BENCH_ASV_GATE=1)", flush=True)  # fmt: skip
        run_side(config, base, tree)
        run_side(config, head, root)
        print("\nasv-gate: asv compare (all tracked values; '+' is an increase, which for ratios may be noise):",
              flush=True)  # fmt: skip
        subprocess.run(["asv", "compare", "--config", str(config), "--machine", MACHINE, "--factor",
                        str(RATIO_FACTOR), "--split", base, head], check=False)  # fmt: skip
        regressions, ratios = verdict(load(config, base), load(config, head))
        print(f"\nasv-gate: ratio changes beyond x{RATIO_FACTOR} (printed, never failing: timing is noisy):")
        print("\n".join(ratios) or "  none")
        tolerance = f"+{RELATIVE_TOLERANCE:g} relative and {ABSOLUTE_TOLERANCE:g} absolute"
        if regressions:
            print(f"\nasv-gate: FAILED: accuracy regressions (errors that rose by more than {tolerance}):")
            print("\n".join(regressions))
            return 1
        print(f"\nasv-gate: passed: no accuracy benchmark rose by more than {tolerance}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
