"""User-facing errors: the CLI prints their message on one line, without a traceback."""


class RgbirError(Exception):
    """A problem with the user's input or environment; the message names it and how to fix it."""
