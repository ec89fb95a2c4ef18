"""rgbir: multimodal RGB + infrared YOLO detectors from PyTorch to the edge."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``rgbir.Pipeline`` without importing the runtime (or torch) at package import."""
    if name == "Pipeline":
        from .runtime.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
