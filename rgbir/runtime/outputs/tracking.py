"""Multi-object tracking (--track bytetrack): each detection gets a ``track_id`` that stays with its object from
frame to frame, from one tracker per camera pair. The tracker is ByteTrack from Roboflow's ``trackers`` package
(Kalman-predicted boxes matched to detections by IoU, low-score detections kept for a second matching pass), run
on the RGB boxes; rgbir numbers each stream's tracks 1, 2, … in the order they are confirmed."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec

import numpy as np

from ...errors import RgbirError
from ...options import CommandLineOptions, option
from ..results import PairResult

TRACKERS = ("bytetrack",)


@dataclass
class TrackingConfig(CommandLineOptions):
    tracker: str | None = option(None, flag="--track", choices=TRACKERS,
                                 help="give each detection a track_id (pip install 'rgbir[track]')")
    thresh: float = option(0.6, flag="--track-thresh", parse=float, metavar="SCORE",
                           help="detections scoring at least this are matched first and may start tracks; lower "
                                "ones only extend tracks (ByteTrack's second pass)")
    buffer: int = option(30, flag="--track-buffer", parse=int, metavar="FRAMES",
                         help="frames a lost track waits for its object to reappear")
    min_frames: int = option(2, flag="--track-min-frames", parse=int, metavar="FRAMES",
                             help="frames in a row a new track needs before it gets an id")

    def validate(self) -> None:
        if self.tracker is None:
            return
        if self.tracker not in TRACKERS:
            raise RgbirError(f"--track {self.tracker}: choose {', '.join(TRACKERS)}")
        if not 0 <= self.thresh <= 1 or self.buffer < 1 or self.min_frames < 1:
            raise RgbirError("--track-thresh must be in 0..1, --track-buffer and --track-min-frames >= 1")
        if find_spec("trackers") is None:
            raise RgbirError("--track needs the trackers package: pip install 'rgbir[track]'")


class Tracker:
    """``update(result)`` sets the ``track_id`` of each detection of a pair (None until its track is confirmed);
    pairs must come in order within their stream, as the pipeline writes them."""

    def __init__(self, config: TrackingConfig):
        import supervision
        from trackers import ByteTrackTracker  # imported here (a second) rather than as the first pair waits

        self.config, self.detections, self.byte_track = config, supervision.Detections, ByteTrackTracker
        self.streams: dict[int, tuple[ByteTrackTracker, dict[int, int]]] = {}  # stream → (tracker, its id → ours)

    def update(self, result: PairResult) -> None:
        if result.error is not None:
            return
        tracker, ids = self.streams.get(result.pair.stream) or self._add(result.pair.stream)
        dets = result.detections
        tracked = tracker.update(self.detections(
            xyxy=np.array([d.box_rgb for d in dets], np.float32).reshape(-1, 4),
            confidence=np.array([d.score for d in dets], np.float32),
            class_id=np.array([d.cls for d in dets], int), data={"row": np.arange(len(dets))}))
        for row, track in zip(tracked.data.get("row", ()), tracked.tracker_id):
            if track >= 0:  # the library's ids run across all its trackers: each stream gets its own 1, 2, …
                dets[row].track_id = ids.setdefault(int(track), len(ids) + 1)

    def _add(self, stream: int):
        c = self.config
        self.streams[stream] = self.byte_track(lost_track_buffer=c.buffer, minimum_consecutive_frames=c.min_frames,
                                               track_activation_threshold=c.thresh,
                                               high_conf_det_threshold=c.thresh), {}
        return self.streams[stream]
