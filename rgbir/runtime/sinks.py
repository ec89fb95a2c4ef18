"""Where results go: JSON Lines, an annotated video file, a window, an MJPEG preview on localhost."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from ..errors import RgbirError
from ..preflight import cannot_serve, cannot_write
from .draw import side_by_side
from .results import PairResult

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}  # file suffix → OpenCV fourcc


class Sink(ABC):
    """Receives every processed pair exactly once, in order; ``close`` finalises files."""

    name = "sink"
    needs_images = False

    @abstractmethod
    def write(self, result: PairResult, fps: float | None) -> None: ...

    def close(self) -> None:
        pass


class JsonlSink(Sink):
    """One JSON object per line and pair, flushed per line so an interruption loses nothing written. If a write
    fails (disk full), the file keeps every whole record written before it and the run ends naming the file."""

    name = "json"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "wb")
        except OSError as e:
            raise cannot_write(self.path, e) from e
        self.size = 0  # bytes of whole records on disk

    def write(self, result: PairResult, fps: float | None) -> None:
        line = (json.dumps(result.record()) + "\n").encode()
        try:
            self.file.write(line)
            self.file.flush()
        except OSError as e:
            self._abandon()
            raise cannot_write(self.path, e) from e
        self.size += len(line)

    def _abandon(self) -> None:
        """After a failed write: close without raising again (the unwritten bytes cannot be flushed) and cut a
        partly written last line, so the file stays valid JSON Lines."""
        with contextlib.suppress(OSError):
            self.file.close()
        if self.path.is_file():
            with contextlib.suppress(OSError):
                os.truncate(self.path, self.size)

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as e:
            raise cannot_write(self.path, e) from e


class VideoSink(Sink):
    """Annotated side-by-side video; codec from the suffix (VIDEO_CODECS). The writer opens with the first frame,
    whose size it needs."""

    name = "video"
    needs_images = True

    def __init__(self, path: str | Path, fps: float = 30.0, height: int = 480):
        self.path, self.fps, self.height = Path(path), fps, height
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise cannot_write(self.path, e) from e
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None

    def write(self, result: PairResult, fps: float | None) -> None:
        canvas = side_by_side(result, self.height, fps)
        if self.writer is None:
            self.size = (canvas.shape[1], canvas.shape[0])
            codec = VIDEO_CODECS.get(self.path.suffix.lower(), "mp4v")
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, self.size)
            if not self.writer.isOpened():
                raise RgbirError(f"cannot write video {self.path}: OpenCV could not open a {codec} writer for it")
        if (canvas.shape[1], canvas.shape[0]) != self.size:
            canvas = cv2.resize(canvas, self.size)
        self.writer.write(canvas)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def gui_available() -> bool:
    try:
        cv2.namedWindow("rgbir-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("rgbir-probe")
        return True
    except cv2.error:
        return False


class WindowSink(Sink):
    """A desktop window; 'q' or Esc asks the pipeline to stop."""

    name = "window"
    needs_images = True

    def __init__(self, stop: threading.Event, title: str = "rgbir"):
        if not gui_available():
            raise RgbirError("this OpenCV has no GUI (opencv-python-headless) or there is no display: "
                             "pip install opencv-python for --show, or use --video / --mjpeg")
        self.stop, self.title = stop, title

    def write(self, result: PairResult, fps: float | None) -> None:
        cv2.imshow(self.title, side_by_side(result, fps=fps))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop.set()

    def close(self) -> None:
        cv2.destroyAllWindows()


class MjpegSink(Sink):
    """Serves the newest annotated frame as an MJPEG stream on http://127.0.0.1:PORT/ (localhost only)."""

    name = "mjpeg"
    needs_images = True

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.latest: bytes | None = None
        self.changed = threading.Condition()
        self.closed = False
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while True:
                        with sink.changed:
                            sink.changed.wait(1.0)
                            if sink.closed:
                                return
                            jpeg = sink.latest
                        if jpeg is None:
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, *args):  # keep the console for the pipeline's own messages
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise cannot_serve("MJPEG", host, port, e) from e
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="mjpeg", daemon=True)
        self.thread.start()

    def write(self, result: PairResult, fps: float | None) -> None:
        ok, jpeg = cv2.imencode(".jpg", side_by_side(result, fps=fps))
        if ok:
            with self.changed:
                self.latest = np.asarray(jpeg).tobytes()
                self.changed.notify_all()

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()
