"""rgbir: multimodal RGB + infrared YOLO detectors from PyTorch to the edge."""

from .version import __version__ as __version__  # re-exported: rgbir.__version__


def __getattr__(name: str):
    """``rgbir.Pipeline`` without importing the runtime (or torch) at package import."""
    if name == "Pipeline":
        from .runtime.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
