"""The benchmark harness: notebook API, command line (``python -m bench``), runner, result store and report.

- :mod:`bench.api`: ``bench.run(suites=..., interpolators=..., **options) -> Run`` and ``bench.load(RUN_DIR)``.
- :mod:`bench.cli`: ``list``, ``run``, ``report`` and ``compare``, a layer over :mod:`bench.api`.
- :mod:`bench.runner`: the head of a run: plans, writes ``meta.json``, hands cells to an executor, resumably.
- :mod:`bench.executors`: where cells run: inline, local worker processes or Slurm jobs (submitit).
- :mod:`bench.worker`: a worker job: runs its cells, each in a forked process, and stores each one.
- :mod:`bench.store`: the run folder (one JSON file per cell and its arrays, ``meta.json``, ``results.csv``,
  ``summary.csv``).
- :mod:`bench.stats`: the interval and the test every table, verdict and comparison uses.
- :mod:`bench.report` and :mod:`bench.figures`: the self-contained ``report.html``.
"""

from bench.api import Run, UsageError, load, run

__all__ = ["Run", "UsageError", "load", "run"]
