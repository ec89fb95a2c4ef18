"""Standard result files that other tools read: YOLO label files per frame (--yolo-txt) and MOT Challenge tracks
(--mot). Both are in RGB frame coordinates; camera pair N > 0 writes beside the first (``stream_path``)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from ...data.dataset import label_line
from ...preflight import cannot_write
from ..results import PairResult
from .sinks import Sink, stream_path


class YoloTxtSink(Sink):
    """One file per pair: 'class cx cy w h conf' per detection, normalised to the RGB frame; named after the RGB
    image's file stem (image folders) or the frame's number (000042.txt). A pair without detections gets an empty
    file; a failed pair gets none (nothing is known about it)."""

    name = "yolo-txt"

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.made: set[Path] = set()

    def write(self, result: PairResult, fps: float | None) -> None:
        frame = result.pair.rgb
        if result.error is not None or frame.image is None:
            return
        h, w = frame.image.shape[:2]
        lines = [f"{label_line(d.cls, d.box_rgb, w, h)} {d.score:.5f}\n" for d in result.detections]
        directory = stream_path(self.directory, result.pair.stream)
        path = directory / f"{Path(frame.file).stem if frame.file else f'{frame.seq:06d}'}.txt"
        try:
            if directory not in self.made:
                directory.mkdir(parents=True, exist_ok=True)
                self.made.add(directory)
            path.write_text("".join(lines))
        except OSError as e:
            raise cannot_write(path, e) from e


class MotSink(Sink):
    """MOT Challenge tracks (MOT15-17 layout): 'frame,id,x,y,w,h,conf,-1,-1,-1' per tracked detection, the frame
    numbered from 1 as its RGB source numbers it, the box's top-left corner and size in RGB pixels. Detections
    without a confirmed track are left out. Flushed per pair."""

    name = "mot"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.files: dict[int, tuple[Path, TextIO]] = {}
        self._open(0)  # the first camera pair's file exists from the start, as the other sinks' do

    def write(self, result: PairResult, fps: float | None) -> None:
        frame = result.pair.rgb.seq + 1
        lines = [f"{frame},{d.track_id},{d.box_rgb[0]:.2f},{d.box_rgb[1]:.2f},{d.box_rgb[2] - d.box_rgb[0]:.2f},"
                 f"{d.box_rgb[3] - d.box_rgb[1]:.2f},{d.score:.5f},-1,-1,-1\n"
                 for d in result.detections if d.track_id is not None]
        path, file = self.files.get(result.pair.stream) or self._open(result.pair.stream)
        try:
            file.write("".join(lines))
            file.flush()
        except OSError as e:
            raise cannot_write(path, e) from e

    def _open(self, stream: int) -> tuple[Path, TextIO]:
        path = stream_path(self.path, stream)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.files[stream] = path, open(path, "w")
        except OSError as e:
            raise cannot_write(path, e) from e
        return self.files[stream]

    def close(self) -> None:
        for path, file in self.files.values():
            try:
                file.close()
            except OSError as e:
                raise cannot_write(path, e) from e
