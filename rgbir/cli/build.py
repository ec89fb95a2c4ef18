"""``rgbir build``: a TensorRT engine (TensorRT 10.x or 11.x, or TensorRT-RTX for RTX GPUs, built on any machine)
from an rgbir ONNX export, plus its sidecar JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import console


def add_parser(sub) -> None:
    from ..trt import EngineOptions

    p = sub.add_parser("build", help="build a TensorRT engine from an exported ONNX",
                       description=__doc__.replace("``", ""))
    p.add_argument("onnx", help="ONNX file from 'rgbir export'")
    p.add_argument("-o", "--output", type=Path, help="engine file (default: the ONNX name with .engine)")
    EngineOptions.add_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..paths import PathPlan
    from ..preflight import writable_file
    from ..trt import EngineOptions, build_engine
    from ..trt.registry import edition_label
    from ..trt.sidecar import sidecar_path
    output = writable_file(args.output or Path(args.onnx).with_suffix(".engine"), "engine file")  # before the build
    PathPlan().reads("the ONNX file", args.onnx).reads("--plugin", args.plugin).writes("-o", output, sidecar_path(
        output)).writes("--timing-cache", args.timing_cache).writes("--calib-cache", args.calib_cache).check()
    result = build_engine(args.onnx, output, EngineOptions.from_args(args), console=console)
    for note in result.notes:
        console.print(f"note: {note}")
    table = Table(title=f"{result.engine} ({result.size / 1e6:.1f} MB, {result.precision}, "
                        f"{edition_label(result.edition, result.tensorrt_version)}, built in {result.seconds:.1f} s)")
    for column in ("tensor", "mode", "dtype", "shape"):
        table.add_column(column)
    for t in result.tensors:
        table.add_row(t.name, t.mode, t.dtype, "x".join(str(d) for d in t.shape))
    console.print(table)
    if result.layers:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(result.layer_precisions.items()))
        console.print(f"{result.layers} {'layers' if result.inspected else 'network layers'}"
                      f"{f' ({counts})' if counts else ''}")
    for kind, count in sorted(result.plugin_layers.items()):
        console.print(f"{count} {kind} plugin layer{'s' if count > 1 else ''}")
    if result.fallbacks:
        shown = ", ".join(result.fallbacks[:8]) + (" …" if len(result.fallbacks) > 8 else "")
        console.print(f"{len(result.fallbacks)} layers run wider than {result.precision}: {shown}")
    console.print(f"sidecar: {result.sidecar}")
    return 0
