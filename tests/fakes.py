"""Scriptable stand-ins for runtime tests: a live camera that can die, stall or send garbage; a numpy
backend; sinks that record or dawdle."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import numpy as np

from media import frame_pair
from rgbir.metadata import InputSpec, ModelMetadata
from rgbir.runtime.backends import Backend, TensorSpec
from rgbir.runtime.outputs.sinks import Sink
from rgbir.runtime.sources import Source, SourceError


@contextlib.contextmanager
def captured_log():
    """rgbir's log messages while the block runs, as the command line words them without the time: 'warning: …'
    and 'error: …' for problems, the bare message for progress."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            prefix = "error: " if record.levelno >= logging.ERROR else "warning: " \
                if record.levelno >= logging.WARNING else ""
            lines.append(prefix + record.getMessage())

    logger, handler = logging.getLogger("rgbir"), Collect()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class FakeCamera(Source):
    """A live camera at ``fps``. ``die_at``: frame number after which it fails for ``down_for`` seconds (read
    gives None and reopening raises) before coming back; ``stall_at``: the read that blocks for ``stall_for``
    seconds; ``corrupt_every``: every n-th frame is an empty array."""

    live = True

    def __init__(self, name, modality, fps=40.0, die_at=None, down_for=0.0, stall_at=None, stall_for=0.0,
                 corrupt_every=None, size=(120, 160)):
        self.name, self.modality, self.period = name, modality, 1.0 / fps
        self.die_at, self.down_for, self.stall_at, self.stall_for = die_at, down_for, stall_at, stall_for
        self.corrupt_every, self.size = corrupt_every, size
        self.count = 0
        self.down_until = 0.0
        self.opens = 0

    def open(self):
        if time.monotonic() < self.down_until:
            raise SourceError(f"{self.name} unplugged")
        self.opens += 1

    def read(self):
        time.sleep(self.period)
        if time.monotonic() < self.down_until:
            return None
        if self.die_at is not None and self.count == self.die_at:
            self.die_at = None
            self.down_until = time.monotonic() + self.down_for
            return None
        if self.stall_at is not None and self.count == self.stall_at:
            self.stall_at = None
            time.sleep(self.stall_for)
        self.count += 1
        if self.corrupt_every and self.count % self.corrupt_every == 0:
            return np.empty((0, 0), np.uint8)
        rgb, ir = frame_pair(self.count, self.size)
        return rgb if self.modality == "rgb" else ir


class NumpyBackend(Backend):
    """Returns fixed-shape predictions derived from the input means: cheap and deterministic."""

    name = "numpy"

    def __init__(self, imgsz=(64, 80), nc=2, batch=None, delay=0.0):
        h, w = imgsz
        super().__init__(ModelMetadata("test", {i: f"c{i}" for i in range(nc)}, imgsz, batch,
                                       [InputSpec("rgb", 3, "BGR"), InputSpec("ir", 3, "BGR")], [8.0, 16.0, 32.0]),
                         [TensorSpec(n, (None, 3, h, w), np.dtype(np.float32)) for n in ("rgb", "ir")],
                         [TensorSpec("predictions", (None, 4 + nc, 8), np.dtype(np.float32))])
        self.delay = delay
        self.calls = 0

    def _infer(self, feeds):
        self.calls += 1
        time.sleep(self.delay)
        rgb = feeds["rgb"]
        b = rgb.shape[0]
        pred = np.zeros((b, 4 + self.metadata.nc, 8), np.float32)
        pred[:, :4] = np.array([20, 20, 10, 10], np.float32)[None, :, None] + np.arange(8)[None, None, :] * 6
        pred[:, 4, :] = rgb.reshape(b, -1).mean(1)[:, None] + 0.3
        return {"predictions": pred}


class RecordingSink(Sink):
    """Keeps every record; optionally sleeps per write (a slow disk) or stops the pipeline after n pairs."""

    def __init__(self, delay=0.0, stop_after=None, stop_event: threading.Event | None = None):
        self.records, self.delay, self.stop_after, self.stop_event = [], delay, stop_after, stop_event
        self.closed = False

    def write(self, result, fps):
        time.sleep(self.delay)
        self.records.append(result.record())
        if self.stop_after and len(self.records) >= self.stop_after and self.stop_event is not None:
            self.stop_event.set()

    def close(self):
        self.closed = True
