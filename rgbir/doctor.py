"""``rgbir doctor``'s checks: what is installed and usable here, each with a fix hint when it is not.

Every check is independent and never raises: a broken component is reported, not fatal. Torch-free.
"""

from __future__ import annotations

import importlib
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

OK, WARN, MISSING = "ok", "warn", "missing"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | missing
    detail: str
    hint: str = ""


def _module_version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception:  # a broken install is reported, not raised
        return None
    return str(getattr(module, "__version__", "installed"))


def check_core() -> list[Check]:
    from . import __version__

    checks = [Check("rgbir", OK, f"{__version__} (Python {platform.python_version()}, {platform.machine()})")]
    for name, hint in (("numpy", "pip install numpy"), ("onnx", "pip install onnx")):
        version = _module_version(name)
        checks.append(Check(name, OK if version else MISSING, version or "not importable", "" if version else hint))
    return checks


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except Exception as e:
        return Check("onnxruntime", MISSING, str(e).splitlines()[0], "pip install onnxruntime (or onnxruntime-gpu)")
    providers = ort.get_available_providers()
    gpu = [p for p in providers if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    return Check("onnxruntime", OK, f"{ort.__version__}; providers: {', '.join(providers)}",
                 "" if gpu else "CPU only: pip install onnxruntime-gpu for the CUDA/TensorRT providers")


def check_opencv() -> Check:
    try:
        import cv2
    except Exception as e:
        return Check("opencv", MISSING, str(e).splitlines()[0], "pip install opencv-python-headless")
    gstreamer = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    has = bool(gstreamer and gstreamer.group(1).upper() == "YES")
    return Check("opencv", OK, f"{cv2.__version__}; GStreamer {'yes' if has else 'no'}",
                 "" if has else "CSI cameras (nvarguscamerasrc) need OpenCV built with GStreamer (JetPack's "
                                "python3-opencv)")


def check_serving() -> Check:
    """The Triton client, for triton:// models (rgbir run/val/parity against a server)."""
    version = _module_version("tritonclient")
    if version is None:
        return Check("tritonclient", MISSING, "not installed (only triton:// models need it)",
                     "for Triton Inference Server: pip install 'rgbir[serve]'")
    return Check("tritonclient", OK, version)


def check_torch() -> Check:
    try:
        import torch
    except Exception:
        return Check("torch", MISSING, "not installed (the runtime does not need it)",
                     "for export/parity/train: pip install torch, then pip install 'rgbir[torch]'")
    cuda = torch.cuda.is_available()
    return Check("torch", OK, f"{torch.__version__}; CUDA {'available' if cuda else 'not available'}")


def check_cuda() -> list[Check]:
    from .trt import cuda

    try:
        cudart = cuda.runtime_api()
    except cuda.CudaError as e:
        return [Check("cuda-python", MISSING, "not installed", str(e).split(": ", 1)[-1])]
    version = cuda.call(cudart.cudaRuntimeGetVersion)
    checks = [Check("cuda-python", OK, f"runtime API for CUDA {version // 1000}.{version % 1000 // 10}")]
    try:
        info = cuda.device_info(0)
    except cuda.CudaError as e:
        checks.append(Check("GPU", MISSING, str(e), "no usable NVIDIA GPU/driver: the TensorRT backend and engine "
                                                    "builds need one (ONNX Runtime CPU still works)"))
        return checks
    d = info.driver_version
    checks.append(Check("GPU", OK, f"{info.name}, compute capability {info.compute_capability[0]}."
                                   f"{info.compute_capability[1]}, {info.total_memory / 2**30:.1f} GiB"
                                   f"{', integrated (zero-copy buffers)' if info.integrated else ''}; driver CUDA "
                                   f"{d // 1000}.{d % 1000 // 10}"))
    return checks


def _plugin_check(trt, name: str) -> Check:
    from .errors import RgbirError
    from .trt import registry

    try:
        library = registry.register_plugins(None, trt)
        return Check(name, OK, f"{library} loads in {registry.label(trt)}")
    except RgbirError as e:
        return Check(name, MISSING, str(e).split(" (")[0].split(":")[0],
                     "rgbir plugins compile (needs nvcc and TensorRT headers)")


def check_tensorrt() -> list[Check]:
    """Each TensorRT edition installed here, what it can do, and whether the plugin library loads in it."""
    from .errors import RgbirError
    from .trt import registry
    from .trt.plan import TensorRTFeatures

    checks = []
    modules = {}
    for edition in ("standard", "rtx"):
        try:
            modules[edition] = registry.tensorrt_module(edition)
        except RgbirError:
            continue
    if not modules:
        return [Check("TensorRT", MISSING, "not installed", f"{registry.INSTALL['standard']}; or, to build engines "
                                                             f"for RTX GPUs on any machine, {registry.INSTALL['rtx']}")]
    try:
        builds = registry.label(registry.builder_module("auto"))
    except RgbirError:
        builds = None
    for trt in modules.values():
        f = TensorRTFeatures.of(trt)
        if f.rtx:
            detail = (f"{f.version} [{trt.__name__}], builds engines here without a GPU (ahead of time, for compute "
                      f"capabilities {', '.join(f.compute_targets)}); they run on RTX GPUs; strongly typed only, no "
                      "NMS layer; plugins work but NVIDIA does not list them as supported")
        else:
            flavour = "full (builds engines)" if f.builder else "lean runtime only (loads version-compatible engines)"
            typing = "fp16/int8 flags and calibrators" if f.weak_typing else "strongly typed only (no fp16/int8 flags)"
            detail = f"{f.version} [{trt.__name__}], {flavour}; {typing}"
        hint = "" if f.builder else f"to build engines: {registry.INSTALL['standard']}, or {registry.INSTALL['rtx']}"
        checks.append(Check(f.label.split()[0], OK if f.builder else WARN, detail, hint))
        checks.append(_plugin_check(trt, f"rgbir plugin ({f.label.split()[0]})"))
    checks.append(Check("rgbir build", OK if builds else MISSING, f"uses {builds}" if builds else "no TensorRT builder",
                        "" if builds else f"{registry.INSTALL['standard']} or {registry.INSTALL['rtx']}"))
    return checks


def check_toolchain() -> list[Check]:
    from .errors import RgbirError
    from .plugins.compiler import KERNEL_LENS, find_tensorrt_include

    nvcc = shutil.which("nvcc")
    if nvcc:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        release = re.search(r"release ([\d.]+)", out)
        checks = [Check("nvcc", OK, f"{nvcc} (CUDA {release.group(1) if release else '?'})")]
    else:
        checks = [Check("nvcc", MISSING, "not on PATH", "install the CUDA toolkit (JetPack: nvidia-jetpack) to "
                                                         "build the plugin library")]
    try:
        include, where = find_tensorrt_include(allow_download=False)
        checks.append(Check("TensorRT headers", OK, f"{include} ({where})"))
    except RgbirError:  # what 'rgbir plugins compile' will do: fetch public headers (a dev fallback)
        checks.append(Check("TensorRT headers", WARN, f"no TensorRT install; 'rgbir plugins compile' will fetch "
                                                      f"kernel-lens {KERNEL_LENS}'s public TensorRT 10.14 headers",
                            "for a release build set TENSORRT_ROOT (tarball) or install TensorRT's headers"))
    return checks


def check_cpu_kernel() -> Check:
    """The CPU attention kernel ONNX Runtime runs: compiled already, compilable here, or why not (without it the
    attention runs its ONNX function body, several times slower)."""
    from .errors import RgbirError
    from .plugins.cpu import find_compiler, library_path

    name = "CPU attention kernel"
    if _module_version("onnxruntime_extensions") is None:
        return Check(name, MISSING, "onnxruntime-extensions not importable",
                     "pip install onnxruntime-extensions (ONNX Runtime then runs the attention's function body)")
    try:
        compiler = find_compiler()
    except RgbirError as e:
        return Check(name, MISSING, str(e).split(":")[0], "apt install g++ (or set CXX); without it ONNX "
                                                          "Runtime runs the attention's function body, several "
                                                          "times slower")
    path = library_path(compiler)
    if path.is_file():
        return Check(name, OK, f"{path}")
    return Check(name, OK, f"compiled on first use with {compiler} (or now: rgbir plugins compile-cpu)")


CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    check_core, check_onnxruntime, check_cpu_kernel, check_opencv, check_torch, check_cuda, check_tensorrt,
    check_toolchain, check_serving)


def run_checks() -> list[Check]:
    results: list[Check] = []
    for check in CHECKS:
        try:
            out = check()
        except Exception as e:  # a check must not take the report down with it
            out = Check(check.__name__.removeprefix("check_"), WARN, f"check failed: {e}")
        results += out if isinstance(out, list) else [out]
    return results
