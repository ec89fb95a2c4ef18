"""``rgbir export``: weights or config → dual-input ONNX (portable sparse-attention op, optional NMS, FP16)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_arguments, console, load_model, quiet_torch_export

NMS_FLAGS = {"max_det": "--max-det", "iou": "--iou", "conf": "--conf"}


def add_parser(sub) -> None:
    from ..export.options import ExportOptions

    p = sub.add_parser("export", help="export a model to ONNX (inputs rgb, ir)", description=__doc__.replace("``", ""))
    add_model_arguments(p, ir_channels=False)  # --ir-channels here is the exported input's (ExportOptions)
    p.add_argument("-o", "--output", type=Path, help="ONNX file to write (default: next to the model, .onnx)")
    ExportOptions.add_arguments(p)
    p.set_defaults(run=run)


def check_given(given: dict) -> None:
    """Refuse the flags the export would ignore: the NMS settings without --postprocess nms (a graph without NMS
    is decoded by 'rgbir run', which takes them), and --max-batch with a fixed --batch."""
    from ..errors import RgbirError

    nms = [flag for name, flag in NMS_FLAGS.items() if name in given]
    if nms and given.get("postprocess") != "nms":
        raise RgbirError(f"{', '.join(nms)} set the NMS inside the graph: add --postprocess nms, or give them to "
                         "'rgbir run', which decodes a graph without NMS")
    if "max_batch" in given and given.get("batch") != "dynamic":
        raise RgbirError(f"--max-batch bounds a dynamic batch, but --batch {given.get('batch', 1)} is fixed: use "
                         "--batch dynamic, or leave out --max-batch")


def run(args: argparse.Namespace) -> int:
    from ..export.options import ExportOptions
    from ..paths import PathPlan
    from ..preflight import writable_file

    given = ExportOptions.given(args)
    check_given(given)  # a flag the export would ignore fails at once, before torch loads
    options = ExportOptions(**given)
    options.validate()
    output = writable_file(args.output or Path(Path(args.model).stem + ".onnx"), "ONNX file")
    PathPlan().reads("the model", args.model).reads("--cfg", args.cfg).writes("-o", output).check()
    from ..export import export_onnx  # imports torch: only once every flag and path has been checked

    console.print(f"exporting {args.model} → {output}")
    model = load_model(args)
    with quiet_torch_export():
        result = export_onnx(model, output, options)
    # each stage's time was logged as it finished; the total closes the run
    console.print(f"wrote {result.path} in {sum(result.seconds.values()):.1f} s ({result.size_bytes / 1e6:.1f} MB), "
                  f"{result.metadata.precision}, "
                  f"attention op: {result.metadata.attention_op}")
    for kind, values in (("input ", result.inputs), ("output", result.outputs)):
        for name, dtype, shape in values:
            console.print(f"  {kind} {name:<12} {dtype:<8} {shape}")
    return 0
