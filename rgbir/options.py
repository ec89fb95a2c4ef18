"""Options defined once. A dataclass field made with ``option(...)`` carries its command-line flag, help text,
choices and parser; ``CommandLineOptions`` subclasses add those arguments to a parser and read the given ones
back, and the help shows each field's own default and choices, so no command repeats them (as Polygraphy's
``tools/args`` groups do). Flags that were not given stay out of ``given()``, so a YAML file or another default
can fill them."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, field, fields
from typing import Any


def option(default: Any = MISSING, *, help: str, flag: str | None = None, choices: Iterable | None = None,
           parse: Callable[[str], Any] | None = None, metavar: str | None = None, nargs: str | int | None = None,
           shown: str | None = None, default_factory: Callable[[], Any] | Any = MISSING) -> Any:
    """A dataclass field that is also a command-line option (``flag`` defaults to --field-name; ``shown`` is the
    default as the help should say it, when the value itself does not read well)."""
    cli = {"help": help, "flag": flag, "choices": tuple(choices) if choices is not None else None, "parse": parse,
           "metavar": metavar, "nargs": nargs, "shown": shown}
    return field(default=default, default_factory=default_factory, metadata={"cli": cli})


def _parse(parse: Callable[[str], Any], value: Any, flag: str) -> Any:
    from .errors import RgbirError

    try:
        return [parse(v) for v in value] if isinstance(value, list) else parse(value)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        shown = " ".join(value) if isinstance(value, list) else value
        if parse in (int, float):
            raise RgbirError(f"{flag} takes {'whole numbers' if parse is int else 'numbers'}, got '{shown}'") from e
        raise RgbirError(f"{flag} {e}") from e  # the parser's message names the value


MAX_IMAGE_SIZE = 4096  # network input side: 4096x4096 already needs gigabytes per activation of a small model


def image_size(text: str | int | tuple) -> tuple[int, int]:
    """'640' → (640, 640); '512,640' or '512x640' → (H=512, W=640); multiples of 32."""
    import re

    parts = [int(text)] if isinstance(text, int) else list(text) if isinstance(text, (tuple, list)) else \
        [p for p in re.split(r"[,x×]", str(text).strip()) if p]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or any(s < 32 or s % 32 for s in sizes):
        raise argparse.ArgumentTypeError(f"'{text}' is not an image size: give H or H,W, multiples of 32")
    if max(sizes) > MAX_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"'{text}' is larger than rgbir takes: at most {MAX_IMAGE_SIZE} a side (a "
                                         "network's memory grows with the square of its input)")
    return (sizes[0], sizes[-1])


def _default(f: Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else None if f.default is MISSING else f.default


def _help(f: Field, default: Any) -> str:
    cli = f.metadata["cli"]
    shown = cli["shown"]
    if shown is None and default is not None and not isinstance(default, bool):
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)
    return cli["help"] + (f" (default: {shown})" if shown else "")  # the choices are in the metavar


def _flag(f: Field) -> str:
    return f.metadata["cli"]["flag"] or "--" + f.name.replace("_", "-")


def _dest(f: Field) -> str:
    """The argparse attribute, named after the flag: two dataclasses may share a field name (a run's --mode and
    the thermal --agc mode) but never a flag."""
    return _flag(f).lstrip("-").replace("-", "_")


class CommandLineOptions:
    """A mixin for option dataclasses: ``add_arguments(parser)``, ``given(args)``, ``from_args(args)``."""

    @classmethod
    def cli_fields(cls, only: Iterable[str] | None = None, skip: Iterable[str] = ()) -> list[Field]:
        wanted = set(only) if only is not None else None
        return [f for f in fields(cls) if "cli" in f.metadata and f.name not in set(skip)
                and (wanted is None or f.name in wanted)]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser,
                      only: Iterable[str] | None = None, skip: Iterable[str] = ()) -> None:
        """One argument per option field (``only``/``skip`` pick them by field name) on a parser or an argument
        group; every default is None, so ``given`` can tell a flag that was given from one that was not."""
        for f in cls.cli_fields(only, skip):
            cli, default = f.metadata["cli"], _default(f)
            flag = _flag(f)
            if isinstance(default, bool):  # a switch: --x turns a False default on, --no-x a True one off
                parser.add_argument(flag, dest=_dest(f), default=None, help=cli["help"],
                                    action="store_false" if default else "store_true")
                continue
            metavar = cli["metavar"] or ("|".join(map(str, cli["choices"])) if cli["choices"] else None)
            parser.add_argument(flag, dest=_dest(f), default=None, metavar=metavar, nargs=cli["nargs"],
                                help=_help(f, default))

    @classmethod
    def given(cls, args: argparse.Namespace, only: Iterable[str] | None = None) -> dict[str, Any]:
        """The option fields whose flags were given, by field name, each through its ``parse`` (a value it refuses
        is one ``RgbirError`` naming the flag; the dataclass's own validation checks the choices, in one line
        rather than argparse's usage text)."""
        values = {}
        for f in cls.cli_fields(only):
            value, cli = getattr(args, _dest(f), None), f.metadata["cli"]
            if value is None:
                continue
            if cli["parse"] is not None and not isinstance(value, bool):
                value = _parse(cli["parse"], value, _flag(f))
            values[f.name] = value
        return values

    @classmethod
    def from_args(cls, args: argparse.Namespace, **values: Any):
        """An instance from the given flags (``values`` fill or override fields)."""
        return cls(**{**cls.given(args), **values})
