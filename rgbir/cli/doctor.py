"""``rgbir doctor``: what is installed and usable here (runtimes, GPU, TensorRT, plugin), with fix hints."""

from __future__ import annotations

import argparse
import json

from .common import console


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check the installation: runtimes, GPU, TensorRT, plugin",
                       description=__doc__.replace("``", ""))
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rich.table import Table
    from rich.text import Text

    from ..doctor import run_checks

    checks = run_checks()
    if args.json:
        console.print(json.dumps([asdict(c) for c in checks], indent=2))
        return 0
    table = Table(title="rgbir doctor")
    for column in ("component", "status", "detail", "fix"):
        table.add_column(column)
    colours = {"ok": "green", "warn": "yellow", "missing": "red"}
    for c in checks:
        table.add_row(c.name, Text(c.status, style=colours[c.status]), c.detail, c.hint)
    console.print(table)
    return 0
