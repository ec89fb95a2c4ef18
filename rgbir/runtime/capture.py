"""Capture threads: read a source, stamp frames, convert thermal frames, hand them to an outbox.

Both outboxes take ``put(frame)`` and ``close()``. File sources feed a ``FrameQueue`` (bounded, blocking puts:
lockstep, no drops), as fast as they can be read or, with a ``period`` (--realtime), one frame per period as a
camera would. Live sources feed a ``LatestSlot`` that keeps only the newest frame (stale frames are dropped, not
queued), and are reopened with exponential backoff when they fail.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from .frames import Frame
from .sources import Source, SourceError

log = logging.getLogger(__name__)
END = None  # end-of-stream marker on file queues


class FrameQueue:
    """A file source's outbox: a bounded FIFO whose ``put`` waits for room (nothing is dropped) until the run
    stops, and whose ``close`` always delivers the END marker the pairer waits for."""

    dropped = 0  # never drops (the same counter as LatestSlot's)

    def __init__(self, size: int, stop: threading.Event):
        self.queue: queue.Queue = queue.Queue(size)
        self.stop = stop

    def put(self, frame: Frame) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> Frame | None:
        """The next frame, or END once the source has ended or the run stops."""
        while True:
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return END

    def close(self) -> None:
        while True:
            try:
                self.queue.put(END, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():  # stopping: unpaired frames are not processed; make room
                    while True:
                        try:
                            self.queue.get_nowait()
                        except queue.Empty:
                            break


class LatestSlot:
    """Holds the newest frame of a live source; older unread frames are counted as dropped. ``clock`` says when
    frames arrive (a stand-in clock makes stall detection testable without waiting)."""

    def __init__(self, changed: threading.Condition, clock: Callable[[], float] = time.monotonic):
        self.changed, self.clock = changed, clock
        self.frame: Frame | None = None
        self.fresh = False
        self.dropped = 0
        self.last_arrival = clock()
        self.closed = False

    def put(self, frame: Frame) -> None:
        with self.changed:
            if self.fresh:
                self.dropped += 1
            self.frame, self.fresh, self.last_arrival = frame, True, self.clock()
            self.changed.notify_all()

    def take(self) -> Frame | None:
        """The newest frame if it has not been taken yet (call with ``changed`` held)."""
        if not self.fresh:
            return None
        self.fresh = False
        return self.frame

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()


def valid_image(image) -> bool:
    return isinstance(image, np.ndarray) and image.ndim in (2, 3) and image.size > 0 and min(image.shape[:2]) > 1


class CaptureThread(threading.Thread):
    """Reads one source until it ends or ``stop`` is set."""

    def __init__(self, source: Source, outbox: FrameQueue | LatestSlot, stop: threading.Event,
                 convert: Callable[[np.ndarray], np.ndarray] | None = None, max_backoff: float = 8.0,
                 period: float | None = None):
        super().__init__(name=f"capture {source.name}", daemon=True)
        self.source, self.outbox, self.stop_event = source, outbox, stop
        self.convert = convert
        self.period = period  # seconds between frames when paced (--realtime); None: read at full speed
        self.started = 0.0
        self.max_backoff = max_backoff
        self.seq = 0
        self.corrupt = 0
        self.reconnects = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # a source failing in an unforeseen way must not kill the pipeline silently
            self.error = f"{self.source.name}: {type(e).__name__}: {e}"
            log.error(f"capture stopped: {self.error}")
        finally:
            self.source.close()
            self.outbox.close()

    def _loop(self) -> None:
        self.started = time.monotonic()
        while not self.stop_event.is_set():
            if self.period:
                self._pace()
            image = self.source.read()
            if image is None:
                if not self.source.live:
                    return
                self._reconnect()
                continue
            now, wall = time.monotonic(), time.time()
            file = self.source.file
            if not valid_image(image):
                self.corrupt += 1
                named = f" ({file})" if file else ""
                outcome = "skipped" if self.source.live else "recorded as a failed pair"
                log.info(f"{self.source.name}: corrupt frame #{self.seq}{named} {outcome}")
                if self.source.live:
                    continue
                image = None  # file mode: keep lockstep, the pair is recorded as failed
            elif self.convert is not None:
                image = self.convert(image)
            frame = Frame(image, self.seq, now, wall, self.source.name, file)
            self.seq += 1
            self.outbox.put(frame)

    def _pace(self) -> None:
        """Wait until this frame is due (``seq`` periods after the start), or until the run stops."""
        self.stop_event.wait(max(0.0, self.started + self.seq * self.period - time.monotonic()))

    def _reconnect(self) -> None:
        delay = 0.25
        log.warning(f"{self.source.name}: no frame; reconnecting")
        while not self.stop_event.is_set():
            self.source.close()
            try:
                self.source.open()
                self.reconnects += 1
                log.info(f"{self.source.name}: reconnected")
                return
            except SourceError as e:
                log.info(f"{self.source.name}: {e}; retry in {delay:.2f} s")
            self.stop_event.wait(delay)
            delay = min(delay * 2, self.max_backoff)
