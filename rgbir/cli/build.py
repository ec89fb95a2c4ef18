"""``rgbir build``: a TensorRT engine (TensorRT 10.x or 11.x) from an rgbir ONNX export, plus its sidecar JSON."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("build", help="build a TensorRT engine from an exported ONNX", description=__doc__.replace("``", ""))
    p.add_argument("onnx", help="ONNX file from 'rgbir export'")
    p.add_argument("-o", "--output", type=Path, help="engine file (default: the ONNX name with .engine)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"),
                   help="auto: as the ONNX is (strongly typed). fp16/int8 use TensorRT 10's weak-typing flags; "
                        "TensorRT 11 needs an fp16 export (rgbir export --precision fp16) or a Q/DQ model for INT8")
    p.add_argument("--batch", help="dynamic-batch models: N or MIN,OPT,MAX (default 1)")
    p.add_argument("--workspace", type=int, metavar="MIB", help="scratch memory limit for tactics")
    p.add_argument("--timing-cache", type=Path, help="timing cache file, reused and updated across builds")
    p.add_argument("--calib", metavar="DATA", help="INT8 calibration images: data.yaml or RGB_DIR,IR_DIR")
    p.add_argument("--calib-cache", type=Path, help="INT8 calibration cache (read if present, else written)")
    p.add_argument("--calib-images", type=int, default=512, help="at most this many calibration pairs (512)")
    p.add_argument("--dla-core", type=int, help="Jetson: run on this DLA core, falling back to the GPU")
    p.add_argument("--version-compatible", action="store_true",
                   help="loadable by later TensorRT of this and the next major version (10 → 11); "
                        "embeds the plugin library")
    p.add_argument("--hardware-compatible", action="store_true", help="loadable on any Ampere or newer GPU")
    p.add_argument("--opt-level", type=int, help="builder optimisation level 0-5 (TensorRT's default 3)")
    p.add_argument("--plugin", type=Path, help="rgbir plugin library (default: the search path)")
    p.set_defaults(run=run)


def options_from_args(args: argparse.Namespace):
    from ..trt import BatchProfile, EngineOptions

    return EngineOptions(
        precision=args.precision, batch=BatchProfile.parse(args.batch) if args.batch else None,
        workspace_mib=args.workspace, timing_cache=args.timing_cache, dla_core=args.dla_core,
        version_compatible=args.version_compatible, hardware_compatible=args.hardware_compatible,
        calibration_data=args.calib, calibration_cache=args.calib_cache, calibration_images=args.calib_images,
        plugin_library=args.plugin, optimization_level=args.opt_level)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..preflight import writable_file
    from ..trt import build_engine

    console = Console()
    output = writable_file(args.output or Path(args.onnx).with_suffix(".engine"), "engine file")  # before the build
    result = build_engine(args.onnx, output, options_from_args(args), console=console)
    for note in result.notes:
        console.print(f"note: {note}", soft_wrap=True)
    table = Table(title=f"{result.engine} ({result.size / 1e6:.1f} MB, {result.precision}, TensorRT "
                        f"{result.tensorrt_version}, built in {result.seconds:.1f} s)")
    for column in ("tensor", "mode", "dtype", "shape"):
        table.add_column(column)
    for t in result.tensors:
        table.add_row(t.name, t.mode, t.dtype, "x".join(str(d) for d in t.shape))
    console.print(table)
    if result.layers:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(result.layer_precisions.items()))
        console.print(f"{result.layers} layers ({counts})", soft_wrap=True)
    if result.fallbacks:
        shown = ", ".join(result.fallbacks[:8]) + (" …" if len(result.fallbacks) > 8 else "")
        console.print(f"{len(result.fallbacks)} layers run wider than {result.precision}: {shown}", soft_wrap=True)
    console.print(f"sidecar: {result.sidecar}")
    return 0
