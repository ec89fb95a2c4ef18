"""One processed pair: detections in both cameras' pixel coordinates, timings, and its JSON record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .frames import FramePair

PROCESSING = ("preprocess", "infer", "postprocess")  # the stages whose times make up a pair's processing time


@dataclass
class Detection:
    cls: int
    name: str
    score: float
    box_rgb: list[float]  # xyxy in RGB frame pixels
    box_ir: list[float] | None = None  # xyxy in IR frame pixels
    track_id: int | None = None  # with --track: the object's identity in its stream, 1…


@dataclass
class PairResult:
    pair: FramePair
    detections: list[Detection] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0  # capture → result: queue wait + processing
    error: str | None = None
    _json: bytes | None = field(default=None, init=False, repr=False, compare=False)  # encoded once for every sink

    @property
    def processing_ms(self) -> float:
        """Preprocess + inference + postprocess time of this pair (its share of a batched call)."""
        return sum(self.timings_ms.get(stage, 0.0) for stage in PROCESSING)

    @property
    def wait_ms(self) -> float:
        """The rest of the latency: pairing and the queues between the stages (in files mode mostly read-ahead)."""
        return max(self.latency_ms - self.processing_ms, 0.0)

    def record(self) -> dict:
        """The JSON Lines record: which frames (``file``: the image's name from a folder, null otherwise; a video
        file's frame index is ``seq``), when, how far apart, what was found."""
        p = self.pair

        def frame(f):
            return None if f is None else {"seq": f.seq, "time": round(f.wall_time, 6), "source": f.source,
                                            "file": f.file}

        return {
            "stream": p.stream, "index": p.index, "rgb": frame(p.rgb), "ir": frame(p.ir),
            "skew_ms": round(p.skew_ms, 3), "reused": p.reused, "latency_ms": round(self.latency_ms, 3),
            "wait_ms": round(self.wait_ms, 3), "processing_ms": round(self.processing_ms, 3),
            "detections": [{"class": d.cls, "name": d.name, "score": round(d.score, 5),
                            "box_rgb": [round(v, 2) for v in d.box_rgb],
                            "box_ir": None if d.box_ir is None else [round(v, 2) for v in d.box_ir],
                            "track_id": d.track_id}
                           for d in self.detections],
            "error": self.error,
        }

    def json_line(self) -> bytes:
        """The record as one JSON Lines line without its newline: what --json writes and brokers publish. Encoded
        once, when the first sink asks (the sinks run after tracking, so the result is final by then)."""
        if self._json is None:
            self._json = json.dumps(self.record()).encode()
        return self._json
