"""The installed TensorRT Python module, and idempotent registration of rgbir's plugin library with it.

TensorRT's ``IPluginRegistry.load_library`` returns None when any plugin of the library is already registered
(NvInferRuntimeCommon.h, 10.3 and 11.x), so a second load in one process — a backend opened after
``build_engine``, a second backend — is not a failure. Libraries are remembered per TensorRT module by resolved
path, and a registry that already holds rgbir's creator counts as loaded.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RgbirError
from ..ops import TOPK_SPARSE_ATTENTION as OP

MODULES = ("tensorrt", "tensorrt_lean", "tensorrt_lean_bindings")  # full runtime first, then the lean one

# id(module) → (module, libraries registered through it); the module is kept so its id cannot be reused
_registered: dict[int, tuple[object, set[Path]]] = {}


def tensorrt_module():
    """The TensorRT Python module available here: the full runtime, else the lean one."""
    for name in MODULES:
        try:
            return __import__(name)
        except ImportError:
            continue
    raise RgbirError("TensorRT's Python bindings are not installed: pip install 'rgbir[trt]' (on Jetson, use "
                     "JetPack's python3-libnvinfer)")


def creator_registered(trt) -> bool:
    """Whether the registry already holds the sparse-attention creator (from this or any earlier library)."""
    return trt.get_plugin_registry().get_creator(OP.name, OP.version, OP.domain) is not None


def register_plugins(path: str | Path | None = None, trt=None) -> Path:
    """Register the plugin library's creators with TensorRT's registry, once per process; returns its path."""
    from ..plugins.loader import find_library

    library = find_library(path).resolve()
    trt = trt or tensorrt_module()
    _, done = _registered.setdefault(id(trt), (trt, set()))
    if library in done:
        return library
    if trt.get_plugin_registry().load_library(str(library)) is None and not creator_registered(trt):
        raise RgbirError(f"TensorRT could not load {library}: rebuild it for this TensorRT and CUDA "
                         "('rgbir plugins compile')")
    done.add(library)
    return library


def register_if_present(path: str | Path | None, trt, required: bool) -> Path | None:
    """``register_plugins`` when a library is found; None when none is and it is not ``required`` (an explicit
    ``path`` always is). For builds and engines that may or may not carry the rgbir plugin."""
    try:
        return register_plugins(path, trt)
    except RgbirError:
        if required or path is not None:
            raise
        return None
