"""File helpers shared across the package (torch-free): content hashes, whole-or-nothing writes, the cache."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def replacing(path: str | Path, before_replace: Callable[[], None] | None = None) -> Iterator[Path]:
    """Where to write ``path``'s new content, whole or not at all: a sibling ``.partial`` file that, once the block
    ends without error, is synced to disk, renamed over ``path`` (keeping its permissions) and the rename synced
    too; on any error (a full disk, Ctrl-C) it is removed and ``path`` stays as it was. ``before_replace`` runs
    just before the swap (e.g. to drop a file describing the old one). A symbolic link's target is what gets
    replaced; a path that is not a regular file (/dev/null, a FIFO) cannot be replaced and is written in place."""
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        yield target
        return
    partial = target.with_name(target.name + ".partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield partial
        _sync(partial)
        if target.exists():
            os.chmod(partial, target.stat().st_mode & 0o7777)
        if before_replace is not None:
            before_replace()
        os.replace(partial, target)
        _sync(target.parent)
    except BaseException as e:
        partial.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename in (None, str(partial)):
            e.filename = str(path)  # the error names the file the user asked for
        raise


def _sync(path: Path) -> None:
    """fsync a file or a folder (the folder holds the rename); a file system that cannot sync folders is let be."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str, before_replace: Callable[[], None] | None = None) -> Path:
    """Write ``data`` to ``path`` whole or not at all (``replacing``): a reader, or a crash, never sees half a
    file, and a failed write leaves the previous file as it was."""
    with replacing(path, before_replace) as partial:
        partial.write_bytes(data.encode() if isinstance(data, str) else memoryview(data))
    return Path(path)


def cache_dir(*parts: str) -> Path:
    """rgbir's cache folder (``$XDG_CACHE_HOME/rgbir``, else ``~/.cache/rgbir``), or a folder inside it."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "rgbir", *parts)
