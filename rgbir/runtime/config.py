"""Pipeline settings: typed dataclasses, from command-line flags or one YAML file."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from ..errors import RgbirError
from ..metadata import PostprocessSpec
from ..options import CommandLineOptions, image_size, option
from ..paths import PathPlan
from ..preflight import free_port, readable_file, writable_directory, writable_file
from .backends import BACKENDS
from .backends.ort_attention import ATTENTIONS as ORT_ATTENTIONS
from .backends.torch_backend import ATTENTIONS as TORCH_ATTENTIONS
from .outputs.brokers import MQTT_PORT, MQTT_TLS_PORT, REDIS_PORT
from .outputs.metrics import MetricsConfig
from .outputs.tracking import TrackingConfig
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
        from .outputs.brokers import check_brokers

        if self.mqtt_qos not in (0, 1):
            raise RgbirError(f"--mqtt-qos {self.mqtt_qos}: MQTT quality of service is 0 (at most once) or 1 (at least "
                             "once)")
        from .outputs.sinks import VIDEO_CODECS

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


ATTENTIONS = tuple(dict.fromkeys(ORT_ATTENTIONS + TORCH_ATTENTIONS))  # each backend checks its own


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
                                   help="top-k attention implementation. ONNX Runtime: kernel (rgbir's CPU kernel, "
                                        "compiled on first use) or function (the op's ONNX body); auto: the kernel "
                                        "on the CPU provider where a C++ compiler is found. PyTorch: kernel (CUDA), "
                                        "reference or upstream; auto: the kernel on CUDA when the plugin library is "
                                        "found, else the reference")
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
        self.paths().check()  # no output may overwrite an input or another output
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

    def paths(self, config_file: str | None = None) -> PathPlan:
        """Every file and folder the run reads (``config_file``: the run YAML it came from) and writes (the outputs
        of camera pair N > 0 included)."""
        from .outputs.sinks import stream_path

        plan = PathPlan().reads("--config", config_file).reads("--model", self.model)
        plan.reads("--registration", self.registration)
        for stream in self.streams:
            plan.reads("--rgb", stream.rgb).reads("--ir", stream.ir)
        plan.reads("--mqtt-tls", self.sinks.mqtt_tls).reads("--mqtt-password-file", self.sinks.mqtt_password_file)
        pairs = range(len(self.streams))
        for flag, path in (("--json", self.sinks.json), ("--video", self.sinks.video), ("--mot", self.sinks.mot),
                           ("--yolo-txt", self.sinks.yolo_txt)):
            if path:  # every camera pair writes its own (--json: all in one file)
                plan.writes(flag, *{stream_path(Path(path), i) for i in pairs}, folder=flag == "--yolo-txt")
        return plan.writes("--stats-json", self.stats_json)

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


SECTIONS = {"pairing": PairingConfig, "thermal": ThermalAGC, "sinks": SinkConfig, "metrics": MetricsConfig,
            "tracking": TrackingConfig}
KINDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}


def _shown(value) -> str:
    return "null" if value is None else repr(value) if isinstance(value, str) else yaml.safe_dump(
        value, default_flow_style=True, width=1 << 16).strip().removesuffix("...").strip()


def _scalar(value, kind: type, where: str):
    """A YAML scalar as ``kind`` (str, int, float or bool): a whole number for int (2.0 is 2, 2.7 is refused), any
    number for float, true/false for bool, text or a number for str (a camera index, a GPU: 'device: 0'); anything
    else is an RgbirError naming the key."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = (isinstance(value, str) or number if kind is str else isinstance(value, bool) if kind is bool
          else number and (kind is float or float(value).is_integer()))
    if not ok:
        raise RgbirError(f"{where}: expected {KINDS[kind]}, got {_shown(value)}")
    return kind(int(value)) if kind is int else kind(value)


def _typed(value, hint, where: str):
    """A YAML value checked (and converted) against a field's type hint: scalars, optional ones, lists of them
    (a single value is a list of one), and tuples."""
    import types
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return None if value is None else _typed(value, args[0], where)
    origin = typing.get_origin(hint)
    if origin is list:
        values = value if isinstance(value, list) else [value]
        return [_typed(v, args[0], f"{where}[{i}]") for i, v in enumerate(values)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise RgbirError(f"{where}: expected a list of {len(args)}, got {_shown(value)}")
        return tuple(_typed(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    return _scalar(value, hint, where)


def _build(cls, data, where: str = ""):
    """A settings dataclass from a YAML mapping at key path ``where`` ('' at the top): unknown keys refused, every
    value type-checked, each error naming the key path."""
    import typing

    if data is None:
        return cls()
    known = [f.name for f in fields(cls)]
    if not isinstance(data, dict):
        raise RgbirError(f"{where}: expected a mapping of settings ({', '.join(known)}), got {_shown(data)}")
    unknown = sorted(str(k) for k in set(data) - set(known))
    if unknown:
        raise RgbirError(f"{where + ': ' if where else ''}unknown setting(s) {', '.join(unknown)} (known: "
                         f"{', '.join(known)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        at = f"{where}.{key}" if where else key
        if key in SECTIONS:
            values[key] = _build(SECTIONS[key], value, at)
        elif key == "streams":
            if not isinstance(value, (list, type(None))):
                raise RgbirError(f"{at}: expected a list of camera pairs ([{{rgb: SRC, ir: SRC}}, ...]), got "
                                 f"{_shown(value)}")
            values[key] = [_build(StreamConfig, s, f"{at}[{i}]") for i, s in enumerate(value or [])]
        elif key == "imgsz" and value is not None:
            try:
                values[key] = image_size(value)
            except argparse.ArgumentTypeError as e:
                raise RgbirError(f"{at}: {e}") from e
        else:
            values[key] = _typed(value, hints[key], at)
    try:
        return cls(**values)
    except ValueError as e:  # a section's own check (AGC percentiles, ...)
        raise RgbirError(f"{where}: {e}") from e


def load_config(path: str | Path, **overrides) -> PipelineConfig:
    """A run YAML: model, streams: [{rgb, ir}], and optional pairing/thermal/sinks/metrics/tracking sections;
    ``overrides`` (from flags) replace top-level settings. Each value is checked against its setting's type, and a
    wrong one is named by its key path ('run config FILE: sinks.video_fps: expected a number, got ...')."""
    try:
        data = yaml.safe_load(readable_file(path, "config file").read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RgbirError(f"config file {path} is not valid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(data, dict):
        raise RgbirError(f"config file {path} must be a mapping of settings (model:, streams:, ...), not a "
                         f"{type(data).__name__}")
    if data.get("model") is None and overrides.get("model") is None:
        raise RgbirError(f"run config {path}: no model: add 'model: FILE' (an exported .onnx, or weights), or give "
                         "--model")
    try:
        config = _build(PipelineConfig, {k: v for k, v in data.items() if overrides.get(k) is None})
    except RgbirError as e:
        raise RgbirError(f"run config {path}: {e}") from e
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    return config
