"""Find the built plugin library (registering it with TensorRT is ``rgbir.trt.registry``'s job)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import RgbirError
from ..files import cache_dir

LIBRARY_NAME = "librgbir_plugins.so"
ENV_LIBRARY = "RGBIR_PLUGIN_LIBRARY"


def candidates() -> list[Path]:
    """Where the library is looked for, in order."""
    paths = []
    if os.environ.get(ENV_LIBRARY):
        paths.append(Path(os.environ[ENV_LIBRARY]))
    paths += [cache_dir("plugins") / LIBRARY_NAME, Path(__file__).parent / "lib" / LIBRARY_NAME]
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
    raise RgbirError(f"no rgbir plugin library found (searched {searched}): compile it with 'rgbir plugins compile' "
                     f"or point {ENV_LIBRARY} at it")
