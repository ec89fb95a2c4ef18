"""TensorRT-RTX's runtime cache: the kernels it JIT-compiles for this GPU when it loads an engine, kept on disk so
the next start skips the compilation. Read when the file exists (TensorRT-RTX checks that it was made by the
same release, GPU and driver, and ignores it otherwise), written whole when the backend closes."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..files import atomic_write, cache_dir

log = logging.getLogger(__name__)


def runtime_cache_path(engine: Path, plan: bytes) -> Path:
    """One cache per engine content (``plan``, the bytes already read to load it):
    ``~/.cache/rgbir/tensorrt-rtx/<name>-<sha256 prefix>.cache``."""
    return cache_dir("tensorrt-rtx") / f"{engine.stem}-{hashlib.sha256(plan).hexdigest()[:16]}.cache"


class RuntimeCache:
    """The runtime configuration every execution context of one TensorRT-RTX engine is created with."""

    def __init__(self, engine, path: Path):
        self.path, self.engine = path, engine
        self.config = engine.create_runtime_config()
        self.cache = self.config.create_runtime_cache()
        if path.is_file() and not self.cache.deserialize(path.read_bytes()):
            log.info("runtime cache %s was made for another GPU, driver or release: compiling afresh", path)
        self.config.set_runtime_cache(self.cache)

    def create_context(self):
        return self.engine.create_execution_context(self.config)

    def save(self) -> None:
        try:
            atomic_write(self.path, bytes(self.cache.serialize()))
        except OSError as e:  # a cache is an optimisation: losing it costs the next start time, nothing else
            log.warning("could not save the TensorRT-RTX runtime cache %s (%s)", self.path, e.strerror)
