"""Where results go: JSON Lines, an annotated video file, a window, an MJPEG preview on localhost (and, in their
own modules, message brokers and standard result files)."""

from __future__ import annotations

import contextlib
import os
import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from ...errors import RgbirError
from ...preflight import cannot_serve, cannot_write
from ..results import PairResult
from ..stats import Count
from .draw import side_by_side

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}  # file suffix → OpenCV fourcc


class Sink(ABC):
    """Receives every processed pair exactly once, in order; ``close`` finalises files."""

    name = "sink"
    needs_images = False

    @abstractmethod
    def write(self, result: PairResult, fps: float | None) -> None: ...

    def close(self) -> None:
        pass

    def counts(self) -> list[Count]:
        """The sink's running counts for the statistics and metrics (a broker's drops and reconnections)."""
        return []


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
        line = result.json_line() + b"\n"
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


def stream_path(path: Path, stream: int) -> Path:
    """The video file of camera pair ``stream``: ``path`` itself for the first pair, ``STEM-N.SUFFIX`` for pair N
    (out.mp4, out-1.mp4, out-2.mp4, …)."""
    return path if stream == 0 else path.with_name(f"{path.stem}-{stream}{path.suffix}")


class VideoSink(Sink):
    """Annotated side-by-side video, one file per camera pair (``stream_path``); codec from the suffix
    (VIDEO_CODECS). A pair's writer opens with its first frame, whose size it needs. A frame the encoder cannot
    write (disk full, file size limit) ends the run naming the file and the cause, like the JSON Lines sink, and so
    does a video that closes cut short; the frames written before stay. (OpenCV's own warnings are kept quiet while
    the sink is open: it reports the failure itself, once.)"""

    name = "video"
    needs_images = True

    def __init__(self, path: str | Path, fps: float = 30.0, height: int = 480):
        self.path, self.fps, self.height = Path(path), fps, height
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise cannot_write(self.path, e) from e
        self.writers: dict[int, tuple[cv2.VideoWriter, tuple[int, int]]] = {}  # stream → (writer, frame size)
        self.log_level = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

    def write(self, result: PairResult, fps: float | None) -> None:
        canvas = side_by_side(result, self.height, fps)
        stream = result.pair.stream
        writer, size = self.writers.get(stream) or self._open(stream, (canvas.shape[1], canvas.shape[0]))
        if (canvas.shape[1], canvas.shape[0]) != size:
            canvas = cv2.resize(canvas, size)
        if writer.write(canvas) is False:  # OpenCV >= 5 says whether the frame was written
            path = stream_path(self.path, stream)
            raise RgbirError(f"cannot write video {path}: {out_of_room(path) or 'the encoder failed to write a frame'}")

    def _open(self, stream: int, size: tuple[int, int]) -> tuple[cv2.VideoWriter, tuple[int, int]]:
        path = stream_path(self.path, stream)
        codec = VIDEO_CODECS.get(path.suffix.lower(), "mp4v")
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), self.fps, size)
        if not writer.isOpened():
            raise RgbirError(f"cannot write video {path}: OpenCV could not open a {codec} writer for it")
        self.writers[stream] = writer, size
        return writer, size

    def close(self) -> None:
        """Finish every file; one the encoder could not finish (it buffers, so the failure may come only now, and
        OpenCV does not report it) is told by the room left: the file size limit reached, or the disk full."""
        cut = []
        for stream, (writer, _) in self.writers.items():
            writer.release()
            path = stream_path(self.path, stream)
            reason = out_of_room(path)
            if reason:
                cut.append(f"cannot write video {path}: {reason}; it is cut short")
        cv2.utils.logging.setLogLevel(self.log_level)
        if cut:
            raise RgbirError(cut[0])


ROOM = 1 << 16  # bytes: more than one buffered write of the encoder (FFmpeg writes 32 KiB at a time)


def out_of_room(path: Path) -> str | None:
    """Why writes to ``path`` fail, when the system tells: the file ends at the file size limit (ulimit -f), or its
    disk has no room left (counting what root may use, if root); None when neither holds."""
    import resource

    size = path.stat().st_size if path.is_file() else 0
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size + ROOM > limit:
        return f"File too large (the file size limit, ulimit -f, is {limit} bytes)"
    disk = os.statvfs(path.parent)
    if (disk.f_bfree if os.geteuid() == 0 else disk.f_bavail) * disk.f_frsize < ROOM:
        return "No space left on device"
    return None


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
