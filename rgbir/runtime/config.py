"""Pipeline settings: typed dataclasses, from command-line flags or one YAML file."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from ..errors import RgbirError
from ..metadata import PostprocessSpec
from ..preflight import free_port, readable_file, writable_file
from .pairing import PairingConfig
from .thermal import ThermalAGC


@dataclass
class StreamConfig:
    """One camera pair: source specs for the visible and the thermal camera."""

    rgb: str
    ir: str | None = None
    ir_fourcc: str | None = None  # e.g. "Y16 " for radiometric V4L2 thermal cameras (16-bit frames)

    def validate(self) -> None:
        if self.ir_fourcc and not self.ir:
            raise RgbirError("--ir-fourcc is the thermal camera's pixel format: give --ir too, or leave it out")


@dataclass
class SinkConfig:
    json: str | None = None  # JSON Lines file
    video: str | None = None  # annotated side-by-side video file
    show: bool = False  # desktop window
    mjpeg_port: int | None = None  # MJPEG preview on http://127.0.0.1:PORT/
    video_fps: float = 30.0

    def validate(self) -> None:
        """Files writable, video suffix known, port free: checked before the model loads, not mid-run."""
        from .sinks import VIDEO_CODECS

        if self.json:
            writable_file(self.json, "JSON Lines")
        if self.video:
            writable_file(self.video, "video", tuple(VIDEO_CODECS))
        if self.mjpeg_port is not None:
            free_port(self.mjpeg_port, "MJPEG")


@dataclass
class PipelineConfig:
    model: str
    streams: list[StreamConfig]
    backend: str = "auto"  # "auto" (from the file: .onnx, .engine, weights) | "onnxruntime" | "tensorrt" | "pytorch"
    providers: list[str] | None = None  # ONNX Runtime execution providers, in preference order
    device: str | None = None  # GPU for TensorRT ('0', 'cuda:1') or PyTorch ('cpu', 'cuda')
    cuda_graph: bool = False  # TensorRT: replay copy-in/execute/copy-out as one CUDA graph
    contexts: int = 1  # TensorRT: execution contexts (one per concurrent caller)
    gpu_preprocess: bool = False  # TensorRT: letterbox 8-bit frames on the GPU instead of the CPU
    imgsz: tuple[int, int] | None = None  # PyTorch backend's network input (default 640); exports have their own
    # detection thresholds; None: the graph's own when it was exported with NMS, else 0.25, 0.7 and 300
    conf: float | None = None
    iou: float | None = None
    max_det: int | None = None
    classes: list[int] | None = None
    mode: str = "auto"  # "auto" | "files" | "live": files pair in lockstep without drops
    pairing: PairingConfig = field(default_factory=PairingConfig)
    thermal: ThermalAGC = field(default_factory=ThermalAGC)
    registration: str | None = None  # IR → RGB calibration file (rgbir calibrate)
    batch: int = 1  # pairs per backend call (several camera pairs share one call)
    queue_size: int = 4
    sinks: SinkConfig = field(default_factory=SinkConfig)
    stats_interval: float = 5.0  # seconds between status lines; 0 = none
    stats_json: str | None = None
    realtime: bool = False  # pace video files and image folders at their frame rate (a video's own, or fps)
    fps: float | None = None  # the frame rate --realtime paces at (image folders need it; overrides a video's)
    max_frames: int | None = None  # stop after this many pairs from each camera pair
    duration: float | None = None  # stop after this many seconds

    def validate(self) -> None:
        """Everything checkable before the model loads; a wrong value is one RgbirError naming the flag."""
        if not self.streams:
            raise RgbirError("no camera pair configured: give --rgb (and --ir)")
        for stream in self.streams:
            stream.validate()
        from .backends import BACKENDS
        from .inference import DetectSettings

        if self.backend not in BACKENDS:
            raise RgbirError(f"backend must be one of {', '.join(BACKENDS)}, got '{self.backend}'")
        if self.mode not in ("auto", "files", "live"):
            raise RgbirError(f"mode must be auto, files or live, got '{self.mode}'")
        if self.batch < 1 or self.queue_size < 1:
            raise RgbirError("batch and queue size must be >= 1")
        DetectSettings(self.conf, self.iou, self.max_det).resolve(PostprocessSpec())  # thresholds in range
        self._check_imgsz()
        self._check_timing()
        try:
            self.pairing.validate()
        except ValueError as e:
            raise RgbirError(str(e)) from e
        if self.registration:
            readable_file(self.registration, "registration file")
        self.sinks.validate()
        if self.stats_json:
            writable_file(self.stats_json, "statistics")

    def _check_imgsz(self) -> None:
        """--imgsz sizes a PyTorch model's input; an exported model has its own, which a flag cannot change."""
        from .backends import backend_kind

        kind = backend_kind(self.model) if self.backend == "auto" else self.backend
        if self.imgsz is not None and kind != "pytorch":
            raise RgbirError(f"--imgsz applies to the PyTorch backend only: {self.model} has the input size it was "
                             "exported with (export it again with 'rgbir export --imgsz' to change it)")

    def _check_timing(self) -> None:
        """Status-line interval, --realtime pace and the --max-frames / --duration limits."""
        if self.stats_interval < 0:
            raise RgbirError(f"--stats-interval {self.stats_interval:g} is negative: give seconds between status "
                             "lines, or 0 for none")
        if self.fps is not None and self.fps <= 0:
            raise RgbirError(f"--fps {self.fps:g} must be > 0")
        if self.fps is not None and not self.realtime:
            raise RgbirError("--fps is the pace of --realtime: add --realtime, or leave out --fps")
        if self.max_frames is not None and self.max_frames < 1:
            raise RgbirError(f"--max-frames {self.max_frames} must be >= 1")
        if self.duration is not None and self.duration <= 0:
            raise RgbirError(f"--duration {self.duration:g} must be > 0 seconds")


def _build(cls, data: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise RgbirError(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(known)})")
    return cls(**data)


def load_config(path: str | Path, **overrides) -> PipelineConfig:
    """A run YAML: model, streams: [{rgb, ir}], and optional pairing/thermal/sinks sections; ``overrides``
    (from flags) replace top-level settings."""
    try:
        data = yaml.safe_load(readable_file(path, "config file").read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RgbirError(f"config file {path} is not valid YAML: {' '.join(str(e).split())}") from e
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        data["streams"] = [_build(StreamConfig, s, f"{path}: streams") for s in data.get("streams", [])]
        for key, cls in (("pairing", PairingConfig), ("thermal", ThermalAGC), ("sinks", SinkConfig)):
            if isinstance(data.get(key), dict):
                data[key] = _build(cls, data[key], f"{path}: {key}")
        if data.get("imgsz") is not None:
            size = data["imgsz"]
            data["imgsz"] = tuple(size) if isinstance(size, (list, tuple)) else (int(size),) * 2
        config = _build(PipelineConfig, data, str(path))
    except (TypeError, ValueError) as e:
        raise RgbirError(f"{path}: {e}") from e
    return config
