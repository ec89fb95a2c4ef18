"""Find the built plugin library and register it with TensorRT (full or lean runtime)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import RgbirError

LIBRARY_NAME = "librgbir_plugins.so"
ENV_LIBRARY = "RGBIR_PLUGIN_LIBRARY"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rgbir" / "plugins"


def candidates() -> list[Path]:
    """Where the library is looked for, in order."""
    paths = []
    if os.environ.get(ENV_LIBRARY):
        paths.append(Path(os.environ[ENV_LIBRARY]))
    paths += [cache_dir() / LIBRARY_NAME, Path(__file__).parent / "lib" / LIBRARY_NAME]
    return paths


def find_library(path: str | Path | None = None) -> Path:
    """The plugin library: ``path`` if given, else the first of ``candidates()`` that exists."""
    if path is not None:
        if not Path(path).is_file():
            raise RgbirError(f"no plugin library at {path}")
        return Path(path)
    for candidate in candidates():
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(p) for p in candidates())
    raise RgbirError(f"no rgbir plugin library found (searched {searched}): build it with 'rgbir plugins build' "
                     f"or point {ENV_LIBRARY} at it")


def tensorrt_module():
    """The TensorRT Python module available here: the full runtime, else the lean one."""
    for name in ("tensorrt", "tensorrt_lean", "tensorrt_lean_bindings"):
        try:
            return __import__(name)
        except ImportError:
            continue
    raise RgbirError("TensorRT's Python bindings are not installed: pip install 'rgbir[trt]' (on Jetson, use "
                     "JetPack's python3-libnvinfer)")


def load(path: str | Path | None = None, trt=None) -> Path:
    """Register the plugin library's creators with TensorRT's plugin registry; returns the library path."""
    library = find_library(path)
    trt = trt or tensorrt_module()
    handle = trt.get_plugin_registry().load_library(str(library))
    if handle is None:
        raise RgbirError(f"TensorRT could not load {library}: rebuild it for this TensorRT and CUDA "
                         "('rgbir plugins build')")
    return library


def load_if_present(path: str | Path | None, trt, required: bool) -> Path | None:
    """``load`` when a library is found; None when none is and it is not ``required`` (an explicit ``path`` always
    is). For builds and engines that may or may not carry the rgbir plugin."""
    try:
        return load(path, trt)
    except RgbirError:
        if required or path is not None:
            raise
        return None
