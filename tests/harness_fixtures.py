"""The ``fake_suites`` fixture for the harness tests (imported by tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_suite import ENV_VARS, SUITES


@pytest.fixture
def fake_suites(monkeypatch, tmp_path) -> Path:
    """Only the fake suites are registered, the cwd is ``tmp_path`` (returned) and no misbehaviour is set."""
    import suites

    monkeypatch.setattr(suites, "_SUITES", dict(SUITES))
    monkeypatch.chdir(tmp_path)
    for variable in ENV_VARS:
        monkeypatch.delenv(variable, raising=False)
    return tmp_path
