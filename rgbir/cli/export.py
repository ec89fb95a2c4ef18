"""``rgbir export``: weights or config → dual-input ONNX (portable sparse-attention op, optional NMS, FP16)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_arguments, image_size, load_model, quiet_torch_export

NMS_OPTIONS = {"max_det": ("--max-det", "max_det"), "iou": ("--iou", "iou_threshold"),
               "conf": ("--conf", "score_threshold")}  # flag attribute → (flag, ExportOptions field)


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (inputs rgb, ir)", description=__doc__.replace("``", ""))
    add_model_arguments(p)
    p.add_argument("-o", "--output", type=Path, help="ONNX file to write (default: next to the model, .onnx)")
    p.add_argument("--imgsz", type=image_size, default=(640, 640), help="input size H or H,W (default 640)")
    p.add_argument("--batch", default="1", help="fixed batch size, or 'dynamic' (default 1)")
    p.add_argument("--max-batch", type=int, help="upper bound of a dynamic batch (--batch dynamic; default 32)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="weights and activations")
    p.add_argument("--io-dtype", choices=("fp32", "fp16"), help="input/output dtype (default: the precision)")
    p.add_argument("--postprocess", choices=("none", "nms"), default="none",
                   help="'nms' adds decode + class-aware NMS: outputs num_dets, boxes, scores, classes")
    p.add_argument("--max-det", type=int, help="--postprocess nms: detections kept per image (default 300)")
    p.add_argument("--iou", type=float, help="--postprocess nms: NMS IoU threshold (default 0.7)")
    p.add_argument("--conf", type=float, help="--postprocess nms: NMS score threshold (default 0.25)")
    p.add_argument("--export-ir-channels", type=int, choices=(1, 3), dest="export_ir_channels",
                   help="1 folds a model trained on 3-channel grey IR into a 1-channel 'ir' input")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--no-simplify", action="store_true", help="skip the onnxslim pass")
    p.add_argument("--inline-attention", action="store_true",
                   help="inline the TopKSparseAttention function body (for runtimes without local functions)")
    p.set_defaults(run=run)


def given_options(args: argparse.Namespace) -> dict:
    """The batch and NMS flags given, as ExportOptions fields; the ones the export would ignore are refused: the
    NMS settings without --postprocess nms (a graph without NMS is decoded by 'rgbir run', which takes them), and
    --max-batch with a fixed --batch."""
    from ..errors import RgbirError

    if args.batch != "dynamic" and not args.batch.isdigit():
        raise RgbirError(f"--batch must be a number or 'dynamic', got '{args.batch}'")
    nms = {flag: (field, getattr(args, name)) for name, (flag, field) in NMS_OPTIONS.items()
           if getattr(args, name) is not None}
    if nms and args.postprocess != "nms":
        raise RgbirError(f"{', '.join(nms)} set the NMS inside the graph: add --postprocess nms, or give them to "
                         "'rgbir run', which decodes a graph without NMS")
    if args.max_batch is not None and args.batch != "dynamic":
        raise RgbirError(f"--max-batch bounds a dynamic batch, but --batch {args.batch} is fixed: use --batch "
                         "dynamic, or leave out --max-batch")
    options = {"batch": None if args.batch == "dynamic" else int(args.batch), **dict(nms.values())}
    if args.max_batch is not None:
        options["max_batch"] = args.max_batch
    return options


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    given = given_options(args)  # before torch loads: a flag the export would ignore fails at once
    from ..export import ExportOptions, export_onnx
    from ..preflight import writable_file

    console = Console()
    options = ExportOptions(
        imgsz=args.imgsz, precision=args.precision, io_dtype=args.io_dtype, postprocess=args.postprocess,
        ir_channels=args.export_ir_channels, opset=args.opset, simplify=not args.no_simplify,
        inline_attention=args.inline_attention, **given,
    )
    options.validate()
    output = writable_file(args.output or Path(Path(args.model).stem + ".onnx"), "ONNX file")
    console.print(f"exporting {args.model} → {output}", soft_wrap=True)
    model = load_model(args)
    with quiet_torch_export():
        result = export_onnx(model, output, options, log=lambda line: console.print("  " + line))
    console.print(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB), {result.metadata.precision}, "
                  f"attention op: {result.metadata.attention_op}", soft_wrap=True)
    for kind, values in (("input ", result.inputs), ("output", result.outputs)):
        for name, dtype, shape in values:
            console.print(f"  {kind} {name:<12} {dtype:<8} {shape}", soft_wrap=True)
    return 0
