"""The ``rgbir`` command line: one module per sub-command, each with ``add_parser`` and ``run``."""

from .main import main

__all__ = ["main"]
