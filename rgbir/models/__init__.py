"""PyTorch re-implementations of YOLO11 / YOLO11-MM detectors, their fusion modules, and checkpoint import."""

from .checkpoint import CheckpointInfo, CheckpointWarning, is_weights_file, load, open_model, save
from .detector import Detector, build_model
from .sparse_attention import topk_sparse_attention

__all__ = ["CheckpointInfo", "CheckpointWarning", "Detector", "build_model", "is_weights_file", "load", "open_model",
           "save", "topk_sparse_attention"]
