"""``rgbir parity``: PyTorch vs ONNX Runtime on the same inputs — tensor errors and detection agreement."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("parity", help="compare PyTorch and an exported ONNX file", description=__doc__.strip("`"))
    p.add_argument("model", help="weights file or config the ONNX was exported from")
    p.add_argument("onnx", help="exported ONNX file")
    p.add_argument("--cfg", help="architecture for a weights file that holds only a state_dict")
    p.add_argument("--samples", type=int, default=2, help="random input sets (default 2)")
    p.add_argument("--pair", nargs=2, action="append", default=[], metavar=("RGB", "IR"),
                   help="also compare on this image pair (repeatable)")
    p.add_argument("--match-iou", type=float, default=0.9, help="IoU for matching detections (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="also compare mAP on this dataset's val split (data.yaml)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..errors import RgbirError
    from ..models import is_weights_file, open_model
    from ..parity import compare, image_inputs, random_inputs
    from ..runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from ..runtime.backends.torch_backend import TorchBackend
    from .common import require_torch

    require_torch("parity")
    candidate = OnnxRuntimeBackend(args.onnx)
    meta = candidate.metadata
    if meta is None:
        raise RgbirError(f"{args.onnx} has no rgbir metadata: export it with 'rgbir export'")
    model = open_model(args.model, args.cfg, nc=None if is_weights_file(args.model) else meta.nc)
    inputs = random_inputs(meta, args.samples, args.seed) + image_inputs(meta, [tuple(p) for p in args.pair])
    report = compare(TorchBackend(model), candidate, inputs, meta, args.match_iou)

    console = Console()
    table = Table(title=f"parity: {report.reference} vs {report.candidate} ({report.precision}, "
                        f"{len(report.samples)} input sets)")
    for column in ("output", "max |Δ|", "max rel", "scale", "judged", "tolerance", ""):
        table.add_column(column, justify="right" if column not in ("output", "") else "left")
    for o in report.outputs:
        table.add_row(o.name, f"{o.max_abs:.3g}", f"{o.max_rel:.3g}", f"{o.scale:.3g}", f"{o.error:.3g}",
                      f"{o.tolerance:.3g}", "ok" if o.passed else "FAIL")
    console.print(table)
    d = report.detections
    console.print(f"detections: reference {d.reference}, candidate {d.candidate}, matched {d.matched} "
                  f"(IoU >= {args.match_iou}, mean IoU {d.mean_iou:.4f}); agreement {report.agreement:.3f}"
                  + ("" if report.outputs else f" (needs {report.min_agreement})"), soft_wrap=True)
    if args.data:
        from ..eval.validate import validate

        h, w = meta.imgsz
        for name, backend in ((report.reference, TorchBackend(model, imgsz=(h, w))), (report.candidate, candidate)):
            r = validate(backend, args.data)
            console.print(f"{name:<12} mAP50 {r.ap.map50:.4f}  mAP50-95 {r.ap.map:.4f}  ({r.images} images)",
                          soft_wrap=True)
    console.print("PASS" if report.passed else "FAIL")
    return 0 if report.passed else 1
