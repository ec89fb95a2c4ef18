"""Everything OpenCV's VideoCapture opens: USB/V4L2 devices, video files, RTSP/HTTP streams, GStreamer
pipelines (e.g. Jetson CSI cameras through nvarguscamerasrc)."""

from __future__ import annotations

import cv2
import numpy as np

from .base import Source, SourceError


def gstreamer_available() -> bool:
    info = cv2.getBuildInformation()
    line = next((text for text in info.splitlines() if "GStreamer" in text), "")
    return "YES" in line


class VideoSource(Source):
    def __init__(self, spec: str | int, kind: str, raw: bool = False, fourcc: str | None = None,
                 size: tuple[int, int] | None = None, fps: float | None = None):
        self.spec, self.kind = spec, kind  # kind: "device" | "file" | "stream" | "gstreamer"
        self.name = str(spec)
        self.live = kind != "file"
        self.raw = raw  # keep the camera's native format (e.g. 16-bit Y16 thermal) instead of converting to BGR
        self.fourcc, self.size, self.fps = fourcc, size, fps
        self.capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        if self.kind == "gstreamer" and not gstreamer_available():
            raise SourceError("this OpenCV has no GStreamer support: install an OpenCV built with GStreamer "
                              "(JetPack's python3-opencv) to use a GStreamer pipeline source")
        api = cv2.CAP_GSTREAMER if self.kind == "gstreamer" else cv2.CAP_ANY
        capture = cv2.VideoCapture(self.spec, api)
        if not capture.isOpened():
            raise SourceError(f"cannot open {self.kind} source {self.spec}")
        if self.fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        if self.size:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if self.fps:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        if self.raw and self.kind == "device":  # V4L2 Y16 thermal cameras: keep the 16-bit counts
            capture.set(cv2.CAP_PROP_CONVERT_RGB, 0)
        self.reported_fps = capture.get(cv2.CAP_PROP_FPS)
        self.capture = capture

    def read(self) -> np.ndarray | None:
        if self.capture is None:
            return None
        ok, frame = self.capture.read()
        return frame if ok else None

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


def rate_mismatch(rgb: Source, ir: Source | None) -> str | None:
    """A warning when a pair's two video files report different frame rates (call after opening): files are
    paired frame for frame, so a 30 fps file against a 60 fps one drifts apart in time."""
    if not (isinstance(rgb, VideoSource) and isinstance(ir, VideoSource) and rgb.kind == ir.kind == "file"):
        return None
    rates = rgb.reported_fps, ir.reported_fps
    if not all(r > 0 for r in rates) or round(rates[0], 2) == round(rates[1], 2):  # 0: the file does not say
        return None
    return (f"{rgb.name} runs at {rates[0]:g} fps and {ir.name} at {rates[1]:g} fps, but video files are paired "
            "frame for frame: their pairs drift apart in time")
