"""The installed TensorRT Python modules by edition, and idempotent registration of rgbir's plugin library.

Editions: the full TensorRT (module ``tensorrt``: builds on the GPU it runs on), TensorRT-RTX (``tensorrt_rtx``,
or ``tensorrt_rtx_bindings`` from PyPI: builds ahead of time on any machine, a CPU included, for RTX GPUs that
JIT-compile the engine when they load it) and the lean runtime (``tensorrt_lean``/``tensorrt_lean_bindings``:
loads version-compatible engines, never builds).

TensorRT's ``IPluginRegistry.load_library`` returns None when any plugin of the library is already registered
(NvInferRuntimeCommon.h, 10.3 and 11.x), so a second load in one process — a backend opened after
``build_engine``, a second backend — is not a failure. Libraries are remembered per TensorRT module by resolved
path, and a registry that already holds rgbir's creator counts as loaded.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

from ..errors import RgbirError
from ..ops import TOPK_SPARSE_ATTENTION as OP

EDITIONS = ("auto", "standard", "rtx")  # what --tensorrt chooses; auto: a full TensorRT, else TensorRT-RTX
FULL_MODULES = ("tensorrt",)
RTX_MODULES = ("tensorrt_rtx", "tensorrt_rtx_bindings")  # NVIDIA's wheel, then PyPI's
LEAN_MODULES = ("tensorrt_lean", "tensorrt_lean_bindings")
INSTALL = {"standard": "pip install 'rgbir[trt]' (on Jetson, JetPack's python3-libnvinfer)",
           "rtx": "pip install 'rgbir[rtx]' (TensorRT-RTX: builds on any machine, runs on RTX GPUs)"}

log = logging.getLogger(__name__)

# id(module) → (module, libraries registered through it); the module is kept so its id cannot be reused
_registered: dict[int, tuple[object, set[Path]]] = {}


def _first(names: tuple[str, ...]):
    for name in names:
        try:
            return __import__(name)
        except ImportError:
            continue
    return None


def edition_of(trt) -> str:
    """'rtx' for a TensorRT-RTX module, else 'standard' (the full TensorRT or its lean runtime)."""
    return "rtx" if "rtx" in trt.__name__ else "standard"


def edition_label(edition: str, version: str) -> str:
    """How messages name a TensorRT: 'TensorRT 10.3.0.26' or 'TensorRT-RTX 1.7.1.116'."""
    return f"{'TensorRT-RTX' if edition == 'rtx' else 'TensorRT'} {version}"


def label(trt) -> str:
    return edition_label(edition_of(trt), getattr(trt, "__version__", "?"))


def tensorrt_module(edition: str = "standard"):
    """The module that runs engines of ``edition``: for standard engines the full runtime, else the lean one."""
    trt = _first(RTX_MODULES if edition == "rtx" else FULL_MODULES + LEAN_MODULES)
    if trt is None:
        raise RgbirError(f"{'TensorRT-RTX' if edition == 'rtx' else 'TensorRT'}'s Python bindings are not "
                         f"installed: {INSTALL['rtx' if edition == 'rtx' else 'standard']}")
    return trt


def any_tensorrt_module():
    """Whichever TensorRT module is here (full, lean, then RTX): for what every edition can do (plugin creators)."""
    trt = _first(FULL_MODULES + LEAN_MODULES + RTX_MODULES)
    if trt is None:
        raise RgbirError(f"no TensorRT Python bindings are installed: {INSTALL['standard']}, or {INSTALL['rtx']}")
    return trt


def builder_module(edition: str = "auto"):
    """The module ``rgbir build`` uses: ``standard`` the full TensorRT, ``rtx`` TensorRT-RTX, ``auto`` the full
    TensorRT when installed, else TensorRT-RTX. The lean runtime never builds."""
    from ..metadata import check_choice

    check_choice(edition, EDITIONS, "TensorRT edition")
    full = _first(FULL_MODULES) if edition in ("auto", "standard") else None
    if full is not None and hasattr(full, "Builder"):
        return full
    rtx = _first(RTX_MODULES) if edition in ("auto", "rtx") else None
    if rtx is not None:
        return rtx
    lean = _first(LEAN_MODULES)
    found = f" (the {label(lean)} lean runtime here only loads engines)" if lean is not None else ""
    wanted = {"standard": f"the full TensorRT: {INSTALL['standard']}", "rtx": f"TensorRT-RTX: {INSTALL['rtx']}",
              "auto": f"the full TensorRT ({INSTALL['standard']}) or TensorRT-RTX ({INSTALL['rtx']})"}[edition]
    raise RgbirError(f"no TensorRT builder is installed{found}: building engines needs {wanted}")


def _loaded_library(prefix: str) -> Path | None:
    """The file of a shared library this process has mapped whose name starts with ``prefix`` (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = Path(line.split()[-1]) if "/" in line else None
                if path is not None and path.name.startswith(prefix):
                    return path
    except OSError:
        pass
    return None


def ensure_rtx_parser_alias(trt) -> None:
    """Make ``libtensorrt_rtx.so`` loadable before TensorRT-RTX's ONNX parser needs it.

    After creating any IPluginV3 from the registry, the 1.7 parser ``dlopen``s the unversioned library name to reach
    the network's add-plugin-V3 entry point; the PyPI wheel ships only ``libtensorrt_rtx.so.1``, so the load fails
    inside a static initializer and the parser calls ``std::terminate`` (the process aborts). The parser searches
    its own folder (``$ORIGIN``), so a link there named ``libtensorrt_rtx.so`` fixes it, as NVIDIA's ONNX Runtime
    TensorRT-RTX package does. Raises with the command to run when the folder is not writable.
    """
    if edition_of(trt) != "rtx" or not sys.platform.startswith("linux"):
        return
    parser = _loaded_library("libtensorrt_onnxparser_rtx.so")
    versioned = _loaded_library("libtensorrt_rtx.so.")
    if parser is None or versioned is None:
        return  # a layout we do not know (e.g. a system install that ships its own links)
    alias = parser.parent / "libtensorrt_rtx.so"
    if alias.exists():
        return
    try:
        ctypes.CDLL("libtensorrt_rtx.so")  # found on LD_LIBRARY_PATH or in the loader's cache: the parser finds it too
        return
    except OSError:
        pass
    partial = alias.with_name(alias.name + ".partial")
    target = os.path.relpath(versioned, alias.parent)
    try:
        partial.unlink(missing_ok=True)
        partial.symlink_to(target)
        os.replace(partial, alias)
        log.info("linked %s -> %s (TensorRT-RTX's ONNX parser loads that name to import plugins)", alias, target)
    except OSError as e:
        raise RgbirError(f"{label(trt)}'s ONNX parser needs {alias} to load plugins, and {alias.parent} is not "
                         f"writable ({e.strerror}): run 'ln -s {target} {alias}' as its owner, or put a folder holding "
                         "that link on LD_LIBRARY_PATH before starting rgbir") from e


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
    ensure_rtx_parser_alias(trt)  # before any parse can create one of the library's plugins
    if trt.get_plugin_registry().load_library(str(library)) is None and not creator_registered(trt):
        raise RgbirError(f"{label(trt)} could not load {library}: rebuild it for this TensorRT and CUDA "
                         "('rgbir plugins compile')")
    done.add(library)
    return library


def register_if_present(path: str | Path | None, trt, required: bool) -> Path | None:
    """``register_plugins`` when a library is found; None when none is and it is not ``required`` (an explicit
    ``path`` always is). For builds and engines that may or may not carry the rgbir plugin."""
    from ..plugins.loader import find_library

    try:
        find_library(path)
    except RgbirError:
        if required or path is not None:
            raise
        return None
    return register_plugins(path, trt)  # a library that is found but does not load is an error, not skipped
