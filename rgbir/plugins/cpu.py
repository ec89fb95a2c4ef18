"""The CPU library: rgbir's top-k sparse attention kernel for the CPU (``csrc/topk_sparse_attention/
topkSparseAttentionCpu.cpp``), compiled with the host C++ compiler for this machine's CPU, cached, and called
through ctypes. ONNX Runtime runs it in place of the op's function body (``rgbir.runtime.backends.ort_attention``)."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..errors import RgbirError
from ..files import cache_dir
from .compiler import SOURCE_DIR

log = logging.getLogger(__name__)
SOURCE = SOURCE_DIR / "topk_sparse_attention" / "topkSparseAttentionCpu.cpp"
ENV_COMPILER = "CXX"
COMPILERS = ("c++", "g++", "clang++")
ERRORS = {-1: "bad shape (every dimension >= 1, head dims <= 256)", -2: "bad branches (1 to 8, divisors >= 1)"}


def find_compiler() -> str:
    """The host C++ compiler: $CXX, else c++, g++ or clang++ on the PATH."""
    explicit = os.environ.get(ENV_COMPILER)
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise RgbirError(f"{ENV_COMPILER}={explicit} is not a program on this machine: point it at a C++ compiler")
        return found
    for name in COMPILERS:
        if found := shutil.which(name):
            return found
    raise RgbirError("no C++ compiler for rgbir's CPU attention kernel (tried c++, g++, clang++): install one "
                     "(apt install g++) or set CXX")


def compile_flags(target: str = "native") -> list[str]:
    """Optimised for this machine's CPU (its SIMD width decides the kernel's vectors), or for ``target`` (an
    -march value, e.g. x86-64: the 4-lane build the tests also run), no -ffast-math."""
    arm = platform.machine().lower() in ("aarch64", "arm64")
    return ["-std=c++17", "-O3", f"-mcpu={target}" if arm else f"-march={target}", "-fPIC", "-shared", "-pthread",
            "-fvisibility=hidden", "-Wl,--no-undefined"]


def _sources() -> list[Path]:
    """Every file the library is compiled from (the kernel and the headers it includes)."""
    folder = SOURCE.parent
    return sorted([*folder.glob("*.h"), *folder.glob("*.cuh"), SOURCE, SOURCE_DIR / "common" / "rgbirExport.h"])


def _cpu_identity() -> str:
    """What -march=native compiles for: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in text.splitlines() if line.split(":")[0].strip() in wanted}))


def library_path(compiler: str) -> Path:
    """Where the library for these sources, this compiler and this CPU is cached."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256()
    for part in [*(p.read_bytes() for p in _sources()), version.encode(), " ".join(compile_flags()).encode(),
                 _cpu_identity().encode()]:
        digest.update(hashlib.sha256(part).digest())
    return cache_dir("plugins") / f"librgbir_cpu-{digest.hexdigest()[:16]}.so"


def compile_cpu_library(force: bool = False, output: Path | None = None, target: str = "native") -> Path:
    """The library for this machine, compiled on first use (a few seconds) and cached; returns its path. With
    ``output``, compiled there for ``target`` instead (no cache)."""
    compiler = find_compiler()
    path = output or library_path(compiler)
    if path.is_file() and not force and output is None:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    command = [compiler, *compile_flags(target), "-I", str(SOURCE_DIR), str(SOURCE), "-o", str(partial)]
    log.info(f"compiling rgbir's CPU attention kernel with {compiler} ...")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        raise RgbirError(f"compiling rgbir's CPU attention kernel failed ({' '.join(command[:3])} ...):\n{tail}")
    os.replace(partial, path)  # atomic: a concurrent compile of the same sources writes the same bytes
    return path


@functools.lru_cache(maxsize=1)
def cpu_library() -> ctypes.CDLL:
    """The loaded library (compiled first where needed)."""
    return load_library(compile_cpu_library())


def load_library(path: Path) -> ctypes.CDLL:
    """A compiled CPU library, its entry point typed."""
    lib = ctypes.CDLL(str(path))
    fn = lib.rgbirTopKSparseAttentionCpu
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int32] * 6 + [ctypes.c_float, ctypes.POINTER(ctypes.c_int32),
                                                                   ctypes.POINTER(ctypes.c_float), ctypes.c_int32,
                                                                   ctypes.c_int32]
    return lib


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def topk_sparse_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, k_divisors, weights,
                          threads: int | None = None, library: ctypes.CDLL | None = None) -> np.ndarray:
    """The op (README.md of csrc/topk_sparse_attention) on (B,h,N,d), (B,h,N1,d), (B,h,N1,dv) arrays; float16
    inputs are computed in float32 and returned as float16. ctypes releases the GIL for the call. ``library``:
    another build of the kernel (default: this machine's)."""
    dtype = q.dtype
    q, k, v = (np.ascontiguousarray(a, dtype=np.float32) for a in (q, k, v))
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or k.shape[:2] != q.shape[:2] or v.shape[:3] != k.shape[:3] \
            or q.shape[3] != k.shape[3]:
        raise RgbirError(f"TopKSparseAttention: shapes q {q.shape}, k {k.shape}, v {v.shape} do not fit "
                         "(B,h,N,d), (B,h,N1,d), (B,h,N1,dv)")
    if len(k_divisors) != len(weights):
        raise RgbirError(f"TopKSparseAttention: {len(k_divisors)} k_divisors but {len(weights)} weights")
    batch, heads, n, d = q.shape
    n1, dv = k.shape[2], v.shape[3]
    out = np.empty((batch, heads, n, dv), dtype=np.float32)
    divisors = (ctypes.c_int32 * len(k_divisors))(*k_divisors)
    branch_weights = (ctypes.c_float * len(weights))(*weights)
    status = (library or cpu_library()).rgbirTopKSparseAttentionCpu(
        q.ctypes.data, k.ctypes.data, v.ctypes.data, out.ctypes.data, batch, heads, n, n1, d, dv, scale, divisors,
        branch_weights, len(k_divisors), threads or default_threads())
    if status != 0:
        raise RgbirError(f"TopKSparseAttention on the CPU: {ERRORS.get(status, f'error {status}')}")
    return out if dtype == np.float32 else out.astype(dtype)
