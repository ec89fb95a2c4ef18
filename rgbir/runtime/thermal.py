"""Thermal frames → the 8-bit grey the model was trained on.

Radiometric cameras (FLIR Boson/Lepton over V4L2 Y16) deliver 16-bit counts; an automatic gain control
maps them to 8 bits per frame. False-colour (palette) frames are converted to grey by luminance.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..options import CommandLineOptions, option

AGC_MODES = ("auto", "minmax", "percentile", "clahe", "none")


@dataclass(frozen=True)
class ThermalAGC(CommandLineOptions):
    """Automatic gain control: 'minmax' stretch, 'percentile' stretch between low/high percentiles, 'clahe'
    (percentile stretch then contrast-limited adaptive equalisation), 'none' (8-bit values as they are), or
    'auto': 'none' for 8-bit frames and 'percentile' for 16-bit/float (radiometric) ones."""

    mode: str = option("auto", flag="--agc", choices=AGC_MODES, help="thermal gain control for 16-bit/"
                                                                     "radiometric frames")
    low: float = 1.0  # percentiles of the 'percentile' and 'clahe' stretch (--agc-percentiles LOW HIGH)
    high: float = 99.0
    clip_limit: float = 2.0
    tiles: int = 8

    def __post_init__(self):
        if self.mode not in AGC_MODES:
            raise ValueError(f"AGC mode must be one of {AGC_MODES}, got '{self.mode}'")
        if not 0 <= self.low < self.high <= 100:
            raise ValueError(f"AGC percentiles need 0 <= low < high <= 100, got {self.low}, {self.high}")

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Any thermal frame (uint8/uint16/float, grey or colour) → uint8 grey (H, W)."""
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.shape[2] == 3 \
            else frame[..., 0]
        mode = ("none" if grey.dtype == np.uint8 else "percentile") if self.mode == "auto" else self.mode
        if mode == "none":
            return grey if grey.dtype == np.uint8 else np.clip(grey, 0, 255).astype(np.uint8)
        values = grey.astype(np.float32)
        if mode == "minmax":
            lo, hi = float(values.min()), float(values.max())
        else:
            lo, hi = np.percentile(values, (self.low, self.high))
        out = np.clip((values - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
        if mode == "clahe":
            out = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=(self.tiles, self.tiles)).apply(out)
        return out
