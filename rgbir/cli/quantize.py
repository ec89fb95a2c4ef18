"""``rgbir quantize``: an fp32 ONNX export → an INT8 Q/DQ ONNX (post-training, calibrated on paired RGB + IR
images preprocessed as at run time) that TensorRT 10 and 11 build strongly typed: the INT8 route of JetPack 7."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import console


def add_parser(sub) -> None:
    from ..export.quantize import QuantizeOptions

    p = sub.add_parser("quantize", help="INT8 Q/DQ ONNX from an fp32 export (TensorRT 11 INT8)",
                       description=__doc__.replace("``", ""))
    p.add_argument("onnx", help="fp32 ONNX file from 'rgbir export'")
    p.add_argument("-o", "--output", type=Path, help="INT8 ONNX to write (default: the input name with -int8)")
    QuantizeOptions.add_arguments(p)
    p.add_argument("--sensitivity", action="store_true",
                   help="report how much quantizing each layer group alone moves the outputs; writes no model")
    p.set_defaults(run=run)


def _options(args: argparse.Namespace):
    from ..errors import RgbirError
    from ..export.quantize import QuantizeOptions

    given = QuantizeOptions.given(args)
    if "calibration_data" not in given:
        raise RgbirError("quantizing needs calibration images: --calib data.yaml or --calib RGB_DIR,IR_DIR")
    options = QuantizeOptions(**given)
    options.validate()
    return options


def print_sensitivity(results) -> None:
    from rich.table import Table

    table = Table(title="INT8 sensitivity: one layer group quantized at a time (fp32 elsewhere), output error "
                        "on confident anchors")
    for column in ("group", "nodes", "1 - box IoU", "score |Δ|", "error"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for r in results:
        table.add_row(r.group, str(r.nodes), f"{r.box_error:.4f}", f"{r.score_error:.4f}", f"{r.error:.4f}")
    console.print(table)
    worst = [r.group for r in results[1:4] if r.error > 0]
    if worst:
        console.print(f"keep the worst in float with --skip-layers {','.join(worst)}")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..data.dataset import split_folders
    from ..files import replacing
    from ..paths import PathPlan
    from ..preflight import readable_file, writable_file

    options = _options(args)
    source = readable_file(args.onnx, "ONNX file")
    if options.calibration_cache is not None:
        writable_file(options.calibration_cache, "calibration cache")
    output = None if args.sensitivity else writable_file(args.output or source.with_name(source.stem + "-int8.onnx"),
                                                         "ONNX file")
    data = options.calibration_data  # a data.yaml (its splits' folders are read too) or RGB_DIR,IR_DIR
    calibration = [data, *split_folders(data)] if data.endswith((".yaml", ".yml")) else data.split(",")
    PathPlan().reads("the ONNX file", source).reads("--calib", *calibration) \
        .writes("--calib-cache", options.calibration_cache).writes("-o", output).check()

    if args.sensitivity:
        from ..export.quantize import sensitivity

        print_sensitivity(sensitivity(source, options))
        return 0
    from ..export.quantize import quantize_onnx

    with replacing(output) as partial:  # a failed or interrupted write keeps the file that was there
        result = replace(quantize_onnx(source, partial, options), path=output)
    sizes = f"{source.stat().st_size / 1e6:.1f} MB fp32 → {result.size_bytes / 1e6:.1f} MB int8"
    console.print(f"wrote {result.path} ({sizes}): {len(result.quantized)} nodes with INT8 inputs, "
                  f"{result.float_nodes} Conv/Gemm/MatMul kept float")
    console.print(f"next: rgbir val --model {result.path} --data DATA.yaml; rgbir build {result.path}")
    return 0
