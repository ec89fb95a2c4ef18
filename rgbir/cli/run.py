"""``rgbir run``: two cameras (or files) in, fused detections out — live, to JSON Lines, video, window or MJPEG.
Exit code 0 when the sources end or --max-frames/--duration is reached, 130 after Ctrl-C and 143 after SIGTERM
(everything processed until then is written)."""

from __future__ import annotations

import argparse

from .common import add_backend_arguments, image_size


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run the dual-camera detection pipeline", description=__doc__.replace("``", ""))
    p.add_argument("--model", help="exported .onnx (ONNX Runtime), .engine (TensorRT) or weights/config (PyTorch)")
    p.add_argument("--rgb", action="append", default=[], metavar="SRC",
                   help="visible camera: device index or /dev/videoN, rtsp:// or http:// URL, GStreamer pipeline "
                        "('... ! appsink'), video file or image folder; repeat for several camera pairs")
    p.add_argument("--ir", action="append", default=[], metavar="SRC", help="thermal camera, same forms as --rgb")
    p.add_argument("--ir-fourcc", help="thermal camera device's pixel format, e.g. 'Y16 ' for 16-bit radiometric "
                                       "V4L2 cameras (FLIR Boson/Lepton); frames then go through --agc")
    p.add_argument("--config", help="run settings YAML (flags given here override it)")
    add_backend_arguments(p)
    p.add_argument("--gpu-preprocess", action="store_true",
                   help="TensorRT: upload 8-bit frames and letterbox them on the GPU (needs the plugin library)")
    p.add_argument("--imgsz", type=image_size, help="network input H or H,W for the PyTorch backend only (default "
                                                    "640; an exported model has its own)")
    p.add_argument("--conf", type=float, help="score threshold (default 0.25, or a graph's own NMS threshold)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.7, or a graph's own NMS)")
    p.add_argument("--max-det", type=int, help="detections kept per pair (default 300, or a graph's own NMS)")
    p.add_argument("--classes", type=int, nargs="+", help="keep only these class ids")
    p.add_argument("--mode", choices=("auto", "files", "live"),
                   help="files: lockstep, no drops; live: newest frames, stale ones dropped (default: auto)")
    p.add_argument("--tolerance-ms", type=float, help="live pairing: largest RGB/IR capture-time gap (40)")
    p.add_argument("--stall-ms", type=float, help="a camera silent this long is reported stalled (500)")
    p.add_argument("--stall-policy", choices=("wait", "reuse"),
                   help="when one camera stalls: wait, or pair with its last frame for --reuse-ms (wait)")
    p.add_argument("--reuse-ms", type=float, help="longest a stalled camera's last frame may stand in (2000)")
    p.add_argument("--agc", choices=("auto", "minmax", "percentile", "clahe", "none"),
                   help="thermal gain control for 16-bit/radiometric frames (auto)")
    p.add_argument("--agc-percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"))
    p.add_argument("--registration", help="IR→RGB calibration file from 'rgbir calibrate'")
    p.add_argument("--batch", type=int, help="pairs per backend call (several camera pairs)")
    p.add_argument("--json", help="write JSON Lines here (one line per pair)")
    p.add_argument("--video", help="write the annotated side-by-side video here (.mp4 or .avi); with several "
                                   "camera pairs the second goes to NAME-1.mp4, the third to NAME-2.mp4, …")
    p.add_argument("--show", action="store_true", help="show a window (needs opencv-python, not -headless)")
    p.add_argument("--mjpeg", type=int, metavar="PORT", help="MJPEG preview on http://127.0.0.1:PORT/")
    p.add_argument("--stats-interval", type=float, help="seconds between status lines (5; 0 = none)")
    p.add_argument("--stats-json", help="write the final statistics here")
    p.add_argument("--realtime", action="store_true",
                   help="pace video files and image folders at their frame rate, as cameras would deliver them")
    p.add_argument("--fps", type=float, help="the frame rate --realtime paces at (needed for image folders)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N pairs from each camera pair (exit 0)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (exit 0)")
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    from dataclasses import replace

    from ..errors import RgbirError
    from ..runtime.config import PipelineConfig, StreamConfig, load_config

    if len(args.ir) not in (0, len(args.rgb)):
        raise RgbirError("give one --ir per --rgb (camera pairs are matched in order)")
    streams = [StreamConfig(r, i, args.ir_fourcc) for r, i in zip(args.rgb, args.ir or [None] * len(args.rgb))] \
        or None
    top = {"model": args.model, "streams": streams, "backend": args.backend, "providers": args.providers,
           "device": args.device, "cuda_graph": args.cuda_graph or None, "gpu_preprocess": args.gpu_preprocess or None,
           "imgsz": args.imgsz, "conf": args.conf, "iou": args.iou, "max_det": args.max_det,
           "classes": args.classes, "mode": args.mode, "registration": args.registration, "batch": args.batch,
           "stats_interval": args.stats_interval, "stats_json": args.stats_json, "realtime": args.realtime or None,
           "fps": args.fps, "max_frames": args.max_frames, "duration": args.duration}
    if args.config:
        config = load_config(args.config, **{k: v for k, v in top.items() if k != "streams"})
        if streams:
            config.streams = streams
    else:
        if not args.model:
            raise RgbirError("give --model (an exported .onnx, or weights) or --config")
        config = PipelineConfig(**{k: v for k, v in top.items() if v is not None and k != "streams"},
                                streams=streams or [])
    pairing = {k: v for k, v in (("tolerance_ms", args.tolerance_ms), ("stall_ms", args.stall_ms),
                                 ("stall_policy", args.stall_policy), ("reuse_ms", args.reuse_ms)) if v is not None}
    config.pairing = replace(config.pairing, **pairing) if pairing else config.pairing
    agc = {k: v for k, v in (("mode", args.agc),) if v is not None}
    if args.agc_percentiles:
        agc.update(low=args.agc_percentiles[0], high=args.agc_percentiles[1])
    try:
        config.thermal = replace(config.thermal, **agc) if agc else config.thermal
    except ValueError as e:
        raise RgbirError(str(e)) from e
    sinks = {k: v for k, v in (("json", args.json), ("video", args.video), ("mjpeg_port", args.mjpeg))
             if v is not None}
    if args.show:
        sinks["show"] = True
    config.sinks = replace(config.sinks, **sinks) if sinks else config.sinks
    return config


def run(args: argparse.Namespace) -> int:
    """0 when the run ended by itself, 128 + the signal's number when SIGINT (130) or SIGTERM (143) stopped it."""
    from ..runtime.pipeline import Pipeline

    pipeline = Pipeline(config_from_args(args))
    print_stats(pipeline.run())
    return 128 + pipeline.interrupted if pipeline.interrupted else 0


def print_stats(stats) -> None:
    """The final statistics table of a run."""
    from rich.console import Console
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
    console = Console()
    console.print(table)
    console.print(f"detections: {s['detections']}, failed pairs: {s['failed']}", soft_wrap=True)
    for key, value in s["counters"].items():
        console.print(f"  {key}: {value}", soft_wrap=True)
