"""The benchmark harness: command line (``python -m bench``), runner, result store and report.

- :mod:`bench.cli`: ``list``, ``run``, ``report`` and ``compare``.
- :mod:`bench.runner`: the head of a run: plans, writes ``meta.json``, hands cells to an executor, resumably.
- :mod:`bench.executors`: where cells run: inline, local worker processes or Slurm jobs (submitit).
- :mod:`bench.worker`: a worker job: runs its cells, each in a forked process, and stores each one.
- :mod:`bench.store`: the run folder (one JSON file per cell, ``meta.json``, ``results.csv``, ``summary.csv``).
- :mod:`bench.report`: the self-contained ``report.html``.
"""
