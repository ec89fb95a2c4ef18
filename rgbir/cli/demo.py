"""``rgbir demo``: the whole job on a machine with no camera and no GPU — a synthetic dual-camera clip, the
shipped demo detector (YOLO11n-MM with MSC fusion) exported to ONNX, the real-time pipeline on ONNX Runtime,
an annotated side-by-side video, JSON Lines and the statistics table."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import console, log

DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "demo-yolo11n-mm-msc.safetensors"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline on a synthetic clip with the shipped demo model",
                       description=__doc__.replace("``", ""))
    p.add_argument("-o", "--output", type=Path, default=Path("runs/demo"), help="where the video, JSON Lines and "
                   "statistics go (default runs/demo)")
    p.add_argument("--frames", type=int, default=150, help="clip length (default 150 frames, 10 s at 15 FPS)")
    p.add_argument("--weights", type=Path, default=DEMO_WEIGHTS, help="detector weights (default: the shipped one)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json
    import shutil

    from ..errors import RgbirError
    from ..files import cache_dir
    from ..paths import PathPlan
    from ..preflight import readable_file, writable_directory
    from ..runtime.config import PipelineConfig, SinkConfig, StreamConfig
    from ..runtime.pipeline import Pipeline
    from .common import quiet_torch_export, require_torch
    from .run import print_stats

    if args.frames < 1:
        raise RgbirError(f"--frames {args.frames}: the clip needs at least 1 frame")
    if args.weights.suffix != ".safetensors":
        raise RgbirError(f"--weights {args.weights}: the demo takes rgbir .safetensors weights ('rgbir train' writes "
                         "them)")
    if args.weights == DEMO_WEIGHTS and not args.weights.is_file():
        raise RgbirError(f"no demo weights at {args.weights}: reinstall rgbir or pass --weights")
    readable_file(args.weights, "weights file")
    writable_directory(args.output, "the demo's outputs")
    outputs = {"video": args.output / "demo.avi", "json": args.output / "detections.jsonl",
               "stats": args.output / "stats.json"}
    PathPlan().reads("--weights", args.weights).writes("-o", *outputs.values()).check()
    require_torch("the demo's ONNX export")

    from ..data.synthetic import SceneConfig, write_clip
    from ..export import ExportOptions, export_onnx
    from ..files import file_sha256
    from ..models import load
    from ..models.checkpoint import read_safetensors

    cache = cache_dir("demo")
    meta = json.loads(read_safetensors(args.weights, tensors=False)[0].get("rgbir.meta", "{}"))
    imgsz = tuple(meta.get("demo", {}).get("imgsz", (160, 192)))
    clip_dir = cache / f"clip-{args.frames}"
    if not (clip_dir / "ir.avi").is_file():
        log.info(f"writing a synthetic {args.frames}-frame RGB+IR clip to {clip_dir}")
        partial = clip_dir.with_name(clip_dir.name + ".partial")  # renamed once whole: no half clip is reused
        shutil.rmtree(partial, ignore_errors=True)
        write_clip(partial, frames=args.frames, config=SceneConfig(size=(2 * imgsz[0], 2 * imgsz[1]), seed=11))
        shutil.rmtree(clip_dir, ignore_errors=True)
        partial.rename(clip_dir)
    onnx_path = cache / f"demo-{file_sha256(args.weights)[:12]}.onnx"
    if not onnx_path.is_file():
        log.info(f"exporting {args.weights.name} to {onnx_path}")
        with quiet_torch_export():
            export_onnx(load(args.weights), onnx_path, ExportOptions(imgsz=imgsz))
    args.output.mkdir(parents=True, exist_ok=True)
    config = PipelineConfig(model=str(onnx_path), streams=[StreamConfig(str(clip_dir / "rgb.avi"),
                                                                        str(clip_dir / "ir.avi"))],
                            stats_interval=0, stats_json=str(outputs["stats"]),
                            sinks=SinkConfig(json=str(outputs["json"]), video=str(outputs["video"]), video_fps=15.0))
    print_stats(Pipeline(config).run())
    console.print(f"wrote {outputs['video']} (RGB | IR side by side), {outputs['json']}, {outputs['stats']}")
    return 0
