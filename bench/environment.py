"""What a run ran on, for ``meta.json``: package versions, the device and the CPU's identity, threads, the native
operators' build (compiler, flags, target, the CPU's vector extensions) and the git commit with its dirty flag."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

#: distributions whose versions every run records (``None`` when not installed): everything that computes, decodes
#: (scikit-image, imageio and Pillow read the images), tests, builds (ninja), draws or runs (submitit) the numbers
PACKAGES = (
    "torch", "torchvision", "triton", "kornia", "timm", "numpy", "scipy", "pandas", "scikit-image", "imageio",
    "pillow", "scikit-learn", "mlxtend", "matplotlib", "seaborn", "ninja", "submitit",
)  # fmt: skip
THIS_PACKAGE = "stn-interp-bench"
#: run folders inside a checkout are outputs, not changes to the code: the dirty flag leaves them out
OUTPUT_DIRS = ("runs",)
#: how many changed paths ``git_state`` lists
DIRTY_LISTED = 20
#: the fields of ``/proc/cpuinfo`` that identify the processor
CPUINFO_FIELDS = ("model name", "vendor_id", "cpu family", "model", "stepping", "microcode", "cache size",
                  "cpu cores", "siblings", "hardware", "cpu implementer", "cpu part", "cpu variant", "cpu revision")


def versions() -> dict[str, str | None]:
    """``{distribution: version}`` for Python, :data:`PACKAGES` and this package."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (*PACKAGES, THIS_PACKAGE):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux) or ``platform``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """The first processor's :data:`CPUINFO_FIELDS` in ``/proc/cpuinfo`` text, its ``flags`` and the number of
    logical processors listed.

    >>> parse_cpuinfo("processor : 0\\nvendor_id : GenuineIntel\\nmodel : 85\\nflags : fpu avx2\\n\\nprocessor : 1\\n")
    {'vendor_id': 'GenuineIntel', 'model': '85', 'flags': 'fpu avx2', 'logical_processors': 2}
    """
    info: dict[str, Any] = {}
    processors = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep:
            continue
        if key == "processor":
            processors += 1
        elif key in (*CPUINFO_FIELDS, "flags", "features") and key not in info and value.strip():
            info["flags" if key == "features" else key] = value.strip()
    return info | {"logical_processors": processors}


def cpu_info() -> dict[str, Any]:
    """The processor's identity: model name, vendor, family, model, stepping, microcode, cache, cores, its flags
    (instruction sets), the logical CPUs and those this process may use. Linux reads ``/proc/cpuinfo``; macOS
    ``sysctl``; elsewhere ``platform``."""
    info: dict[str, Any] = {}
    try:
        info = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        brand = _sysctl("machdep.cpu.brand_string")
        if brand:
            info = {"model name": brand, "flags": _sysctl("machdep.cpu.features") or ""}
    info.setdefault("model name", platform.processor() or platform.machine() or "unknown")
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return info | {"machine": platform.machine(), "cpu_count": os.cpu_count(), "usable_cpus": usable}


def _sysctl(name: str) -> str | None:
    try:
        done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def native_build() -> dict[str, Any]:
    """How the project's C++ operators are (or would be) built here: compiler, flags, target and the CPU's vector
    extensions (:func:`interpolators._extension.build_info`), and whether they are loaded in this process.

    Nothing is built to record this: when this process has not loaded them (the runner records before any cell
    runs), ``state`` says whether a build of these sources, flags, torch and compiler is already in the cache
    (cells load that one) or not (the first cell builds it).
    """
    from interpolators import _extension

    info = _extension.build_info()
    if info["loaded"]:
        return info | {"state": "loaded in the recording process"}
    if info["why_not"]:
        return info | {"state": f"could not be loaded: {info['why_not']}"}
    try:
        directory = _extension.build_directory()
    except RuntimeError as err:  # no compiler
        return info | {"state": f"not loaded in the recording process, and no build is possible: {err}"}
    library = directory / f"{_extension.LIBRARY_NAME}.so"
    if library.exists():
        return info | {"build": _extension.recorded_path(directory),
                       "state": "not loaded in the recording process (not built to record it); this build is cached"}
    return info | {"state": "not loaded in the recording process (not built to record it); no cached build: the "
                            "first cell that uses the operators builds them with these flags"}  # fmt: skip


def device_info(device: str) -> dict[str, Any]:
    """The device a run uses: its type, the CPU model, and the CUDA device's name and capability."""
    info: dict[str, Any] = {
        "type": device,
        "cpu": cpu_model(),
        "cpu_info": cpu_info(),
        "platform": platform.platform(),
        "cuda_available": torch.cuda.is_available(),
    }
    if device == "cuda" and torch.cuda.is_available():
        index = torch.cuda.current_device()
        info["cuda_device"] = torch.cuda.get_device_name(index)
        info["cuda_capability"] = ".".join(map(str, torch.cuda.get_device_capability(index)))
        info["cuda_version"] = torch.version.cuda
    return info


def git_state(path: Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty", "changes"}`` of the git checkout holding ``path``.

    ``dirty`` counts modified, staged and untracked files alike (``git status --porcelain``, ignored files
    excepted), but not the run folders under :data:`OUTPUT_DIRS`; ``changes`` lists up to :data:`DIRTY_LISTED`
    of those paths as git prints them (``"?? new.py"``, ``" M bench/cli.py"``). ``path`` defaults to this
    package's folder; outside a checkout, or without git, all three are ``None``.
    """
    path = Path(path or Path(__file__).resolve().parent)

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=20, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "changes": None}
    excluded = [f":(top,exclude){name}/" for name in OUTPUT_DIRS]
    status = git("status", "--porcelain", "--untracked-files=all", "--", ":/", *excluded)
    if status is None:
        return {"commit": commit.strip(), "dirty": None, "changes": None}
    changes = [line for line in status.splitlines() if line.strip()]
    return {"commit": commit.strip(), "dirty": bool(changes), "changes": changes[:DIRTY_LISTED]}


def determinism() -> dict[str, bool]:
    """Whether ``torch.use_deterministic_algorithms`` is on (and only warns): with it, CUDA backward passes that
    scatter with atomic adds (``grid_sample``'s, the operators' input gradients) raise or warn instead of running."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
    }
def host_record(device: str, **extra: Any) -> dict[str, Any]:
    """Where a cell ran, for its cell file: host name, CPU model, torch threads, GPU and torch version.

    ``gpu`` is the CUDA device's name when the cell used one (CUDA is already initialized in
    this process), else ``None``: this never initializes CUDA itself, so a process that forks
    cells can call it. ``extra`` (executor, job id, attempt) is added as is.
    """
    gpu = None
    if device == "cuda" and torch.cuda.is_initialized():
        gpu = torch.cuda.get_device_name(torch.cuda.current_device())
    record = {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "pid": os.getpid(),
    }
    if device == "cuda":
        record["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    return record | extra


def environment(device: str) -> dict[str, Any]:
    """Everything :mod:`bench.runner` records in ``meta.json`` about where a run ran."""
    return {
        "versions": versions(),
        "device": device_info(device),
        "torch_threads": torch.get_num_threads(),
        **determinism(),
        "native_operators": native_build(),
        "git": git_state(),
    }
