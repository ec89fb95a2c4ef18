"""Shared fixtures: deterministic seeds, and the directory that holds the test-only helpers."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _seed():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """A small exported dual-input model (yolo11n-mm-mid at 128x160, BN-calibrated random weights)."""
    from lively import lively
    from rgbir.export import ExportOptions, export_onnx
    from rgbir.models import build_model

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    export_onnx(lively(build_model("yolo11n-mm-mid", nc=2)), path, ExportOptions(imgsz=(128, 160)))
    return path
