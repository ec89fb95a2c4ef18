"""Compile the plugin library with CMake: find TensorRT's headers and the CUDA toolkit, pick the
GPU architectures, and put the library where ``rgbir.plugins.load()`` finds it."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RgbirError
from ..files import cache_dir
from .loader import LIBRARY_NAME

log = logging.getLogger(__name__)
SOURCE_DIR = Path(__file__).parent / "csrc"
KERNEL_LENS = "2.0.1"  # the wheel whose public TensorRT headers are the fallback
ARCH_PRESETS = {
    "orin": "87",  # Jetson AGX Orin / Orin NX / Orin Nano (JetPack 6)
    "desktop": "75-real;80-real;86-real;89-real;90",  # Turing … Hopper, plus PTX for newer GPUs
}
SYSTEM_INCLUDES = ["/usr/include/aarch64-linux-gnu", "/usr/include/x86_64-linux-gnu", "/usr/include",
                   "/usr/local/include"]


@dataclass
class CompileOptions:
    tensorrt_include: str | None = None  # directory with NvInferRuntime.h
    arch: str = "native"  # "native" | "orin" | "desktop" | "75,86,…"
    output_dir: Path = field(default_factory=lambda: cache_dir("plugins"))
    build_dir: Path | None = None
    jobs: int = 2


def find_tensorrt_include(explicit: str | None = None, allow_download: bool = True) -> tuple[Path, str]:
    """(directory, where it came from): --tensorrt-include, RGBIR_TENSORRT_INCLUDE, TENSORRT_ROOT/include
    (tarball), the system include dirs (JetPack), then kernel-lens' public headers (a CI/dev fallback: the cached
    copy, else fetched when ``allow_download``)."""
    tried = []
    env_root = os.environ.get("TENSORRT_ROOT") or os.environ.get("TRT_ROOT")
    for where, path in (("--tensorrt-include", explicit), ("RGBIR_TENSORRT_INCLUDE",
                        os.environ.get("RGBIR_TENSORRT_INCLUDE")),
                        ("TENSORRT_ROOT", str(Path(env_root) / "include") if env_root else None)):
        if path:
            if (Path(path) / "NvInferRuntime.h").is_file():
                return Path(path), where
            raise RgbirError(f"{where}={path} has no NvInferRuntime.h")
    for path in SYSTEM_INCLUDES:
        tried.append(path)
        if (Path(path) / "NvInferRuntime.h").is_file():
            return Path(path), "system"
    include = kernel_lens_include()
    if (include / "NvInferRuntime.h").is_file() or allow_download:
        return kernel_lens_headers(), f"kernel-lens {KERNEL_LENS} (public TensorRT 10.14 headers; CI/dev fallback)"
    raise RgbirError("TensorRT headers not found (tried " + ", ".join(tried) + "): pass --tensorrt-include DIR "
                     "or set TENSORRT_ROOT to a TensorRT tarball")


def kernel_lens_include() -> Path:
    """Where the cached kernel-lens headers are (or will be)."""
    return cache_dir(f"kernel-lens-{KERNEL_LENS}", "kernel_lens", "include", "tensorrt")


def kernel_lens_headers() -> Path:
    """NVIDIA's public TensorRT headers from the kernel-lens wheel, fetched once (no dependencies) into the
    cache: enough to compile the plugin library where no TensorRT is installed (CI, development)."""
    include = kernel_lens_include()
    if (include / "NvInferRuntime.h").is_file():
        return include
    target = include.parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                                 "-d", tmp, f"kernel-lens=={KERNEL_LENS}"], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("kernel_lens-*.whl"))
        if result.returncode != 0 or not wheels:
            raise RgbirError("TensorRT headers not found, and fetching kernel-lens for them failed: pass "
                             "--tensorrt-include DIR or set TENSORRT_ROOT")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [m for m in wheel.namelist() if m.startswith("kernel_lens/include/tensorrt/")]
            wheel.extractall(target, members)
    return include


def find_nvcc() -> Path:
    candidates = [os.environ.get("CUDACXX"), shutil.which("nvcc")]
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidates.append(str(Path(cuda_home) / "bin" / "nvcc"))
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise RgbirError("nvcc (the CUDA toolkit) not found: install it, or set CUDA_HOME or CUDACXX")


def cuda_architectures(arch: str) -> str:
    """CMake CUDA_ARCHITECTURES for a preset, a list like '75,86', or 'native' (the GPUs of this machine)."""
    if arch in ARCH_PRESETS:
        return ARCH_PRESETS[arch]
    if arch == "native":
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        caps = sorted({line.strip().replace(".", "") for line in out.splitlines() if line.strip()})
        if not caps:
            raise RgbirError("no GPU found to build for: pass --arch orin, --arch desktop or a list like 75,86")
        return ";".join(caps)
    parts = [p.strip() for p in arch.replace(";", ",").split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) >= 75 for p in parts):
        raise RgbirError(f"--arch '{arch}': use native, orin, desktop, or compute capabilities >= 75 like 75,86")
    return ";".join(parts)


def compile_library(options: CompileOptions) -> Path:
    """Compile and install the library; returns its path."""
    include, origin = find_tensorrt_include(options.tensorrt_include)
    nvcc = find_nvcc()
    archs = cuda_architectures(options.arch)
    if shutil.which("cmake") is None:
        raise RgbirError("cmake not found: install CMake >= 3.24")
    log.info(f"TensorRT headers: {include} ({origin})")
    log.info(f"CUDA compiler:    {nvcc}")
    log.info(f"architectures:    {archs}")
    build_dir = options.build_dir or Path(tempfile.mkdtemp(prefix="rgbir-plugins-"))
    output_dir = Path(options.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    configure = ["cmake", "-S", str(SOURCE_DIR), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DTENSORRT_INCLUDE_DIR={include}", f"-DCMAKE_CUDA_COMPILER={nvcc}",
                 f"-DCMAKE_CUDA_ARCHITECTURES={archs}"]
    for step in (configure, ["cmake", "--build", str(build_dir), "-j", str(options.jobs)]):
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise RgbirError(f"plugin compilation failed at '{' '.join(step[:2])}':\n{tail}")
    built = build_dir / LIBRARY_NAME
    target = output_dir / LIBRARY_NAME
    shutil.copy2(built, target)
    if options.build_dir is None:
        shutil.rmtree(build_dir, ignore_errors=True)
    return target
