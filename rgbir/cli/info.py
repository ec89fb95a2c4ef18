"""``rgbir info``: layers, parameters, GFLOPs and modality routing of a config or weights file."""

from __future__ import annotations

import argparse

from ..options import image_size
from .common import add_model_arguments, console, load_model


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="summarise a model: layers, parameters, GFLOPs, modality routing",
                       description=__doc__.replace("``", ""))
    add_model_arguments(p)
    p.add_argument("--imgsz", type=image_size, default=(640, 640), help="input size H or H,W (default 640)")
    p.add_argument("--brief", action="store_true", help="print only the summary, not the layer table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..models.summary import summarize

    model = load_model(args)
    summary = summarize(model, args.imgsz)
    if not args.brief:
        table = Table(title=f"{summary.name} layers", show_lines=False)
        for column, justify in (("#", "right"), ("from", "right"), ("n", "right"), ("params", "right"),
                                ("module", "left"), ("arguments", "left"), ("input", "left")):
            table.add_column(column, justify=justify)
        for row in summary.layers:
            table.add_row(str(row.index), row.source, str(row.repeats), f"{row.params:,}", row.module,
                          row.arguments, row.route)
        console.print(table)
    if summary.multimodal:
        console.print(f"inputs: rgb (B,3,H,W) + ir (B,{summary.ir_channels},H,W); "
                      f"{summary.nc} classes; output (B,{4 + summary.nc},anchors)")
    else:
        console.print(f"input: rgb (B,3,H,W); {summary.nc} classes; output (B,{4 + summary.nc},anchors)")
    checkpoint = getattr(model, "checkpoint", None)
    if checkpoint is not None:
        console.print(f"weights: {checkpoint.format} ({checkpoint.path}), channel order {checkpoint.channel_order}")
    console.print(summary.line)
    return 0
