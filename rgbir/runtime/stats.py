"""Live statistics: FPS, latency percentiles split into queue wait and processing, per-stage times, drops, skew.

latency = capture → result = queue wait + processing; processing = a pair's preprocess + inference + postprocess
time (what one pair costs); queue wait = the rest: pairing and the queues between the stages, in files mode mostly
read-ahead (files are read faster than they are processed, so each pair waits behind the ones read before it)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import atomic_write
from ..preflight import cannot_write
from .results import PairResult

WINDOW = 4096  # percentiles over the most recent pairs: memory stays constant however long the run


@dataclass(frozen=True)
class Count:
    """One running count: ``event`` (e.g. 'frames dropped (stale)') of a camera, a stream, a sink or the whole
    pipeline (``kind``), named ``subject``; the statistics show it as '<subject>: <event>', the metrics as a
    counter labelled with the subject."""

    kind: str  # "camera" | "stream" | "sink" | "pipeline"
    subject: str  # the camera's source, the stream's number, the sink's name; "" for the pipeline
    event: str
    value: int

    @property
    def key(self) -> str:
        """How the statistics name it: 'ir.mp4: reconnects', 'stream 0: frames dropped (skew)', 'pairs dropped
        (slow inference)'."""
        subject = f"stream {self.subject}" if self.kind == "stream" else self.subject
        return f"{subject}: {self.event}" if subject else self.event


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    pairs: int = 0
    failed: int = 0
    detections: int = 0
    latency: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    wait: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    processing: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    skew: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    stages: dict[str, deque] = field(default_factory=dict)
    recent: deque = field(default_factory=lambda: deque(maxlen=64))  # completion times for the live FPS
    counters: dict[str, int] = field(default_factory=dict)  # drops, corrupt frames, reconnects, by source
    settings: dict = field(default_factory=dict)  # the run's configuration, recorded with its figures
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # counters are shared by threads

    def add(self, result: PairResult) -> None:
        self.pairs += 1
        self.failed += result.error is not None
        self.detections += len(result.detections)
        self.latency.append(result.latency_ms)
        self.wait.append(result.wait_ms)
        self.processing.append(result.processing_ms)
        self.skew.append(abs(result.pair.skew_ms))
        for stage, ms in result.timings_ms.items():
            self.stages.setdefault(stage, deque(maxlen=WINDOW)).append(ms)
        self.recent.append(time.monotonic())

    @property
    def fps(self) -> float:
        """Pairs per second over the most recent pairs."""
        if len(self.recent) < 2:
            return 0.0
        return (len(self.recent) - 1) / max(self.recent[-1] - self.recent[0], 1e-9)

    def summary(self) -> dict:
        elapsed = time.monotonic() - self.started

        def pct(values) -> dict:
            if not values:
                return {}
            a = np.fromiter(values, float)
            return {"mean": round(float(a.mean()), 3), "p50": round(float(np.percentile(a, 50)), 3),
                    "p95": round(float(np.percentile(a, 95)), 3), "p99": round(float(np.percentile(a, 99)), 3)}

        return {
            "pairs": self.pairs, "failed": self.failed, "detections": self.detections,
            "seconds": round(elapsed, 3), "fps": round(self.pairs / elapsed, 3) if elapsed > 0 else 0.0,
            "latency_ms": pct(self.latency), "wait_ms": pct(self.wait), "processing_ms": pct(self.processing),
            "skew_ms": pct(self.skew),
            "stages_ms": {k: pct(v) for k, v in self.stages.items()}, "counters": self._counters(),
            "settings": self.settings,
        }

    def line(self) -> str:
        """One periodic status line."""
        s = self.summary()
        lat, work = s["latency_ms"], s["processing_ms"]
        drops = sum(v for k, v in self._counters().items() if "drop" in k)
        return (f"{self.pairs} pairs, {self.fps:.1f} FPS, latency p50 {lat.get('p50', 0):.1f} ms "
                f"p95 {lat.get('p95', 0):.1f} ms (processing p50 {work.get('p50', 0):.1f} ms), dropped {drops}, "
                f"failed {self.failed}")

    def _counters(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counters)

    def write_json(self, path: str | Path) -> None:
        try:
            atomic_write(path, json.dumps(self.summary(), indent=2))
        except OSError as e:  # disk full or the file gone read-only mid-run: name the file
            raise cannot_write(path, e) from e
