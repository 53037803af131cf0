"""The ``fake_suites`` fixture for the harness tests (imported by tests/conftest.py).

The fake suites are registered the way a third-party package registers a suite: a
distribution (a ``.dist-info`` folder the fixture writes) with ``bench.suites`` entry
points, on ``sys.path`` for this process and on ``PYTHONPATH`` for the worker processes
of ``--executor local`` and ``slurm``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fake_suite import ENV_VARS, SUITES

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
#: the quick fake run every harness test compares with: 2 interpolators x 2 levels x 2 seeds
QUICK = ("--suite", "fake", "--interpolators", "bilinear,nearest", "--quick", "--no-progress")
N_QUICK_CELLS = 2 * 2 * 2


def write_fake_distribution(folder: Path, entry_points: dict[str, str], name: str = "fake_bench_suites") -> Path:
    """A ``NAME-0.0.dist-info`` in ``folder`` with the ``bench.suites`` ``entry_points``; returns ``folder``."""
    info = folder / f"{name}-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[bench.suites]\n{lines}")
    return folder


def plugin_path(site: Path) -> str:
    """``PYTHONPATH`` that lets a fresh interpreter find the fake distribution, the fake suite and this checkout."""
    parts = [str(site), str(TESTS_DIR), str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(parts))


@pytest.fixture(scope="session")
def fake_site(tmp_path_factory) -> Path:
    """A folder holding the fake distribution of :data:`fake_suite.SUITES`."""
    return write_fake_distribution(tmp_path_factory.mktemp("site"), SUITES)


@pytest.fixture
def fake_suites(monkeypatch, tmp_path, fake_site) -> Path:
    """The fake suites are installed as a plugin, the cwd is ``tmp_path`` (returned) and no misbehaviour is set."""
    monkeypatch.syspath_prepend(str(fake_site))
    monkeypatch.setenv("PYTHONPATH", plugin_path(fake_site))
    monkeypatch.chdir(tmp_path)
    for variable in ENV_VARS:
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def reference_template(tmp_path_factory, fake_site) -> Path:
    """One uninterrupted inline run of :data:`QUICK`, made once per session (do not modify it)."""
    from bench.cli import main

    folder = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(fake_site))
        for variable in ENV_VARS:
            patch.delenv(variable, raising=False)
        assert main(["run", *QUICK, "--out", str(folder / "run")]) == 0
    return folder / "run"


def wait_for(predicate, what: str, timeout: float):
    """Poll ``predicate`` until it returns something true (returned), for ``timeout`` seconds at most."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
