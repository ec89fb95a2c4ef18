"""One processed pair: detections in both cameras' pixel coordinates, timings, and its JSON record."""

from __future__ import annotations

from dataclasses import dataclass, field

from .frames import FramePair


@dataclass
class Detection:
    cls: int
    name: str
    score: float
    box_rgb: list[float]  # xyxy in RGB frame pixels
    box_ir: list[float] | None = None  # xyxy in IR frame pixels


@dataclass
class PairResult:
    pair: FramePair
    detections: list[Detection] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    error: str | None = None

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
            "detections": [{"class": d.cls, "name": d.name, "score": round(d.score, 5),
                            "box_rgb": [round(v, 2) for v in d.box_rgb],
                            "box_ir": None if d.box_ir is None else [round(v, 2) for v in d.box_ir]}
                           for d in self.detections],
            "error": self.error,
        }
