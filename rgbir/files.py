"""File helpers shared across the package (torch-free): content hashes, whole-or-nothing writes, the cache."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | Path, data: bytes | str, before_replace: Callable[[], None] | None = None) -> Path:
    """Write ``data`` to ``path`` whole or not at all: a sibling ``.partial`` file renamed into place, so a reader
    (or a crash) never sees half a file; the partial file is removed when the write fails. ``before_replace``
    runs once the data is safely written, just before the swap (e.g. to drop a file describing the old one)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data.encode() if isinstance(data, str) else memoryview(data))
        if before_replace is not None:
            before_replace()
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def cache_dir(*parts: str) -> Path:
    """rgbir's cache folder (``$XDG_CACHE_HOME/rgbir``, else ``~/.cache/rgbir``), or a folder inside it."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "rgbir", *parts)
