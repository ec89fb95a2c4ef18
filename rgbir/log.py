"""One logger for rgbir: ``logging.getLogger("rgbir")`` and a child per module (``rgbir.runtime.pipeline``, …).

Library code only logs; the command line configures the output once (``configure``): messages go to stderr
(results go to stdout), through rich on a terminal and as plain single lines when piped, so logs and CI output
stay one line per message. Used as a library, rgbir shows warnings (Python's last-resort handler) and nothing
else unless the application configures logging.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings

from .errors import RgbirWarning

NAME = "rgbir"
PYTHON_SHOWWARNING = warnings.showwarning  # how Python shows the warnings that are not rgbir's
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}  # -q, default, -v


class LineFormatter(logging.Formatter):
    """'warning: …' and 'error: …' for problems; progress lines carry the time (long runs are read later)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return f"[{time.strftime('%H:%M:%S', time.localtime(record.created))}] {message}"


def configure(verbosity: int = 0) -> logging.Logger:
    """Send rgbir's messages to stderr at the level ``verbosity`` picks (-1 warnings only, 0 progress, 1 debug);
    called once per command, replacing what an earlier call set up."""
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_time=False, show_level=False, show_path=False,
                              markup=False, highlighter=None)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    logger = logging.getLogger(NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(LEVELS[max(-1, min(1, verbosity))])
    warnings.showwarning = _show_warning
    return logger


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """rgbir's own warnings (RgbirWarning) as one 'warning:' line like every other, in every command; other
    warnings as Python shows them (with their source line)."""
    if issubclass(category, RgbirWarning):
        logging.getLogger(NAME).warning(str(message))
    else:
        PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)
