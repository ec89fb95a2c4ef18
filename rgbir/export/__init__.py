"""ONNX export of rgbir detectors. Submodules are imported on use, so ``rgbir.export.check`` works without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .exporter import ExportOptions, ExportResult, export_onnx

__all__ = ["ExportOptions", "ExportResult", "export_onnx"]


def __getattr__(name: str):
    if name in __all__:
        from . import exporter

        return getattr(exporter, name)
    raise AttributeError(name)
