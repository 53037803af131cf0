"""The GPU run's scripts (``scripts/gpu_report.sh``, ``scripts/gpu_latency.py``) check out on a machine without a GPU:
their ``--dry-run`` compiles the Python they run, collects the CUDA tests and runs the table's steps on the CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_report_dry_run(tmp_path):
    done = subprocess.run(["bash", "scripts/gpu_report.sh", "--dry-run", "--root", str(tmp_path), "--steps", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False, env=dict(os.environ))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dry run: estn forward+backward at (1, 1, 28, 28)" in done.stdout
    assert "status 0" in done.stdout and "status 1" not in done.stdout
    assert not list(tmp_path.iterdir())  # a dry run leaves nothing behind


def test_gpu_report_refuses_unknown_arguments():
    done = subprocess.run(["bash", "scripts/gpu_report.sh", "--fast"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and "unknown argument '--fast'" in done.stderr
