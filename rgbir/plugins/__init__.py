"""rgbir's TensorRT plugin library: compile it (``rgbir plugins compile``) and load it into TensorRT's registry.

The C++/CUDA sources live under ``csrc/``, one folder per op, each with a README stating the op's semantics.
"""

from ..trt.registry import register_plugins as load
from .compiler import CompileOptions, compile_library
from .loader import find_library

__all__ = ["CompileOptions", "compile_library", "find_library", "load"]
