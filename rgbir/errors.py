"""User-facing errors and warnings: the CLI prints their message on one line, without a traceback or source line."""


class RgbirError(Exception):
    """A problem with the user's input or environment; the message names it and how to fix it."""


class RgbirWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints it as one 'warning:' line)."""
