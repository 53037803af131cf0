"""What a run ran on: package versions, device, threads and the git commit, for ``meta.json``."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

#: distributions whose versions every run records (``None`` when not installed)
PACKAGES = ("torch", "torchvision", "kornia", "timm", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "triton")
THIS_PACKAGE = "stn-interp-bench"


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


def device_info(device: str) -> dict[str, Any]:
    """The device a run uses: its type, the CPU model, and the CUDA device's name and capability."""
    info: dict[str, Any] = {
        "type": device,
        "cpu": cpu_model(),
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
    """``{"commit": sha or None, "dirty": bool or None}`` of the git checkout holding ``path``.

    ``path`` defaults to this package's folder; outside a checkout, or without
    git, both are ``None``.
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
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


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
        "git": git_state(),
    }
