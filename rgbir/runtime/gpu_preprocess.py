"""Preprocessing on the GPU for the TensorRT backend: 8-bit frames go up as they are (a third of a float
input's bytes at 640x512 → 640x640) and one kernel letterboxes, orders channels and scales them straight into
the engine's input buffer. The kernel (``rgbirLetterboxLaunch``) ships in the rgbir plugin library; its
semantics are in ``rgbir/plugins/csrc/letterbox/README.md``. Geometry comes from the CPU path's
``letterbox_geometry``, so boxes map back identically.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from ..errors import RgbirError
from ..metadata import InputSpec, ModelMetadata
from ..trt import cuda
from .preprocess import LetterboxInfo, letterbox_geometry

DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}


class DeviceLetterbox:
    """Stages frames in page-locked memory, uploads them, and letterboxes them into device input buffers."""

    def __init__(self, meta: ModelMetadata, library: str | Path | None = None):
        from ..plugins.loader import find_library

        path = find_library(library)
        try:
            self.launch = ctypes.CDLL(str(path)).rgbirLetterboxLaunch
        except AttributeError as e:
            raise RgbirError(f"{path} has no GPU letterbox kernel: rebuild it with 'rgbir plugins compile'") from e
        self.launch.restype = ctypes.c_int32
        self.launch.argtypes = [ctypes.c_void_p] + [ctypes.c_int32] * 4 + [ctypes.c_void_p] + [ctypes.c_int32] * 9 \
            + [ctypes.c_float, ctypes.c_float, ctypes.c_void_p]
        self.meta = meta
        self.pad = float(meta.letterbox.get("pad_value", 114))
        self.scale = float(meta.normalization.get("scale", 1 / 255))
        self.staging: dict[tuple[str, int], cuda.Upload] = {}  # one per input and batch slot

    def __call__(self, frame: np.ndarray, spec: InputSpec, index: int, dst: int, dtype: np.dtype,
                 stream: cuda.Stream, mapped: bool = False) -> LetterboxInfo:
        """Letterbox ``frame`` (uint8 BGR or grey) into input ``spec.name``'s batch slot ``index`` at ``dst``."""
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
            raise RgbirError(f"GPU preprocessing takes 8-bit BGR or grey frames, got {frame.dtype} {frame.shape}: "
                             "thermal frames go through the AGC first")
        frame = np.ascontiguousarray(frame)
        h, w = frame.shape[:2]
        channels = 1 if frame.ndim == 2 else frame.shape[2]
        (rh, rw), info = letterbox_geometry((h, w), self.meta.imgsz)
        dh, dw = self.meta.imgsz
        # integrated GPU (mapped): the kernel reads the page-locked frame in place
        src = self.staging.setdefault((spec.name, index), cuda.Upload(mapped)).put(frame, stream)
        plane = spec.channels * dh * dw * np.dtype(dtype).itemsize
        code = self.launch(src, h, w, w * channels, channels, dst + index * plane, dh, dw, spec.channels,
                           DTYPE_CODES[np.dtype(dtype)], rh, rw, info.pad_top, info.pad_left,
                           int(spec.channels == 3 and spec.channel_order == "RGB"), self.pad, self.scale,
                           int(stream.handle))
        if code:
            raise RgbirError(f"GPU letterbox failed with code {code} for a {w}x{h} frame (input '{spec.name}')")
        return info

    def free(self) -> None:
        for upload in self.staging.values():
            upload.free()
        self.staging.clear()
