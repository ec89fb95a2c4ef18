"""Protobuf text format from plain Python values, for Triton's ``config.pbtxt`` without importing Triton's protos
(writing a repository needs no tritonclient; the tests parse the result with Triton's own ``ModelConfig``)."""

from __future__ import annotations


class Enum(str):
    """An enum value, written bare (``TYPE_FP32``), not as a quoted string."""


def render(message: dict, indent: int = 0) -> str:
    """``message`` as text format: a dict is a message, a list of dicts a repeated message (a map is a list of
    {key, value} dicts), a list of scalars a repeated scalar; fields in the dict's order."""
    pad, lines = "  " * indent, []
    for key, value in message.items():
        if isinstance(value, dict):
            value = [value]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                body = render(item, indent + 1)
                lines.append(f"{pad}{key} {{\n{body}{pad}}}" if body else f"{pad}{key} {{ }}")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {scalar(value)}")
    return "".join(line + "\n" for line in lines)


def scalar(value) -> str:
    """One field value: bare enums, true/false, numbers, double-quoted strings with C escapes."""
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'
