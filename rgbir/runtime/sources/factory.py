"""Source spec string → Source: '0' or '/dev/video0' (device), 'rtsp://…' / 'http://…' (stream),
'… ! appsink' (GStreamer pipeline), a directory (image folder), anything else a video file."""

from __future__ import annotations

from pathlib import Path

from .base import Source, SourceError
from .folder import ImageFolderSource
from .opencv import VideoSource

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "udp")


def source_kind(spec: str | int) -> str:
    """What a spec names: 'device', 'stream', 'gstreamer', 'folder' or 'file'; SourceError when none fits."""
    text = str(spec).strip()
    if text.isdigit() or text.startswith("/dev/video"):
        return "device"
    if text.split("://", 1)[0].lower() in STREAM_SCHEMES:
        return "stream"
    if "!" in text:
        return "gstreamer"
    if Path(text).is_dir():
        return "folder"
    if Path(text).is_file():
        return "file"
    raise SourceError(f"source '{text}' is neither a device, a stream URL, a GStreamer pipeline, "
                      "an image folder nor an existing video file")


def open_source(spec: str | int, raw: bool = False, **options) -> Source:
    """The Source a spec names (not opened yet). A pixel format (``fourcc``) is for camera devices only: a file
    or stream says its own, so one given for them is refused rather than ignored."""
    text = str(spec).strip()
    kind = source_kind(text)
    if options.get("fourcc") and kind != "device":
        raise SourceError(f"--ir-fourcc applies to camera devices (an index or /dev/videoN), not to the {kind} "
                          f"{text}: leave it out")
    if kind == "folder":
        return ImageFolderSource(Path(text))
    return VideoSource(int(text) if text.isdigit() else text, kind, raw=raw, **options)
