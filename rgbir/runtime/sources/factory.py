"""Source spec string → Source: '0' or '/dev/video0' (device), 'rtsp://…' / 'http://…' (stream),
'… ! appsink' (GStreamer pipeline), a directory (image folder), anything else a video file."""

from __future__ import annotations

from pathlib import Path

from .base import Source, SourceError
from .folder import ImageFolderSource
from .opencv import VideoSource


def open_source(spec: str | int, raw: bool = False, **options) -> Source:
    text = str(spec).strip()
    if text.isdigit():
        return VideoSource(int(text), "device", raw=raw, **options)
    if text.startswith("/dev/video"):
        return VideoSource(text, "device", raw=raw, **options)
    if text.split("://", 1)[0].lower() in ("rtsp", "rtsps", "http", "https", "rtmp", "udp"):
        return VideoSource(text, "stream", raw=raw, **options)
    if "!" in text:
        return VideoSource(text, "gstreamer", raw=raw, **options)
    path = Path(text)
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        return VideoSource(text, "file", raw=raw, **options)
    raise SourceError(f"source '{text}' is neither a device, a stream URL, a GStreamer pipeline, "
                      "an image folder nor an existing video file")
