"""Every path a command reads and writes, resolved before its work starts (real paths: links followed, folders
included), so that no output overwrites an input or another output: a clash is refused in one line naming both
flags. An output clashes with a path that is the same file, or with a folder it lies in (an input folder of images,
a folder of outputs)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RgbirError


@dataclass(frozen=True)
class PathUse:
    flag: str  # how the user named it: '--json', '-o', 'the ONNX file'
    given: str  # the path as given
    real: Path  # resolved: absolute, links followed
    writes: bool
    folder: bool  # a folder of images read, or a folder outputs are written into


@dataclass
class PathPlan:
    """What one command reads and writes; ``check()`` refuses the first clash."""

    uses: list[PathUse] = field(default_factory=list)

    def reads(self, flag: str, *paths: str | Path | None) -> PathPlan:
        """Inputs: only paths that exist count (a camera index, a URL or a config name is not a file)."""
        for path in paths:
            if path is not None and str(path) and os.path.exists(path):
                real = _real(path)
                self.uses.append(PathUse(flag, str(path), real, False, real.is_dir()))
        return self

    def writes(self, flag: str, *paths: str | Path | None, folder: bool = False) -> PathPlan:
        """Outputs: files, or with ``folder`` a folder the command writes files into."""
        for path in paths:
            if path is not None and str(path):
                self.uses.append(PathUse(flag, str(path), _real(path), True, folder))
        return self

    def check(self) -> None:
        for out in (u for u in self.uses if u.writes):
            for other in self.uses:
                if other.flag != out.flag:
                    _refuse(out, other)


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _same(a: PathUse, b: PathUse) -> bool:
    """One file under two names (also a hard link)."""
    if a.real == b.real:
        return True
    try:
        return os.path.samefile(a.real, b.real)
    except OSError:  # one of them does not exist yet
        return False


def _refuse(out: PathUse, other: PathUse) -> None:
    if _same(out, other):
        if other.writes:
            raise RgbirError(f"{out.flag} {out.given} and {other.flag} {other.given} are the same file: give each "
                             "output its own path")
        raise RgbirError(f"{out.flag} {out.given} is also {other.flag} {other.given}: writing it would destroy that "
                         f"input; give {out.flag} another path")
    if other.folder and out.real.is_relative_to(other.real):
        raise RgbirError(f"{out.flag} {out.given} is inside the {other.flag} folder {other.given}: give {out.flag} "
                         "a path outside it")
