"""The asv regression gate's verdict (.ci/asv_gate.py) and its skip where there is no parent commit."""

from __future__ import annotations

import importlib.util
import math
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("asv_gate", ROOT / ".ci" / "asv_gate.py")
gate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gate)

RMSE = "benchmark_accuracy.Accuracy.track_rmse_4x_downsample('{}')"
RATIO = "benchmark_interpolators.RelativeToBilinear.track_forward_backward_time_vs_bilinear('{}')"


class TestVerdict:
    def test_same_values_pass(self):
        values = {RMSE.format("bicubic"): 0.05, RATIO.format("lstn"): 2.5}
        assert gate.verdict(values, dict(values)) == ([], [])

    def test_an_error_that_rises_beyond_the_tolerance_fails(self):
        before = {RMSE.format("bicubic"): 0.05, RMSE.format("bilinear"): 0.06}
        after = {RMSE.format("bicubic"): 0.05 * (1 + 3 * gate.RELATIVE_TOLERANCE),
                 RMSE.format("bilinear"): 0.06 * (1 + gate.RELATIVE_TOLERANCE / 2)}  # within: passes
        regressions, ratios = gate.verdict(before, after)
        assert len(regressions) == 1 and "'bicubic'" in regressions[0] and "+0.300%" in regressions[0]
        assert ratios == []

    def test_an_error_that_falls_passes(self):
        assert gate.verdict({RMSE.format("estn"): 0.05}, {RMSE.format("estn"): 0.01}) == ([], [])

    def test_a_failure_on_head_fails_and_a_new_benchmark_does_not(self):
        regressions, _ = gate.verdict({RMSE.format("lstn"): 0.05, RMSE.format("estn"): math.nan},
                                      {RMSE.format("lstn"): None, RMSE.format("estn"): 0.04})
        assert regressions == [f"  {RMSE.format('lstn')}: 0.05 -> failed (fails on HEAD)"]

    def test_ratio_changes_are_listed_never_failing(self):
        regressions, ratios = gate.verdict({RATIO.format("lstn"): 2.0, RATIO.format("estn"): 3.0},
                                           {RATIO.format("lstn"): 3.0, RATIO.format("estn"): 3.1})
        assert regressions == [] and ratios == [f"  {RATIO.format('lstn')}: 2 -> 3 (x1.50)"]


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
class TestNoParent:
    def test_first_commit_skips(self, tmp_path, monkeypatch, capsys):
        _git(tmp_path, "init", "-q")
        (tmp_path / "a").write_text("1")
        _git(tmp_path, "add", "a")
        _git(tmp_path, "commit", "-qm", "first")
        monkeypatch.chdir(tmp_path)
        assert gate.main(["asv_gate.py"]) == 0
        out = capsys.readouterr().out
        assert "skipped" in out and "HEAD is the first commit" in out

    def test_shallow_clone_skips(self, tmp_path, monkeypatch, capsys):
        origin = tmp_path / "origin"
        origin.mkdir()
        _git(origin, "init", "-q")
        for n in range(2):
            (origin / "a").write_text(str(n))
            _git(origin, "add", "a")
            _git(origin, "commit", "-qm", f"c{n}")
        _git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", "clone")
        monkeypatch.chdir(tmp_path / "clone")
        assert gate.main(["asv_gate.py"]) == 0
        out = capsys.readouterr().out
        assert "skipped" in out and "shallow clone" in out
