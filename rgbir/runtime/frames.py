"""What flows through the pipeline: frames from one camera, and RGB+IR pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    """One captured image with its source's sequence number, capture times and, from a folder, its file name."""

    image: np.ndarray
    seq: int
    t_capture: float  # time.monotonic() at capture: latency and skew are measured on this clock
    wall_time: float  # time.time() at capture, for the records
    source: str
    file: str | None = None  # the image's file name (image folders); None for videos, cameras and streams


@dataclass
class FramePair:
    """An RGB frame and its IR partner from one camera pair (``stream``). ``index`` numbers the pairs a
    stream has processed (assigned when inference takes the pair; pairs dropped before that get none)."""

    stream: int
    rgb: Frame
    ir: Frame | None
    index: int = -1
    reused: str | None = None  # "rgb" | "ir": that camera stalled and its last frame stood in

    @property
    def skew_ms(self) -> float:
        return 0.0 if self.ir is None else (self.rgb.t_capture - self.ir.t_capture) * 1e3

    @property
    def t_capture(self) -> float:
        """The older frame's capture time: end-to-end latency is measured from it."""
        return self.rgb.t_capture if self.ir is None else min(self.rgb.t_capture, self.ir.t_capture)
