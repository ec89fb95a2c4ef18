"""rgbir's TensorRT plugin library: build it (``rgbir plugins build``) and load it into TensorRT's registry.

The C++/CUDA sources live under ``csrc/``, one folder per op, each with a README stating the op's semantics.
"""

from .build import BuildOptions, build_library
from .loader import find_library, load

__all__ = ["BuildOptions", "build_library", "find_library", "load"]
