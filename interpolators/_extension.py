"""The project's C++ operators (``torch.ops.interpolators``): built on first use, loaded once per process.

``csrc/ops.cpp`` declares one schema per operator with ``TORCH_LIBRARY``; ``csrc/lstn.cpp``, ``csrc/estn.cpp`` and
``csrc/sampling.cpp`` register their CPU kernels, ``csrc/autograd.cpp`` the forward operators' autograd.
:func:`ensure_loaded` builds them with :func:`torch.utils.cpp_extension.load` (the system's C++ compiler with
OpenMP, and ninja) into ``$STN_BENCH_CACHE`` (default ``~/.cache/stn-interp-bench``) under a name that hashes the sources, the flags,
torch's version, the compiler's and, for ``-march=native``, the processor's flags; later processes load that file.
A build takes about a minute on 2 cores. Two processes that build at once take turns on a file lock (released by the
kernel if a builder dies), so they never write the same files. The operators' fake kernels are registered by
each method's ``operator`` module through :func:`on_load`.

The kernels are written once with ATen's ``at::vec::Vectorized``, at the width of the instruction set the compiler
targets: ``-march=native`` by default, or the target named by ``$STN_BENCH_MARCH`` (e.g. ``x86-64-v3`` for an AVX2
build on an AVX-512 machine). They run on torch's intra-op threads (``torch.set_num_threads`` applies).

On a machine with a CUDA device, loading the operators also registers their CUDA kernels, written in Triton
(``interpolators/_triton_sampling.py``, ``interpolators/lstn/triton.py``, ``interpolators/estn/triton.py``), under the
same schemas: the C++ library must load first, since it defines them (a CUDA machine without a C++ compiler runs the
eager path, with a warning that names the failed build).

``backend="auto"`` (every method's default) runs the operators where they exist for the input's device and dtype
(CPU and CUDA, float32 and float64) and otherwise the eager path, with a one-line warning that names why.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor

#: ``"auto"``: the operator where it exists for the device and dtype, else the eager path (with a warning);
#: ``"operator"``: the operator or an error; ``"eager"``: plain torch code
Backend = Literal["auto", "operator", "eager"]
BACKENDS: tuple[str, ...] = get_args(Backend)

SOURCE_DIR = Path(__file__).parent / "csrc"
SOURCES = ("ops.cpp", "sampling.cpp", "lstn.cpp", "estn.cpp", "autograd.cpp")
HEADERS = ("sampling.h",)
#: the dtypes the operators' kernels take (CPU and CUDA)
DTYPES = (torch.float32, torch.float64)
#: the devices they have kernels for
DEVICES = ("cpu", "cuda")
MARCH_ENV = "STN_BENCH_MARCH"
CACHE_ENV = "STN_BENCH_CACHE"
LIBRARY_NAME = "interpolators_ops"

_loaded: bool | None = None  # None: not tried yet
_why_not = ""
_hooks: list[Callable[[], None]] = []
_cuda_why_not = "not registered yet"  # why the CUDA kernels cannot run; "" once registered


def march() -> str:
    """The instruction set the kernels are built for: ``$STN_BENCH_MARCH``, default ``native``."""
    return os.environ.get(MARCH_ENV) or "native"


def build_flags() -> list[str]:
    """The compiler flags: optimized, OpenMP (for ``at::parallel_for``), no contraction the sources do not write."""
    flags = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags.append(f"-march={march()}")
    return flags


def _compiler_version() -> str:
    cxx = os.environ.get("CXX") or "c++"
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler found ({cxx!r}; set CXX to one with OpenMP, such as g++)")
    result = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return result.stdout.splitlines()[0] if result.stdout else cxx


def _cpu_flags() -> str:
    try:
        return next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.processor()


def build_directory() -> Path:
    """Where this machine's build of these sources, flags, torch and compiler lives."""
    texts = [(SOURCE_DIR / name).read_text() for name in (*SOURCES, *HEADERS)]
    parts = [*texts, " ".join(build_flags()), torch.__version__, _compiler_version()]
    if march() == "native":
        parts.append(_cpu_flags())
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "stn-interp-bench")
    return root / f"ops-{march()}-{key}"


