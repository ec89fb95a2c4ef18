"""Checks made before a command starts its work — files it reads, files it writes, the port it serves on — so a
wrong path fails at once in one line, not after minutes of loading, exporting or processing."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from .errors import RgbirError


def cannot_write(path: str | Path, error: OSError) -> RgbirError:
    """The one-line error for a failed write: the file and the system's reason."""
    return RgbirError(f"cannot write {path}: {error.strerror or error}")


def writable_file(path: str | Path, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a file this process can create or overwrite: not a directory, under a writable directory
    that exists or can be made, and (with ``suffixes``) named with one of them."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise RgbirError(f"cannot write {what} {path}: use a {' or '.join(suffixes)} file name")
    if path.is_dir():
        raise RgbirError(f"cannot write {what} {path}: it is a directory")
    target = path
    if not path.exists():
        target = _nearest_existing(path.parent)
        if not target.is_dir():
            raise RgbirError(f"cannot write {what} {path}: {target} is not a directory")
    if not os.access(target, os.W_OK):
        raise RgbirError(f"cannot write {what} {path}: {target} is not writable")
    return path


def writable_directory(path: str | Path, what: str) -> Path:
    """``path`` as a directory this process can write files into: one that exists and is writable, or one that can
    be made under the closest existing directory."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RgbirError(f"cannot write {what} into {path}: it is a file, not a directory")
    target = _nearest_existing(path)
    if not target.is_dir():
        raise RgbirError(f"cannot write {what} into {path}: {target} is not a directory")
    if not os.access(target, os.W_OK):
        raise RgbirError(f"cannot write {what} into {path}: {target} is not writable")
    return path


def _nearest_existing(directory: Path) -> Path:
    """The directory itself, or the closest ancestor that exists (where the missing ones would be made)."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return directory


def readable_file(path: str | Path, what: str) -> Path:
    """``path`` as an existing, readable regular file (not a directory)."""
    path = Path(path)
    if path.is_dir():
        raise RgbirError(f"{what} {path} is a directory: give the file itself")
    if not path.is_file():
        raise RgbirError(f"no {what} {path}")
    if not os.access(path, os.R_OK):
        raise RgbirError(f"cannot read {what} {path}: permission denied")
    return path


def cannot_serve(what: str, host: str, port: int, error: OSError) -> RgbirError:
    """The one-line error for an address that cannot be bound, naming the real cause: a host that is not this
    machine's, a privileged port, or a port in use."""
    reason = error.strerror or str(error)
    if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
        return RgbirError(f"cannot serve {what} on {host}:{port} ({reason}): {host} is not an address of this "
                          "machine; bind 127.0.0.1, 0.0.0.0 (every interface) or one of its own addresses")
    if error.errno == errno.EACCES:
        return RgbirError(f"cannot serve {what} on {host}:{port} ({reason}): ports below 1024 need privileges; "
                          "choose a port above 1023")
    return RgbirError(f"cannot serve {what} on {host}:{port} ({reason}): choose another port")


def free_port(port: int, what: str, host: str = "127.0.0.1") -> int:
    """``port`` if it is in 1..65535 and can be bound on ``host`` right now (probed, then released)."""
    if not 1 <= port <= 65535:
        raise RgbirError(f"{what} port {port} is out of range: choose 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server binds: TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError as e:
            raise cannot_serve(what, host, port, e) from e
    return port
