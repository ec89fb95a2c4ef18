"""``rgbir val``: COCO mAP50 / mAP50-95 (pycocotools) of a model on a paired RGB+IR dataset (YOLOMM or LLVIP
data.yaml); --save-json writes the detections as COCO results, with the ground truth they refer to."""

from __future__ import annotations

import argparse

from .common import console, log


def add_parser(sub) -> None:
    from ..runtime.config import BACKEND_OPTIONS, PipelineConfig

    p = sub.add_parser("val", help="evaluate a model on a paired dataset (mAP)", description=__doc__.replace("``", ""))
    p.add_argument("--model", required=True,
                   help="exported .onnx (ONNX Runtime), .engine (TensorRT), weights/config (PyTorch) or a served "
                        "model (triton://HOST:PORT/MODEL)")
    p.add_argument("--data", required=True, help="data.yaml (path, val, names, modality: {rgb, ir})")
    p.add_argument("--split", default="val")
    p.add_argument("--conf", type=float, default=0.001, help="score threshold (default 0.001, as mAP needs)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--blank", choices=("rgb", "ir"), help="zero one modality (single-modality ablation)")
    p.add_argument("--save-json", metavar="FILE", help="write the detections as COCO results JSON (image_id, "
                                                       "category_id, bbox x,y,w,h, score) and the ground truth "
                                                       "as NAME-gt.json")
    PipelineConfig.add_arguments(p, only=(*BACKEND_OPTIONS, "imgsz"))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..data.dataset import split_folders
    from ..eval.coco import truth_path
    from ..eval.validate import validate
    from ..paths import PathPlan
    from ..preflight import readable_file, writable_file
    from ..runtime.backends import open_backend
    from ..runtime.config import BACKEND_OPTIONS, PipelineConfig

    readable_file(args.data, "dataset file")
    if args.save_json:
        writable_file(args.save_json, "COCO results")
    PathPlan().reads("--model", args.model).reads("--data", args.data, *split_folders(args.data, (args.split,))) \
        .writes("--save-json", args.save_json, truth_path(args.save_json) if args.save_json else None).check()
    backend = open_backend(args.model, **PipelineConfig.given(args, only=(*BACKEND_OPTIONS, "imgsz")))
    for warning in backend.warnings:
        log.warning(warning)
    result = validate(backend, args.data, args.split, args.conf, args.iou, args.blank)
    table = Table(title=f"{args.model} on {args.data} ({args.split}, {result.images} images, "
                        f"{result.instances} instances{', ' + args.blank + ' blanked' if args.blank else ''})")
    for column in ("class", "mAP50", "mAP50-95"):
        table.add_column(column, justify="left" if column == "class" else "right")
    table.add_row("all", f"{result.ap.map50:.4f}", f"{result.ap.map:.4f}")
    for name, (ap50, ap) in result.ap.per_class().items():
        table.add_row(name, f"{ap50:.4f}", f"{ap:.4f}")
    console.print(table)
    console.print("speed (ms/image): " + ", ".join(f"{k} {v:.1f}" for k, v in result.ms_per_image.items()))
    if args.save_json:
        truth = result.coco.save(args.save_json)
        console.print(f"wrote {args.save_json} ({len(result.coco.results)} detections) and {truth} (ground truth)")
    return 0
