"""rgbir's native code: the TensorRT plugin library (compile it with ``rgbir plugins compile`` and load it into
TensorRT's registry) and the CPU library ONNX Runtime runs the attention with (``cpu.py``, compiled on first use).

The C++/CUDA sources live under ``csrc/``, one folder per op, each with a README stating the op's semantics.
"""

from ..trt.registry import register_plugins as load
from .compiler import CompileOptions, compile_library
from .loader import find_library

__all__ = ["CompileOptions", "compile_library", "find_library", "load"]
