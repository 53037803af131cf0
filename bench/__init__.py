"""The benchmark harness: command line (``python -m bench``), runner, result store and report.

- :mod:`bench.cli`: ``list``, ``run``, ``report`` and ``compare``.
- :mod:`bench.runner`: runs a suite's cells one by one into a run folder, resumably.
- :mod:`bench.store`: the run folder (one JSON file per cell, ``meta.json``, ``results.csv``, ``summary.csv``).
- :mod:`bench.report`: the self-contained ``report.html``.
"""
