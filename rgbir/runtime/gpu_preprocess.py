"""Preprocessing on the GPU for the TensorRT and PyTorch backends: 8-bit frames go up as they are (a third of a
float input's bytes at 640x512 → 640x640) and one kernel letterboxes, orders channels and scales them straight
into the model's input buffer. The kernel (``rgbirLetterboxLaunch``) ships in the rgbir plugin library; its
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


def check_frame(frame: np.ndarray) -> None:
    """The kernel takes 8-bit BGR or grey frames; anything else is one clear error."""
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
        raise RgbirError(f"GPU preprocessing takes 8-bit BGR or grey frames, got {frame.dtype} {frame.shape}: "
                         "thermal frames go through the AGC first")


class LetterboxKernel:
    """The plugin library's letterbox launcher on raw device pointers, with the CPU path's geometry: shared by
    the TensorRT backend (cuda-python buffers) and the PyTorch backend (torch tensors)."""

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

    def __call__(self, src: int, frame_shape: tuple[int, ...], spec: InputSpec, dst: int, dtype: np.dtype,
                 stream: int) -> LetterboxInfo:
        """Letterbox the contiguous uint8 frame at ``src`` into one (C, H, W) input at ``dst`` on ``stream``."""
        h, w = frame_shape[:2]
        channels = 1 if len(frame_shape) == 2 else frame_shape[2]
        (rh, rw), info = letterbox_geometry((h, w), self.meta.imgsz)
        dh, dw = self.meta.imgsz
        code = self.launch(src, h, w, w * channels, channels, dst, dh, dw, spec.channels,
                           DTYPE_CODES[np.dtype(dtype)], rh, rw, info.pad_top, info.pad_left,
                           int(spec.channels == 3 and spec.channel_order == "RGB"), self.pad, self.scale, stream)
        if code:
            raise RgbirError(f"GPU letterbox failed with code {code} for a {w}x{h} frame (input '{spec.name}')")
        return info


class DeviceLetterbox:
    """Stages frames in page-locked memory, uploads them, and letterboxes them into device input buffers."""

    def __init__(self, meta: ModelMetadata, library: str | Path | None = None):
        self.kernel = LetterboxKernel(meta, library)
        self.staging: dict[tuple[str, int], cuda.Upload] = {}  # one per input and batch slot

    def __call__(self, frame: np.ndarray, spec: InputSpec, index: int, dst: int, dtype: np.dtype,
                 stream: cuda.Stream, mapped: bool = False) -> LetterboxInfo:
        """Letterbox ``frame`` (uint8 BGR or grey) into input ``spec.name``'s batch slot ``index`` at ``dst``."""
        check_frame(frame)
        frame = np.ascontiguousarray(frame)
        # integrated GPU (mapped): the kernel reads the page-locked frame in place
        src = self.staging.setdefault((spec.name, index), cuda.Upload(mapped)).put(frame, stream)
        dh, dw = self.kernel.meta.imgsz
        plane = spec.channels * dh * dw * np.dtype(dtype).itemsize
        return self.kernel(src, frame.shape, spec, dst + index * plane, dtype, int(stream.handle))

    def free(self) -> None:
        for upload in self.staging.values():
            upload.free()
        self.staging.clear()
