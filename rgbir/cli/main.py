"""Entry point: parse the sub-command, run it, turn user errors into one clear line (no traceback)."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import RgbirError
from ..log import configure as configure_logging
from . import build, calibrate, check, demo, doctor, export, info, parity, plugins, quantize, run, train, triton, val

COMMANDS = (demo, info, export, quantize, check, parity, build, run, calibrate, train, val, plugins, doctor, triton)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rgbir",
        description="Multimodal RGB + infrared YOLO detectors from PyTorch to the edge.",
    )
    parser.add_argument("--version", action="version", version=f"rgbir {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_const", const=1, default=0, dest="verbosity",
                          help="also show debug messages")
    loudness.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity",
                          help="show warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def describe(error: Exception) -> str:
    """An error as one line: rgbir's own as written, an OSError as 'file: reason', others with newlines folded."""
    if isinstance(error, RgbirError):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        return ": ".join([str(f) for f in (error.filename, error.filename2) if f is not None] + [error.strerror])
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbosity)
    try:
        return args.run(args) or 0
    except (RgbirError, OSError, ValueError) as e:  # OSError/ValueError: a file or value no check foresaw
        if args.debug:
            raise
        print(f"rgbir {args.command}: error: {describe(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rgbir {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
