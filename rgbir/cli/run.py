"""``rgbir run``: two cameras (or files) in, fused detections out — live, to JSON Lines, video, window, MJPEG,
MQTT or Redis, YOLO label files, MOT tracks and Prometheus metrics.
Exit code 0 when the sources end or --max-frames/--duration is reached, 130 after Ctrl-C and 143 after SIGTERM
(everything processed until then is written)."""

from __future__ import annotations

import argparse

from .common import console


def add_parser(sub) -> None:
    from ..runtime.config import PipelineConfig, SinkConfig
    from ..runtime.outputs.metrics import MetricsConfig
    from ..runtime.outputs.tracking import TrackingConfig
    from ..runtime.pairing import PairingConfig
    from ..runtime.thermal import ThermalAGC

    p = sub.add_parser("run", help="run the dual-camera detection pipeline", description=__doc__.replace("``", ""))
    p.add_argument("--rgb", action="append", default=[], metavar="SRC",
                   help="visible camera: device index or /dev/videoN, rtsp:// or http:// URL, GStreamer pipeline "
                        "('... ! appsink'), video file or image folder; repeat for several camera pairs")
    p.add_argument("--ir", action="append", default=[], metavar="SRC", help="thermal camera, same forms as --rgb")
    p.add_argument("--ir-fourcc", help="thermal camera device's pixel format, e.g. 'Y16 ' for 16-bit radiometric "
                                       "V4L2 cameras (FLIR Boson/Lepton); frames then go through --agc")
    p.add_argument("--config", help="run settings YAML (flags given here override it)")
    PipelineConfig.add_arguments(p)
    PairingConfig.add_arguments(p.add_argument_group("pairing of live cameras"))
    ThermalAGC.add_arguments(p)
    p.add_argument("--agc-percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="percentile AGC: the stretch's lower and upper percentiles (default: 1 99)")
    SinkConfig.add_arguments(p.add_argument_group("outputs"))
    TrackingConfig.add_arguments(p.add_argument_group("tracking"))
    MetricsConfig.add_arguments(p.add_argument_group("metrics"))
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    from dataclasses import replace

    from ..errors import RgbirError
    from ..runtime.config import PipelineConfig, SinkConfig, StreamConfig, load_config
    from ..runtime.outputs.metrics import MetricsConfig
    from ..runtime.outputs.tracking import TrackingConfig
    from ..runtime.pairing import PairingConfig
    from ..runtime.thermal import ThermalAGC

    if len(args.ir) not in (0, len(args.rgb)):
        raise RgbirError("give one --ir per --rgb (camera pairs are matched in order)")
    streams = [StreamConfig(r, i, args.ir_fourcc) for r, i in zip(args.rgb, args.ir or [None] * len(args.rgb))]
    top = PipelineConfig.given(args)
    if args.config:
        config = load_config(args.config, **top)
        if streams:
            config.streams = streams
    else:
        if "model" not in top:
            raise RgbirError("give --model (an exported .onnx, or weights) or --config")
        config = PipelineConfig(**top, streams=streams)
    pairing, sinks, agc = PairingConfig.given(args), SinkConfig.given(args), ThermalAGC.given(args)
    if args.agc_percentiles:
        agc.update(low=args.agc_percentiles[0], high=args.agc_percentiles[1])
    try:
        config.pairing = replace(config.pairing, **pairing)
        config.thermal = replace(config.thermal, **agc)
    except ValueError as e:
        raise RgbirError(str(e)) from e
    config.sinks = replace(config.sinks, **sinks)
    config.metrics = replace(config.metrics, **MetricsConfig.given(args))
    config.tracking = replace(config.tracking, **TrackingConfig.given(args))
    config.paths(args.config).check()  # the run YAML is an input too
    return config


def run(args: argparse.Namespace) -> int:
    """0 when the run ended by itself, 128 + the signal's number when SIGINT (130) or SIGTERM (143) stopped it."""
    from ..runtime.pipeline import Pipeline

    pipeline = Pipeline(config_from_args(args))
    print_stats(pipeline.run())
    return 128 + pipeline.interrupted if pipeline.interrupted else 0


def print_stats(stats) -> None:
    """The final statistics table of a run."""
    from rich.table import Table

    s = stats.summary()
    table = Table(title=f"rgbir run: {s['pairs']} pairs in {s['seconds']:.1f} s ({s['fps']:.1f} FPS)",
                  caption="end-to-end latency (capture → result) = queue wait (pairing, queues; with files mostly "
                          "read-ahead) + processing (preprocess + infer + postprocess)")
    for column in ("measure", "mean", "p50", "p95", "p99"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    rows = [("end-to-end latency (ms)", s["latency_ms"]), ("  queue wait (ms)", s["wait_ms"]),
            ("  processing (ms)", s["processing_ms"]), ("RGB/IR skew (ms)", s["skew_ms"])]
    rows += [(f"{stage} (ms/pair)", v) for stage, v in s["stages_ms"].items()]
    for name, v in rows:
        table.add_row(name, *(f"{v.get(k, 0):.2f}" for k in ("mean", "p50", "p95", "p99")))
    console.print(table)
    console.print(f"detections: {s['detections']}, failed pairs: {s['failed']}")
    for key, value in s["counters"].items():
        console.print(f"  {key}: {value}")
