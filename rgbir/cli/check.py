"""``rgbir check``: what TensorRT 10/11 will reject or handle badly in an ONNX file (exit 1 on errors)."""

from __future__ import annotations

import argparse

from .common import console


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="static TensorRT compatibility check of an ONNX file",
                       description=__doc__.replace("``", ""))
    p.add_argument("onnx", help="ONNX file")
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from ..export.check import check_onnx

    report = check_onnx(args.onnx)
    if report.findings:
        table = Table(title=f"TensorRT check: {args.onnx}")
        for column in ("severity", "node", "finding"):
            table.add_column(column)
        style = {"error": "red", "warning": "yellow", "info": "dim"}
        for f in report.findings:
            table.add_row(Text(f.severity, style=style[f.severity]), f.node, f.message)
        console.print(table)
    failed = not report.passed or (args.strict and report.warnings)
    console.print(f"{'FAIL' if failed else 'PASS'}: {len(report.errors)} errors, {len(report.warnings)} warnings")
    return 1 if failed else 0
