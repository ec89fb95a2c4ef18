"""``rgbir parity``: PyTorch vs ONNX Runtime and/or TensorRT on the same inputs — tensor errors, detection
agreement and (with --data) mAP. With both an ONNX file and --engine, ONNX Runtime vs TensorRT is compared too."""

from __future__ import annotations

import argparse

from .common import console, log


def add_parser(sub) -> None:
    p = sub.add_parser("parity", help="compare PyTorch with an exported ONNX and/or a TensorRT engine",
                       description=__doc__.replace("``", ""))
    p.add_argument("model", help="weights file or config the ONNX/engine was made from")
    p.add_argument("onnx", nargs="?", help="exported ONNX file, or a server's model made from it "
                                           "(triton://HOST:PORT/MODEL)")
    p.add_argument("--engine", help="TensorRT engine built from it ('rgbir build')")
    p.add_argument("--cfg", help="architecture for a weights file that holds only a state_dict")
    p.add_argument("--samples", type=int, default=2, help="random input sets (default 2)")
    p.add_argument("--pair", nargs=2, action="append", default=[], metavar=("RGB", "IR"),
                   help="also compare on this image pair (repeatable)")
    p.add_argument("--match-iou", type=float, default=0.9, help="IoU for matching detections (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="also compare mAP on this dataset's val split (data.yaml)")
    p.set_defaults(run=run)


def print_report(report, match_iou: float) -> None:
    from rich.table import Table

    table = Table(title=f"parity: {report.reference} vs {report.candidate} ({report.precision}, "
                        f"{len(report.samples)} input sets)")
    for column in ("output", "max |Δ|", "max rel", "scale", "judged", "tolerance", ""):
        table.add_column(column, justify="right" if column not in ("output", "") else "left")
    for o in report.outputs:
        table.add_row(o.name, f"{o.max_abs:.3g}", f"{o.max_rel:.3g}", f"{o.scale:.3g}", f"{o.error:.3g}",
                      "shown only" if o.tolerance is None else f"{o.tolerance:.3g}",
                      "" if o.tolerance is None else "ok" if o.passed else "FAIL")
    console.print(table)
    d = report.detections
    console.print(f"detections: reference {d.reference}, candidate {d.candidate}, matched {d.matched} "
                  f"(IoU >= {match_iou}, mean IoU {d.mean_iou:.4f}); agreement {report.agreement:.3f}"
                  + ("" if report.judged_by_tensors else f" (needs {report.min_agreement})"))


def check_inputs(args: argparse.Namespace) -> None:
    """Something to compare, and something to compare it on (checked before torch loads)."""
    from ..errors import RgbirError

    if not args.onnx and not args.engine:
        raise RgbirError("give an ONNX file, --engine ENGINE, or both")
    if args.samples < 0:
        raise RgbirError(f"--samples {args.samples} must be >= 0")
    if args.samples + len(args.pair) == 0:
        raise RgbirError("--samples 0 and no --pair leave nothing to compare: give --samples N or --pair RGB IR")


def run(args: argparse.Namespace) -> int:
    check_inputs(args)
    from ..errors import RgbirError
    from ..models import is_weights_file, open_model
    from ..parity import compare, image_inputs, model_mismatch, random_inputs
    from ..preflight import readable_file
    from ..runtime.backends import open_backend
    from ..runtime.backends.torch_backend import TorchBackend
    from ..runtime.backends.triton_backend import is_triton_url
    from .common import require_torch

    require_torch("parity")
    if args.data:
        readable_file(args.data, "dataset file")
    paths = [p for p in (args.onnx, args.engine) if p]
    served = is_triton_url(args.onnx or "")  # the ONNX model on a Triton server
    candidates = [open_backend(path, kind) for path, kind in ((args.onnx, "triton" if served else "onnxruntime"),
                                                              (args.engine, "tensorrt")) if path]
    for backend, path in zip(candidates, paths):
        if backend.metadata is None:
            raise RgbirError(f"{path} has no rgbir metadata: export it with 'rgbir export' (engines: 'rgbir build' "
                             "writes it next to the engine)")
    meta = candidates[0].metadata
    model = open_model(args.model, args.cfg, nc=None if is_weights_file(args.model) else meta.nc)
    inputs = random_inputs(meta, args.samples, args.seed) + image_inputs(meta, [tuple(p) for p in args.pair])
    reference = TorchBackend(model, imgsz=meta.imgsz)
    for backend, path in zip(candidates, paths):
        why = model_mismatch(reference.metadata, backend.metadata)
        if why:
            raise RgbirError(f"{args.model} and {path} are different models ({why}): compare a model with its "
                             "own export")
    pairs = [(reference, c) for c in candidates] + ([tuple(candidates)] if len(candidates) == 2 else [])
    for backend in candidates:
        for warning in backend.warnings:
            log.warning(warning)
    passed = True
    for ref, cand in pairs:
        report = compare(ref, cand, inputs, cand.metadata, args.match_iou)
        print_report(report, args.match_iou)
        passed &= report.passed
    if args.data:
        from ..eval.validate import validate

        for backend in [reference] + candidates:
            r = validate(backend, args.data)
            console.print(f"{backend.name:<12} mAP50 {r.ap.map50:.4f}  mAP50-95 {r.ap.map:.4f}  ({r.images} images)")
    console.print("PASS" if passed else "FAIL")
    return 0 if passed else 1