def _build_and_load() -> None:
    from torch.utils import cpp_extension

    directory = build_directory()
    library = directory / f"{LIBRARY_NAME}.so"
    if not library.exists():
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same directory
            if not library.exists():
                (directory / "lock").unlink(missing_ok=True)  # cpp_extension's own baton, stale if a builder died
                cpp_extension.load(
                    name=LIBRARY_NAME,
                    sources=[str(SOURCE_DIR / name) for name in SOURCES],
                    extra_cflags=build_flags(),
                    extra_ldflags=["-fopenmp"],
                    build_directory=str(directory),
                    is_python_module=False,
                    verbose=False,
                )
                return
    torch.ops.load_library(str(library))


def ensure_loaded() -> bool:
    """Build (first use on this machine) and load the operators once per process; ``False`` if they cannot be.

    Inside a caller's ``torch.compile`` nothing is built: the state so far is used (samplers load the operators
    when they are constructed, before any tracing).
    """
    global _loaded, _why_not
    if _loaded is None and not torch.compiler.is_compiling():
        try:
            _build_and_load()
        except Exception as err:  # no compiler, no ninja, a failed build: the eager path still works
            _loaded, _why_not = False, f"the C++ operators could not be built ({type(err).__name__}: {_first_line(err)})"
        else:
            _loaded = True
            for hook in _hooks:
                hook()
    return bool(_loaded)


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def recorded_path(path: Path) -> str:
    """``path`` as a run records it: under the home directory as ``~/...``, so records hold no user's home."""
    try:
        return str(Path("~") / path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def build_info() -> dict[str, object]:
    """What a run records about the operators: loaded or why not, the build's directory, compiler, flags and
    target, and the processor's vector extensions (the numbers' provenance)."""
    try:
        compiler = _compiler_version()
    except RuntimeError as err:
        compiler = str(err)
    vector = sorted(f for f in _cpu_flags().split() if f.startswith(("avx", "fma", "sse4", "neon", "sve")))
    return {
        "loaded": bool(_loaded),
        "why_not": _why_not or None,
        "build": recorded_path(build_directory()) if _loaded else None,
        "compiler": compiler,
        "flags": build_flags(),
        "march": march(),
        "cpu_vector_flags": vector,
    }


def on_load(hook: Callable[[], None]) -> None:
    """Run ``hook`` (registering fake kernels) once the operators are loaded, now if they are."""
    _hooks.append(hook)
    if _loaded:
        hook()


def _register_cuda_kernels() -> None:
    """Register the Triton kernels as the operators' CUDA implementations, once, where a CUDA device exists (on
    other machines nothing imports triton)."""
    global _cuda_why_not
    if not _cuda_why_not:
        return
    if not torch.cuda.is_available():
        _cuda_why_not = "no CUDA device"
        return
    try:
        from interpolators import _triton_sampling
        from interpolators.estn import triton as estn_triton
        from interpolators.lstn import triton as lstn_triton

        for module in (_triton_sampling, lstn_triton, estn_triton):
            module.register()
    except Exception as err:  # triton missing or broken: the CPU kernels and the eager path still work
        _cuda_why_not = f"the Triton kernels could not be registered ({type(err).__name__}: {_first_line(err)})"
    else:
        _cuda_why_not = ""


_hooks.append(_register_cuda_kernels)


def unsupported(input: Tensor) -> str | None:
    """Why the operators cannot take ``input``, or ``None`` if they can."""
    if input.device.type not in DEVICES:
        return f"no kernel for {input.device.type} tensors"
    if input.dtype not in DTYPES:
        return f"no kernel for {input.dtype} (float32 and float64 only)"
    if not ensure_loaded():
        if input.device.type == "cuda":  # the Triton kernels register under the C++ library's schemas
            return f"{_why_not}, and the CUDA kernels register under their schemas"
        return _why_not
    if input.device.type == "cuda" and _cuda_why_not:
        return f"no CUDA kernels: {_cuda_why_not}"
    return None


def choose_backend(backend: str, input: Tensor, method: str, eager_only: str | None = None) -> str:
    """``"operator"`` or ``"eager"`` for ``input``: what ``backend`` resolves to, warning once per reason for ``"auto"``.

    ``eager_only`` names a setting the operator does not implement (e.g. ``sampling='random'``).
    """
    if backend == "eager":
        return "eager"
    why = eager_only and f"{eager_only} has no operator" or unsupported(input)
    if why is None:
        return "operator"
    if backend == "operator":
        raise RuntimeError(f"{method}: backend='operator': {why}; use backend='auto' or 'eager'")
    if not torch.compiler.is_compiling():
        warnings.warn(f"{method}: backend='auto' runs the eager path: {why}", RuntimeWarning, stacklevel=3)
    return "eager"
