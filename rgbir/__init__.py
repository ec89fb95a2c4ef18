"""rgbir: multimodal RGB + infrared YOLO detectors from PyTorch to the edge."""

__version__ = "0.1.0"
