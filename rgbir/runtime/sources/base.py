"""The source interface: open, read frames until None, close."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ...errors import RgbirError


class SourceError(RgbirError):
    """A source that cannot be opened or has failed; the message says which and why."""


class Source(ABC):
    """One camera or file. ``live`` sources are reconnected on failure and may drop frames; file sources
    are read in lockstep without drops and end with None."""

    name: str = "source"
    live: bool = False
    file: str | None = None  # the file name of the frame read last (image folders); None for videos and cameras
    reported_fps: float = 0.0  # the frame rate the file or camera reports once open (0: it does not say)

    @abstractmethod
    def open(self) -> None:
        """Start capturing; raises SourceError when the source cannot be opened."""

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next frame (OpenCV layout), or None at the end (files) or on a failure (live)."""

    def close(self) -> None:
        """Release the device or file."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"
