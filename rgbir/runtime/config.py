"""Pipeline settings: typed dataclasses, from command-line flags or one YAML file."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from ..errors import RgbirError
from ..metadata import PostprocessSpec
from ..options import CommandLineOptions, image_size, option
from ..preflight import free_port, readable_file, writable_directory, writable_file
from .backends import BACKENDS
from .backends.torch_backend import ATTENTIONS
from .brokers import MQTT_PORT, MQTT_TLS_PORT, REDIS_PORT
from .metrics import MetricsConfig
from .pairing import PairingConfig
from .thermal import ThermalAGC
from .tracking import TrackingConfig


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
class SinkConfig(CommandLineOptions):
    json: str | None = option(None, metavar="FILE", help="write JSON Lines here (one line per pair)")
    video: str | None = option(None, metavar="FILE", help="write the annotated side-by-side video here (.mp4 or "
                               ".avi); with several camera pairs the second goes to NAME-1.mp4, the third to "
                               "NAME-2.mp4, …")
    show: bool = option(False, help="show a window (needs opencv-python, not -headless)")
    mjpeg_port: int | None = option(None, flag="--mjpeg", parse=int, metavar="PORT",
                                    help="MJPEG preview on http://127.0.0.1:PORT/")
    video_fps: float = 30.0
    yolo_txt: str | None = option(None, metavar="DIR", help="write YOLO labels here, one file per pair: 'class cx "
                                  "cy w h conf' normalised to the RGB frame, named after the RGB image (or frame "
                                  "number); camera pair N > 0 writes to DIR-N")
    mot: str | None = option(None, metavar="FILE", help="write tracks in MOT Challenge format (frame,id,x,y,w,h,"
                             "conf,-1,-1,-1; needs --track); camera pair N > 0 writes to NAME-N.txt")
    mqtt: str | None = option(None, metavar="HOST[:PORT]/TOPIC", help="publish each record to this MQTT topic "
                              f"(port {MQTT_PORT}, {MQTT_TLS_PORT} with --mqtt-tls)")
    mqtt_qos: int = option(0, parse=int, choices=(0, 1), help="MQTT quality of service: 0 at most once, 1 at "
                                                              "least once")
    mqtt_tls: str | None = option(None, metavar="CA_FILE", help="MQTT over TLS, trusting this CA certificate (PEM)")
    mqtt_user: str | None = option(None, metavar="NAME", help="MQTT user name; the password comes from "
                                   "--mqtt-password-file or the environment variable RGBIR_MQTT_PASSWORD")
    mqtt_password_file: str | None = option(None, metavar="FILE", help="file holding the MQTT password")
    mqtt_client_id: str | None = option(None, metavar="ID", shown="rgbir-HOSTNAME-PID", help="MQTT client id")
    redis: str | None = option(None, metavar="HOST[:PORT]/STREAM", help="append each record to this Redis stream "
                               f"(XADD, field 'record'; port {REDIS_PORT})")
    redis_maxlen: int = option(100000, parse=int, metavar="N", help="trim the Redis stream to about N entries "
                                                                  "(MAXLEN ~); 0: never")
    broker_buffer: int = option(10000, parse=int, metavar="N", help="records held per broker while it is away; "
                                                                  "beyond that the oldest are dropped and counted")
    broker_flush: float = option(5.0, parse=float, metavar="S", help="seconds the end of a run waits for buffered "
                                                                     "records to reach the brokers")

    def validate(self) -> None:
        """Files writable, video suffix known, port free, brokers reachable: checked before the model loads, not
        mid-run."""
        from .brokers import check_brokers

        if self.mqtt_qos not in (0, 1):
            raise RgbirError(f"--mqtt-qos {self.mqtt_qos}: MQTT quality of service is 0 (at most once) or 1 (at least "
                             "once)")
        from .sinks import VIDEO_CODECS

        if self.json:
            writable_file(self.json, "JSON Lines")
        if self.video:
            writable_file(self.video, "video", tuple(VIDEO_CODECS))
        if self.mjpeg_port is not None:
            free_port(self.mjpeg_port, "MJPEG")
        if self.yolo_txt:
            writable_directory(self.yolo_txt, "YOLO labels")
        if self.mot:
            writable_file(self.mot, "MOT tracks")
        check_brokers(self)


# what every command that runs a model takes
BACKEND_OPTIONS = ("backend", "providers", "device", "cuda_graph", "half", "attention")


@dataclass
class PipelineConfig(CommandLineOptions):
    model: str = option(help="exported .onnx (ONNX Runtime), .engine (TensorRT), weights/config (PyTorch) or a "
                             "served model (triton://HOST:PORT/MODEL)")
    streams: list[StreamConfig] = field(default_factory=list)
    backend: str = option("auto", choices=BACKENDS, help="auto: .onnx → onnxruntime, .engine/.plan → tensorrt, "
                                                         "weights → pytorch")
    providers: list[str] | None = option(None, nargs="+", metavar="EP", shown="cuda if installed, else cpu",
                                         help="ONNX Runtime providers in preference order: cuda, tensorrt, cpu")
    device: str | None = option(None, help="GPU for TensorRT (0, cuda:1) or device for PyTorch (cpu, cuda)")
    cuda_graph: bool = option(False, help="TensorRT: replay copy-in/execute/copy-out as one CUDA graph; PyTorch on "
                                          "a GPU: capture the whole forward once per input shape and replay it")
    half: bool = option(False, help="PyTorch on a GPU: fp16 weights and inputs (channels-last convolutions)")
    attention: str | None = option(None, choices=ATTENTIONS, shown="auto",
                                   help="PyTorch: top-k attention implementation; auto: the fused kernel on CUDA "
                                        "when the plugin library is found, else the reference")
    contexts: int = 1  # TensorRT: execution contexts (one per concurrent caller)
    gpu_preprocess: bool = option(False, help="TensorRT, or PyTorch on a GPU: upload 8-bit frames and letterbox "
                                              "them on the GPU (needs the plugin library)")
    imgsz: tuple[int, int] | None = option(None, parse=image_size, shown="640; an exported model has its own",
                                           help="network input H or H,W for the PyTorch backend only")
    # detection thresholds; None: the graph's own when it was exported with NMS, else 0.25, 0.7 and 300
    conf: float | None = option(None, parse=float, shown="0.25, or a graph's own NMS threshold",
                                help="score threshold")
    iou: float | None = option(None, parse=float, shown="0.7, or a graph's own NMS", help="NMS IoU threshold")
    max_det: int | None = option(None, parse=int, shown="300, or a graph's own NMS", help="detections kept per pair")
    classes: list[int] | None = option(None, parse=int, nargs="+", help="keep only these class ids")
    mode: str = option("auto", choices=("auto", "files", "live"),
                       help="files: lockstep, no drops; live: newest frames, stale ones dropped; auto: from the "
                            "sources")
    pairing: PairingConfig = field(default_factory=PairingConfig)
    thermal: ThermalAGC = field(default_factory=ThermalAGC)
    registration: str | None = option(None, metavar="FILE", help="IR→RGB calibration file from 'rgbir calibrate'")
    batch: int = option(1, parse=int, help="pairs per backend call (several camera pairs share one call)")
    queue_size: int = 4
    sinks: SinkConfig = field(default_factory=SinkConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    stats_interval: float = option(5.0, parse=float, help="seconds between status lines; 0 = none")
    stats_json: str | None = option(None, metavar="FILE", help="write the final statistics here")
    realtime: bool = option(False, help="pace video files and image folders at their frame rate, as cameras "
                                        "would deliver them")
    fps: float | None = option(None, parse=float, help="the frame rate --realtime paces at (needed for image "
                                                       "folders; overrides a video's)")
    max_frames: int | None = option(None, parse=int, metavar="N", help="stop after N pairs from each camera pair "
                                                                       "(exit 0)")
    duration: float | None = option(None, parse=float, metavar="S", help="stop after S seconds (exit 0)")

    def validate(self) -> None:
        """Everything checkable before the model loads; a wrong value is one RgbirError naming the flag."""
        if not self.streams:
            raise RgbirError("no camera pair configured: give --rgb (and --ir)")
        for stream in self.streams:
            stream.validate()
        from .inference import DetectSettings

        if self.backend not in BACKENDS:
            raise RgbirError(f"backend must be one of {', '.join(BACKENDS)}, got '{self.backend}'")
        if self.attention is not None and self.attention not in ATTENTIONS:
            raise RgbirError(f"--attention '{self.attention}' is not one of {', '.join(ATTENTIONS)}")
        if self.mode not in ("auto", "files", "live"):
            raise RgbirError(f"mode must be auto, files or live, got '{self.mode}'")
        if self.batch < 1 or self.queue_size < 1:
            raise RgbirError("batch and queue size must be >= 1")
        DetectSettings(self.conf, self.iou, self.max_det).resolve(PostprocessSpec())  # thresholds in range
        self._check_timing()
        try:
            self.pairing.validate()
        except ValueError as e:
            raise RgbirError(str(e)) from e
        if self.registration:
            readable_file(self.registration, "registration file")
        self.sinks.validate()
        self.metrics.validate()
        self.tracking.validate()
        if self.sinks.mot and not self.tracking.tracker:
            raise RgbirError("--mot writes tracks: add --track bytetrack")
        if self.stats_json:
            writable_file(self.stats_json, "statistics")

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
    """A run YAML: model, streams: [{rgb, ir}], and optional pairing/thermal/sinks/metrics/tracking sections;
    ``overrides`` (from flags) replace top-level settings."""
    try:
        data = yaml.safe_load(readable_file(path, "config file").read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RgbirError(f"config file {path} is not valid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(data, dict):
        raise RgbirError(f"config file {path} must be a mapping of settings (model:, streams:, ...), not a "
                         f"{type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        data["streams"] = [_build(StreamConfig, s, f"{path}: streams") for s in data.get("streams", [])]
        for key, cls in (("pairing", PairingConfig), ("thermal", ThermalAGC), ("sinks", SinkConfig),
                         ("metrics", MetricsConfig), ("tracking", TrackingConfig)):
            if isinstance(data.get(key), dict):
                data[key] = _build(cls, data[key], f"{path}: {key}")
        if data.get("imgsz") is not None:
            size = data["imgsz"]
            data["imgsz"] = tuple(size) if isinstance(size, (list, tuple)) else (int(size),) * 2
        config = _build(PipelineConfig, data, str(path))
    except (TypeError, ValueError) as e:
        raise RgbirError(f"{path}: {e}") from e
    return config
