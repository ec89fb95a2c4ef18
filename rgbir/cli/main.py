"""Entry point: parse the sub-command, run it, turn user errors into one clear line (no traceback)."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import RgbirError
from . import build, calibrate, check, demo, doctor, export, info, parity, plugins, run, train, val

COMMANDS = (demo, info, export, check, parity, build, run, calibrate, train, val, plugins, doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rgbir",
        description="Multimodal RGB + infrared YOLO detectors from PyTorch to the edge.",
    )
    parser.add_argument("--version", action="version", version=f"rgbir {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except RgbirError as e:
        print(f"rgbir {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rgbir {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
