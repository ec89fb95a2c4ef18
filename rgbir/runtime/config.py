"""Pipeline settings: typed dataclasses, from command-line flags or one YAML file."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from ..errors import RgbirError
from ..preflight import free_port, readable_file, writable_file
from .pairing import PairingConfig
from .thermal import ThermalAGC


@dataclass
class StreamConfig:
    """One camera pair: source specs for the visible and the thermal camera."""

    rgb: str
    ir: str | None = None
    ir_fourcc: str | None = None  # e.g. "Y16 " for radiometric V4L2 thermal cameras (16-bit frames)


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
    imgsz: tuple[int, int] = (640, 640)  # network input for the PyTorch backend (an ONNX file says its own)
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
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

    def validate(self) -> None:
        if not self.streams:
            raise RgbirError("no camera pair configured: give --rgb (and --ir)")
        from .backends import BACKENDS

        if self.backend not in BACKENDS:
            raise RgbirError(f"backend must be one of {', '.join(BACKENDS)}, got '{self.backend}'")
        if self.mode not in ("auto", "files", "live"):
            raise RgbirError(f"mode must be auto, files or live, got '{self.mode}'")
        if self.batch < 1 or self.queue_size < 1:
            raise RgbirError("batch and queue size must be >= 1")
        if not (0 <= self.conf < 1 and 0 < self.iou <= 1):
            raise RgbirError("need 0 <= conf < 1 and 0 < iou <= 1")
        try:
            self.pairing.validate()
        except ValueError as e:
            raise RgbirError(str(e)) from e
        if self.registration:
            readable_file(self.registration, "registration file")
        self.sinks.validate()
        if self.stats_json:
            writable_file(self.stats_json, "statistics")


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
        if "imgsz" in data and not isinstance(data["imgsz"], (list, tuple)):
            data["imgsz"] = (int(data["imgsz"]),) * 2
        config = _build(PipelineConfig, data, str(path))
    except (TypeError, ValueError) as e:
        raise RgbirError(f"{path}: {e}") from e
    config.imgsz = tuple(config.imgsz)
    return config
