"""ONNX export of rgbir detectors. Submodules are imported on use, so ``rgbir.export.check`` works without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .exporter import ExportResult, export_onnx
    from .options import ExportOptions

__all__ = ["ExportOptions", "ExportResult", "export_onnx"]


def __getattr__(name: str):
    if name == "ExportOptions":  # torch-free: the command line offers its flags without importing torch
        from .options import ExportOptions

        return ExportOptions
    if name in __all__:
        from . import exporter

        return getattr(exporter, name)
    raise AttributeError(name)
