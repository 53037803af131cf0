"""What a run records about where it ran (``bench.environment``): versions, CPU, native build, git state."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import environment as env

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: declared dependencies that never touch a number (a progress bar, a TOML reader for old Pythons)
NOT_NUMBERS = {"tqdm", "tomli"}


def _declared() -> set[str]:
    """The distributions ``pyproject.toml`` declares as runtime dependencies, lower case."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}


class TestVersions:
    def test_every_declared_dependency_that_touches_the_numbers_is_recorded(self):
        missing = _declared() - NOT_NUMBERS - {p.lower() for p in env.PACKAGES}
        assert not missing, f"add {sorted(missing)} to bench.environment.PACKAGES"

    @pytest.mark.parametrize("name", ["scikit-image", "imageio", "pillow", "scipy", "triton", "submitit", "mlxtend"])
    def test_image_decoders_and_others_are_recorded(self, name):
        versions = env.versions()
        assert name in versions
        try:
            expected = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            expected = None
        assert versions[name] == expected

    def test_a_missing_distribution_is_none(self, monkeypatch):
        monkeypatch.setattr(env, "PACKAGES", ("no-such-distribution-xyz",))
        assert env.versions()["no-such-distribution-xyz"] is None


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
stepping\t: 8
microcode\t: 0x2b000590
cache size\t: 107520 KB
cpu cores\t: 56
flags\t\t: fpu sse4_2 avx2 fma avx512f avx512_bf16 amx_tile

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx2 fma avx512f avx512_bf16 amx_tile
"""


class TestCpu:
    def test_parse_keeps_the_identity_of_the_first_processor(self):
        info = env.parse_cpuinfo(CPUINFO)
        assert info["model name"] == "Intel(R) Xeon(R) Platinum 8480+"
        assert (info["vendor_id"], info["cpu family"], info["model"], info["stepping"]) == ("GenuineIntel", "6", "143", "8")
        assert info["microcode"] == "0x2b000590" and info["cache size"] == "107520 KB" and info["cpu cores"] == "56"
        assert "avx512f" in info["flags"].split() and info["logical_processors"] == 2

    def test_arm_features_are_the_flags(self):
        info = env.parse_cpuinfo("processor : 0\nFeatures : fp asimd sve\nCPU implementer : 0x41\nCPU part : 0xd0c\n")
        assert info["flags"] == "fp asimd sve" and info["cpu implementer"] == "0x41" and info["cpu part"] == "0xd0c"

    def test_this_machine(self):
        info = env.cpu_info()
        assert info["model name"] and info["cpu_count"] >= 1 and 1 <= info["usable_cpus"] <= info["cpu_count"]
        if Path("/proc/cpuinfo").exists():
            assert info["flags"] and info["logical_processors"] >= 1
        assert env.device_info("cpu")["cpu_info"] == info


class TestNativeBuild:
    def test_records_compiler_flags_and_cpu_flags_without_building(self, monkeypatch):
        from interpolators import _extension

        def refuse():
            raise AssertionError("recording must not build the operators")

        monkeypatch.setattr(_extension, "_loaded", None)  # this process has not tried
        monkeypatch.setattr(_extension, "_build_and_load", refuse)
        info = env.native_build()
        assert info["flags"] == _extension.build_flags() and info["march"] == _extension.march()
        assert isinstance(info["cpu_vector_flags"], list) and info["compiler"]
        assert info["loaded"] is False and "not loaded in the recording process" in info["state"]
        assert ("cached" in info["state"]) == (info["build"] is not None)

    def test_a_loaded_build_says_where(self, monkeypatch):
        from interpolators import _extension

        if not _extension.ensure_loaded():
            pytest.skip(f"the operators do not build here: {_extension.build_info()['why_not']}")
        info = env.native_build()
        assert info["loaded"] and info["state"] == "loaded in the recording process"
        assert info["build"] == _extension.recorded_path(_extension.build_directory())
        assert Path(info["build"]).expanduser() == _extension.build_directory()

    def test_recorded_paths_hold_no_home_directory(self):
        from interpolators import _extension

        assert _extension.recorded_path(Path.home() / ".cache" / "x") == str(Path("~/.cache/x"))
        assert _extension.recorded_path(Path("/opt/cache/x")) == "/opt/cache/x"

    def test_a_failed_build_says_why(self, monkeypatch):
        from interpolators import _extension

        monkeypatch.setattr(_extension, "_loaded", False)
        monkeypatch.setattr(_extension, "_why_not", "the C++ operators could not be built (no compiler)")
        assert env.native_build()["state"] == "could not be loaded: the C++ operators could not be built (no compiler)"

    def test_meta_records_it(self):
        assert set(env.environment("cpu")["native_operators"]) >= {"compiler", "flags", "cpu_vector_flags", "state"}


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    return tmp_path


class TestGitState:
    def test_clean(self, repo):
        state = env.git_state(repo / "pkg")
        assert len(state["commit"]) == 40 and state["dirty"] is False and state["changes"] == []

    def test_untracked_file_makes_it_dirty(self, repo):
        (repo / "notes.py").write_text("")
        state = env.git_state(repo / "pkg")  # a subfolder still sees the whole checkout
        assert state["dirty"] is True and state["changes"] == ["?? notes.py"]

    def test_modified_file_makes_it_dirty(self, repo):
        (repo / "pkg" / "code.py").write_text("x = 2\n")
        assert env.git_state(repo)["changes"] == [" M pkg/code.py"]

    def test_run_folders_do_not(self, repo):
        (repo / "runs" / "r1" / "cells").mkdir(parents=True)  # no .gitignore in this checkout
        (repo / "runs" / "r1" / "meta.json").write_text("{}")
        assert env.git_state(repo / "pkg")["dirty"] is False

    def test_ignored_files_do_not(self, repo):
        (repo / ".gitignore").write_text("*.log\n")
        subprocess.run(["git", "-C", str(repo), "add", ".gitignore"], check=True)
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "i"],
                       check=True, capture_output=True)
        (repo / "build.log").write_text("")
        assert env.git_state(repo)["dirty"] is False

    def test_outside_a_checkout(self, tmp_path):
        assert env.git_state(tmp_path) == {"commit": None, "dirty": None, "changes": None}


def test_the_report_shows_the_native_build_and_the_uncommitted_changes():
    from bench.report import _meta_html

    meta = {"environment": {"git": {"commit": "abc", "dirty": True, "changes": ["?? notes.py", " M bench/cli.py"]},
                            "native_operators": {"compiler": "g++ 12.2", "flags": ["-O3", "-march=native"],
                                                 "cpu_vector_flags": ["avx2", "fma"], "state": "loaded"}}}
    html = _meta_html(meta)
    assert "abc (dirty)" in html and "?? notes.py  M bench/cli.py" in html
    assert "g++ 12.2; -O3 -march=native; CPU: avx2 fma; loaded" in html
